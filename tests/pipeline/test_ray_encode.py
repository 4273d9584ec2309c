"""`wfvae encode --ray`: same store as a local run, per-sample errors, a worker killed mid-shard, the
coordinator killed mid-run, CLI options — on one Ray session shared by this module (2 CPUs, no dashboard).

Latents are compared bitwise: the reference runs locally with one torch thread (a Ray model worker's
setting) and the same batches, which is what makes float results identical rather than merely close.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from wfvae_cli.cli.app import main as cli_main
from wfvae_cli.io import make_bad_inputs, make_sample_clips
from wfvae_cli.pipeline import EncodeOptions, EncodeSummary, encode_dataset
from wfvae_cli.store import open_store

from ..conftest import GOLDEN, _untimed, assert_same_store

ray = pytest.importorskip("ray", reason="Ray tests need the 'ray' extra: pip install -e '.[dev,ray]'")

from wfvae_cli.faults import RAY_CRASH_ON as POISON_ENV  # noqa: E402
from wfvae_cli.faults import RAY_CRASH_ONCE as CRASH_ENV  # noqa: E402
from wfvae_cli.pipeline.ray import RayRunResult  # noqa: E402

pytestmark = pytest.mark.integration  # Ray cluster

MODEL = str(GOLDEN)
N_CLIPS = 12  # 5 videos x 2 clips + 2 clips of a truncated video (one decodes, one fails)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """5 good videos, one that probes fine but cannot be decoded past its middle, one that is not a video."""
    root = tmp_path_factory.mktemp("ray_videos")
    make_sample_clips(root, n=5, frames=13, size=[(64, 64), (48, 80), (80, 48)])
    bad = make_bad_inputs(tmp_path_factory.mktemp("bad"))
    shutil.copy(bad["truncated"], root / "truncated.mp4")  # second clip fails at decode time (a failed row)
    shutil.copy(bad["text"], root / "zz_text.mp4")  # rejected when planning
    return root


def options(videos: Path, out: Path, **kw) -> EncodeOptions:
    base = dict(model=MODEL, frames=9, size=(64, 64), clip_mode="uniform", clips_per_video=2, workers=2,
                decode_timeout=30.0, shard_size=2, batch_size=2)
    base.update(kw)
    return EncodeOptions(inputs=(str(videos),), out=out, **base)


@pytest.fixture(scope="module")
def references(videos, tmp_path_factory) -> dict[int, tuple[Path, EncodeSummary]]:
    """Local runs with one torch thread, as each Ray model worker runs: batch size -> (store, summary)."""
    root = tmp_path_factory.mktemp("ref")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {b: (root / f"b{b}.zarr", encode_dataset(options(videos, root / f"b{b}.zarr", batch_size=b)))
                for b in (1, 2)}
    finally:
        torch.set_num_threads(threads)


def comparable(summary: EncodeSummary) -> dict:
    out = summary.to_dict()
    for key in ("store", "times"):
        out.pop(key)
    out["failures"] = _untimed(out["failures"])
    return out


def test_local_encode_never_imports_ray(videos, tmp_path):
    """`wfvae encode` without --ray must not pay for (or depend on) Ray."""
    code = (
        "import sys\n"
        "from wfvae_cli.cli.app import main\n"
        "try:\n"
        f"    main(['encode', {str(videos)!r}, '--out', {str(tmp_path / 's.zarr')!r}, '--model', {MODEL!r},\n"
        "          '--frames', '9', '--resolution', '64', '--json'])\n"
        "except SystemExit as exc:\n"
        "    print('exit', exc.code)\n"
        "print('ray imported' if 'ray' in sys.modules else 'ray not imported')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "exit 1" in proc.stdout, proc.stderr  # 1: the truncated clip failed, the text file was rejected
    assert proc.stdout.strip().endswith("ray not imported"), proc.stdout


def test_ray_store_equals_local_run(ray_cluster, videos, references, tmp_path):
    """2 model workers, batches of 2: same latents (bitwise), index, status, errors and summary as locally."""
    reports: list[RayRunResult] = []
    summary = encode_dataset(options(videos, tmp_path / "s.zarr", ray="auto"), progress=reports.append)
    ref_store, ref_summary = references[2]
    assert comparable(summary) == comparable(ref_summary)
    assert summary.done == N_CLIPS - 1 and summary.failed == 1 and len(summary.rejected) == 1
    assert "truncated.mp4" in summary.failures[0][0]
    assert_same_store(ref_store, tmp_path / "s.zarr")
    final = reports[-1]
    assert isinstance(final, RayRunResult) and final.shards == final.shards_done == N_CLIPS // 2
    assert sum(w.done for w in final.workers) == summary.done
    assert all(w.shards > 0 and w.ready_s is not None for w in final.workers), final.workers  # both worked
    assert final.times.model_busy_fraction <= 1.0
    assert reports[0].done == 0 and len(reports) >= 2  # reported from the start, then as it went


def test_worker_killed_mid_shard_is_redone(ray_cluster, videos, references, tmp_path, monkeypatch):
    """A model worker dies (os._exit) with a sample buffered: its shard is redone, each sample once."""
    marker = tmp_path / "crashed"
    monkeypatch.setenv(CRASH_ENV, str(marker))
    reports: list[RayRunResult] = []
    summary = encode_dataset(options(videos, tmp_path / "s.zarr", ray="auto", batch_size=1), progress=reports.append)
    assert marker.exists()  # the hook fired: one worker process died mid-shard
    ref_store, ref_summary = references[1]
    assert comparable(summary) | {"warnings": []} == comparable(ref_summary)
    assert any("went to another model worker" in w for w in summary.warnings), summary.warnings
    final = reports[-1]
    assert final.reassigned == 1 and sum(w.restarts for w in final.workers) == 1
    assert_same_store(ref_store, tmp_path / "s.zarr")


def test_clip_that_kills_every_worker_fails_alone(ray_cluster, videos, references, tmp_path, monkeypatch):
    """Row 2 kills whichever worker encodes it: it is pinned down and failed; its shard-mate and all
    other rows are stored exactly as in the reference."""
    monkeypatch.setenv(POISON_ENV, "9x64x64/2")
    summary = encode_dataset(options(videos, tmp_path / "s.zarr", ray="auto", batch_size=1))
    assert summary.done == N_CLIPS - 2 and summary.failed == 2  # the truncated clip, and the poison
    assert "died 2 times while encoding this clip" in summary.failures[0][1]
    store, ref = open_store(tmp_path / "s.zarr"), open_store(references[1][0])
    status, ref_status = store.status("9x64x64"), ref.status("9x64x64")
    assert status[2] == 2 and ref_status[2] == 1
    assert [r for r in range(N_CLIPS) if status[r] != ref_status[r]] == [2]
    for row in np.flatnonzero(status == 1):
        for name in ("mean", "logvar"):
            ours, theirs = store.read_latents("9x64x64", row)[name], ref.read_latents("9x64x64", row)[name]
            assert ours.tobytes() == theirs.tobytes()


def _cli_args(videos: Path, out: Path, *extra: str) -> list[str]:
    return ["encode", str(videos), "--out", str(out), "--model", MODEL, "--frames", "9", "--resolution", "64",
            "--clip-mode", "uniform", "--clips-per-video", "2", "--shard-size", "2", "--batch-size", "1",
            "--decode-timeout", "30", "--json", *extra]


def test_coordinator_killed_then_cli_resumes(ray_cluster, videos, references, tmp_path, capsys):
    """SIGKILL the `wfvae encode --ray HOST:PORT` process mid-run; the same command resumes the store."""
    out = tmp_path / "s.zarr"
    log = (tmp_path / "victim.log").open("w")
    victim = subprocess.Popen(
        [sys.executable, "-m", "wfvae_cli", *_cli_args(videos, out, "--ray", ray_cluster, "--model-workers", "2")],
        stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "WFVAE_DEBUG_ENCODE_DELAY": "0.2"},
    )
    status = out / "buckets" / "9x64x64" / "status" / "c"
    deadline = time.time() + 120
    while time.time() < deadline and victim.poll() is None and len(list(status.glob("*"))) < 2:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    partial = open_store(out).counts("9x64x64")
    assert 0 < partial["done"] < N_CLIPS - 1, (partial, (tmp_path / "victim.log").read_text()[-2000:])
    with pytest.raises(SystemExit) as exit_info:
        cli_main(_cli_args(videos, out, "--ray", "auto", "--model-workers", "2"))
    assert exit_info.value.code == 1  # the truncated clip failed, as in the reference
    summary = json.loads(capsys.readouterr().out)
    assert summary["resumed"] and summary["already_done"] == partial["done"]
    assert summary["already_done"] + summary["done"] == N_CLIPS - 1 and summary["failed"] == 1
    assert_same_store(references[1][0], out)


def test_cli_ray_options_fail_fast(ray_cluster, videos, tmp_path, capsys):
    """Requests the cluster cannot hold are one-line usage errors (exit 2) before anything is written."""
    cases = [
        ([], "pass --model-workers N"),  # CPU-only cluster: the number of model workers must be given
        (["--model-workers", "3"], "pass fewer --model-workers"),
        (["--model-workers", "2", "--num-gpus-per-worker", "1"], "GPU"),
        (["--model-workers", "2", "--decode-cpus", "1"], "--decode-cpus 0"),
        (["--model-workers", "1", "--device", "cuda"], "use --device cpu"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            cli_main(_cli_args(videos, tmp_path / "s.zarr", "--ray", "auto", *extra))
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err, (extra, err)
        assert not (tmp_path / "s.zarr").exists()
    with pytest.raises(SystemExit) as exit_info:
        cli_main(_cli_args(videos, tmp_path / "s.zarr", "--ray", str(videos)))
    assert exit_info.value.code == 2 and "is a path" in capsys.readouterr().err


def test_small_buckets_get_enough_shards_for_every_worker(videos, tmp_path):
    """Unless --shard-size is given, a small bucket is cut into ~4 shards per worker (units of parallel work)."""
    from wfvae_cli.model import load_model
    from wfvae_cli.pipeline import plan_dataset
    from wfvae_cli.pipeline.ray import RayBackend, RaySizing

    opts = options(videos, tmp_path / "s.zarr", ray="auto", shard_size=None)
    plan = plan_dataset(opts, load_model(MODEL).config)
    assert [b.shard_size for b in plan.buckets] == [N_CLIPS]  # one shard: one worker would do everything
    sizing = RaySizing(workers=2, gpus_per_worker=0.0, decode_cpus=0.0, decode_slots=0)
    backend = RayBackend(opts, sizing)
    assert [b.shard_size for b in backend.shape_plan(plan).buckets] == [2]  # 12 clips / (4 x 2 workers) -> 2
    fixed = RayBackend(options(videos, tmp_path / "s.zarr", ray="auto", shard_size=5), sizing)
    assert fixed.shape_plan(plan) is plan  # an explicit --shard-size is kept
