"""Shared fixtures: the official golden model and manifests (vendored under tests/fixtures), tiny configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wfvae_cli.model import WFVAE, WFVAEConfig

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "golden"
MANIFESTS = sorted((FIXTURES / "manifests").glob("*.json"))

EIGHT_X = {
    "l1_dowmsample_block": "Spatial2xTime2x3DDownsample",
    "l1_downsample_wavelet": "HaarWaveletTransform3D",
    "l1_upsample_block": "Spatial2xTime2x3DUpsample",
    "l1_upsample_wavelet": "InverseHaarWaveletTransform3D",
}


def tiny_config(**overrides) -> WFVAEConfig:
    """A WF-VAE small enough for CPU tests (same architecture, width 8)."""
    base = dict(
        latent_dim=4,
        base_channels=8,
        encoder_energy_flow_hidden_size=8,
        decoder_energy_flow_hidden_size=8,
        norm_type="layernorm",
        t_interpolation="trilinear",
        scale=[0.5] * 4,
        shift=[0.1] * 4,
    )
    base.update(overrides)
    return WFVAEConfig(**base)


def tiny_model(seed: int = 0, **overrides) -> WFVAE:
    torch.manual_seed(seed)
    model = WFVAE(tiny_config(**overrides)).eval()
    # random (non-default) norm parameters so that the norms are exercised, as in the golden fixture
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.set_num_threads(2)
    yield
