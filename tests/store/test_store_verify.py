"""verify() finds bad done samples (NaN, corrupted chunk, missing shard); summary() describes a store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wfvae_cli.store import LatentStore, StatusCounts, create_store, open_store, summary, verify
from wfvae_cli.store.testing import demo_meta, demo_plan, expected_latents


@pytest.fixture
def filled(tmp_path: Path) -> LatentStore:
    """Bucket 9x32x32 fully done except row 9 (pending) and row 8 (failed); bucket 17x32x48 untouched."""
    store = create_store(tmp_path / "s.zarr", demo_meta(dtype="float16"), demo_plan())
    for rows in store.shard_ranges("9x32x32")[:2]:
        with store.shard_writer("9x32x32", store.shard_of("9x32x32", rows.start)) as writer:
            for row in rows:
                writer.add(row, **expected_latents(store.meta, "9x32x32", row, (4, 3, 4, 4)))
    store.mark_failed("9x32x32", 8, "decode error")
    return store


def test_verify_clean_store_counts_statuses(filled: LatentStore) -> None:
    report = verify(filled.path)
    assert report.ok and report.problems == ()
    assert report.counts["9x32x32"] == StatusCounts(pending=1, done=8, failed=1)
    assert report.counts["17x32x48"] == StatusCounts(pending=7)
    assert (report.checked, report.pending, report.failed) == (8, 8, 1)


def test_verify_catches_a_nan_sample_and_repair_makes_it_pending(filled: LatentStore) -> None:
    lat = expected_latents(filled.meta, "9x32x32", 5, (4, 3, 4, 4))
    lat["logvar"][1, 2, 3, 0] = np.nan
    filled.array("9x32x32", "logvar")[5] = lat["logvar"]  # bypass the writer, as a buggy tool would
    report = verify(filled.path)
    assert not report.ok
    assert [(p.bucket, p.row) for p in report.problems] == [("9x32x32", 5)]
    assert "logvar has NaN" in report.problems[0].reason

    repaired = verify(filled.path, repair=True)
    assert repaired.repaired and repaired.counts["9x32x32"] == StatusCounts(pending=2, done=7, failed=1)
    assert verify(filled.path).ok
    again = open_store(filled.path)
    assert 5 in again.pending_samples("9x32x32") and [r for r, _ in again.failed_samples("9x32x32")] == [8]
    assert str(again.array("9x32x32", "error")[5]).startswith("verify: logvar has NaN")


def test_verify_pinpoints_a_corrupted_chunk(filled: LatentStore) -> None:
    shard_file = filled.chunk_file("9x32x32", "mean", 1)  # rows 4..7
    data = bytearray(shard_file.read_bytes())
    data[len(data) // 3] ^= 0xFF  # one flipped byte inside one sample's compressed chunk
    shard_file.write_bytes(bytes(data))
    report = verify(filled.path)
    assert not report.ok
    assert len(report.problems) == 1 and report.problems[0].row in range(4, 8)
    assert "mean unreadable" in report.problems[0].reason and "checksum" in report.problems[0].reason


def test_verify_flags_every_row_of_a_truncated_or_missing_shard(filled: LatentStore) -> None:
    shard_file = filled.chunk_file("9x32x32", "mean", 0)
    shard_file.write_bytes(shard_file.read_bytes()[:100])  # shard index destroyed
    filled.chunk_file("9x32x32", "logvar", 1).unlink()  # shard gone: reads as NaN fill
    report = verify(filled.path)
    assert [p.row for p in report.problems] == list(range(8))
    assert "mean shard 0 has an unreadable index" in report.problems[0].reason
    assert "logvar shard file buckets/9x32x32/logvar/c/1/0/0/0/0 is missing" in report.problems[5].reason
    assert report.problems[5].source.endswith("clip_005_é.mp4") and "clip_005" in str(report.problems[5])


def test_summary_reports_counts_size_and_meta(filled: LatentStore) -> None:
    info = summary(filled.path)
    assert info.meta == filled.meta
    assert info.totals == StatusCounts(pending=8, done=8, failed=1)
    first = info.buckets[0]
    assert (first.bucket_id, first.latent_shape, first.num_frames, first.shard_size, first.num_shards) == (
        "9x32x32",
        (4, 3, 4, 4),
        9,
        4,
        3,
    )
    assert info.nbytes > 1000
    as_json = json.loads(json.dumps(info.to_dict()))
    assert as_json["meta"]["format"] == "wfvae-latents" and as_json["buckets"][1]["counts"]["pending"] == 7
