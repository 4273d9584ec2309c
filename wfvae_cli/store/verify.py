"""Check a store's integrity (``verify``) and describe it (``summary``, for ``wfvae info``).

``verify`` reads every *done* sample, shard by shard: a whole-shard read is fast, and when it fails
(a chunk's crc32c does not match) the shard is re-read sample by sample to name exactly the bad rows.
A done sample must decode and be finite; a chunk that went missing reads as the NaN fill value and is
caught by the same test. ``repair=True`` marks bad rows failed (so ``--retry-failed`` re-encodes them)
and removes temporary files left by killed writers.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wfvae_cli.errors import one_line
from wfvae_cli.store.layout import Status, decode_latent_shard
from wfvae_cli.store.meta import StoreMeta
from wfvae_cli.store.store import LatentStore, _get_all, open_store

_TEMP_SUFFIX = ".partial"  # zarr's LocalStore writes <key>.<uuid>.partial, then renames it


@dataclass(frozen=True)
class StatusCounts:
    pending: int = 0
    done: int = 0
    failed: int = 0
    transient: int = 0  # failed for a reason that may not recur: every rerun retries these

    @property
    def total(self) -> int:
        return self.pending + self.done + self.failed + self.transient


@dataclass(frozen=True)
class SampleProblem:
    """A done sample that cannot be trusted."""

    bucket: str
    row: int
    reason: str


@dataclass(frozen=True)
class VerifyReport:
    path: str
    counts: dict[str, StatusCounts]
    problems: tuple[SampleProblem, ...]
    temp_files: int = 0
    repaired: bool = False

    @property
    def ok(self) -> bool:
        """True when every done sample is readable and finite."""
        return not self.problems

    @property
    def checked(self) -> int:
        return sum(c.done for c in self.counts.values())

    @property
    def pending(self) -> int:
        return sum(c.pending for c in self.counts.values())

    @property
    def failed(self) -> int:
        return sum(c.failed for c in self.counts.values())

    @property
    def transient(self) -> int:
        return sum(c.transient for c in self.counts.values())


@dataclass(frozen=True)
class BucketSummary:
    bucket_id: str
    latent_shape: tuple[int, int, int, int]
    num_frames: int
    shard_size: int
    num_shards: int
    counts: StatusCounts


@dataclass(frozen=True)
class StoreSummary:
    path: str
    meta: StoreMeta
    buckets: tuple[BucketSummary, ...]
    nbytes: int = 0
    totals: StatusCounts = field(default_factory=StatusCounts)
    rejected: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``wfvae info --json``)."""
        out = asdict(self)
        out["meta"] = self.meta.to_attrs()
        return out


def _counts(store: LatentStore, bucket: str) -> StatusCounts:
    return StatusCounts(**store.counts(bucket))


def _temp_files(store: LatentStore) -> list[Path]:
    return [Path(f) for f in store.location.temp_files(_TEMP_SUFFIX)]  # object stores have none


def _shard_block(store: LatentStore, bucket: str, name: str, rows: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, dict[int, str]] | None:
    """``(block, readable rows, problems)`` of one latent shard decoded in bulk (:func:`decode_latent_shard`),
    or ``None`` to read it through zarr (another layout, or a read error)."""
    shard = store.shard_of(bucket, int(rows[0]))
    span = store.info(bucket).shard_range(shard)
    arr = store.array(bucket, name)
    try:
        key = store.chunk_key(bucket, name, shard)
        data = _get_all(store.location.zarr_store(read_only=True), [key]).get(key)
    except KeyError:
        data = None
    except Exception:
        return None
    decoded = decode_latent_shard(data, arr.metadata.to_dict(), len(span))
    if decoded is None:
        return None
    samples, bad = decoded
    problems = {span.start + k: f"{name} unreadable ({reason})" for k, reason in bad.items()}
    readable = np.array([r for r in rows.tolist() if int(r) not in problems], dtype=np.int64)
    return samples[readable - span.start], readable, problems


