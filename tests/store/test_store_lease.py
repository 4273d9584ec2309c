"""The store-level writer lease: one writing job per store (a second one, --overwrite included, is refused),
stale leases of dead jobs recovered, takeovers by compare-and-swap, fenced writers stop before marking.

The same tests run on local disk and on a real S3-compatible server (moto, started by conftest)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from wfvae_cli.store.lease import (
    LeaseHeldError,
    LeaseLostError,
    LocalBlob,
    ObjectBlob,
    WriterLease,
    _Conflict,
    lease_blob,
)

from ..pipeline.test_encode import options, videos  # noqa: F401  (fixture)

BACKENDS = ["local", pytest.param("s3", marks=pytest.mark.integration)]


@pytest.fixture(params=BACKENDS)
def blob(request, tmp_path):
    if request.param == "local":
        return LocalBlob(tmp_path / "s.zarr.lease.json")
    bucket = request.getfixturevalue("s3_bucket")
    return ObjectBlob(f"s3://{bucket}/p/s.zarr.lease.json")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _forge(blob, **fields) -> None:
    """Write a lease as another job would have left it."""
    body = dict(token="other", host="elsewhere", pid=1, started="2026-01-01T00:00:00+00:00",
                heartbeat=time.time(), ttl=60.0, generation=7, version=3)
    body.update(fields)
    blob.create(json.dumps(body).encode())


def test_second_writer_is_refused_naming_the_holder(blob):
    with WriterLease(blob, what="--out s.zarr") as first:
        assert first.generation == 1
        with pytest.raises(LeaseHeldError, match=r"pid \d+ on .*started .*last heartbeat \d+ s ago"):
            WriterLease(blob, what="--out s.zarr").acquire()
    assert blob.read() is None  # released
    with WriterLease(blob, what="--out s.zarr"):  # free again
        pass


def test_create_only_and_compare_and_swap_have_one_winner(blob):
    v = blob.create(b'{"version": 1}')
    with pytest.raises(_Conflict):
        blob.create(b'{"version": 1}')
    blob.swap(b'{"version": 2}', v)
    with pytest.raises(_Conflict):  # the second taker of the same stale version loses
        blob.swap(b'{"version": 3}', v)
    assert json.loads(blob.read()[0])["version"] == 2


def test_stale_lease_by_ttl_is_taken_over_with_a_new_generation(blob):
    _forge(blob, heartbeat=time.time() - 120, ttl=60.0)
    with WriterLease(blob, what="s") as lease:
        assert lease.generation == 8
        lease.check()


def test_dead_holder_on_this_host_is_recovered_at_once(blob):
    import socket

    _forge(blob, host=socket.gethostname(), pid=_dead_pid())
    with WriterLease(blob, what="s") as lease:
        assert lease.generation == 8


def test_live_foreign_holder_is_not_taken_over(blob):
    _forge(blob)  # fresh heartbeat, another host: its pid cannot be checked, so only the TTL frees it
    with pytest.raises(LeaseHeldError, match="elsewhere"):
        WriterLease(blob, what="s").acquire()


def test_a_writer_that_lost_its_lease_stops_before_marking(blob):
    lease = WriterLease(blob, what="s", ttl=3600).acquire()
    try:
        data, version = blob.read()
        stolen = dict(json.loads(data), token="thief", generation=2)
        blob.swap(json.dumps(stolen).encode(), version)  # a takeover, as after a stalled heartbeat
        lease.heartbeat()
        with pytest.raises(LeaseLostError, match="lost its writer lease"):
            lease.check()
    finally:
        lease.release()
    assert json.loads(blob.read()[0])["token"] == "thief"  # release never deletes someone else's lease


def test_lease_location_parses_urls(tmp_path):
    assert isinstance(lease_blob(tmp_path / "a.zarr"), LocalBlob)
    assert lease_blob(tmp_path / "a.zarr").path == tmp_path / "a.zarr.lease.json"
    with pytest.raises(Exception, match="two slashes"):
        lease_blob("s3:/bucket/a.zarr")
    assert not (Path.cwd() / "s3:").exists()


_HOLDER = """
import sys, time
from wfvae_cli.store.lease import WriterLease, lease_blob
lease = WriterLease(lease_blob(sys.argv[1]), what="holder").acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.integration
def test_concurrent_encode_and_overwrite_are_refused_and_store_untouched(videos, tmp_path):  # noqa: F811
    from wfvae_cli.pipeline import encode_dataset
    from wfvae_cli.store import open_store, verify

    out = tmp_path / "s.zarr"
    first = encode_dataset(options([videos], out))
    assert first.ok
    before = {b: np.asarray(open_store(out).array(b, "mean")[:]) for b in open_store(out).buckets}
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for kw in ({}, {"overwrite": True}):
            with pytest.raises(LeaseHeldError, match=rf"pid {holder.pid} on "):
                encode_dataset(options([videos], out, **kw))
        store = open_store(out)
        for b, arr in before.items():
            np.testing.assert_array_equal(np.asarray(store.array(b, "mean")[:]), arr)
        assert verify(out).ok
    finally:
        holder.kill()
        holder.wait()
    # the holder died by SIGKILL: the next run recovers its lease at once (same host, dead pid)
    again = encode_dataset(options([videos], out, overwrite=True))
    assert again.ok and again.done == first.done


def test_fence_for_workers_follows_the_coordinators_lease(blob):
    import pickle

    lease = WriterLease(blob, what="s", ttl=3600).acquire()
    try:
        fence = pickle.loads(pickle.dumps(lease.fence()))  # as Ray ships it to a worker
        fence.check()
        data, version = blob.read()
        blob.swap(json.dumps(dict(json.loads(data), token="thief")).encode(), version)
        with pytest.raises(LeaseLostError, match="lost its writer lease"):
            fence.check()
    finally:
        lease.release()
