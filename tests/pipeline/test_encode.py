"""`wfvae encode`: plan, encode, store, resume, bad inputs, reader — end to end on small generated videos."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from wfvae_cli import load_model
from wfvae_cli.errors import WfvaeError
from wfvae_cli.io import make_bad_inputs, make_sample_clips, read_frames, to_model_input
from wfvae_cli.pipeline import EncodeOptions, encode_dataset
from wfvae_cli.store import IncompatibleStoreError, LatentDataset, open_store, verify

from ..conftest import GOLDEN

MODEL = str(GOLDEN)  # the official-format small model: real architecture, fast on CPU


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    make_sample_clips(root, n=4, frames=21, size=[(64, 64), (48, 80), (80, 48), (72, 96)])
    return root


def options(inputs, out, **kw) -> EncodeOptions:
    base = dict(model=MODEL, frames=9, size=(64, 64), workers=2, decode_timeout=30.0)
    base.update(kw)
    return EncodeOptions(inputs=tuple(str(i) for i in inputs), out=Path(out), **base)


def direct_latent(model, sample: dict, size=(64, 64)) -> torch.Tensor:
    frames = read_frames(sample["source"], np.asarray(sample["frame_indices"]))
    with torch.inference_mode():
        return model.encode(to_model_input(frames, size)[None]).mean[0]


def test_encode_matches_direct_model(videos, tmp_path):
    summary = encode_dataset(options([videos], tmp_path / "s.zarr", batch_size=2))
    assert summary.ok and summary.done == 4 and summary.clips == 4
    store = open_store(tmp_path / "s.zarr")
    assert len(store) == 4 and store.meta.completed_at
    model = load_model(MODEL)
    assert store.meta.weights_sha256 == model.fingerprint()
    for i in range(len(store)):
        sample = store[i]
        np.testing.assert_allclose(sample["mean"], direct_latent(model, sample).numpy(), atol=1e-5)
    assert verify(tmp_path / "s.zarr").ok


def test_resume_skips_done_and_refuses_other_weights(videos, tmp_path):
    out = tmp_path / "s.zarr"
    encode_dataset(options([videos], out))
    again = encode_dataset(options([videos], out))
    assert again.resumed and again.done == 0 and again.already_done == 4
    with pytest.raises(IncompatibleStoreError, match="weights"):
        encode_dataset(options([videos], out, model="wfvae-s-8chn", random_weights=True))
    with pytest.raises(IncompatibleStoreError, match=r"frames|preprocessing"):
        encode_dataset(options([videos], out, frames=13))
    redo = encode_dataset(options([videos], out, overwrite=True, frames=13))
    assert redo.done == 4 and not redo.resumed


def test_bad_inputs_become_rows_and_never_stop_the_job(videos, tmp_path, monkeypatch):
    bad = make_bad_inputs(tmp_path / "bad")
    hang = tmp_path / "bad" / "hangs.mp4"
    hang.write_bytes((videos / sorted(os.listdir(videos))[0]).read_bytes())
    monkeypatch.setenv("WFVAE_IO_DEBUG_HANG", "*hangs.mp4")
    manifest = tmp_path / "list.txt"
    listed = [*(str(p) for p in bad.values()), str(hang), str(tmp_path / "missing.mp4"), str(bad["portrait"])]
    manifest.write_text("\n".join(listed) + "\n")
    summary = encode_dataset(options([manifest], tmp_path / "s.zarr", decode_timeout=3.0))
    problems = dict(summary.rejected) | dict(summary.failures) | dict(summary.transient_inputs)
    assert not summary.ok
    assert [p for p, _ in summary.transient_inputs] == [str(hang)]  # a probe timeout is transient, not rejected
    assert str(hang) not in dict(summary.rejected)
    assert "missing.mp4" in " ".join(problems) and "duplicate" in " ".join(problems.values())
    assert any("empty" in r for r in problems.values())  # zero bytes
    assert any("timed out" in r for r in problems.values())  # the hang, killed after 3 s
    assert any("needs 9" in r for r in problems.values())  # one frame / too short
    store = open_store(tmp_path / "s.zarr")
    encoded = {store[i]["source"] for i in range(len(store))}
    assert str(bad["odd_size"]) in encoded and str(bad["portrait"]) in encoded and str(bad["large"]) not in encoded


def test_out_is_a_file_or_cannot_be_created(videos, tmp_path):
    f = tmp_path / "file.zarr"
    f.write_text("x")
    with pytest.raises(WfvaeError, match="is a file"):
        options([videos], f)
    # a parent that is a file: the store cannot be created (like a read-only or full volume), nothing is left
    with pytest.raises(WfvaeError, match="cannot create the store"):
        encode_dataset(options([videos], f / "s.zarr"))
    assert f.read_text() == "x"


def test_unknown_input_is_a_usage_error(tmp_path):
    with pytest.raises(WfvaeError):
        encode_dataset(options([tmp_path / "nope"], tmp_path / "s.zarr"))


def test_dry_run_writes_nothing(videos, tmp_path):
    summary = encode_dataset(options([videos], tmp_path / "s.zarr"), dry_run=True)
    assert summary.dry_run and summary.clips == 4 and summary.estimated_bytes == 4 * 2 * 4 * 3 * 8 * 8 * 4
    assert not (tmp_path / "s.zarr").exists()


def test_buckets_by_aspect_ratio(videos, tmp_path):
    opts = options([videos], tmp_path / "s.zarr", size=None, buckets=((64, 64), (48, 80), (80, 48)))
    summary = encode_dataset(opts)
    assert set(summary.buckets) == {"9x64x64", "9x48x80", "9x80x48"}
    assert summary.buckets["9x48x80"]["latent_shape"] == [4, 3, 6, 10]


def test_full_mode_streams_whole_videos(videos, tmp_path):
    summary = encode_dataset(options([videos], tmp_path / "s.zarr", clip_mode="full", chunk_frames=4))
    assert summary.ok and list(summary.buckets) == ["21x64x64"]  # 21 frames = 4*5+1, the whole clip
    store = open_store(tmp_path / "s.zarr")
    model = load_model(MODEL)
    for i in range(len(store)):
        np.testing.assert_allclose(store[i]["mean"], direct_latent(model, store[i]).numpy(), atol=1e-5)


def test_stored_samples_are_seeded_per_row(videos, tmp_path):
    a = encode_dataset(options([videos], tmp_path / "a.zarr", store_sample=True, seed=7, batch_size=1))
    b = encode_dataset(options([videos], tmp_path / "b.zarr", store_sample=True, seed=7, batch_size=3))
    assert a.ok and b.ok
    sa, sb = open_store(tmp_path / "a.zarr"), open_store(tmp_path / "b.zarr")
    for i in range(len(sa)):
        np.testing.assert_allclose(sa[i]["sample"], sb[i]["sample"], atol=1e-5)
    c = encode_dataset(options([videos], tmp_path / "c.zarr", store_sample=True, seed=8))
    assert c.ok and not np.allclose(open_store(tmp_path / "c.zarr")[0]["sample"], sa[0]["sample"])


def test_dataset_reads_every_sample_through_workers(videos, tmp_path):
    encode_dataset(options([videos], tmp_path / "s.zarr", size=None, buckets=((64, 64), (48, 80), (80, 48))))
    store = open_store(tmp_path / "s.zarr")
    model = load_model(MODEL)
    ds = LatentDataset(tmp_path / "s.zarr")
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    seen = 0
    for item in loader:
        sample = store[seen]
        _, h, w = (int(v) for v in sample["bucket"].split("x"))
        assert item["source"] == sample["source"]
        torch.testing.assert_close(item["latent"], direct_latent(model, sample, (h, w)), atol=1e-5, rtol=0)
        seen += 1
    assert seen == len(store) == 4


def _cli(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "wfvae_cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})}, **kw)


@pytest.mark.integration  # SIGKILL
def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    src = tmp_path / "v"
    make_sample_clips(src, n=8, frames=9, size=(64, 64))
    args = [str(src), "--model", MODEL, "--frames", "9", "--resolution", "64", "--shard-size", "1", "--json"]
    ref = _cli("encode", *args, "--out", str(tmp_path / "ref.zarr"))
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    victim = _cli("encode", *args, "--out", str(tmp_path / "s.zarr"), env={"WFVAE_DEBUG_ENCODE_DELAY": "0.5"})
    deadline = time.time() + 120
    status_dir = tmp_path / "s.zarr" / "buckets" / "9x64x64" / "status" / "c"
    while time.time() < deadline and len(list(status_dir.glob("*"))) < 3:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    partial = open_store(tmp_path / "s.zarr").counts("9x64x64")
    assert 0 < partial["done"] < 8, partial
    resumed = _cli("encode", *args, "--out", str(tmp_path / "s.zarr"))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    summary = json.loads(out)
    assert summary["resumed"] and summary["already_done"] == partial["done"] and summary["done"] == 8 - partial["done"]
    a, b = open_store(tmp_path / "ref.zarr"), open_store(tmp_path / "s.zarr")
    assert len(a) == len(b) == 8
    for i in range(8):
        sa, sb = a[i], b[i]
        assert sa["source"] == sb["source"]
        np.testing.assert_array_equal(sa["mean"], sb["mean"])
        np.testing.assert_array_equal(sa["logvar"], sb["logvar"])


def test_cli_exit_codes_and_json(videos, tmp_path):
    p = _cli("encode", str(videos), str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "s.zarr"),
             "--model", MODEL, "--frames", "9", "--resolution", "64", "--json")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 2 and "missing.mp4" in err  # a missing top-level input is a usage error
    out = str(tmp_path / "s.zarr")
    p = _cli("encode", str(videos), "--out", out, "--model", MODEL, "--frames", "10", "--resolution", "64")
    _, err = p.communicate(timeout=300)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert p.returncode == 2 and len(errors) == 1 and "4k+1" in errors[0] and "Traceback" not in err
    assert err.startswith("loading the model")  # start-up says what it is doing


def test_very_large_frames_are_resized(tmp_path):
    bad = make_bad_inputs(tmp_path / "bad")
    summary = encode_dataset(options([bad["large"]], tmp_path / "s.zarr", frames=1))
    assert summary.ok and summary.buckets == {"1x64x64": {"clips": 1, "latent_shape": [4, 1, 8, 8], "pending": 0,
                                                          "done": 1, "failed": 0, "transient": 0}}


def test_write_failure_stops_cleanly_and_resumes(videos, tmp_path, monkeypatch):
    """A full disk mid-run: one clear error, done samples intact, the same command resumes."""
    import errno

    from wfvae_cli.store import writer as writer_module

    real_flush = writer_module.ShardWriter.flush
    calls = {"n": 0}

    def flaky_flush(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_flush(self)

    monkeypatch.setattr(writer_module.ShardWriter, "flush", flaky_flush)
    out = tmp_path / "s.zarr"
    with pytest.raises(WfvaeError, match=r"No space left on device.*rerun the same command"):
        encode_dataset(options([videos], out, shard_size=1))
    done_before = open_store(out).counts("9x64x64")["done"]
    assert 0 < done_before < 4
    monkeypatch.setattr(writer_module.ShardWriter, "flush", real_flush)
    summary = encode_dataset(options([videos], out, shard_size=1))
    assert summary.ok and summary.already_done == done_before and summary.done == 4 - done_before
    assert verify(out).ok


@pytest.mark.parametrize(("out", "message"), [
    ("s3:/bucket/x.zarr", "two slashes"),
    ("gs://b/x.zarr", "needs gcsfs"),  # not installed here
    ("s3://bucket/x.zarr", "no credentials"),  # the environment has none (and the metadata endpoint is blocked)
])
def test_bad_out_url_is_one_line_and_nothing_is_created(out, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("AWS_")]:  # e.g. the S3 server fixture's endpoint
        monkeypatch.delenv(name)
    p = _cli("encode", str(tmp_path), "--out", out, "--model", MODEL, env={"AWS_EC2_METADATA_DISABLED": "true"})
    _, err = p.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.startswith("error") or message in line]
    assert p.returncode == 2 and message in err and len(lines) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_probe_timeout_is_transient_and_a_plain_rerun_adds_the_input(videos, tmp_path, monkeypatch):
    """#15.5: a probe that times out (fault hook WFVAE_IO_DEBUG_HANG) is not rejected; a plain rerun (no flag)
    probes it again, adds its clip and encodes it; the inputs already probed are not probed again."""
    from wfvae_cli import faults
    from wfvae_cli.store import ProbeState

    names = sorted(os.listdir(videos))
    monkeypatch.setenv(faults.DECODE_HANG, names[0])
    out = tmp_path / "s.zarr"
    first = encode_dataset(options([videos], out, decode_timeout=2.0))
    assert not first.ok and not first.rejected and first.done == 3
    assert [p for p, _ in first.transient_inputs] == [str(videos / names[0])]
    assert "timed out" in first.transient_inputs[0][1] and "no flag needed" in first.transient_inputs[0][1]
    store = open_store(out)
    table = store.probes()
    assert table is not None and sorted(table.state.tolist()) == [ProbeState.OK] * 3 + [ProbeState.TRANSIENT]
    assert not store.meta.completed_at and store.rejected() == []

    still = encode_dataset(options([videos], out, decode_timeout=2.0))  # still hanging: stays transient
    assert still.resumed and len(still.transient_inputs) == 1 and still.done == 0

    monkeypatch.delenv(faults.DECODE_HANG)
    probed: list[str] = []
    import wfvae_cli.pipeline.planning as planning

    real = planning.probe
    monkeypatch.setattr(planning, "probe", lambda path, **kw: probed.append(path) or real(path, **kw))
    again = encode_dataset(options([videos], out))
    assert again.resumed and again.ok and again.done == 1 and again.already_done == 3
    assert probed == [str(videos / names[0])]  # only the transient input was probed again
    store = open_store(out)
    assert len(store) == 4 and store.meta.completed_at and verify(out).ok
    assert sorted(store.probes().state.tolist()) == [ProbeState.OK] * 4
    assert {store[i]["source"] for i in range(4)} == {str(videos / n) for n in names}
    model = load_model(MODEL)
    for i in range(4):  # the appended row holds the right latents
        sample = store[i]
        np.testing.assert_allclose(sample["mean"], direct_latent(model, sample).numpy(), atol=1e-5)


def test_decode_timeout_marks_the_row_transient_and_a_plain_rerun_retries_it(videos, tmp_path, monkeypatch):
    """A clip whose decode times out is stored as Status.TRANSIENT (not failed); a rerun without
    --retry-failed encodes it."""
    from wfvae_cli import faults
    from wfvae_cli.io import _worker
    from wfvae_cli.store import Status

    out = tmp_path / "s.zarr"
    names = sorted(os.listdir(videos))
    real_submit = _worker.DecodeWorker._submit

    def hang_reads(self, kind, path, *args):  # probes answer, reads of one file hang
        if kind == "read" and os.path.basename(path) == names[1]:
            monkeypatch.setenv(faults.DECODE_HANG, names[1])
        try:
            return real_submit(self, kind, path, *args)
        finally:
            monkeypatch.delenv(faults.DECODE_HANG, raising=False)

    monkeypatch.setattr(_worker.DecodeWorker, "_submit", hang_reads)
    first = encode_dataset(options([videos], out, decode_timeout=2.0))
    assert first.transient == 1 and first.failed == 0 and not first.ok
    store = open_store(out)
    (bucket,) = store.buckets
    assert (store.status(bucket) == Status.TRANSIENT).sum() == 1 and not store.meta.completed_at
    monkeypatch.setattr(_worker.DecodeWorker, "_submit", real_submit)
    again = encode_dataset(options([videos], out))  # no --retry-failed
    assert again.ok and again.done == 1 and again.transient == 0
    assert open_store(out).meta.completed_at
