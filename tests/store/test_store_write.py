"""Creating, filling and resuming stores: round-trips, shard ownership, status, concurrency."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import zarr

from wfvae_cli.store import (
    BucketPlan,
    Compression,
    LatentStore,
    SampleRecord,
    ShardOwnershipError,
    Status,
    StoreError,
    StoreWriter,
    create_store,
    default_shard_size,
    open_store,
)
from wfvae_cli.store.testing import demo_meta, demo_plan, expected_latents


def _fill(store: LatentStore, bucket: str, rows: range | list[int]) -> None:
    shape = store.buckets[bucket].latent_shape
    for row in rows:
        store.write_sample(bucket, row, **expected_latents(store.meta, bucket, row, shape))


def _assert_done_rows_exact(store: LatentStore, bucket: str) -> int:
    shape = store.buckets[bucket].latent_shape
    done = np.flatnonzero(store.status(bucket) == Status.DONE)
    for row in done:
        got = store.read_latents(bucket, int(row))
        for name, want in expected_latents(store.meta, bucket, int(row), shape).items():
            assert got[name].dtype == want.dtype
            np.testing.assert_array_equal(got[name], want, err_msg=f"{bucket}[{row}].{name}")
    return len(done)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("codec", ["zstd", "blosc-zstd"])
def test_round_trip_latents_and_index(tmp_path: Path, dtype: str, codec: str) -> None:
    meta = demo_meta(dtype=dtype)
    plan = demo_plan()
    store = create_store(tmp_path / "s.zarr", meta, plan, compression=Compression(codec))  # type: ignore[arg-type]
    for bucket in store.buckets:
        shape = store.buckets[bucket].latent_shape
        for rows in store.shard_ranges(bucket):
            block = [expected_latents(meta, bucket, r, shape) for r in rows]
            store.write_block(
                bucket, rows.start, **{n: np.stack([b[n] for b in block]) for n in meta.latent_names}
            )
    reopened = open_store(tmp_path / "s.zarr")
    assert len(reopened) == 17
    for p in plan:
        assert _assert_done_rows_exact(reopened, p.bucket_id) == len(p.samples)
        assert reopened.records(p.bucket_id) == list(p.samples)
    sample = reopened[12]  # row 2 of the second bucket
    assert sample["bucket"] == "17x32x48" and sample["row"] == 2
    assert type(sample["source"]) is str and sample["source"] == "videos/17x32x48/clip_002_é.mp4"
    assert type(sample["caption"]) is str and "ünïcode" in sample["caption"]
    assert reopened[0]["caption"] == ""
    assert sample["frame_indices"].tolist() == list(plan[1].samples[2].frame_indices)
    assert (sample["clip_start"], sample["clip_end"], sample["fps"]) == (20, 54, 26.0)
    mean = zarr.open_array(tmp_path / "s.zarr" / "buckets" / "9x32x32" / "mean", mode="r")
    assert mean.dtype == np.dtype(dtype) and mean.chunks == (1, 4, 3, 4, 4) and mean.shards == (4, 4, 3, 4, 4)
    codec_names = {c["name"] for c in mean.metadata.to_dict()["codecs"][0]["configuration"]["codecs"]}
    assert ("zstd" if codec == "zstd" else "blosc") in codec_names and "crc32c" in codec_names


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("codec", ["zstd", "blosc-zstd"])
def test_latents_are_compressed(tmp_path: Path, dtype: str, codec: str) -> None:
    """Low-entropy latents must take far less space than their raw bytes (the codec is really applied)."""
    meta = demo_meta(dtype=dtype)  # type: ignore[arg-type]
    plan = demo_plan([("b", (4, 5, 16, 16), 8)], shard_size=8)
    store = create_store(tmp_path / "s.zarr", meta, plan, compression=Compression(codec))  # type: ignore[arg-type]
    levels = np.random.default_rng(0).integers(0, 4, size=(8, 4, 5, 16, 16)).astype(np.float32) / 4
    store.write_block("b", 0, mean=levels, logvar=levels)
    raw = levels.astype(dtype).nbytes
    assert store.chunk_file("b", "mean", 0).stat().st_size < raw / 3
    np.testing.assert_array_equal(store.array("b", "mean")[:], levels.astype(dtype))


def test_shard_layout_aligns_status_chunks_with_latent_shards(tmp_path: Path) -> None:
    store = create_store(tmp_path / "s.zarr", demo_meta(), demo_plan())
    assert store.shard_ranges("9x32x32") == [range(0, 4), range(4, 8), range(8, 10)]
    assert [store.shard_of("9x32x32", r) for r in (0, 3, 4, 9)] == [0, 0, 1, 2]
    for name in ("status", "error", "encode_seconds"):
        arr = store.array("9x32x32", name)
        assert arr.chunks == (4,) and arr.shards is None, name
    assert store.array("9x32x32", "source").shards is not None  # immutable: packed


def test_default_shard_size() -> None:
    assert default_shard_size(300_000, 10_000) == 223  # 64 MiB of 300 kB samples
    assert default_shard_size(1_000, 10_000) == 256  # capped
    assert default_shard_size(100 * 2**20, 10) == 1  # huge samples: one per shard
    assert default_shard_size(1_000, 5) == 5  # never more than the bucket
    plan = demo_plan([("b", (16, 9, 32, 32), 1000)], shard_size=None)[0]
    assert plan.resolved_shard_size(2) == 227


def test_writer_refuses_rows_outside_its_shard(tmp_path: Path) -> None:
    store = create_store(tmp_path / "s.zarr", demo_meta(), demo_plan())
    lat = expected_latents(store.meta, "9x32x32", 5, (4, 3, 4, 4))
    with store.shard_writer("9x32x32", 0) as writer:
        with pytest.raises(ShardOwnershipError, match="outside shard 0"):
            writer.add(5, **lat)
        block = {n: np.stack([v, v]) for n, v in lat.items()}
        with pytest.raises(ShardOwnershipError, match="split the block"):
            writer.write_block(3, **block)  # rows 3..4 straddle shards 0 and 1
    with pytest.raises(ShardOwnershipError, match="split the block"):
        store.write_block("9x32x32", 3, **block)
    assert store.counts("9x32x32")["done"] == 0


def test_second_owner_of_a_shard_is_refused_then_serialised(tmp_path: Path) -> None:
    store = create_store(tmp_path / "s.zarr", demo_meta(), demo_plan())
    other = open_store(tmp_path / "s.zarr", "r+")  # a separate handle, as another worker would have
    writer = store.shard_writer("9x32x32", 1)
    with pytest.raises(ShardOwnershipError, match="owned by an open writer in this thread"):
        store.shard_writer("9x32x32", 1)
    errors: list[BaseException] = []

    def contender() -> None:
        try:
            other.shard_writer("9x32x32", 1, wait=0.05)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=contender)
    thread.start()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], ShardOwnershipError)
    other.shard_writer("9x32x32", 2).close()  # other shards are free
    abandoned = store.shard_writer("9x32x32", 2)
    del abandoned  # dropped without close(): the lock must not outlive it
    store.shard_writer("9x32x32", 2).close()

    # A per-sample write from another thread waits for the owner instead of racing it.
    lat = expected_latents(store.meta, "9x32x32", 4, (4, 3, 4, 4))
    waiting = threading.Thread(target=lambda: other.write_sample("9x32x32", 5, **lat))
    waiting.start()
    waiting.join(0.2)
    assert waiting.is_alive(), "write_sample must wait for the shard owner"
    writer.add(4, **lat)
    writer.close()
    waiting.join(10)
    assert not waiting.is_alive()
    assert store.status("9x32x32")[4:6].tolist() == [Status.DONE, Status.DONE]


def test_read_only_store_refuses_writes(tmp_path: Path) -> None:
    create_store(tmp_path / "s.zarr", demo_meta(), demo_plan())
    store = open_store(tmp_path / "s.zarr")
    with pytest.raises(StoreError, match="read-only"):
        store.mark_failed("9x32x32", 0, "x")


def test_writer_buffers_any_order_and_flushes_whole_shard(tmp_path: Path) -> None:
    store = create_store(tmp_path / "s.zarr", demo_meta(), demo_plan())
    shape = (4, 3, 4, 4)
    with store.shard_writer("9x32x32", 1) as writer:
        for row in (6, 4, 7):
            writer.add(row, encode_seconds=0.5, **expected_latents(store.meta, "9x32x32", row, shape))
        assert not store.chunk_file("9x32x32", "mean", 1).exists()  # nothing written yet
        assert store.counts("9x32x32")["done"] == 0
        writer.add(5, **expected_latents(store.meta, "9x32x32", 5, shape))  # last one: auto flush
        assert store.counts("9x32x32")["done"] == 4
    assert _assert_done_rows_exact(store, "9x32x32") == 4
    seconds = store.array("9x32x32", "encode_seconds")[4:8]
    assert seconds[[0, 2, 3]].tolist() == [0.5, 0.5, 0.5] and np.isnan(seconds[1])


def test_writer_exception_drops_buffer_and_keeps_rows_pending(tmp_path: Path) -> None:
    store = create_store(tmp_path / "s.zarr", demo_meta(), demo_plan())
    with pytest.raises(RuntimeError), store.shard_writer("9x32x32", 0) as writer:
        writer.add(0, **expected_latents(store.meta, "9x32x32", 0, (4, 3, 4, 4)))
        raise RuntimeError("model crashed")
    assert store.counts("9x32x32")["pending"] == 10
    store.shard_writer("9x32x32", 0).close()  # the lock was released


def test_done_rows_are_not_rewritten_and_shapes_are_checked(tmp_path: Path) -> None:
    store = create_store(tmp_path / "s.zarr", demo_meta(), demo_plan())
    _fill(store, "9x32x32", [0])
    lat = expected_latents(store.meta, "9x32x32", 0, (4, 3, 4, 4))
    with pytest.raises(StoreError, match="is done"):
        store.write_sample("9x32x32", 0, **lat)
    with pytest.raises(StoreError, match="expects"):
        store.write_sample("9x32x32", 1, mean=lat["mean"][:, :2], logvar=lat["logvar"])
    with pytest.raises(StoreError, match="stores"):
        store.write_sample("9x32x32", 1, sample=lat["mean"])


def test_nonfinite_latents_become_failed_rows(tmp_path: Path) -> None:
    store = create_store(tmp_path / "s.zarr", demo_meta(dtype="float16"), demo_plan())
    lat = expected_latents(store.meta, "9x32x32", 0, (4, 3, 4, 4))
    bad = lat["mean"].astype(np.float32)
    bad[0, 0, 0, 0] = 1e6  # overflows float16
    store.write_sample("9x32x32", 0, mean=bad, logvar=lat["logvar"])
    assert store.failed_samples("9x32x32") == [(0, "latents are not finite (NaN/Inf) as float16")]


def test_resume_lists_pending_and_failed_and_retries(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    store = create_store(path, demo_meta(), demo_plan())
    _fill(store, "9x32x32", [0, 1, 5])
    store.mark_failed("9x32x32", 2, "decode error:\n  moov atom not found")
    store.mark_failed("9x32x32", 9, "timeout")

    resumed = open_store(path, "r+")
    assert resumed.pending_samples("9x32x32").tolist() == [3, 4, 6, 7, 8]
    assert resumed.pending_samples("9x32x32", include_failed=True).tolist() == [2, 3, 4, 6, 7, 8, 9]
    assert resumed.failed_samples("9x32x32") == [(2, "decode error: moov atom not found"), (9, "timeout")]
    assert resumed.counts("9x32x32") == {"pending": 5, "done": 3, "failed": 2, "transient": 0}
    assert resumed.pending_samples("17x32x48").tolist() == list(range(7))

    with resumed.shard_writer("9x32x32", 0) as writer:
        assert writer.outstanding == {3}
        with pytest.raises(StoreError, match="retry_failed"):
            writer.add(2, **expected_latents(resumed.meta, "9x32x32", 2, (4, 3, 4, 4)))
    with resumed.shard_writer("9x32x32", 0, retry_failed=True) as writer:
        assert writer.outstanding == {2, 3}
        for row in (2, 3):
            writer.add(row, **expected_latents(resumed.meta, "9x32x32", row, (4, 3, 4, 4)))
    assert resumed.failed_samples("9x32x32") == [(9, "timeout")]
    assert resumed.array("9x32x32", "error")[2] == ""  # cleared on success
    with pytest.raises(StoreError, match="pending samples"):
        resumed.finalize()
    assert _assert_done_rows_exact(resumed, "9x32x32") == 5


def test_finalize_and_overwrite_rules(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    plan = demo_plan([("b", (4, 3, 4, 4), 3)])
    store = create_store(path, demo_meta(), plan)
    _fill(store, "b", range(2))
    store.mark_failed("b", 2, "broken file")
    meta = store.finalize("2025-01-01T00:00:00+00:00")
    assert meta.completed_at == "2025-01-01T00:00:00+00:00"
    assert open_store(path).meta.completed_at == "2025-01-01T00:00:00+00:00"

    with pytest.raises(StoreError, match=r"already exists.*--overwrite"):
        create_store(path, demo_meta(), plan)
    assert len(create_store(path, demo_meta(), plan, overwrite=True)) == 0
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(StoreError, match="refusing to delete"):
        create_store(precious, demo_meta(), plan, overwrite=True)
    assert (precious / "thesis.txt").exists()


def test_check_plan_refuses_a_different_plan(tmp_path: Path) -> None:
    plan = demo_plan()
    store = create_store(tmp_path / "s.zarr", demo_meta(), plan)
    store.check_plan(plan)
    reordered = [
        BucketPlan(plan[0].bucket_id, plan[0].latent_shape, list(reversed(plan[0].samples)), 4),
        plan[1],
    ]
    with pytest.raises(StoreError, match=r"row 0 is .*--overwrite"):
        store.check_plan(reordered)
    with pytest.raises(StoreError, match="holds buckets"):
        store.check_plan(plan[:1])


def test_plan_validation() -> None:
    row = SampleRecord("a.mp4", 0, 10, tuple(range(9)), 24.0, 64, 48)
    with pytest.raises(StoreError, match="bucket id"):
        BucketPlan("../evil", (4, 3, 4, 4), [row])
    with pytest.raises(StoreError, match="no samples"):
        BucketPlan("b", (4, 3, 4, 4), [])
    with pytest.raises(StoreError, match="one frame count"):
        BucketPlan("b", (4, 3, 4, 4), [row, SampleRecord("b.mp4", 0, 10, (0, 1), 24.0, 64, 48)])
    with pytest.raises(StoreError, match="frame_indices must lie"):
        SampleRecord("a.mp4", 5, 10, (1, 2), 24.0, 64, 48)


def test_create_refuses_scale_that_does_not_fit_the_channels(tmp_path: Path) -> None:
    meta = demo_meta().replace(scale=[1.0, 2.0, 3.0])  # 3 values for 4 channels
    with pytest.raises(StoreError, match="scale has 3 values for 4 latent channels"):
        create_store(tmp_path / "s.zarr", meta, demo_plan())
    assert not (tmp_path / "s.zarr").exists()
    create_store(tmp_path / "s.zarr", meta.replace(scale=[0.5]), demo_plan())  # a scalar is fine


def test_store_writer_routes_any_order_within_memory_budget(tmp_path: Path) -> None:
    store = create_store(tmp_path / "s.zarr", demo_meta(), demo_plan())
    rng = np.random.default_rng(0)
    work = [(b, r) for b, info in store.buckets.items() for r in range(info.num_samples)]
    work = [work[k] for k in rng.permutation(len(work))]
    one_sample = 2 * 4 * 3 * 4 * 6 * 4  # the larger bucket, mean + logvar, float32
    with StoreWriter(store, max_buffer_bytes=3 * one_sample) as writer:
        for bucket, row in work[:-1]:
            if row == 3:
                writer.fail(bucket, row, "decode error")
                continue
            writer.add(
                bucket, row, **expected_latents(store.meta, bucket, row, store.buckets[bucket].latent_shape)
            )
            assert sum(w.buffered_nbytes for w in writer._writers.values()) <= 3 * one_sample
    for bucket in store.buckets:
        _assert_done_rows_exact(store, bucket)
    total = {k: sum(store.counts(b)[k] for b in store.buckets) for k in ("pending", "done", "failed")}
    assert total == {"pending": 1, "done": 17 - 2 - 1, "failed": 2}


def test_parallel_shard_writers_lose_nothing(tmp_path: Path) -> None:
    """Two threads each own a different shard of the same arrays and write per-sample (the slow,
    read-modify-write path, where a shared shard would lose data)."""
    plan = demo_plan([("b", (4, 3, 8, 8), 64)], shard_size=32)
    store = create_store(tmp_path / "s.zarr", demo_meta(), plan)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(shard: int) -> None:
        try:
            handle = open_store(tmp_path / "s.zarr", "r+")
            barrier.wait()
            for row in store.shard_ranges("b")[shard]:
                handle.write_sample("b", row, **expected_latents(handle.meta, "b", row, (4, 3, 8, 8)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    reopened = open_store(tmp_path / "s.zarr")
    assert reopened.counts("b") == {"pending": 0, "done": 64, "failed": 0, "transient": 0}
    assert _assert_done_rows_exact(reopened, "b") == 64


def test_parallel_per_sample_writes_into_one_shard_are_serialised(tmp_path: Path) -> None:
    """Without the ownership lock this loses rows (zarr drops concurrent writes within a shard)."""
    plan = demo_plan([("b", (4, 3, 8, 8), 32)], shard_size=32)
    create_store(tmp_path / "s.zarr", demo_meta(), plan)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(rows: range) -> None:
        try:
            handle = open_store(tmp_path / "s.zarr", "r+")
            barrier.wait()
            for row in rows:
                handle.write_sample("b", row, **expected_latents(handle.meta, "b", row, (4, 3, 8, 8)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(rows,)) for rows in (range(0, 32, 2), range(1, 32, 2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    reopened = open_store(tmp_path / "s.zarr")
    assert reopened.counts("b")["done"] == 32
    assert _assert_done_rows_exact(reopened, "b") == 32
