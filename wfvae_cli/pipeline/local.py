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
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from wfvae_cli.pipeline.options import EncodeOptions
from wfvae_cli.pipeline.stages import (
    Encoded,
    LatentEncoder,
    LoadedClip,
    Task,
    encode_clips,
    encode_whole,
    iter_batches,
    load_clip,
    write_error,
)
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

    def record(self, out: Encoded) -> None:
        """Count one clip's outcome (shared by every backend, so their summaries agree)."""
        self.times.model += out.seconds
        if out.ok:
            self.done += 1
            self.frames += len(out.task.record.frame_indices)
        else:
            self.failed += 1
            self.failures.append((out.task.record.source, out.error))


ProgressFn = Callable[[RunResult], None]


def prefetch_clips(tasks: list[Task], opts: EncodeOptions, depth: int, threads: int) -> Iterator[LoadedClip]:
    """Load clips in order with at most ``depth`` in flight (bounded memory, ordered output).

    ``threads`` decode at once. Also used inside Ray model workers that decode in their own process.
    """
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wfvae-decode") as pool:
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
            self.error = write_error(self.store.path, exc)  # disk full, NFS gone...: one actionable line
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

    def emit(out: Encoded) -> None:
        result.record(out)
        if out.ok:
            writer.put(("add", out.task, out.arrays, out.seconds))
        else:
            writer.put(("fail", out.task, out.error, None))

    try:
        if opts.clip_mode == "full":
            for task in tasks:
                emit(encode_whole(task, encoder))
                if progress:
                    times.wall = time.perf_counter() - start
                    progress(result)
        else:
            depth = max(2 * opts.workers, 2 * opts.batch_size)
            clips = prefetch_clips(tasks, opts, depth, threads=opts.workers)
            while True:
                t_wait = time.perf_counter()
                batch_clips = []
                for clip in clips:
                    times.decode += clip.seconds
                    if clip.video is None:
                        emit(Encoded.load_failure(clip))
                        continue
                    batch_clips.append(clip)
                    if len(batch_clips) == opts.batch_size or (
                        batch_clips and batch_clips[0].task.bucket != clip.task.bucket
                    ):
                        break
                times.model_wait += time.perf_counter() - t_wait
                if not batch_clips:
                    break
                for batch in iter_batches(batch_clips, opts.batch_size):
                    for out in encode_clips(batch, encoder):
                        emit(out)
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

