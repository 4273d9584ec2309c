"""Stores on object storage at the store-API level: the same code path as local folders, on a real S3 server.

Every test runs on a local folder and on the moto server (``integration``), so the two cannot drift apart.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from wfvae_cli.errors import WfvaeError
from wfvae_cli.store import ShardOwnershipError, StoreError, create_store, open_store, verify
from wfvae_cli.store.location import StoreLocation
from wfvae_cli.store.store import is_half_created
from wfvae_cli.store.testing import demo_meta, demo_plan, expected_latents

BUCKET = "9x32x32"


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def target(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "s.zarr")
    return f"s3://{request.getfixturevalue('s3_bucket')}/p/s.zarr"


def _write_shard(store, shard: int) -> None:
    info = store.info(BUCKET)
    with store.shard_writer(BUCKET, shard) as writer:
        for row in info.shard_range(shard):
            writer.add(row, **expected_latents(store.meta, BUCKET, row, info.latent_shape))


def test_create_write_reopen_finalize_stats(target):
    store = create_store(target, demo_meta(), demo_plan())
    assert StoreLocation(target).has_root() and not is_half_created(target)
    for shard in range(store.info(BUCKET).num_shards):
        _write_shard(store, shard)
    store.write_run_stats("run1", {"done": 10})
    again = open_store(target, "r+")  # consolidated metadata was rewritten: the new stats group is visible
    assert again.run_stats() == {"run1": {"done": 10}}
    assert again.counts(BUCKET) == {"pending": 0, "done": 10, "failed": 0, "transient": 0}
    again.finalize(allow_pending=True)  # a root-attribute update keeps the consolidated metadata
    reader = open_store(target)
    assert reader._root.metadata.consolidated_metadata is not None
    assert reader.meta.completed_at and reader.run_stats() == {"run1": {"done": 10}}
    for row in range(10):
        want = expected_latents(reader.meta, BUCKET, row, reader.info(BUCKET).latent_shape)
        np.testing.assert_array_equal(reader.read_latents(BUCKET, row)["mean"], want["mean"])
    assert verify(target).ok
    assert StoreLocation(target).nbytes() > 0


def test_shard_ownership_in_one_process(target):
    """flock locally, an in-process mutex on object storage: a second writer of a shard waits or is refused."""
    store = create_store(target, demo_meta(), demo_plan())
    held = store.shard_writer(BUCKET, 0)
    other = threading.Thread(target=lambda: errors.append(_try(store)))
    errors: list[BaseException | None] = []
    other.start()
    other.join()
    assert isinstance(errors[0], ShardOwnershipError)
    released = threading.Event()

    def waiter() -> None:
        with store.shard_writer(BUCKET, 0, wait=None, retry_failed=True):
            released.set()

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    assert not released.is_set()  # still waiting for the owner
    held.close()
    t.join(timeout=10)
    assert released.is_set()
    with store.shard_writer(BUCKET, 1), pytest.raises(ShardOwnershipError, match="this thread"):
        store.shard_writer(BUCKET, 1)


def _try(store) -> BaseException | None:
    try:
        store.shard_writer(BUCKET, 0, wait=0.05)
    except BaseException as exc:
        return exc
    return None


def test_overwrite_is_marked_half_created_before_deleting(target, monkeypatch):
    """An --overwrite interrupted while deleting leaves a store the next create replaces without --overwrite."""
    store = create_store(target, demo_meta(), demo_plan())
    _write_shard(store, 0)
    location = StoreLocation(target)

    def dies(self) -> None:
        raise KeyboardInterrupt  # killed after the half-created mark, before or during the delete

    monkeypatch.setattr(StoreLocation, "delete", dies)
    with pytest.raises(KeyboardInterrupt):
        create_store(target, demo_meta(), demo_plan(), overwrite=True)
    monkeypatch.undo()
    assert is_half_created(target)
    with pytest.raises(StoreError, match="interrupted"):
        open_store(target)
    fresh = create_store(target, demo_meta(), demo_plan())  # no --overwrite needed: nothing was done in it
    assert fresh.counts(BUCKET)["done"] == 0 and location.has_root()


def test_refuses_to_delete_what_is_not_a_store(target):
    location = StoreLocation(target)
    if location.is_local:
        location.path.mkdir(parents=True)
        (location.path / "notes.txt").write_text("precious")
    else:
        location.fs.pipe(location._fs_path("notes.txt"), b"precious")
    with pytest.raises(StoreError, match="not a wfvae latent store"):
        create_store(target, demo_meta(), demo_plan(), overwrite=True)
    assert location.exists() and not location.has_root()


def test_location_parsing_and_pickling(tmp_path):
    import pickle

    assert StoreLocation(tmp_path / "x.zarr").is_local
    assert StoreLocation(f"file://{tmp_path}/x.zarr").path == tmp_path / "x.zarr"
    remote = StoreLocation("s3://bucket/a/x.zarr", {"anon": True})
    assert not remote.is_local and str(remote) == "s3://bucket/a/x.zarr"
    clone = pickle.loads(pickle.dumps(remote))
    assert clone == remote and clone.storage_options == {"anon": True} and clone._fs is None
    for bad, match in (("s3:/bucket/x", "two slashes"), ("s3://bucket", "below the bucket"), ("foo://b/x", "scheme")):
        with pytest.raises(WfvaeError, match=match):
            StoreLocation(bad)
