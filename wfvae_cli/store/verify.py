"""Check a store's integrity (``verify``) and describe it (``summary``, for ``wfvae info``).

How "written" is told from "fill": zarr returns the fill value (NaN for latents) for a chunk that does not
exist, so a read alone cannot say whether a done row was ever stored. Two checks, one cheap and one thorough:

* **chunk check** (:func:`missing_chunks`, every encode rerun): the shard index of every latent shard holding
  done rows (one ranged read of its last ``16 * shard_size + 4`` bytes, crc32c-checked; one GET per shard on
  object storage, issued concurrently). A shard file that is gone, an index that fails its checksum (a truncated
  or overwritten file) or an index entry that says "empty" for a done row names that row. It never reads latents.
* **full check** (:func:`verify`, ``wfvae verify``, ``wfvae encode --repair``): additionally reads every done
  sample, shard by shard (a whole-shard read is fast; when it fails, a chunk's crc32c does not match, the shard
  is re-read sample by sample to name exactly the bad rows); a done sample must decode and be finite.

:func:`find_damaged` runs either; ``LatentStore.reset_rows`` takes the rows it names back to *pending*, so the
next encode run re-encodes exactly them through the ordinary write-then-mark path (``repair=True`` here, and
every encode rerun, do that). Temporary files left by killed writers are removed by ``repair=True``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ShardingCodec

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
    """A done sample that cannot be trusted (``key``/``source`` name it for people; ``row`` for the store)."""

    bucket: str
    row: int
    reason: str
    key: str = ""
    source: str = ""

    def __str__(self) -> str:
        named = f" key {self.key!r}" if self.key else ""
        return f"bucket {self.bucket} row {self.row}{named} ({self.source}): {self.reason}"


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


def _shard_index_reader(arr: zarr.Array) -> tuple[Any, tuple[int, ...]] | None:
    """The sharding codec of a latent array and its chunks per shard (``None`` for an unsharded array)."""
    codecs = arr.metadata.codecs
    if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return None
    codec = codecs[0]
    per_shard = tuple(s // c for s, c in zip(arr.shards or arr.chunks, codec.chunk_shape, strict=True))
    return codec, per_shard


def missing_chunks(store: LatentStore, bucket: str, rows_by_shard: dict[int, np.ndarray]) -> dict[int, str]:
    """Done rows whose latent chunk does not exist, ``row -> reason``: the chunk check of the module docstring.

    ``rows_by_shard``: shard -> its done rows. One ranged read per (latent array, shard), issued concurrently
    through the store's own zarr store (local files or object storage alike); no latent is read.
    """
    from zarr.core.sync import sync
    from zarr.storage import StorePath

    found: dict[int, str] = {}
    target = store.location.zarr_store(read_only=True)

    async def index_of(codec: Any, per_shard: tuple[int, ...], key: str) -> Any:
        try:
            index = await codec._load_shard_index_maybe(StorePath(target, key), per_shard)
        except Exception as exc:  # checksum mismatch (truncated / overwritten file), undecodable bytes
            return exc
        return index

    async def check_all(jobs: list[tuple[str, int, Any, tuple[int, ...]]]) -> list[Any]:
        import asyncio

        gate = asyncio.Semaphore(64)

        async def one(job: tuple[str, int, Any, tuple[int, ...]]) -> Any:
            async with gate:
                return await index_of(job[2], job[3], store.chunk_key(bucket, job[0], job[1]))

        return await asyncio.gather(*(one(j) for j in jobs))

    info = store.info(bucket)
    for name in store.meta.latent_names:
        arr = store.array(bucket, name)
        reader = _shard_index_reader(arr)
        if reader is None:
            continue  # not a layout this check understands: the full check (verify) still covers it
        codec, per_shard = reader
        jobs = [(name, shard, codec, per_shard) for shard in sorted(rows_by_shard)]
        for (_, shard, _, _), index in zip(jobs, sync(check_all(jobs)), strict=True):
            start = info.shard_range(shard).start
            rows = rows_by_shard[shard]
            if index is None:
                for r in rows:
                    found.setdefault(int(r), f"{name} shard file {store.chunk_key(bucket, name, shard)} is missing")
            elif isinstance(index, Exception):
                for r in rows:
                    found.setdefault(int(r), f"{name} shard {shard} has an unreadable index "
                                             f"({one_line(index, limit=160)})")
            else:
                present = index.get_full_chunk_map().reshape(-1)
                for r in rows:
                    if not present[int(r) - start]:
                        found.setdefault(int(r), f"{name} chunk of row {int(r)} is missing from shard {shard}")
    return found


def _named(store: LatentStore, bucket: str, problems: dict[int, str]) -> list[SampleProblem]:
    """Problems with each row's key and source (one read of those two index arrays per bucket)."""
    if not problems:
        return []
    columns = store.index_columns(bucket)
    out = []
    for row, reason in sorted(problems.items()):
        record = columns.record(row)
        out.append(SampleProblem(bucket, row, reason, key=record.key, source=record.source))
    return out


