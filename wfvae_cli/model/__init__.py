"""WF-VAE model: config, network, Causal Cache streaming, checkpoint loading."""

from wfvae_cli.model.autoencoder import WFVAE
from wfvae_cli.model.cache import CausalCache
from wfvae_cli.model.config import WFVAEConfig, preset_config, preset_names
from wfvae_cli.model.distribution import DiagonalGaussian
from wfvae_cli.model.latents import LatentNormalizer
from wfvae_cli.model.loading import load_model, load_state_dict_file
from wfvae_cli.model.streaming import StreamDecoder, StreamEncoder

__all__ = [
    "WFVAE",
    "CausalCache",
    "DiagonalGaussian",
    "LatentNormalizer",
    "StreamDecoder",
    "StreamEncoder",
    "WFVAEConfig",
    "load_model",
    "load_state_dict_file",
    "preset_config",
    "preset_names",
]
