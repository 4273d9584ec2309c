"""A writer killed by SIGKILL never leaves a row marked done without its exact latents.

Two angles: (1) deterministic - a forked child kills itself in the middle of its k-th file write, for
many k, so every phase of a flush (latent shard, error/seconds chunks, status chunk) gets interrupted;
(2) realistic - a separate Python process writing in a loop is SIGKILLed from outside at a random time.
Expected latents are a pure function of (bucket, row), so the parent checks without shared state.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from wfvae_cli.store import LatentStore, Status, StoreWriter, create_store, open_store, verify
from wfvae_cli.store.testing import demo_meta, demo_plan, expected_latents

pytestmark = pytest.mark.integration  # SIGKILLed writer processes

PLAN = [("a", (4, 3, 8, 8), 24), ("b", (4, 5, 4, 4), 10)]


def _write_all(store: LatentStore, per_sample: bool) -> None:
    """Fill every pending row: per-sample (rewrites shards that already hold done rows) or via StoreWriter."""
    work = [(b, int(r)) for b in store.buckets for r in store.pending_samples(b)]
    random.Random(7).shuffle(work)
    if per_sample:
        for bucket, row in work:
            store.write_sample(
                bucket, row, **expected_latents(store.meta, bucket, row, store.buckets[bucket].latent_shape)
            )
        return
    with StoreWriter(store, max_buffer_bytes=20_000) as writer:  # small budget: partial flushes happen too
        for bucket, row in work:
            writer.add(
                bucket, row, **expected_latents(store.meta, bucket, row, store.buckets[bucket].latent_shape)
            )


def _crash_on_put(path: str, kill_at: int, per_sample: bool) -> None:
    """Child process: write, and SIGKILL ourselves half-way through the ``kill_at``-th file write."""
    import zarr.storage._local as local

    calls = [0]
    original = local._put

    def put(file: Path, value, exclusive: bool = False) -> int:  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] == kill_at:
            data = bytes(value.as_buffer_like())
            tmp = file.with_suffix(".crash.partial")
            tmp.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:  # a torn temporary file, exactly like a kill inside write()
                f.write(data[: len(data) // 2])
                f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return original(file, value, exclusive=exclusive)

    local._put = put
    _write_all(open_store(path, "r+"), per_sample)
    os._exit(0)


def _assert_invariant(path: Path) -> dict[str, int]:
    """Every done row holds exactly its expected latents; no row is failed; the rest is pending."""
    store = open_store(path)
    counts = {"pending": 0, "done": 0, "failed": 0, "transient": 0}
    for bucket, info in store.buckets.items():
        status = store.status(bucket)
        assert set(np.unique(status)) <= {Status.PENDING, Status.DONE}, f"unexpected status in {bucket}"
        for row in np.flatnonzero(status == Status.DONE):
            got = store.read_latents(bucket, int(row))
            for name, want in expected_latents(store.meta, bucket, int(row), info.latent_shape).items():
                np.testing.assert_array_equal(
                    got[name], want, err_msg=f"{bucket}[{row}].{name} done but wrong"
                )
        for key, value in store.counts(bucket).items():
            counts[key] += value
    return counts


@pytest.mark.parametrize("per_sample", [False, True], ids=["shard-writer", "per-sample"])
def test_kill_mid_write_at_every_phase_then_resume(tmp_path: Path, per_sample: bool) -> None:
    path = tmp_path / "s.zarr"
    create_store(path, demo_meta(dtype="float16"), demo_plan(PLAN, shard_size=8))
    ctx = multiprocessing.get_context("fork")
    seen_done: list[int] = []
    for kill_at in (1, 2, 3, 4, 5, 7, 9, 12, 16):
        child = ctx.Process(target=_crash_on_put, args=(str(path), kill_at, per_sample))
        child.start()
        child.join(60)
        assert child.exitcode == -signal.SIGKILL, f"child was not killed at write {kill_at}"
        counts = _assert_invariant(path)
        seen_done.append(counts["done"])
        assert verify(path).ok
    assert seen_done[-1] > 0, "the kills came too early to test anything"
    assert seen_done == sorted(seen_done), "done rows must never be lost by a later crash"

    report = verify(path, repair=True)  # removes the torn temporary files
    assert report.temp_files > 0 and report.ok
    _write_all(open_store(path, "r+"), per_sample)  # resume finishes the job
    assert _assert_invariant(path) == {"pending": 0, "done": 34, "failed": 0, "transient": 0}


WRITER_SCRIPT = textwrap.dedent(
    """
    import sys
    from wfvae_cli.store import open_store
    from wfvae_cli.store.testing import expected_latents

    store = open_store(sys.argv[1], "r+")
    for bucket in store.buckets:
        shape = store.buckets[bucket].latent_shape
        for rows in store.shard_ranges(bucket):
            with store.shard_writer(bucket, store.shard_of(bucket, rows.start)) as writer:
                for row in rows:  # one sample at a time per shard owner: many writes to kill into
                    writer.add(row, **expected_latents(store.meta, bucket, row, shape))
                    writer.flush()
                    print(bucket, row, flush=True)
    print("finished", flush=True)
    """
)


def test_sigkill_from_outside_at_a_random_time(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    create_store(
        path, demo_meta(dtype="float32", channels=8), demo_plan([("a", (8, 5, 16, 16), 400)], shard_size=16)
    )
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # wait until it is really writing (imports are slow)
        assert first.startswith("a "), first
        time.sleep(random.Random().uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the writer finished before it could be killed"
    counts = _assert_invariant(path)
    assert counts["done"] >= 1 and counts["pending"] >= 1
