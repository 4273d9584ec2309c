"""The model-worker actor: loads the model once, then encodes whole shards handed out by the scheduler.

Decoding runs in Ray tasks of ``decode_cpus`` CPUs each, placed by Ray anywhere in the cluster (the
worker's node first, then wherever CPUs are free: CPU-only nodes add decode capacity), each worker keeping
its share of the cluster's decode slots in flight, bounded in clips and in bytes (the backpressure); or,
with ``decode_cpus == 0``, in threads of the worker's process exactly like a local run. Every per-sample
step is the shared code of :mod:`wfvae_cli.pipeline.stages`; decoded clips travel as uint8.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import ray
import torch
from ray.exceptions import RayError
from ray.util.placement_group import PlacementGroup

from wfvae_cli import faults
from wfvae_cli.errors import one_line
from wfvae_cli.pipeline.backend import RunResult
from wfvae_cli.pipeline.options import EncodeOptions
from wfvae_cli.pipeline.ray.results import ShardWork
from wfvae_cli.pipeline.stages import (
    Encoded,
    LatentEncoder,
    LoadedClip,
    Task,
    clip_bytes,
    encode_loaded,
    encode_whole,
    load_clip,
    prefetch_clips,
    write_error,
)
from wfvae_cli.storage import adopt_storage_env
from wfvae_cli.store import StoreError, open_store

#: CPUs a model worker reserves (and torch threads it uses on CPU): it runs the model loop and the
#: host<->device copies. Decoding has its own tasks and CPUs, so on CPU-only clusters workers scale
#: by count, one core each.
CPUS_PER_WORKER = 1.0
#: Decode threads inside a model worker when decoding reserves no CPU of its own (``decode_cpus == 0``).
DECODE_THREADS = 2
#: Seconds a worker waits for a shard's lock: a just-killed previous owner holds it until its process is
#: reaped. A live owner after that means another job writes this store, which stops this one.
LOCK_WAIT = 60.0


@ray.remote(max_retries=2)  # retried only if the process dies; load_clip reports its own errors
def _load_clip_task(task: Task, opts: EncodeOptions, env: dict[str, str] | None = None) -> LoadedClip:
    """CPU decode + resize/crop of one clip in a Ray task: the shared stage, unchanged."""
    if env:
        adopt_storage_env(env)  # the driver's storage endpoint/credentials (URL inputs), see ModelWorker
    return load_clip(task, opts)


class ModelWorker:
    """One model replica: loads the model once, then encodes whole shards handed out by the coordinator.

    A threaded actor (two threads): one encodes a shard, the other answers :meth:`stats` so that the
    coordinator shows live progress. The coordinator never gives a worker two shards at once.
    """

    def __init__(
        self,
        index: int,
        model_ref: list[ray.ObjectRef],
        opts: EncodeOptions,
        group: PlacementGroup,
        decode_cpus: float,
        prefetch: int,
        store_created_at: str,
        debug: dict[str, str] | None = None,
        lease: Any = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.index = index
        self.opts = opts
        self.prefetch = prefetch
        faults.adopt(debug or {})  # this actor's own process: the coordinator's test hooks, if any
        # The driver's cloud settings (AWS_ENDPOINT_URL, region, credentials...: storage.storage_env) reach this
        # process explicitly, not through the cluster's start-up environment: a cluster started before the job
        # (or on other machines) has its own, and the store and URL inputs must be the driver's.
        self.env = dict(env or {})
        adopt_storage_env(self.env)
        self.error = ""
        self.current: tuple[str, int, RunResult] = ("", -1, RunResult())
        self.node_id = ray.get_runtime_context().get_node_id()
        self.node_ip = ray.util.get_node_ip_address()
        # a worker given a GPU uses it; otherwise the CPU ("auto" must not pick a GPU Ray did not assign)
        self.device = "cuda" if ray.get_gpu_ids() else ("cpu" if opts.device == "auto" else opts.device)
        if self.device == "cpu":
            torch.set_num_threads(max(1, int(CPUS_PER_WORKER)))
        self.decode_cpus = decode_cpus
        # Decode tasks are placed by Ray over the whole cluster, not in this worker's bundle (module docstring).
        self._load = _load_clip_task.options(num_cpus=decode_cpus)
        # Errors here are configuration errors, the same on every retry: report them through ready() so
        # the coordinator stops with one clear line instead of watching workers die.
        location = opts.store_location  # a URL: every worker reaches the store itself, no shared disk
        shared = ("under Ray a local store must be on a file system every node mounts at the same path (or write "
                  "the store to object storage: --out s3://bucket/x.zarr)" if location.is_local else
                  "check that every node reaches the storage endpoint with the job's credentials (docs/ray.md)")
        try:
            self.store = open_store(location, "r+")
        except StoreError as exc:
            self.error = f"model worker on {self.node_ip} cannot open the store {opts.out} ({exc}); {shared}"
            return
        self.store.lease = lease  # the coordinator's lease fence: checked before every shard commit
        if self.store.meta.created_at != store_created_at:  # a node-local directory of the same name
            self.error = f"model worker on {self.node_ip} sees another store at {opts.out}; {shared}"
            return
        try:
            # model_ref is wrapped in a list so Ray passes the reference: fetched here, once per worker.
            self.encoder = LatentEncoder(ray.get(model_ref[0]), replace(opts, device=self.device))
        except Exception as exc:
            self.error = f"model worker on {self.node_ip}: {one_line(exc)}"

    def ready(self) -> dict[str, Any]:
        """Where this worker runs, or why it cannot work."""
        return {"node_id": self.node_id, "node_ip": self.node_ip, "device": self.device, "pid": os.getpid(),
                "error": self.error}

    def stats(self) -> tuple[str, int, int, int, int, float]:
        """(bucket, shard, done, failed, frames, model seconds) of the shard in progress."""
        bucket, shard, cur = self.current
        return bucket, shard, cur.done, cur.failed, cur.frames, cur.times.model

    def encode_shard(self, work: ShardWork) -> RunResult:
        """Own the shard, encode its unfinished rows, write it, commit status last; return the counts."""
        result = RunResult()
        self.current = (work.bucket, work.shard, result)
        times = result.times
        t_start = time.perf_counter()
        opts = self.opts
        try:
            with self.store.shard_writer(work.bucket, work.shard, wait=LOCK_WAIT,
                                         retry_failed=opts.retry_failed) as writer:
                # The rows to do are read from the store under the lock, not taken from the plan: after a
                # death, rows the dead owner committed are skipped, so nothing is written twice.
                outstanding = writer.outstanding
                todo = [t for t in work.tasks if t.row in outstanding]
                result.total = len(todo)
                last_flush = time.monotonic()

                def emit(out: Encoded) -> None:
                    nonlocal last_flush
                    t0 = time.perf_counter()
                    if out.ok:
                        writer.add(out.task.row, encode_seconds=out.seconds, **out.arrays)  # type: ignore[arg-type]
                    else:
                        writer.fail(out.task.row, out.error, transient=out.transient)
                    if work.isolate or time.monotonic() - last_flush > opts.flush_interval:
                        writer.flush()  # isolate: each sample committed, so a fatal clip is the next row
                        last_flush = time.monotonic()
                    times.write += time.perf_counter() - t0
                    result.record(out)
                    faults.ray_crash_once(result.done, result.total)  # test hook: die mid-shard

                if opts.clip_mode == "full":
                    for task in todo:
                        emit(encode_whole(task, self.encoder, self.store))
                else:
                    batch_size = 1 if work.isolate else opts.batch_size
                    for out in encode_loaded(self._decoded(todo), self.encoder, batch_size, times,
                                             before_batch=_crash_hook):
                        emit(out)
        except OSError as exc:
            raise write_error(self.store.path, exc) from exc
        times.wall = time.perf_counter() - t_start
        return result

    def _decoded(self, tasks: list[Task]) -> Iterator[LoadedClip]:
        """Clips in row order, with at most ``prefetch`` decoded ahead (the backpressure).

        In order, so that batches (hence latents, to the bit) are a local run's for the same shard.
        """
        if self.decode_cpus > 0:
            return self._decoded_by_tasks(tasks)
        # no CPU of their own: decode threads in this process, as a local run does
        return prefetch_clips(tasks, self.opts, self.prefetch, threads=DECODE_THREADS)

    def _decoded_by_tasks(self, tasks: list[Task]) -> Iterator[LoadedClip]:
        """Clips in row order from Ray decode tasks in this worker's bundle, ``prefetch`` in flight."""
        pending: deque[tuple[Task, ray.ObjectRef]] = deque()
        todo = iter(tasks)
        nxt = next(todo, None)
        held = 0  # bytes of the clips in flight or ready: at most opts.prefetch_bytes (one clip always goes)
        while nxt is not None or pending:
            while nxt is not None and (not pending or (len(pending) < self.prefetch
                                                       and held + clip_bytes(nxt) <= self.opts.prefetch_bytes)):
                pending.append((nxt, self._load.remote(nxt, self.opts, self.env)))
                held += clip_bytes(nxt)
                nxt = next(todo, None)
            task, ref = pending.popleft()
            held -= clip_bytes(task)
            try:
                clip = ray.get(ref)
            except RayError as exc:  # the decode process died on every retry (e.g. a decoder segfault)
                clip = LoadedClip(task, None, error=f"decode worker died: {type(exc).__name__}")
            yield clip


def _crash_hook(batch: list[LoadedClip]) -> None:
    """Test hook (``WFVAE_RAY_DEBUG_CRASH_ON``): die before encoding a batch that holds the poisoned row."""
    faults.ray_crash_on(f"{c.task.bucket}/{c.task.row}" for c in batch)
