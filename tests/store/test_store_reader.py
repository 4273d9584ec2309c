"""Training side: the read-mode store, LatentDataset (fork-safe, sampling, normalisation), BucketBatchSampler."""

from __future__ import annotations

import os
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from torch.utils.data import DataLoader

from wfvae_cli.errors import WfvaeError
from wfvae_cli.store import BucketBatchSampler, LatentDataset, LatentStore, create_store, open_store
from wfvae_cli.store.meta import StoredKind
from wfvae_cli.store.testing import demo_meta, demo_plan, expected_latents

SKIPPED = {("9x32x32", 2), ("17x32x48", 6)}  # left pending / failed: must never be served


def _make(tmp_path: Path, kind: StoredKind = "posterior", scaled: bool = False) -> LatentStore:
    store = create_store(
        tmp_path / "s.zarr", demo_meta(kind=kind, dtype="float16", scaled=scaled), demo_plan()
    )
    for bucket, info in store.buckets.items():
        for rows in store.shard_ranges(bucket):
            with store.shard_writer(bucket, store.shard_of(bucket, rows.start)) as writer:
                for row in rows:
                    if (bucket, row) not in SKIPPED:
                        writer.add(row, **expected_latents(store.meta, bucket, row, info.latent_shape))
    store.mark_failed("17x32x48", 6, "decode error")
    return open_store(tmp_path / "s.zarr")


def _expected_mean(store: LatentStore, bucket: str, row: int) -> torch.Tensor:
    shape = store.buckets[bucket].latent_shape
    return torch.from_numpy(expected_latents(store.meta, bucket, row, shape)["mean"].astype(np.float32))


def test_reader_serves_done_samples_only(tmp_path: Path) -> None:
    store = _make(tmp_path)
    assert len(store) == 17 - len(SKIPPED)
    assert {b: i.latent_shape for b, i in store.buckets.items()} == {
        "9x32x32": (4, 3, 4, 4),
        "17x32x48": (4, 5, 4, 6),
    }
    served = [(s["bucket"], s["row"]) for s in store]
    assert len(set(served)) == len(served) == len(store) and not SKIPPED & set(served)
    item = store[-1]
    assert (item["bucket"], item["row"]) == ("17x32x48", 5)
    np.testing.assert_array_equal(
        item["mean"], expected_latents(store.meta, "17x32x48", 5, (4, 5, 4, 6))["mean"]
    )
    assert item["logvar"].dtype == np.float16 and type(item["fps"]) is float and type(item["width"]) is int
    with pytest.raises(IndexError):
        store[len(store)]


def test_dataset_items_and_pickling_without_handles(tmp_path: Path) -> None:
    store = _make(tmp_path)
    ds = LatentDataset(store.path)
    assert len(ds) == len(store)
    assert ds._store is None  # nothing opened until a sample is read
    item = ds[3]
    assert item["latent"].dtype == torch.float32 and item["latent"].shape == (4, 3, 4, 4)
    torch.testing.assert_close(item["latent"], _expected_mean(store, "9x32x32", 4), rtol=0, atol=0)
    assert (
        item["bucket"] == "9x32x32"
        and item["row"] == 4
        and item["caption"].startswith("caption 4")
        and "clip_004" in item["source"]
    )
    assert ds._store is not None
    blob = pickle.dumps(ds)
    assert b"zarr" not in blob.replace(b"s.zarr", b"")  # no zarr objects travel to workers
    clone = pickle.loads(blob)
    assert clone._store is None
    torch.testing.assert_close(clone[3]["latent"], item["latent"])


def test_dataset_reopens_after_pid_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = LatentDataset(_make(tmp_path).path)
    ds[0]
    first = ds._store
    monkeypatch.setattr(os, "getpid", lambda: -1)
    ds[0]
    assert ds._store is not first


def test_dataloader_with_two_workers_yields_exact_values(tmp_path: Path) -> None:
    store = _make(tmp_path)
    ds = LatentDataset(store.path)
    sampler = BucketBatchSampler(ds, batch_size=3, seed=5)
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=2, multiprocessing_context="fork")
    seen = Counter()
    for batch in loader:
        assert len(set(batch["bucket"])) == 1
        for k in range(len(batch["row"])):
            bucket, row = batch["bucket"][k], int(batch["row"][k])
            seen[(bucket, row)] += 1
            torch.testing.assert_close(batch["latent"][k], _expected_mean(store, bucket, row), rtol=0, atol=0)
    assert sum(seen.values()) == len(store) and max(seen.values()) == 1


