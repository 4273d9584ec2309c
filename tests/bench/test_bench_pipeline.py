"""`wfvae bench pipeline`: the real encode pipeline with the stand-in model, on tiny clips (no timed assertions)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from wfvae_cli.bench.pipeline import PIPELINE_SCHEMA, STAGES, render_text, run_pipeline_bench
from wfvae_cli.bench.standin import StandInModel
from wfvae_cli.errors import WfvaeError
from wfvae_cli.io import make_sample_clips
from wfvae_cli.model.config import preset_config
from wfvae_cli.pipeline import EncodeOptions
from wfvae_cli.pipeline.stages import LatentEncoder
from wfvae_cli.store import open_store


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench_pipeline_videos")
    make_sample_clips(root, n=2, frames=21, size=[(48, 64), (64, 48)])
    return root


def _opts(videos: Path, out: Path, **kw) -> EncodeOptions:
    base = dict(model="wfvae-l", frames=9, size=(32, 32), clip_mode="uniform", clips_per_video=2, workers=2,
                decode_timeout=60.0, device="cpu")
    base.update(kw)
    return EncodeOptions(inputs=(str(videos),), out=out, **base)


def test_standin_shapes_and_interface():
    config = preset_config("wfvae-l")
    model = StandInModel(config, 0.0)
    post = model.encode(torch.zeros(2, 3, 9, 32, 48))
    assert tuple(post.mean.shape) == (2, *config.latent_shape(9, 32, 48)) == (2, config.latent_dim, 3, 4, 6)
    assert post.logvar.shape == post.mean.shape and model.calls == 1 and model.clips == 2
    fp = model.fingerprint()
    assert len(fp) == 64 and int(fp, 16) >= 0 and fp != StandInModel(config, 0.5).fingerprint()
    with pytest.raises(WfvaeError, match="--model-time"):
        StandInModel(config, -1.0)


def test_standin_goes_through_the_real_encoder(videos, tmp_path):
    """The stand-in is driven by the same LatentEncoder as a model: rows have the store's shapes."""
    config = preset_config("wfvae-l")
    opts = _opts(videos, tmp_path / "s.zarr")
    encoder = LatentEncoder(StandInModel(config, 0.0), opts)
    from wfvae_cli.pipeline.stages import LoadedClip, Task
    from wfvae_cli.store import SampleRecord

    rec = SampleRecord(source="x", clip_start=0, clip_end=9, frame_indices=tuple(range(9)), fps=30.0, width=32,
                       height=32)
    clips = [LoadedClip(Task("b", i, rec, (32, 32)), torch.full((9, 32, 32, 3), 255, dtype=torch.uint8))
             for i in range(2)]
    rows = encoder.encode_batch(clips)
    assert [tuple(r["mean"].shape) for r in rows] == [config.latent_shape(9, 32, 32)] * 2
    assert encoder.model_input(clips).eq(1.0).all()  # 255 → 1.0 exactly


def test_bench_pipeline_report_is_consistent(videos, tmp_path):
    out = tmp_path / "bench.zarr"
    report = run_pipeline_bench(_opts(videos, out), model_time=0.01, raw_backends=["pyav"], keep_store=True)
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data and data["schema"] == PIPELINE_SCHEMA
    assert data["clips"] == 4 and data["failed"] == 0
    assert set(data["stage_s_per_clip"]) == set(STAGES)
    assert all(v >= 0 for v in data["stage_s_per_clip"].values())
    assert math.isclose(data["clips_per_s"], data["clips"] / data["wall_s"], rel_tol=1e-3)
    assert 0 < data["model_busy_fraction"] <= 1
    # the stand-in's sleep is attributed to the model stage: at least model_time per clip
    assert data["stage_s_per_clip"]["model"] >= 0.01
    raw = data["raw_decode"]["pyav"]
    assert raw["before"] > 0 and raw["after"] > 0 and data["raw_decode_backend"] == "pyav"
    assert data["raw_decode_clips_per_s"] == pytest.approx(max(raw["before"], raw["after"]), rel=1e-3)
    assert data["limit_clips_per_s"] == pytest.approx(min(100.0, data["raw_decode_clips_per_s"]), rel=1e-3)
    assert data["fraction_of_limit"] == pytest.approx(data["clips_per_s"] / data["limit_clips_per_s"], rel=1e-2)
    cpu = data["cpu_s_per_clip"]
    assert cpu["decode"] > 0 and cpu["other"] > 0  # decode ran in worker processes, the rest here
    # the CPU device's uint8 → float scaling is measured (thread CPU time) and is part of "other"
    assert 0 < cpu["cpu_device_scaling"] <= cpu["other"]
    assert data["host_other_cpu_fraction_of_decode"] == pytest.approx(
        (cpu["other"] - cpu["cpu_device_scaling"]) / cpu["decode"], rel=1e-2, abs=1e-4)
    assert data["cores_per_accelerator"] == pytest.approx((cpu["decode"] + cpu["other"]) / 0.01, rel=1e-2)
    assert data["machine"]["cpu_model"] and "loadavg_before" in data["load"]
    assert any("clips/s" in line for line in render_text(report))
    # the stand-in's latents went into a real store, with the model's latent shape
    store = open_store(out)
    (bucket,) = store.buckets
    assert tuple(store.buckets[bucket].latent_shape) == preset_config("wfvae-l").latent_shape(9, 32, 32)
    assert store.counts(bucket)["done"] == 4 and store.meta.random_weights
    assert store[0]["mean"].shape == tuple(store.buckets[bucket].latent_shape)


def test_bench_pipeline_refuses_what_it_does_not_model(videos, tmp_path):
    with pytest.raises(WfvaeError, match="--clip-mode full"):
        run_pipeline_bench(_opts(videos, tmp_path / "a.zarr", clip_mode="full"), 0.01, raw=False)
    with pytest.raises(WfvaeError, match="--buckets"):
        run_pipeline_bench(_opts(videos, tmp_path / "b.zarr", size=None, buckets=((32, 32),)), 0.01, raw=False)


def test_bench_pipeline_cli_json(videos, tmp_path):
    report = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "wfvae_cli", "bench", "pipeline", str(videos), "--model-time", "0.01", "--frames", "9",
         "--resolution", "32", "--clips-per-video", "1", "--no-raw", "--device", "auto", "--decode-workers", "1",
         "--json", "--report", str(report)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data == json.loads(report.read_text())
    assert data["clips"] == 2 and data["raw_decode"] == {} and data["limit_clips_per_s"] == pytest.approx(100.0)
    assert data["settings"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    bad = subprocess.run([sys.executable, "-m", "wfvae_cli", "bench", "pipeline", str(videos), "--model-time", "-1",
                          "--no-raw"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--model-time" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_a_backend_that_cannot_decode_is_left_out_with_a_note(videos, tmp_path):
    """The limit is the fastest loop that can read the files: one that cannot (decord has no AV1 decoder, say)
    is dropped with a note instead of ending the bench."""
    report = run_pipeline_bench(_opts(videos, tmp_path / "b.zarr"), model_time=0.0,
                                raw_backends=["pyav", "no-such-decoder"])
    data = report.to_dict()
    assert set(data["raw_decode"]) == {"pyav"} and data["raw_decode_backend"] == "pyav"
    assert any("no-such-decoder" in n and "left out" in n for n in data["notes"]), data["notes"]
