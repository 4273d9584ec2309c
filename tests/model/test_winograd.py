"""Winograd F(2x2, 3x3) and F(4x4, 3x3) convolutions (compiled kernels): agreement with float64 direct
convolution in every slab / band / channel-block / ring configuration, the fused norm and residual, the
tiling rule, policy, fallback."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from wfvae_cli import load_model
from wfvae_cli.model import WFVAE
from wfvae_cli.model.fastconv import native, products, winograd
from wfvae_cli.model.layers import CausalConv3d, ResnetBlock2D, ResnetBlock3D, _use_winograd

from ..conftest import GOLDEN, tiny_config, tiny_model

pytestmark = pytest.mark.skipif(not winograd.available(), reason="no C compiler: the Winograd kernels cannot be built")


def _reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Causal (first frame replicated) 3x3 conv in float64."""
    kt = weight.shape[2] if weight.dim() == 5 else 1
    w = weight if weight.dim() == 5 else weight.unsqueeze(2)
    xp = torch.cat([x[:, :, :1].expand(-1, -1, kt - 1, -1, -1), x], dim=2)
    return F.conv3d(xp.double(), w.double(), None if bias is None else bias.double(), padding=(0, 1, 1))


def _norm_swish(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    y = F.layer_norm(x.permute(0, 2, 3, 4, 1).double(), (x.shape[1],), weight.double(), bias.double(), 1e-6)
    return F.silu(y).permute(0, 4, 1, 2, 3)


CASES = [  # b, cin, cout, t, h, w, kt, bias
    (1, 16, 24, 5, 12, 16, 3, True),
    (2, 8, 8, 4, 7, 9, 3, False),  # batch 2, odd sizes: partial tiles and one-sided padding
    (1, 12, 20, 3, 10, 6, 1, True),  # per-frame conv (4D weight)
    (1, 8, 4, 1, 5, 5, 3, True),  # one frame: only padding frames before it
    (1, 4, 4, 2, 2, 2, 1, False),  # a single tile
    (1, 3, 5, 2, 1, 1, 3, True),  # a 1x1 image
    (2, 5, 7, 6, 9, 5, 1, True),
]
#: (SLAB_BYTES, FILTER_BYTES): defaults (these small layers: all frames in one step); one output channel
#: per filter block with the whole layer in one step (its input transformed once for all blocks); windows
#: of frames; bands of tile rows with one input frame per step (the products ring); one channel per block
#: and bands (the input transformed again for every block)
BUDGETS = [(16 * 2**20, 16 * 2**20), (16 * 2**20, 1), (20000, 16 * 2**20), (4000, 16 * 2**20), (1, 1)]


#: max abs error against float64 on CASES (unit-variance outputs): F(2x2)'s transforms only add, subtract
#: and halve (~1e-6 here; oneDNN's own direct algorithm: ~1e-5); F(4x4)'s scale by up to 8 and 1/24
#: (measured up to 1.4e-5 here)
TOLERANCE = {2: 5e-6, 4: 3e-5}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("backend", products.BACKENDS)
@pytest.mark.parametrize("tile", winograd.TILINGS)
def test_conv3x3_matches_float64_direct_convolution(case, budget, backend, tile, monkeypatch):
    b, cin, cout, t, h, w, kt, bias = case
    monkeypatch.setattr(products, "backend", lambda: backend)
    monkeypatch.setattr(winograd, "SLAB_BYTES", budget[0])
    monkeypatch.setattr(winograd, "FILTER_BYTES", budget[1])
    monkeypatch.setattr(winograd, "SLAB_SHARE", 0.0)
    monkeypatch.setattr(winograd, "FILTER_SHARE", 0.0)
    torch.manual_seed(0)
    x = torch.randn(b, cin, t, h, w)
    weight = torch.randn(cout, cin, kt, 3, 3) / (cin * 9 * kt) ** 0.5
    if kt == 1:
        weight = weight[:, :, 0]  # the 4D weight of a per-frame nn.Conv2d
    bvec = torch.randn(cout) if bias else None
    parts = [x[:, :, :1].expand(-1, -1, kt - 1, -1, -1), x] if kt > 1 else [x]
    out = winograd.conv3x3(parts, weight, bvec, tile=tile)
    ref = _reference(x, weight, bvec)
    assert out.shape == ref.shape
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    assert (out.double() - ref).abs().max().item() < TOLERANCE[tile]

    # the fused input norm + SiLU and accumulation into a residual
    gamma, beta = 1 + 0.1 * torch.randn(cin), 0.1 * torch.randn(cin)
    residual = torch.randn(ref.shape).contiguous(memory_format=torch.channels_last_3d)
    expected = _reference(_norm_swish(x, gamma, beta), weight, bvec) + residual.double()
    acc = residual.clone(memory_format=torch.channels_last_3d)
    fused = winograd.conv3x3(parts, weight, bvec, norm=(gamma, beta, 1e-6), out=acc, tile=tile)
    assert fused is acc
    assert (fused.double() - expected).abs().max().item() < TOLERANCE[tile]


def test_tiling_has_the_fewer_products_and_depends_on_the_frame_size_only(monkeypatch):
    """F(4x4) wherever it needs fewer products (in practice from 4x4 frames up), F(2x2) on a tie (the more
    exact) and on tiny frames; a pinned tiling applies everywhere. Never the frame count: Causal Cache
    chunks must compute what a whole-video call does."""
    monkeypatch.delenv(winograd.TILE_ENV, raising=False)
    assert winograd.tiling(64, 64).m == winograd.tiling(16, 8).m == winograd.tiling(4, 4).m == 4
    assert winograd.tiling(2, 2).m == winograd.tiling(1, 1).m == winograd.tiling(2, 64).m == 2
    assert winograd.tiling(6, 6).m == 2  # 4 tiles x 36 = 9 tiles x 16: a tie
    assert winograd.tiling(7, 7).m == 4  # 4 x 36 < 16 x 16
    monkeypatch.setenv(winograd.TILE_ENV, "2")
    assert winograd.tiling(64, 64).m == 2
    monkeypatch.setenv(winograd.TILE_ENV, "4")
    assert winograd.tiling(2, 2).m == 4


def test_parts_and_channels_last_layout_do_not_change_the_result():
    torch.manual_seed(1)
    x = torch.randn(1, 32, 11, 8, 8)
    weight, bias = torch.randn(32, 32, 3, 3, 3) * 0.05, torch.randn(32)
    whole = winograd.conv3x3([torch.cat([x[:, :, :1], x[:, :, :1], x], dim=2)], weight, bias)
    split = winograd.conv3x3([x[:, :, :1].expand(-1, -1, 2, -1, -1), x[:, :, :4], x[:, :, 4:]], weight, bias)
    xcl = x.contiguous(memory_format=torch.channels_last_3d)
    cl = winograd.conv3x3([xcl[:, :, :1].expand(-1, -1, 2, -1, -1), xcl], weight, bias)
    torch.testing.assert_close(split, whole, rtol=0, atol=1e-6)
    torch.testing.assert_close(cl, whole, rtol=0, atol=1e-6)


def test_out_must_have_dense_frames():
    x = torch.randn(1, 4, 2, 4, 4)
    with pytest.raises(ValueError, match="dense"):
        winograd.conv3x3([x], torch.randn(4, 4, 3, 3), out=torch.zeros(1, 4, 2, 4, 4))  # NCDHW, not channels-last


def test_plans_and_channel_blocks_stay_within_budget():
    budget = 2**20
    for t, kt, rows, cols, cin, cout, p in itertools.product(
        (1, 2, 9, 33), (1, 3), (4, 32), (4, 32), (8, 384), (8, 192), (16, 36)
    ):
        plan = winograd.plan_layer(t, kt, rows, cols, cin, cout, budget, positions=p)
        assert 1 <= plan.frames <= t and 1 <= plan.band <= rows and plan.positions == p
        assert plan.mode == "window" or (kt > 1 and plan.frames == 1)
        used = 4 * sum(plan.buffers(kt, cols, cin, cout))
        assert used <= budget or plan.band == 1, (t, kt, rows, cols, cin, cout, p, plan)
    assert winograd.channel_block(768, 768, 3, budget) * 3 * 16 * 768 * 4 <= budget
    assert winograd.channel_block(768, 768, 3, budget, positions=36) * 3 * 36 * 768 * 4 <= budget
    assert winograd.channel_block(8, 8, 1, budget) == 8
    assert winograd.channel_block(10, 8, 1, 6 * 16 * 8 * 4) == 5  # room for 6: two blocks of 5, not 6 + 4


@pytest.mark.parametrize("block", [ResnetBlock3D, ResnetBlock2D])
@pytest.mark.parametrize("channels", [(8, 8), (8, 12)])
def test_fused_resnet_blocks_match_the_plain_computation(block, channels, monkeypatch):
    """Inference (fused norm, slabs of frames, in-place residual) against the autograd path, which
    computes the block the framework's way; several slabs, so the block's private Causal Cache is used."""
    monkeypatch.setattr("wfvae_cli.model.layers.SLAB_ACTIVATION_BYTES", 1)
    monkeypatch.setattr("wfvae_cli.model.layers.MIN_SLAB_FRAMES", 2)
    torch.manual_seed(2)
    blk = block(*channels).eval()
    with torch.no_grad():
        for p in blk.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(1, channels[0], 9, 12, 10).contiguous(memory_format=torch.channels_last_3d)
    with torch.enable_grad():
        ref = blk(x).detach()
    with torch.no_grad():
        kept = x.clone()
        assert (blk(x) - ref).abs().max() < 1e-5
        assert torch.equal(x, kept)  # the input is only overwritten when the caller allows it
        out = blk(x, reuse_input=True)
        assert (out - ref).abs().max() < 1e-5
        if channels[0] == channels[1]:
            assert out.data_ptr() == x.data_ptr()  # the residual was accumulated in place


def test_auto_policy(monkeypatch):
    """The per-call rules of "auto", on a machine whose verdict is a Winograd backend (pinned here: the
    verdict itself depends on the machine and is tested below)."""
    monkeypatch.setattr(products, "backend", lambda: "bmm")
    big = CausalConv3d(256, 256, 3, padding=1).conv
    strided = CausalConv3d(256, 256, 3, stride=2).conv
    pointwise = CausalConv3d(256, 256, 1).conv
    x = torch.zeros(1, 256, 9, 32, 32)
    with torch.no_grad():
        assert _use_winograd(big, x, 11)
        assert not _use_winograd(strided, x, 11)
        assert not _use_winograd(pointwise, x, 11)
        assert not _use_winograd(big, x.double(), 11)  # the kernels are float32
        big.algorithm = "direct"
        assert not _use_winograd(big, x, 11)
    big.algorithm = "auto"
    assert not _use_winograd(big, x, 11)  # gradients on: training always runs direct


def test_products_backend_is_measured_once_per_machine_or_forced(tmp_path, monkeypatch):
    monkeypatch.setenv("WFVAE_CACHE_DIR", str(tmp_path))
    products.backend.cache_clear()
    try:
        first = products.backend()
        assert first in (*products.BACKENDS, None)
        assert len(list(tmp_path.glob("winograd-products-*.json"))) == 1
        products.backend.cache_clear()  # a new process: reads the verdict, measures nothing
        monkeypatch.setattr(products, "_measure_fresh", lambda: pytest.fail("measured again"))
        assert products.backend() == first
        for name in (*products.BACKENDS, "direct"):
            monkeypatch.setenv("WFVAE_WINOGRAD_PRODUCTS", name)
            products.backend.cache_clear()
            assert products.backend() == (None if name == "direct" else name)
        monkeypatch.delenv("WFVAE_WINOGRAD_PRODUCTS")
        monkeypatch.setenv(winograd.TILE_ENV, "2")  # a pinned tiling has a verdict of its own
        monkeypatch.setattr(products, "_measure_fresh", lambda: {"backend": None, "seconds": {}})
        assert products.verdict()["source"] == "measured"
        assert len(list(tmp_path.glob("winograd-products-*-tile2.json"))) == 1
        monkeypatch.delenv(winograd.TILE_ENV)
        found = products.verdict()  # the figures behind it, as `wfvae info --json` shows them
        assert found["source"] == "cached" and found["backend"] == first
        assert set(found["seconds"]) == set(found["peak_bytes"]) == {"direct", *products.BACKENDS}
    finally:
        products.backend.cache_clear()


def test_verdict_needs_a_margin_over_direct():
    m = products.MARGIN
    assert products.decide({"direct": 1.0, "bmm": 0.5, "onednn": 0.4}) == "onednn"
    assert products.decide({"direct": 1.0, "bmm": 1 - m / 2}) is None  # a win within noise: direct
    assert products.decide({"direct": 1.0, "bmm": 1.2}) is None
    assert products.decide({"direct": 1.0}) is None  # no kernels: no candidates


def test_verdict_time_decides_memory_breaks_ties_and_caps():
    mb = 2**20
    # faster than direct by far with somewhat more memory: time decides (a real AMD case: bmm 1.44x direct's peak)
    assert products.decide({"direct": 1.0, "bmm": 0.77}, {"direct": 22 * mb, "bmm": 32 * mb}) == "bmm"
    # beyond the memory cap it never qualifies, however fast
    cap = products.MEMORY_CAP
    assert products.decide({"direct": 1.0, "bmm": 0.5}, {"direct": 20 * mb, "bmm": int(20 * mb * cap) + 1}) is None
    # two qualifying backends within the margin of each other: the smaller peak wins, though slower
    seconds = {"direct": 1.0, "bmm": 0.70, "onednn": 0.74}
    assert products.decide(seconds, {"direct": 40 * mb, "bmm": 35 * mb, "onednn": 25 * mb}) == "onednn"
    # beyond the margin the faster one wins whatever the memory
    seconds = {"direct": 1.0, "bmm": 0.5, "onednn": 0.8}
    assert products.decide(seconds, {"direct": 40 * mb, "bmm": 35 * mb, "onednn": 25 * mb}) == "bmm"
    # a candidate not timed (hopeless at warm-up) never qualifies
    assert products.decide({"direct": 1.0, "conv": None, "bmm": 0.5}, {"direct": 2, "conv": 1, "bmm": 2}) == "bmm"


def test_verdict_is_measured_with_one_thread_per_core_whatever_the_caller_set(monkeypatch):
    seen = []
    monkeypatch.setattr(products, "REPEATS", 1)
    monkeypatch.setattr(products, "CALIBRATION", ((3, 16, 2, 8), (1, 16, 2, 8)))
    real = products._calibration_runs

    def spy(layer):
        seen.append(torch.get_num_threads())
        return real(layer)

    monkeypatch.setattr(products, "_calibration_runs", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        found = products._measure()
    finally:
        torch.set_num_threads(before)
    cores = len(__import__("os").sched_getaffinity(0))
    assert seen == [cores, cores] and found["threads"] == cores
    assert set(found["peak_bytes"]) == set(found["seconds"]) == {"direct", *products.BACKENDS}
    assert all(v > 0 for v in found["peak_bytes"].values())
    assert found["backend"] == products.decide(found["seconds"], found["peak_bytes"])


def test_auto_runs_direct_where_winograd_does_not_pay(monkeypatch):
    conv = CausalConv3d(64, 64, 3, padding=1).conv
    x = torch.zeros(1, 64, 5, 8, 8)
    monkeypatch.setattr(products, "backend", lambda: None)
    with torch.no_grad():
        assert not _use_winograd(conv, x, 7)
        conv.algorithm = "winograd"  # forced: still runs (and is still exact)
        assert _use_winograd(conv, x, 7)


def test_without_the_kernels_the_model_runs_direct(monkeypatch):
    model = tiny_model()
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        fast = model.encode(video).mean
        monkeypatch.setattr(native, "library", lambda: None)
        assert not winograd.available()
        direct = model.encode(video).mean
        model.set_conv_algorithm("winograd")
        with pytest.raises(RuntimeError, match="compiler"):
            model.encode(video)
    assert (fast - direct).abs().max() < 1e-5


def test_native_build_is_cached_and_optional(tmp_path, monkeypatch):
    monkeypatch.setenv("WFVAE_CACHE_DIR", str(tmp_path))
    native.library.cache_clear()
    try:
        assert native.library() is not None
        assert len(list(tmp_path.glob("winograd-*.so"))) == 1
        native.library.cache_clear()
        monkeypatch.setenv("WFVAE_NATIVE", "0")
        assert native.library() is None
        native.library.cache_clear()
        monkeypatch.delenv("WFVAE_NATIVE")
        monkeypatch.setattr(native, "_compiler", lambda: None)
        assert native.library() is None
    finally:
        native.library.cache_clear()


def test_set_conv_algorithm_validates():
    model = WFVAE(tiny_config())
    with pytest.raises(ValueError, match="conv algorithm"):
        model.set_conv_algorithm("fft")
    assert model.set_conv_algorithm("winograd") is model


@torch.no_grad()
@pytest.mark.parametrize("backend", products.BACKENDS)
def test_golden_parity_with_and_without_winograd(backend, monkeypatch):
    monkeypatch.setattr(products, "backend", lambda: backend)
    for algorithm in ("winograd", "direct"):
        model = load_model(GOLDEN).set_conv_algorithm(algorithm)
        video = load_file(str(GOLDEN / "input.safetensors"))["video"]
        exp = load_file(str(GOLDEN / "expected.safetensors"))
        post = model.encode(video)
        assert (post.mean - exp["posterior_mean"]).abs().max() < 5e-5
        assert (post.logvar - exp["posterior_logvar"]).abs().max() < 5e-5
        assert (model.decode(exp["posterior_mean"]) - exp["decoded_from_mean"]).abs().max() < 5e-5
        chunked = model.decode(exp["posterior_mean"], chunk_frames=4)
        assert (chunked - exp["chunked_decoded_from_direct_mean"]).abs().max() < 5e-5


@torch.no_grad()
@pytest.mark.parametrize("backend", products.BACKENDS)
def test_streaming_stays_exact_with_winograd(backend, monkeypatch):
    monkeypatch.setattr(products, "backend", lambda: backend)
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
