"""The user-facing WF-VAE module: encode/decode (direct or Causal-Cache chunked), streaming, saving."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import torch
from torch import nn

from wfvae_cli.model.config import WFVAEConfig
from wfvae_cli.model.distribution import DiagonalGaussian
from wfvae_cli.model.layers import CONV_ALGORITHMS
from wfvae_cli.model.networks import Decoder, Encoder
from wfvae_cli.model.streaming import LengthPolicy, StreamDecoder, StreamEncoder, fit_length
from wfvae_cli.model.wavelets import (
    HaarWaveletTransform2D,
    HaarWaveletTransform3D,
    InverseHaarWaveletTransform2D,
    InverseHaarWaveletTransform3D,
)

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
CONFIG_NAME = "config.json"


class WFVAE(nn.Module):
    """WF-VAE with the official ``WFVAEModel`` state-dict layout.

    ``encode(video)`` takes (B, 3, T, H, W) in [-1, 1] with T = 4k+1 (8k+1 for the 8x variant) and
    H, W multiples of 8, and returns a :class:`DiagonalGaussian`; ``decode(latent)`` returns the video.
    ``chunk_frames=N`` runs either through the Causal Cache in pieces of N video frames (same result,
    memory bounded by N instead of T).
    """

    def __init__(self, config: WFVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        #: where the weights came from (set by :func:`load_model`), shown by ``wfvae info``
        self.source: str = "random init"

    # ------------------------------------------------------------------ inference
    def encode(
        self, video: torch.Tensor, chunk_frames: int | None = None, length_policy: LengthPolicy = "error"
    ) -> DiagonalGaussian:
        """Posterior of ``video``; ``chunk_frames`` selects Causal-Cache chunked inference."""
        self._check_video(video)
        if chunk_frames is None:
            video = fit_length(video, self.config.temporal_factor, length_policy)
            with self.autograd_for(video):
                return DiagonalGaussian.from_moments(self.encoder(video)[0])
        with StreamEncoder(self, chunk_frames, length_policy) as enc:
            return DiagonalGaussian.cat([enc.push(video), enc.flush()])

    def decode(self, latent: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
        """Video (B, 3, 4(t-1)+1, 8h, 8w) from latents (B, Z, t, h, w); not clamped."""
        if chunk_frames is None:
            self._check_latent(latent)
            with self.autograd_for(latent):
                return self.decoder(latent)[0]
        with StreamDecoder(self, chunk_frames) as dec:
            return dec.push(latent, final=True)

    def autograd_for(self, *inputs: torch.Tensor) -> contextlib.AbstractContextManager:
        """The autograd context of an ``encode``/``decode``/streaming call on ``inputs``.

        They are inference calls: autograd history is recorded only when a gradient can be wanted,
        that is the model is in training mode or an input requires grad. An eval-mode model (what
        :func:`load_model` returns) therefore never builds a graph it would hold the activations for,
        whether or not the caller remembered ``torch.no_grad()``. Training uses :meth:`forward`.
        """
        if torch.is_grad_enabled() and (self.training or any(t.requires_grad for t in inputs)):
            return contextlib.nullcontext()
        return torch.no_grad()

    def set_conv_algorithm(self, algorithm: str) -> WFVAE:
        """How float32 CPU inference computes the 3x3 convolutions: ``"auto"`` (default: Winograd
        F(4x4,3x3) (F(2x2,3x3) on frames under 4 pixels) with the compiled kernels of :mod:`wfvae_cli.model.fastconv.native` when they can be built,
        else direct), ``"direct"`` (the framework's convolution only) or ``"winograd"`` (an error if the
        kernels are unavailable). Training (gradients on), other dtypes and CUDA always run direct.
        Returns ``self``."""
        if algorithm not in CONV_ALGORITHMS:
            raise ValueError(f"conv algorithm must be one of {', '.join(CONV_ALGORITHMS)}, got {algorithm!r}")
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                module.algorithm = algorithm
        return self

    def stream_encoder(self, chunk_frames: int | None = None, length_policy: LengthPolicy = "error") -> StreamEncoder:
        """A Causal-Cache encoding session (see :mod:`wfvae_cli.model.streaming`)."""
        return StreamEncoder(self, chunk_frames, length_policy)

    def stream_decoder(self, chunk_frames: int | None = None) -> StreamDecoder:
        """A Causal-Cache decoding session; ``chunk_frames`` counts video frames."""
        return StreamDecoder(self, chunk_frames)

    def forward(
        self, video: torch.Tensor, sample_posterior: bool = True, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, DiagonalGaussian, tuple[torch.Tensor, ...]]:
        """Training forward: reconstruction, posterior, and (enc_l1, dec_l1, enc_l2, dec_l2) for the WL loss."""
        moments, (enc_l1, enc_l2) = self.encoder(video)
        posterior = DiagonalGaussian.from_moments(moments)
        z = posterior.sample(generator) if sample_posterior else posterior.mode()
        recon, (dec_l1, dec_l2) = self.decoder(z)
        return recon, posterior, (enc_l1, dec_l1, enc_l2, dec_l2)

    def get_last_layer(self) -> torch.Tensor:
        """The decoder's last conv weight: where the adaptive GAN weight measures gradient norms."""
        return self.decoder.conv_out.weight

    # ------------------------------------------------------------------ checks
    def _check_video(self, video: torch.Tensor) -> None:
        if video.dim() != 5 or video.shape[1] != 3:
            raise ValueError(f"expected a video tensor (B, 3, T, H, W), got shape {tuple(video.shape)}")
        h, w = video.shape[3:]
        if h % 8 or w % 8:
            raise ValueError(f"height and width must be multiples of 8, got {h}x{w} (resize or crop the frames)")

    def _check_latent(self, latent: torch.Tensor) -> None:
        z = self.config.latent_dim
        if latent.dim() != 5 or latent.shape[1] != z:
            raise ValueError(f"expected latents (B, {z}, t, h, w), got shape {tuple(latent.shape)}")

    # ------------------------------------------------------------------ facts
    def num_params(self) -> dict[str, int]:
        enc = sum(p.numel() for p in self.encoder.parameters())
        dec = sum(p.numel() for p in self.decoder.parameters())
        return {"encoder": enc, "decoder": dec, "total": enc + dec}

    def fingerprint(self) -> str:
        """sha256 over the state dict (names, shapes and float32 values, in sorted key order).

        Stable across save/load and across devices; a model cast to bf16 hashes its (upcast) bf16 values.
        """
        digest = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            t = tensor.detach().to("cpu", torch.float32).contiguous()
            digest.update(f"{name}:{tuple(t.shape)};".encode())
            digest.update(t.numpy().tobytes())
        return digest.hexdigest()

    @torch.no_grad()
    def reset_wavelet_constants(self) -> None:
        """Restore the fixed Haar filters (they are constants in every official checkpoint)."""
        for m in self.modules():
            if isinstance(
                m,
                HaarWaveletTransform3D
                | HaarWaveletTransform2D
                | InverseHaarWaveletTransform3D
                | InverseHaarWaveletTransform2D,
            ):
                m.reset_constants()

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the official HF layout: ``config.json`` + ``diffusion_pytorch_model.safetensors``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.to_json(directory / CONFIG_NAME)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
        return directory