def test_posterior_sampling_is_seeded_per_epoch(tmp_path: Path) -> None:
    store = _make(tmp_path)
    ds = LatentDataset(store.path, sample=True, seed=3)
    a, b = ds[0]["latent"], LatentDataset(store.path, sample=True, seed=3)[0]["latent"]
    torch.testing.assert_close(a, b)
    ds.set_epoch(1)
    assert not torch.equal(a, ds[0]["latent"])
    raw = expected_latents(store.meta, "9x32x32", 0, (4, 3, 4, 4))
    std = np.exp(0.5 * raw["logvar"].astype(np.float32))
    eps = (a.numpy() - raw["mean"].astype(np.float32)) / std
    assert 0.5 < eps.std() < 1.5  # a draw around the mean with the stored spread
    draws = []
    for seed in range(200):
        ds.seed = seed
        draws.append(ds[0]["latent"])
    torch.testing.assert_close(
        torch.stack(draws).mean(0), _expected_mean(store, "9x32x32", 0), atol=0.5, rtol=0
    )


def test_normalize_uses_recorded_factors_and_checks_lengths(tmp_path: Path) -> None:
    store = _make(tmp_path)
    z = _expected_mean(store, "9x32x32", 0)
    scale = torch.tensor(store.meta.scale).reshape(-1, 1, 1, 1)
    shift = torch.tensor(store.meta.shift).reshape(-1, 1, 1, 1)
    torch.testing.assert_close(LatentDataset(store.path, normalize=True)[0]["latent"], (z - shift) * scale)

    root = zarr.open_group(store.path, mode="r+")
    root.attrs.update({"scale": [2.0], "shift": [1.0]})  # length 1: a scalar
    torch.testing.assert_close(LatentDataset(store.path, normalize=True)[0]["latent"], (z - 1.0) * 2.0)
    root.attrs.update({"scale": [1.0, 2.0]})  # neither 1 nor C=4: refused, not broadcast
    with pytest.raises(WfvaeError, match="2 values but latents have 4 channels"):
        LatentDataset(store.path, normalize=True)


def test_dataset_refusals_and_bucket_filter(tmp_path: Path) -> None:
    store = _make(tmp_path, kind="sample", scaled=True)
    with pytest.raises(WfvaeError, match="sample=False"):
        LatentDataset(store.path, sample=True)
    with pytest.raises(WfvaeError, match="already holds scaled"):
        LatentDataset(store.path, normalize=True)
    only = LatentDataset(store.path, bucket="17x32x48")
    assert len(only) == 6 and only[0]["latent"].shape == (4, 5, 4, 6)
    with pytest.raises(WfvaeError, match="no bucket"):
        LatentDataset(store.path, bucket="nope")


def test_bucket_batch_sampler_is_deterministic_and_shards_ranks(tmp_path: Path) -> None:
    ds = LatentDataset(_make(tmp_path).path)
    groups = {b: set(idx.tolist()) for b, idx in ds.bucket_indices().items()}
    sampler = BucketBatchSampler(ds, batch_size=2, seed=1)
    epoch0 = list(sampler)
    assert epoch0 == list(BucketBatchSampler(ds, batch_size=2, seed=1))
    assert sorted(i for batch in epoch0 for i in batch) == list(range(len(ds)))
    assert all(any(set(b) <= g for g in groups.values()) for b in epoch0)
    assert len(epoch0) == len(sampler) == 5 + 3
    sampler.set_epoch(1)
    assert list(sampler) != epoch0

    ranks = [BucketBatchSampler(ds, batch_size=2, seed=1, num_replicas=3, rank=r) for r in range(3)]
    per_rank = [list(s) for s in ranks]
    assert [len(b) for b in per_rank] == [len(s) for s in ranks] == [3, 3, 3]
    covered = {i for batches in per_rank for b in batches for i in b}
    assert covered == set(range(len(ds)))

    dropping = [
        list(BucketBatchSampler(ds, batch_size=2, seed=1, drop_last=True, num_replicas=3, rank=r))
        for r in range(3)
    ]
    assert all(len(b) == 2 for batches in dropping for b in batches)
    assert (
        [len(b) for b in dropping]
        == [len(BucketBatchSampler(ds, 2, drop_last=True, num_replicas=3))] * 3
        == [2, 2, 2]
    )

    ordered = list(BucketBatchSampler(ds, batch_size=4, shuffle=False))
    assert ordered[0] == [0, 1, 2, 3]


def test_plain_zarr_snippet_from_the_format_doc_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The 'Reading with plain zarr' snippet of docs/store-format.md must stay true."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "store-format.md").read_text()
    section = doc.split("## Reading with plain zarr", 1)[1]
    snippet = section.split("```python", 1)[1].split("```", 1)[0]
    store = _make(tmp_path)
    exec(compile(snippet, "store-format.md", "exec"), {"path": str(store.path)})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("9x32x32 0 videos/9x32x32/clip_000_é.mp4 (4, 3, 4, 4) [0 2 4]")
    assert len(lines) == 4
