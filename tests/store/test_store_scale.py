"""The bookkeeping paths made for 10^6 samples, checked at 10^3: column plans, the bulk shard decoder of
verify, the probe table and LatentStore.extend (its one-commit rule included). benchmarks/scale.py times them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wfvae_cli.store import ProbeState, ProbeTable, Status, create_store, open_store, verify
from wfvae_cli.store import store as store_module
from wfvae_cli.store.index import IndexColumns
from wfvae_cli.store.layout import decode_latent_shard
from wfvae_cli.store.location import ROOT_KEY
from wfvae_cli.store.plan import BucketPlan
from wfvae_cli.store.testing import demo_meta, demo_plan, expected_latents

N = 1000
SHAPE = (4, 3, 2, 2)


def _columns(n: int, offset: int = 0) -> IndexColumns:
    (plan,) = demo_plan((("9x16x16", SHAPE, n),), shard_size=None)
    cols = IndexColumns.from_records(plan.samples)
    return cols.take(slice(None)) if not offset else IndexColumns(**{
        **{name: getattr(cols, name) for name in ("clip_start", "clip_end", "frame_indices", "fps", "width",
                                                  "height", "caption", "key", "extra")},
        "source": np.array([f"more/{offset + i}.mp4" for i in range(n)], dtype=np.dtypes.StringDType())})


def _probes(states: list[int]) -> ProbeTable:
    n = len(states)
    return ProbeTable.build([f"in/{i}.mp4" for i in range(n)], [f"size={i}" for i in range(n)], np.array(states),
                            ["" if s == 0 else "timed out" for s in states], np.ones((n, 5)), ["h264"] * n,
                            ["yuv420p"] * n)


def _fill(store, bucket: str, rows: range) -> None:
    for shard in sorted({store.shard_of(bucket, r) for r in rows}):
        span = store.info(bucket).shard_range(shard)
        with store.shard_writer(bucket, shard) as writer:
            for r in span:
                if r in rows:
                    writer.add(r, **expected_latents(store.meta, bucket, r, SHAPE))


@pytest.fixture
def big(tmp_path: Path):
    plan = [BucketPlan("9x16x16", SHAPE, _columns(N))]  # columns, not records: what planning hands over
    store = create_store(tmp_path / "s.zarr", demo_meta(dtype="float16"), plan, rejected=[("bad.mp4", "corrupt")],
                         probes=_probes([0, 0, 2]))
    _fill(store, "9x16x16", range(0, N, 2))  # every other row done
    return store


def test_columns_plan_round_trips_and_checks(big) -> None:
    store = open_store(big.path)
    stored = store.index_columns("9x16x16")
    assert stored.first_difference(_columns(N)) is None
    store.check_plan([BucketPlan("9x16x16", SHAPE, _columns(N))])
    assert store.records("9x16x16")[7] == _columns(N)[7]
    bad = _columns(3)
    with pytest.raises(Exception, match="clip_start < clip_end"):
        IndexColumns.from_lists(*(getattr(bad, n).tolist() for n in ("source", "clip_start")),
                                bad.clip_start.tolist(), *(getattr(bad, n).tolist() for n in (
                                    "frame_indices", "fps", "width", "height", "caption", "key", "extra")))


def test_bulk_shard_decoder_matches_zarr_and_verify_names_bad_rows(big) -> None:
    store = open_store(big.path)
    arr = store.array("9x16x16", "mean")
    span = store.info("9x16x16").shard_range(1)
    data = Path(store.chunk_file("9x16x16", "mean", 1)).read_bytes()
    decoded, bad = decode_latent_shard(data, arr.metadata.to_dict(), len(span))
    assert bad == {}
    np.testing.assert_array_equal(decoded, np.asarray(arr[span.start:span.stop]))  # NaN (pending) rows too
    report = verify(big.path)
    assert report.ok and report.checked == N // 2

    # one flipped byte in one done row's chunk: exactly that row is named
    entries = np.frombuffer(data[-(16 * store.info("9x16x16").shard_size + 4):-4], dtype="<u8").reshape(-1, 2)
    row = span.start + 4  # done (even)
    offset = int(entries[4, 0])
    damaged = bytearray(data)
    damaged[offset + 2] ^= 0xFF
    Path(store.chunk_file("9x16x16", "mean", 1)).write_bytes(bytes(damaged))
    report = verify(big.path)
    assert [(p.row, "mean" in p.reason) for p in report.problems] == [(row, True)]
    # a deleted shard: every done row of it is named
    Path(store.chunk_file("9x16x16", "logvar", 2)).unlink()
    rows2 = store.info("9x16x16").shard_range(2)
    named = {p.row for p in verify(big.path).problems}
    assert named == {row} | {r for r in rows2 if r % 2 == 0}


def test_extend_appends_rows_and_a_bucket_in_one_commit(big, monkeypatch) -> None:
    store = open_store(big.path, "r+")
    before = store.index_columns("9x16x16")
    more = [BucketPlan("9x16x16", SHAPE, _columns(5, offset=10**6)),
            BucketPlan("1x16x16", (4, 1, 2, 2), IndexColumns.from_records(
                demo_plan((("1x16x16", (4, 1, 2, 2), 3),))[0].samples))]
    newer = _probes([0, 0, 0])

    real_put = store_module._put_all

    def killed_at_commit(target, objects, *a, **k):  # the process dies just before the root write
        if ROOT_KEY in objects:
            raise OSError("killed")
        return real_put(target, objects, *a, **k)

    monkeypatch.setattr(store_module, "_put_all", killed_at_commit)
    with pytest.raises(OSError):
        store.extend(more, [*store.rejected(), ("gone.mp4", "not a video")], newer)
    monkeypatch.setattr(store_module, "_put_all", real_put)
    after_kill = open_store(big.path)  # exactly as before: rows, tables, counts
    assert list(after_kill.buckets) == ["9x16x16"] and after_kill.info("9x16x16").num_samples == N
    assert after_kill.rejected() == [("bad.mp4", "corrupt")]
    assert after_kill.probes().state.tolist() == [0, 0, ProbeState.TRANSIENT]
    assert verify(big.path).ok and after_kill.counts("9x16x16")["done"] == N // 2

    store = open_store(big.path, "r+")
    store.extend(more, [*store.rejected(), ("gone.mp4", "not a video")], newer)
    again = open_store(big.path)
    assert list(again.buckets) == ["9x16x16", "1x16x16"]
    assert again.info("9x16x16").num_samples == N + 5 and again.info("1x16x16").num_samples == 3
    assert again.index_columns("9x16x16").take(slice(0, N)).first_difference(before) is None
    assert again.index_columns("9x16x16").source[N:].tolist() == [f"more/{10**6 + i}.mp4" for i in range(5)]
    status = again.status("9x16x16")
    assert (status[N:] == Status.PENDING).all() and (status[:N:2] == Status.DONE).all()
    assert again.rejected() == [("bad.mp4", "corrupt"), ("gone.mp4", "not a video")]
    assert again.probes().state.tolist() == [0, 0, 0]
    assert verify(big.path).ok
    # the new rows are written like any others (the old last shard's done rows survive)
    _fill(again.__class__(again.location, store_module._open_root(again.location, "r+"), "r+"), "9x16x16",
          range(N, N + 5))
    final = open_store(big.path)
    assert final.counts("9x16x16")["done"] == N // 2 + 5 and verify(big.path).ok
    for r in (N - 2, N, N + 4):
        np.testing.assert_array_equal(final.read_latents("9x16x16", r)["mean"],
                                      expected_latents(final.meta, "9x16x16", r, SHAPE)["mean"])