def find_damaged(store: LatentStore, *, full: bool = False) -> list[SampleProblem]:
    """Done rows whose latents are missing or unreadable: the chunk check, plus reading every done sample with
    ``full=True`` (see the module docstring). Invalid status values are reported too."""
    problems: list[SampleProblem] = []
    for bucket in store.buckets:
        status = store.status(bucket)
        found: dict[int, str] = {int(r): f"invalid status value {int(status[r])}"
                                 for r in np.flatnonzero(status > max(Status))}
        by_shard = {}
        for shard, shard_rows in enumerate(store.shard_ranges(bucket)):
            done = np.flatnonzero(status[shard_rows.start : shard_rows.stop] == Status.DONE) + shard_rows.start
            if done.size:
                by_shard[shard] = done
        for row, reason in missing_chunks(store, bucket, by_shard).items():
            found.setdefault(row, reason)
        if full:
            for done in by_shard.values():
                readable = np.array([r for r in done if int(r) not in found], dtype=np.int64)
                if readable.size:
                    for row, reason in _check_shard(store, bucket, readable).items():
                        found.setdefault(row, reason)
        problems += _named(store, bucket, found)
    return problems


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


def _check_shard(store: LatentStore, bucket: str, rows: np.ndarray) -> dict[int, str]:
    """Problems among ``rows`` (done rows of one shard, ascending), ``row -> reason``."""
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
    return problems


def verify(
    path: str | os.PathLike[str], *, repair: bool = False, storage_options: dict[str, Any] | None = None
) -> VerifyReport:
    """Check every done sample of the store at ``path`` (chunk check + full read); report the bad ones by bucket,
    row, key and source.

    With ``repair=True`` (needs write access, and no writer running) bad rows are taken back to *pending* with
    the reason in their ``error`` cell, so that rerunning the encode command re-encodes exactly them, and stale
    temporary files are deleted.
    """
    store = open_store(path, "r+" if repair else "r", storage_options=storage_options)
    problems = find_damaged(store, full=True)
    temp = _temp_files(store)
    if repair:
        reset_damaged(store, problems, prefix="verify")
        for file in temp:
            file.unlink(missing_ok=True)
    counts = {b: _counts(store, b) for b in store.buckets}
    return VerifyReport(str(store.path), counts, tuple(problems), len(temp), repaired=repair)


def reset_damaged(store: LatentStore, problems: list[SampleProblem], *, prefix: str) -> None:
    """Take the rows of ``problems`` back to pending (``error``: ``"<prefix>: <reason>"``) so they are re-encoded."""
    by_bucket: dict[str, dict[int, str]] = {}
    for p in problems:
        by_bucket.setdefault(p.bucket, {})[p.row] = f"{prefix}: {p.reason}"
    for bucket, rows in by_bucket.items():
        store.reset_rows(bucket, rows)


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