def _check_shard(store: LatentStore, bucket: str, rows: np.ndarray) -> list[SampleProblem]:
    """Problems among ``rows`` (done rows of one shard, ascending)."""
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    problems: dict[int, str] = {}
    wanted = set(rows.tolist())
    for name in store.meta.latent_names:
        arr = store.array(bucket, name)
        fast = _shard_block(store, bucket, name, rows)
        if fast is not None:  # the bulk decoder (this layout's shards): ~50x faster than zarr per sample
            block, readable, found = fast
            for r, reason in found.items():
                if r in wanted:
                    problems.setdefault(r, reason)
        else:
            try:
                block = np.asarray(arr[lo:hi])[rows - lo]
                readable = rows
            except Exception:  # corrupt chunk or shard index: find which rows
                good, ok_rows = [], []
                for r in rows:
                    try:
                        good.append(np.asarray(arr[int(r)]))
                        ok_rows.append(int(r))
                    except Exception as exc:
                        problems.setdefault(int(r), f"{name} unreadable ({one_line(exc, limit=200)})")
                readable = np.array(ok_rows, dtype=np.int64)
                block = np.stack(good) if good else np.zeros((0, 1), dtype=arr.dtype)
        # one vectorised finiteness test per shard (a row per sample), not one numpy call per row
        bad = ~np.isfinite(block.reshape(len(readable), -1)).all(axis=1) if len(readable) else np.zeros(0, bool)
        for r in readable[bad]:
            problems.setdefault(int(r), f"{name} has NaN/Inf values or a missing chunk")
    return [SampleProblem(bucket, r, reason) for r, reason in sorted(problems.items())]


def verify(
    path: str | os.PathLike[str], *, repair: bool = False, storage_options: dict[str, Any] | None = None
) -> VerifyReport:
    """Read every done sample of the store at ``path``; report unreadable or non-finite ones.

    With ``repair=True`` (needs write access, and no writer running) bad rows are marked failed with the
    reason, and stale temporary files are deleted.
    """
    store = open_store(path, "r+" if repair else "r", storage_options=storage_options)
    problems: list[SampleProblem] = []
    for bucket in store.buckets:
        status = store.status(bucket)
        invalid = np.flatnonzero(status > max(Status))
        problems += [SampleProblem(bucket, int(r), f"invalid status value {int(status[r])}") for r in invalid]
        for shard_rows in store.shard_ranges(bucket):
            done = (
                np.flatnonzero(status[shard_rows.start : shard_rows.stop] == Status.DONE) + shard_rows.start
            )
            if done.size:
                problems += _check_shard(store, bucket, done)
    temp = _temp_files(store)
    if repair:
        for problem in problems:
            store.mark_failed(problem.bucket, problem.row, f"verify: {problem.reason}")
        for file in temp:
            file.unlink(missing_ok=True)
    counts = {b: _counts(store, b) for b in store.buckets}
    return VerifyReport(str(store.path), counts, tuple(problems), len(temp), repaired=repair)


def summary(path: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None) -> StoreSummary:
    """Counts per bucket and status, bytes stored and the metadata (what ``wfvae info`` shows)."""
    store = open_store(path, "r", storage_options=storage_options)
    buckets = []
    for bucket, info in store.buckets.items():
        buckets.append(
            BucketSummary(
                bucket_id=bucket,
                latent_shape=info.latent_shape,
                num_frames=info.num_frames,
                shard_size=info.shard_size,
                num_shards=info.num_shards,
                counts=_counts(store, bucket),
            )
        )
    totals = StatusCounts(
        pending=sum(b.counts.pending for b in buckets),
        done=sum(b.counts.done for b in buckets),
        failed=sum(b.counts.failed for b in buckets),
        transient=sum(b.counts.transient for b in buckets),
    )
    return StoreSummary(
        str(store.path), store.meta, tuple(buckets), store.location.nbytes(), totals, tuple(store.rejected())
    )
