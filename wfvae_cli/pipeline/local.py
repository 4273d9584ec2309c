"""Single-machine executor: decode in background threads, the model on the calling thread, writes on a
writer thread — all three overlap, so the model never waits on I/O when inputs are ready.

    decode pool (N threads, bounded prefetch) --> model (batches of one bucket) --> writer thread --> store

Decoding runs in threads because the decoders (FFmpeg via decord/PyAV) and the resize (torch) release
the GIL; with a decode timeout each thread borrows a worker process, so a hung file is killed, not
waited on. Per-sample errors become failed rows; nothing here stops the job except a store error.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from wfvae_cli.errors import WfvaeError
from wfvae_cli.pipeline.options import EncodeOptions
from wfvae_cli.pipeline.stages import LatentEncoder, LoadedClip, Task, load_clip
from wfvae_cli.store import LatentStore, StoreWriter


@dataclass
class StageTimes:
    """Seconds spent per stage (decode summed over its threads) and model idle time."""

    wall: float = 0.0
    decode: float = 0.0
    model: float = 0.0
    model_wait: float = 0.0
    write: float = 0.0

    @property
    def model_busy_fraction(self) -> float:
        return self.model / self.wall if self.wall > 0 else 0.0


@dataclass
class RunResult:
    total: int = 0  # samples this run set out to encode
    done: int = 0
    failed: int = 0
    frames: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (source, error)
    times: StageTimes = field(default_factory=StageTimes)


ProgressFn = Callable[[RunResult], None]


def _prefetch(tasks: list[Task], opts: EncodeOptions, depth: int) -> Iterator[LoadedClip]:
    """Load clips in order with at most ``depth`` in flight (bounded memory, ordered output)."""
    with ThreadPoolExecutor(max_workers=opts.workers, thread_name_prefix="wfvae-decode") as pool:
        pending: list[Future[LoadedClip]] = []
        it = iter(tasks)
        for task in it:
            pending.append(pool.submit(load_clip, task, opts))
            if len(pending) >= depth:
                break
        while pending:
            clip = pending.pop(0).result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(load_clip, nxt, opts))
            yield clip


def _batches(clips: Iterable[LoadedClip], size: int) -> Iterator[list[LoadedClip]]:
    """Consecutive clips of the same bucket, up to ``size`` (tasks arrive sorted by bucket)."""
    batch: list[LoadedClip] = []
    for clip in clips:
        if batch and (len(batch) == size or clip.task.bucket != batch[0].task.bucket):
            yield batch
            batch = []
        batch.append(clip)
    if batch:
        yield batch


class _Writer(threading.Thread):
    """Owns the StoreWriter; applies adds/fails from a bounded queue; flushes every ``interval`` s."""

    def __init__(self, store: LatentStore, opts: EncodeOptions, times: StageTimes) -> None:
        super().__init__(name="wfvae-writer", daemon=True)
        self.queue: queue.Queue = queue.Queue(maxsize=64)
        self.store, self.opts, self.times = store, opts, times
        self.error: BaseException | None = None

    def run(self) -> None:
        last_flush = time.monotonic()
        try:
            with StoreWriter(self.store, retry_failed=self.opts.retry_failed) as writer:
                while True:
                    try:
                        item = self.queue.get(timeout=1.0)
                    except queue.Empty:
                        item = ()
                    if item is None:
                        break
                    t0 = time.perf_counter()
                    if item:
                        op, task, payload, seconds = item
                        if op == "add":
                            writer.add(task.bucket, task.row, encode_seconds=seconds, **payload)
                        else:
                            writer.fail(task.bucket, task.row, payload)
                    if time.monotonic() - last_flush > self.opts.flush_interval:
                        writer.flush_all()
                        last_flush = time.monotonic()
                    self.times.write += time.perf_counter() - t0
        except BaseException as exc:  # surfaced to the main thread, which stops the job
            self.error = exc
            if isinstance(exc, OSError):  # disk full, read-only remount, NFS gone: the user can act on it
                self.error = WfvaeError(
                    f"cannot write to {self.store.path}: {exc.strerror or exc}; fix it and rerun the same command "
                    "to resume (samples already marked done are intact)"
                )
            while True:  # unblock the producer
                try:
                    if self.queue.get_nowait() is None:
                        break
                except queue.Empty:
                    break

    def put(self, item: tuple | None) -> None:
        while self.is_alive():
            try:
                self.queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        if self.error is not None:
            raise self.error


def run_local(
    store: LatentStore,
    tasks: list[Task],
    encoder: LatentEncoder,
    opts: EncodeOptions,
    progress: ProgressFn | None = None,
) -> RunResult:
    """Encode ``tasks`` (sorted by bucket, then row) into ``store``; see the module docstring."""
    result = RunResult(total=len(tasks))
    times = result.times
    writer = _Writer(store, opts, times)
    writer.start()
    start = time.perf_counter()
    if progress:
        progress(result)

    def fail(task: Task, message: str) -> None:
        result.failed += 1
        result.failures.append((task.record.source, message))
        writer.put(("fail", task, message, None))

    try:
        if opts.clip_mode == "full":
            for task in tasks:
                t0 = time.perf_counter()
                try:
                    arrays = encoder.encode_stream(task)
                except Exception as exc:  # decode or model error of this one video
                    fail(task, f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500])
                else:
                    dt = time.perf_counter() - t0
                    times.model += dt
                    result.done += 1
                    result.frames += len(task.record.frame_indices)
                    writer.put(("add", task, arrays, dt))
                if progress:
                    times.wall = time.perf_counter() - start
                    progress(result)
        else:
            depth = max(2 * opts.workers, 2 * opts.batch_size)
            clips = _prefetch(tasks, opts, depth)
            while True:
                t_wait = time.perf_counter()
                batch_clips = []
                for clip in clips:
                    times.decode += clip.seconds
                    if clip.video is None:
                        fail(clip.task, clip.error or "could not load the clip")
                        continue
                    batch_clips.append(clip)
                    if len(batch_clips) == opts.batch_size or (
                        batch_clips and batch_clips[0].task.bucket != clip.task.bucket
                    ):
                        break
                times.model_wait += time.perf_counter() - t_wait
                if not batch_clips:
                    break
                for batch in _batches(batch_clips, opts.batch_size):
                    _encode_batch(batch, encoder, writer, result, fail)
                if progress:
                    times.wall = time.perf_counter() - start
                    progress(result)
    finally:
        if writer.is_alive():
            writer.put(None)  # lets the writer flush what it holds (complete samples only) and exit
        writer.join()
    times.wall = time.perf_counter() - start
    if writer.error is not None:
        raise writer.error
    return result


def _encode_batch(
    batch: list[LoadedClip],
    encoder: LatentEncoder,
    writer: _Writer,
    result: RunResult,
    fail: Callable[[Task, str], None],
) -> None:
    """Encode one batch; if the batch fails, retry its clips one by one so one bad clip fails alone."""
    t0 = time.perf_counter()
    try:
        rows = encoder.encode_batch(batch)
    except Exception:
        if len(batch) == 1:
            rows = None
        else:
            for clip in batch:
                _encode_batch([clip], encoder, writer, result, fail)
            return
    if rows is None:
        try:
            rows = encoder.encode_batch(batch)
        except Exception as exc:
            result.times.model += time.perf_counter() - t0
            fail(batch[0].task, f"model error: {type(exc).__name__}: {' '.join(str(exc).split())}"[:500])
            return
    dt = time.perf_counter() - t0
    result.times.model += dt
    for clip, arrays in zip(batch, rows, strict=True):
        result.done += 1
        result.frames += len(clip.task.record.frame_indices)
        writer.put(("add", clip.task, arrays, dt / len(batch)))
