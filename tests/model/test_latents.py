"""Latent normalisation: explicit per-channel convention, no silent broadcasting."""

from __future__ import annotations

import pytest
import torch

from wfvae_cli.errors import WfvaeError
from wfvae_cli.model import LatentNormalizer, preset_config


def test_per_channel_roundtrip():
    norm = LatentNormalizer.create([0.5, 2.0], [1.0, -1.0], channels=2)
    z = torch.randn(3, 2, 4, 5, 5)
    n = norm.normalize(z)
    torch.testing.assert_close(n[:, 0], (z[:, 0] - 1.0) * 0.5)
    torch.testing.assert_close(n[:, 1], (z[:, 1] + 1.0) * 2.0)
    torch.testing.assert_close(norm.denormalize(n), z, rtol=0, atol=1e-6)


def test_scalar_lists_broadcast():
    norm = LatentNormalizer.create([0.25], [0.0], channels=16)
    z = torch.randn(1, 16, 2, 3, 3)
    torch.testing.assert_close(norm.normalize(z), z * 0.25)


def test_released_placeholder_lists_are_refused_unless_asked():
    cfg = preset_config("wfvae-l")  # 4-entry lists for 16 channels, as released
    with pytest.raises(WfvaeError, match="4 entries for a 16-channel latent"):
        LatentNormalizer.from_config(cfg)
    norm = LatentNormalizer.from_config(cfg, on_mismatch="uniform")
    assert norm.scale == (0.18215,)


def test_nonuniform_mismatch_always_errors():
    with pytest.raises(WfvaeError):
        LatentNormalizer.create([1.0, 2.0, 3.0], [0.0], channels=4, on_mismatch="uniform")


def test_zero_scale_refused():
    with pytest.raises(WfvaeError, match="scale contains 0"):
        LatentNormalizer.create([0.0], [0.0], channels=4)
