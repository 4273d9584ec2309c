"""The benchmark baseline (benchmarks/official_style.py) computes what the official code computes."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from wfvae_cli import load_model

from ..conftest import GOLDEN

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from official_style import OfficialStyle


@torch.inference_mode()
def test_official_pattern_baseline_matches_the_golden_fixture():
    model = load_model(GOLDEN)
    video = load_file(str(GOLDEN / "input.safetensors"))["video"]
    exp = load_file(str(GOLDEN / "expected.safetensors"))
    baseline = OfficialStyle(model)
    z = model.config.latent_dim
    torch.testing.assert_close(baseline.encode(video)[:, :z], exp["posterior_mean"], rtol=0, atol=5e-5)
    torch.testing.assert_close(baseline.decode(exp["posterior_mean"]), exp["decoded_from_mean"], rtol=0, atol=5e-5)
