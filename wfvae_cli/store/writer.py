"""Shard owners: the only code that writes latents and per-sample status.

Two rules keep a store correct under concurrency and crashes:

1. **Shard ownership.** Zarr loses writes silently when two writers touch different chunks of one shard,
   so every write goes through the single :class:`ShardWriter` that holds the shard's lock. It refuses
   rows outside its shard. The status/error/encode_seconds chunk *k* covers exactly the rows of latent
   shard *k*, so the owner of the shard also owns those entries.
2. **Write, then mark.** A flush writes the latent shard (zarr replaces files atomically; on object
   storage it is one whole-object PUT, atomic by the store's contract), makes it durable (fsync locally;
   a returned PUT already is), and only then writes the status chunk that says ``done``: that chunk is the
   commit record. A crash at any point leaves every row whose status is ``done`` intact and every other
   row ``pending``. Before the commit record the job's writer lease is checked (generation fencing), so a
   job that lost its lease never marks a row.

The model produces batches in arbitrary order; :class:`ShardWriter` buffers complete samples and writes
the whole shard at once when its last outstanding row arrives (a whole-shard write is ~6x faster than
per-sample writes). :class:`StoreWriter` routes samples to per-shard writers and bounds the memory all
buffers may use, flushing the largest buffer early when needed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from wfvae_cli.store.errors import ShardOwnershipError, StoreError
from wfvae_cli.store.layout import Status, to_str_list

if TYPE_CHECKING:
    from wfvae_cli.store.store import LatentStore


def _runs(rows: list[int]) -> Iterator[tuple[int, int]]:
    """Split sorted rows into maximal contiguous ``(start, stop)`` runs."""
    start = prev = rows[0]
    for r in rows[1:]:
        if r != prev + 1:
            yield start, prev + 1
            start = r
        prev = r
    yield start, prev + 1


class ShardWriter:
    """The exclusive writer of one shard of one bucket.

    Create it with :meth:`LatentStore.shard_writer` and use it as a context manager::

        with store.shard_writer("33x256x256", shard) as w:
            for row, mean, logvar in results:       # any order, any batching
                w.add(row, mean=mean, logvar=logvar)
        # leaving the block flushes what is buffered and releases the shard

    Rows a writer accepts: its shard's rows that are pending (plus failed ones with ``retry_failed``).
    A sample whose latents are not finite in the stored dtype (NaN, or fp16 overflow) is recorded as
    failed instead of done, because a NaN latent is a per-sample error, not a reason to stop a job.

    If the ``with`` body raises, buffered samples are dropped (they stay pending and are redone on
    resume) rather than written on an error path.
    """

    def __init__(
        self,
        store: LatentStore,
        bucket: str,
        shard: int,
        *,
        wait: float | None = 0.0,
        retry_failed: bool = False,
        durable: bool = True,
    ) -> None:
        self.store = store
        self.bucket = bucket
        self.shard = shard
        info = store.info(bucket)
        self.rows = info.shard_range(shard)
        self.durable = durable
        self._names = store.meta.latent_names
        self._sample_shape = info.latent_shape
        self._dtype = np.dtype(store.meta.dtype)
        self._lock = store.shard_lock(bucket, shard)
        self._lock.acquire(wait)
        try:
            # Read our status chunk only after owning it: nobody else can change it from now on.
            lo, hi = self.rows.start, self.rows.stop
            self._status = np.asarray(store.array(bucket, "status")[lo:hi], dtype=np.uint8).copy()
            self._errors = to_str_list(store.array(bucket, "error")[lo:hi])
            self._seconds = np.asarray(store.array(bucket, "encode_seconds")[lo:hi], dtype=np.float32).copy()
        except BaseException:
            self._lock.release()
            raise
        # transient rows are retried by every run; permanent failures only when asked
        accepted = (Status.PENDING, Status.TRANSIENT, Status.FAILED) if retry_failed else (Status.PENDING,
                                                                                          Status.TRANSIENT)
        self._outstanding = {lo + k for k, s in enumerate(self._status) if s in accepted}
        self._buffer: dict[int, dict[str, np.ndarray]] = {}
        self._buffer_seconds: dict[int, float] = {}
        self._failures: dict[int, str] = {}
        self._transient: set[int] = set()  # rows of _failures whose failure may not recur (Status.TRANSIENT)

    # ------------------------------------------------------------------ state
    @property
    def closed(self) -> bool:
        return not self._lock.held

    @property
    def outstanding(self) -> frozenset[int]:
        """Rows this writer still expects (neither buffered, failed, nor done)."""
        return frozenset(self._outstanding)

    @property
    def has_failures(self) -> bool:
        """Failures recorded but not yet written."""
        return bool(self._failures)

    @property
    def buffered_nbytes(self) -> int:
        return sum(a.nbytes for sample in self._buffer.values() for a in sample.values())

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # ------------------------------------------------------------------ input checks
    def _where(self) -> str:
        return f"shard {self.shard} of bucket {self.bucket} in {self.store.path}"

    def _check_row(self, row: int) -> None:
        if self.closed:
            raise StoreError(f"the writer of {self._where()} is closed; open a new one")
        if row not in self.rows:
            raise ShardOwnershipError(
                f"row {row} is outside {self._where()} (rows {self.rows.start}..{self.rows.stop - 1}); "
                "send it to the writer of its shard (store.shard_of)"
            )
        if row in self._buffer or row in self._failures:
            raise StoreError(f"row {row} of {self._where()} was already given to this writer")
        if row not in self._outstanding:
            state = Status(int(self._status[row - self.rows.start])).name.lower()
            raise StoreError(
                f"row {row} of {self._where()} is {state}; only pending rows are written "
                "(open the writer with retry_failed=True to redo failed ones)"
            )

    def _convert(self, latents: dict[str, npt.ArrayLike], batch: int | None) -> dict[str, np.ndarray]:
        """Check names and shapes and cast to the stored dtype (``batch`` = leading block size or None)."""
        if set(latents) != set(self._names):
            raise StoreError(
                f"{self.store.path} stores {list(self._names)} (kind={self.store.meta.kind}); got {sorted(latents)}"
            )
        want = self._sample_shape if batch is None else (batch, *self._sample_shape)
        out = {}
        for name in self._names:
            value = np.asarray(latents[name])
            if value.shape != want:
                raise StoreError(f"{name} has shape {value.shape}, {self._where()} expects {want}")
            with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf is detected just below
                out[name] = value.astype(self._dtype, copy=True)
        return out

    def _nonfinite_message(self) -> str:
        return f"latents are not finite (NaN/Inf) as {self._dtype.name}"

    # ------------------------------------------------------------------ writing
    def add(self, row: int, *, encode_seconds: float | None = None, **latents: npt.ArrayLike) -> None:
        """Buffer one complete sample (``mean=..., logvar=...`` or ``sample=...``, each ``(C, T, H, W)``).

        Flushes automatically when no outstanding row is left, so a writer fed its whole shard writes
        exactly one shard file per latent array.
        """
        self._check_row(row)
        arrays = self._convert(latents, batch=None)
        self._outstanding.discard(row)
        if all(np.isfinite(a).all() for a in arrays.values()):
            self._buffer[row] = arrays
            if encode_seconds is not None:
                self._buffer_seconds[row] = float(encode_seconds)
        else:
            self._failures[row] = self._nonfinite_message()
        if not self._outstanding:
            self.flush()

    def fail(self, row: int, message: str, *, transient: bool = False) -> None:
        """Record that ``row`` failed (written at the next flush). Done rows may be failed too (repair).

        ``transient``: the failure may not recur (timeout, I/O error): the row becomes
        :attr:`Status.TRANSIENT`, which every rerun retries, instead of failed.
        """
        if not self.closed and row in self.rows and row not in self._buffer and row not in self._failures:
            self._outstanding.add(row)  # failing a done/failed row is allowed: it only takes it out of use
        self._check_row(row)
        self._outstanding.discard(row)
        self._failures[row] = " ".join(str(message).split()) or "failed"
        if transient:
            self._transient.add(row)
        if not self._outstanding:
            self.flush()

    def reset(self, problems: Mapping[int, str]) -> None:
        """Take rows back to pending now (their latents are missing or unreadable): the next run re-encodes them.

        Only the status chunk is written (the commit record, under the lease check as always): a row that was
        done stops being read at once, and nothing it pointed to is trusted again until it is re-encoded and
        marked done by the ordinary write-then-mark path. The reason stays in ``error`` until then.
        """
        if self.closed:
            raise StoreError(f"the writer of {self._where()} is closed; open a new one")
        for row in problems:
            if row not in self.rows:
                raise ShardOwnershipError(f"row {row} is outside {self._where()}")
            if row in self._buffer or row in self._failures:
                raise StoreError(f"row {row} of {self._where()} was already given to this writer")
        if problems:
            self._commit([], [], {}, {}, resets=dict(problems))
            self._outstanding.update(problems)

    def write_block(
        self, start: int, *, encode_seconds: float | None = None, **latents: npt.ArrayLike
    ) -> None:
        """Write rows ``start:start+B`` now (each latent ``(B, C, T, H, W)``) and mark them done.

        The block must lie inside this shard; the whole shard at once is the fast path. Rows whose
        latents are not finite are marked failed.
        """
        sizes = {np.shape(v)[0] if np.ndim(v) else -1 for v in latents.values()}
        if len(sizes) != 1 or (size := sizes.pop()) < 1:
            raise StoreError(f"write_block on {self._where()}: latents need one common leading size >= 1")
        for row in (start, start + size - 1):
            if row not in self.rows:
                raise ShardOwnershipError(
                    f"rows {start}..{start + size - 1} are not all inside {self._where()} "
                    f"(rows {self.rows.start}..{self.rows.stop - 1}); split the block at shard boundaries"
                )
        for row in range(start, start + size):
            self._check_row(row)
        arrays = self._convert(latents, batch=size)
        finite = np.ones(size, dtype=bool)
        for a in arrays.values():
            finite &= np.isfinite(a.reshape(size, -1)).all(axis=1)
        done = [start + k for k in range(size) if finite[k]]
        failures = {start + k: self._nonfinite_message() for k in range(size) if not finite[k]}
        seconds = dict.fromkeys(done, float(encode_seconds)) if encode_seconds is not None else {}
        self._outstanding.difference_update(range(start, start + size))
        self._commit([(start, arrays)], done, failures, seconds)

    def flush(self) -> None:
        """Write buffered samples (one block per contiguous run of rows), then their status."""
        if not self._buffer and not self._failures:
            return
        rows = sorted(self._buffer)
        blocks = []
        for lo, hi in _runs(rows) if rows else ():
            blocks.append(
                (lo, {n: np.stack([self._buffer[r][n] for r in range(lo, hi)]) for n in self._names})
            )
        self._commit(blocks, rows, dict(self._failures), dict(self._buffer_seconds))
        self._buffer.clear()
        self._buffer_seconds.clear()
        self._failures.clear()
        self._transient.clear()

    def _commit(
        self,
        blocks: list[tuple[int, dict[str, np.ndarray]]],
        done: list[int],
        failures: dict[int, str],
        seconds: dict[int, float],
        resets: Mapping[int, str] | None = None,
    ) -> None:
        """Latents first (synced), status last: the status write is the commit record."""
        store, bucket = self.store, self.bucket
        for start, arrays in blocks:
            for name, block in arrays.items():
                store.array(bucket, name)[start : start + block.shape[0]] = block
        if self.durable and blocks:
            for name in self._names:
                store.location.sync(store.chunk_key(bucket, name, self.shard))
        if store.lease is not None:
            store.lease.check()  # fenced: a job whose lease was taken over never writes a commit record
        lo = self.rows.start
        for row in done:
            self._status[row - lo] = Status.DONE
            self._errors[row - lo] = ""
            self._seconds[row - lo] = seconds.get(row, math.nan)
        for row, message in failures.items():
            self._status[row - lo] = Status.TRANSIENT if row in self._transient else Status.FAILED
            self._errors[row - lo] = message
        for row, message in (resets or {}).items():
            self._status[row - lo] = Status.PENDING
            self._errors[row - lo] = " ".join(str(message).split())
            self._seconds[row - lo] = math.nan
        hi = self.rows.stop
        store.array(bucket, "encode_seconds")[lo:hi] = self._seconds
        store.array(bucket, "error")[lo:hi] = np.array(self._errors, dtype=np.dtypes.StringDType())
        store.array(bucket, "status")[lo:hi] = self._status
        if self.durable:
            store.location.sync(store.chunk_key(bucket, "status", self.shard))

    def close(self) -> None:
        """Flush what is buffered and release the shard (idempotent)."""
        if self.closed:
            return
        try:
            self.flush()
        finally:
            self._lock.release()

    def abort(self) -> None:
        """Release the shard without writing the buffer (those rows stay pending)."""
        self._buffer.clear()
        self._buffer_seconds.clear()
        self._failures.clear()
        self._transient.clear()
        self._lock.release()


class StoreWriter:
    """Accept samples of any bucket in any order; own shards on demand; bound the buffered bytes.

    A shard's writer is opened when its first sample arrives and closed (one whole-shard write) when its
    last outstanding row arrives. If the buffers together exceed ``max_buffer_bytes``, the largest one
    is flushed early (a partial shard write: correct, just slower). Pipelines that feed samples roughly
    in shard order therefore hold about one shard per latent array in memory.

    ``wait`` is passed to each shard's lock: ``0`` fails fast when another process owns a shard (the
    pipeline assigned it twice), ``None`` waits for it.
    """

    def __init__(
        self,
        store: LatentStore,
        *,
        max_buffer_bytes: int = 1 << 30,
        wait: float | None = 0.0,
        retry_failed: bool = False,
    ) -> None:
        self.store = store
        self.max_buffer_bytes = max_buffer_bytes
        self._wait = wait
        self._retry_failed = retry_failed
        self._writers: dict[tuple[str, int], ShardWriter] = {}

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            for writer in self._writers.values():
                writer.abort()
            self._writers.clear()

    def _writer(self, bucket: str, row: int) -> ShardWriter:
        key = (bucket, self.store.shard_of(bucket, row))
        if key not in self._writers:
            self._writers[key] = self.store.shard_writer(
                bucket, key[1], wait=self._wait, retry_failed=self._retry_failed
            )
        return self._writers[key]

    def _after(self, writer: ShardWriter) -> None:
        if not writer.outstanding:
            writer.close()
            del self._writers[(writer.bucket, writer.shard)]
        total = sum(w.buffered_nbytes for w in self._writers.values())
        if total > self.max_buffer_bytes:
            max(self._writers.values(), key=lambda w: w.buffered_nbytes).flush()

    def add(self, bucket: str, row: int, *, encode_seconds: float | None = None, **latents: Any) -> None:
        """Buffer one sample of ``bucket`` (see :meth:`ShardWriter.add`)."""
        writer = self._writer(bucket, row)
        writer.add(row, encode_seconds=encode_seconds, **latents)
        self._after(writer)

    def fail(self, bucket: str, row: int, message: str, *, transient: bool = False) -> None:
        """Record a failed sample (see :meth:`ShardWriter.fail`)."""
        writer = self._writer(bucket, row)
        writer.fail(row, message, transient=transient)
        self._after(writer)

    def flush_all(self) -> int:
        """Write every buffered sample now (partial shard writes), keeping the shards owned.

        Long-running jobs call this periodically so that a crash loses at most that period of work,
        whatever the shard size. Returns the number of shards written.
        """
        written = 0
        for writer in self._writers.values():
            if writer.buffered_nbytes or writer.has_failures:
                writer.flush()
                written += 1
        return written

    def close(self) -> None:
        """Flush and release every shard still open (e.g. shards the job did not finish)."""
        writers, self._writers = list(self._writers.values()), {}
        for writer in writers:
            writer.close()
