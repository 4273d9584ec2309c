"""Single-machine executor: decode in worker processes, the model on the calling thread, writes on a
writer thread — all three overlap, so the model never waits on I/O when inputs are ready.

    decode pool (N threads -> N decode processes, prefetch bounded in bytes)
        --> model (batches of one bucket, uint8 until the device) --> writer thread --> store

Each decode thread borrows a decode worker process (:mod:`wfvae_cli.io._worker`) when a decode timeout is
set (the default), so N threads decode on N cores and a hung file is killed, not waited on; the thread
itself only waits and receives the uint8 frames. Without a timeout the threads decode in this process
(FFmpeg and the resize release the GIL). Per-sample errors become failed rows; nothing here stops the job
except a store error.
"""

from __future__ import annotations

import queue
import threading
import time

from wfvae_cli.model import WFVAE
from wfvae_cli.pipeline.backend import Backend, ProgressFn, RunResult, StageTimes
from wfvae_cli.pipeline.options import EncodeOptions
from wfvae_cli.pipeline.stages import (
    Encoded,
    LatentEncoder,
    Task,
    encode_loaded,
    encode_whole,
    prefetch_clips,
    write_error,
)
from wfvae_cli.store import LatentStore, StoreWriter


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
                            writer.fail(task.bucket, task.row, payload, transient=bool(seconds))
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
            writer.put(("fail", out.task, out.error, out.transient))  # 4th field of a fail: transient

    try:
        if opts.clip_mode == "full":
            for task in tasks:
                emit(encode_whole(task, encoder, store))
                if progress:
                    times.wall = time.perf_counter() - start
                    progress(result)
        else:
            # every decoder busy plus the next batch ready; the real bound is opts.prefetch_bytes
            depth = opts.workers + 2 * opts.batch_size
            clips = prefetch_clips(tasks, opts, depth, threads=opts.workers)
            for out in encode_loaded(clips, encoder, opts.batch_size, times):
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



class LocalBackend(Backend):
    """This machine: :func:`run_local` (decode threads, the model here, one writer thread)."""

    def __init__(self, opts: EncodeOptions) -> None:
        super().__init__(opts)
        self.encoder: LatentEncoder | None = None

    def prepare(self, model: WFVAE) -> None:
        """Put the model on its device in its precision (a device this machine lacks fails here)."""
        self.encoder = LatentEncoder(model, self.opts)

    def run(self, store: LatentStore, tasks: list[Task], progress: ProgressFn | None = None) -> RunResult:
        if self.encoder is None:
            raise RuntimeError("LocalBackend.run() before prepare()")
        if not tasks:
            return RunResult()
        return run_local(store, tasks, self.encoder, self.opts, progress)
