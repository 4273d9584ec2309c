"""Winograd F(2x2, 3x3) convolutions: exact construction, agreement with direct convolution, policy."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from wfvae_cli import load_model
from wfvae_cli.model import WFVAE, winograd
from wfvae_cli.model.layers import CausalConv3d, _use_winograd

from .conftest import GOLDEN, tiny_config, tiny_model


def _reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Causal (first frame replicated) 3x3 conv in float64."""
    kt = weight.shape[2] if weight.dim() == 5 else 1
    w = weight if weight.dim() == 5 else weight.unsqueeze(2)
    xp = torch.cat([x[:, :, :1].expand(-1, -1, kt - 1, -1, -1), x], dim=2)
    return F.conv3d(xp.double(), w.double(), None if bias is None else bias.double(), padding=(0, 1, 1))


@pytest.mark.parametrize("m, points", [(2, (0, 1, -1)), (3, (0, 1, -1, 2)), (4, (0, 1, -1, Fraction(1, 2), -2))])
def test_cook_toom_computes_correlation(m, points):
    spec = winograd.cook_toom(m, 3, points)
    at, g, bt = (torch.tensor(t, dtype=torch.float64) for t in (spec.AT, spec.G, spec.BT))
    d, k = torch.randn(m + 2, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    expected = torch.stack([(d[i : i + 3] * k).sum() for i in range(m)])
    assert torch.allclose(at @ ((g @ k) * (bt @ d)), expected, atol=1e-12)


def test_cook_toom_rejects_repeated_points():
    with pytest.raises(ValueError):
        winograd.cook_toom(2, 3, (0, 1, 1))


def test_f2x3_bias_position_reaches_every_output():
    spec = winograd.F2X3
    i, j = divmod(spec.bias_position, spec.a)
    assert all(row[i] == 1 and row[j] == 1 for row in spec.AT)


@pytest.mark.parametrize(
    "b, cin, cout, t, h, w, kt, bias",
    [
        (1, 16, 24, 5, 12, 16, 3, True),
        (2, 8, 8, 4, 7, 9, 3, False),  # odd sizes: partial tiles and one-sided padding
        (1, 12, 20, 3, 10, 6, 1, True),  # per-frame conv
        (1, 8, 4, 1, 5, 5, 3, True),  # one frame: only padding frames before it
        (1, 4, 4, 2, 2, 2, 1, False),  # a single tile
    ],
)
def test_conv3x3_matches_direct_convolution(b, cin, cout, t, h, w, kt, bias):
    torch.manual_seed(0)
    x = torch.randn(b, cin, t, h, w)
    weight = torch.randn(cout, cin, kt, 3, 3) / (cin * 9 * kt) ** 0.5
    if kt == 1:
        weight = weight[:, :, 0]  # the 4D weight of a per-frame nn.Conv2d
    bvec = torch.randn(cout) if bias else None
    parts = [x[:, :, :1].expand(-1, -1, kt - 1, -1, -1), x] if kt > 1 else [x]
    out = winograd.conv3x3(parts, weight, bvec)
    ref = _reference(x, weight, bvec)
    assert out.shape == ref.shape
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    assert (out.double() - ref).abs().max().item() < 2e-5


def test_conv3x3_parts_and_slabs_do_not_change_the_result(monkeypatch):
    torch.manual_seed(1)
    x = torch.randn(1, 32, 11, 8, 8).contiguous(memory_format=torch.channels_last_3d)
    weight, bias = torch.randn(32, 32, 3, 3, 3) * 0.05, torch.randn(32)
    whole = winograd.conv3x3([torch.cat([x[:, :, :1], x[:, :, :1], x], dim=2)], weight, bias)
    split = winograd.conv3x3([x[:, :, :1].expand(-1, -1, 2, -1, -1), x[:, :, :4], x[:, :, 4:]], weight, bias)
    monkeypatch.setattr(winograd, "SLAB_BYTES", 1)  # as small as allowed: 8 input frames per slab,
    monkeypatch.setattr(winograd, "MIN_GEMM_WORK", 1)  # so slabs of 6 and 5 output frames
    assert winograd._slab_frames(11, 3, 10**6, 10) == 6
    slabbed = winograd.conv3x3([x[:, :, :1].expand(-1, -1, 2, -1, -1), x], weight, bias)
    torch.testing.assert_close(split, whole, rtol=0, atol=1e-6)
    torch.testing.assert_close(slabbed, whole, rtol=0, atol=1e-6)


def test_auto_policy_picks_winograd_only_where_it_pays():
    big = CausalConv3d(256, 256, 3, padding=1).conv
    small = CausalConv3d(16, 16, 3, padding=1).conv
    strided = CausalConv3d(256, 256, 3, stride=2).conv
    x = torch.zeros(1, 256, 9, 32, 32)
    with torch.no_grad():
        assert _use_winograd(big, x, 11)
        assert not _use_winograd(small, x[:, :16], 11)  # too few channels
        assert not _use_winograd(strided, x, 11)
        assert not _use_winograd(big, x[:, :, :, :4, :4], 3)  # too little work: oneDNN's slow kernel
        assert not _use_winograd(big, x.double(), 11)  # float32 only in auto
        big.algorithm = "direct"
        assert not _use_winograd(big, x, 11)
        small.algorithm = "winograd"
        assert _use_winograd(small, x[:, :16], 11)
    assert not _use_winograd(small, x[:, :16], 11)  # gradients on: training always runs direct


def test_set_conv_algorithm_validates():
    model = WFVAE(tiny_config())
    with pytest.raises(ValueError, match="conv algorithm"):
        model.set_conv_algorithm("fft")
    assert model.set_conv_algorithm("winograd") is model


@torch.no_grad()
def test_golden_parity_with_winograd_everywhere():
    """The official fixture, with every eligible conv forced through Winograd (auto would skip a model this small)."""
    model = load_model(GOLDEN).set_conv_algorithm("winograd")
    video = load_file(str(GOLDEN / "input.safetensors"))["video"]
    exp = load_file(str(GOLDEN / "expected.safetensors"))
    post = model.encode(video)
    assert (post.mean - exp["posterior_mean"]).abs().max() < 5e-5
    assert (post.logvar - exp["posterior_logvar"]).abs().max() < 5e-5
    assert (model.decode(exp["posterior_mean"]) - exp["decoded_from_mean"]).abs().max() < 5e-5
    chunked = model.decode(exp["posterior_mean"], chunk_frames=4)
    assert (chunked - exp["chunked_decoded_from_direct_mean"]).abs().max() < 5e-5


@torch.no_grad()
def test_streaming_stays_exact_with_winograd():
    model = tiny_model().set_conv_algorithm("winograd")
    torch.manual_seed(3)
    video = torch.rand(1, 3, 17, 32, 32) * 2 - 1
    direct = model.encode(video).mean
    for chunk in (1, 5, 8):
        assert (model.encode(video, chunk_frames=chunk).mean - direct).abs().max() < 1e-5
    latent = torch.randn(1, model.config.latent_dim, 5, 4, 4)
    decoded = model.decode(latent)
    assert (model.decode(latent, chunk_frames=4) - decoded).abs().max() < 1e-5
    model.set_conv_algorithm("direct")
    assert (model.encode(video).mean - direct).abs().max() < 1e-5  # and agrees with the direct algorithm
