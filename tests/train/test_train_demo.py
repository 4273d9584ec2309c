"""The bundled demo model `wfvae-tiny` (trained by recipes/tiny-cpu.toml) loads and beats pooling."""

from __future__ import annotations

import torch

from wfvae_cli.model import load_model, preset_config
from wfvae_cli.model.config import bundled_dir
from wfvae_cli.train.data import SyntheticClips
from wfvae_cli.train.evaluate import Evaluator, pool_baseline


def test_wfvae_tiny_preset_loads_the_shipped_weights():
    folder = bundled_dir("wfvae-tiny")
    assert (folder / "config.json").is_file() and (folder / "diffusion_pytorch_model.safetensors").is_file()
    assert (folder / "diffusion_pytorch_model.safetensors").stat().st_size < 12_000_000
    model = load_model("wfvae-tiny")
    assert model.source == "bundled:wfvae-tiny"
    assert model.config == preset_config("wfvae-tiny")
    assert (model.config.base_channels, model.config.latent_dim) == (24, 8)
    # the shipped weights are trained, not the seeded random init of the architecture presets
    assert load_model("WFVAE-TINY").fingerprint() == model.fingerprint()


def test_wfvae_tiny_beats_the_pooling_baseline_on_held_out_photos():
    clips = SyntheticClips(["chelsea", "retina"], 9, (64, 64), seed=0, train=False, clips=4)
    ev = Evaluator(clips, batch_size=4)
    ours = ev.run(load_model("wfvae-tiny"), torch.device("cpu"))
    base = ev.baseline()
    assert ours["psnr"] > base["psnr"] + 1.0 and ours["ssim"] > base["ssim"] + 0.04
    assert pool_baseline(clips[0][None]).shape == (1, 3, 9, 64, 64)
