"""`wfvae_cli.bench.recon`: metrics on generated clips, direct vs chunked, unavailable metrics, bad videos."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wfvae_cli.bench import RECON_SCHEMA, ReconSettings
from wfvae_cli.bench.recon import run_recon
from wfvae_cli.errors import WfvaeError
from wfvae_cli.io import make_sample_clips, probe
from wfvae_cli.metrics import LPIPSMetric

from ..conftest import tiny_model


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench_clips")
    make_sample_clips(folder, n=2, frames=9, size=[(48, 64), (64, 48)])
    (folder / "broken.mp4").write_text("not a video\n")
    return folder


def _mean_feature(videos: torch.Tensor) -> np.ndarray:
    """A 1-d stand-in for I3D features: FVD's plumbing (accumulate, one distance) without the network."""
    return videos.mean(dim=(1, 2, 3, 4)).double().numpy()[:, None]


@pytest.fixture(scope="module")
def report(clips, tmp_path_factory):
    settings = ReconSettings(
        inputs=(str(clips),), model="tiny", frames=9, height=32, width=32, compare_chunked=4,
        save_videos=str(tmp_path_factory.mktemp("recon_videos")), device="cpu",
    )
    return run_recon(settings, model=tiny_model(), lpips=LPIPSMetric.random_trunk(), extractor=_mean_feature)


def test_metrics_per_clip_and_summary(report):
    assert len(report.clips) == 2
    for clip in report.clips:
        assert set(clip.metrics) == {"psnr", "ssim", "lpips"}
        assert 0 < clip.metrics["psnr"] < 100 and -1 <= clip.metrics["ssim"] <= 1 and clip.metrics["lpips"] >= 0
        assert (clip.start_frame, clip.end_frame) == (0, 9)
    assert report.summary["psnr"] == pytest.approx(np.mean([c.metrics["psnr"] for c in report.clips]))
    assert "fvd" in report.summary and report.fvd["n_clips"] == 2 and not report.fvd["reliable"]
    assert report.unavailable == {}
    assert any("RANDOM" in n for n in report.notes)


def test_chunked_matches_direct(report):
    """The paper's Tab. 5 comparison: Causal-Cache chunked inference reconstructs what direct inference does."""
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-4
    for name, delta in report.delta.items():
        assert abs(delta) < 1e-3, name
    assert set(report.chunked_summary) == {"psnr", "ssim", "lpips", "fvd"}


def test_bad_video_is_a_reported_failure(report):
    (failure,) = report.failures
    assert failure.path.endswith("broken.mp4") and failure.stage == "decode" and "broken.mp4" in failure.reason


def test_saved_reconstructions(report):
    for clip in report.clips:
        info = probe(clip.saved)
        assert (info.num_frames, info.height, info.width) == (9, 32, 32)


def test_json(report):
    data = json.loads(json.dumps(report.to_dict()))
    assert data["schema"] == RECON_SCHEMA and data["reference"] == "direct"
    keys = {"summary", "chunked_summary", "delta", "max_abs_diff", "fvd", "unavailable", "failures", "clips"}
    assert keys <= set(data)


def test_missing_weights_make_metrics_unavailable_not_fatal(clips, tmp_path):
    settings = ReconSettings(
        inputs=(str(clips / "00_astronaut_64x48.mp4"),), model="tiny", frames=9, height=32, width=32,
        metrics=("psnr", "lpips", "fvd"), lpips_weights=str(tmp_path / "nope.pth"), i3d=str(tmp_path), limit=1,
    )
    report = run_recon(settings, model=tiny_model())
    assert set(report.unavailable) == {"lpips", "fvd"}
    assert "not found" in report.unavailable["lpips"] and "i3d_torchscript.pt" in report.unavailable["fvd"]
    assert set(report.summary) == {"psnr"} and len(report.clips) == 1


def test_bad_options():
    with pytest.raises(WfvaeError, match="--metrics"):
        ReconSettings(inputs=("x",), model="m", metrics=("psnr", "vmaf"))
    with pytest.raises(WfvaeError, match="--compare-chunked"):
        ReconSettings(inputs=("x",), model="m", compare_chunked=0)


def test_pool_baseline_column_and_json(clips):
    settings = ReconSettings(
        inputs=(str(clips),), model="tiny", frames=9, height=32, width=32, metrics=("psnr", "ssim"),
        baseline="pool", device="cpu",
    )
    report = run_recon(settings, model=tiny_model())
    for clip in report.clips:
        assert set(clip.baseline_metrics) == {"psnr", "ssim"} and 5 < clip.baseline_metrics["psnr"] < 60
    assert report.baseline_summary["psnr"] == pytest.approx(np.mean([c.baseline_metrics["psnr"] for c in report.clips]))
    assert report.margin["psnr"] == pytest.approx(report.summary["psnr"] - report.baseline_summary["psnr"])
    data = json.loads(json.dumps(report.to_dict()))
    assert data["baseline"]["name"] == "pool 4x8x8 trilinear"
    assert data["baseline"]["min_psnr_margin"] == pytest.approx(
        min(c.metrics["psnr"] - c.baseline_metrics["psnr"] for c in report.clips))
    from rich.console import Console

    from wfvae_cli.bench.render import recon_table

    console = Console(width=200, record=True)
    console.print(recon_table(report))
    text = console.export_text()
    assert "pool 4x8x8 trilinear" in text and "model − baseline" in text and "worst clip" in text
    with pytest.raises(WfvaeError, match="--baseline"):
        ReconSettings(inputs=("x",), model="m", baseline="bicubic")
