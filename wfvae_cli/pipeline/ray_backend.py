"""`wfvae encode --ray`: the same encode job spread over a Ray cluster (docs/ray.md has the design).

::

    coordinator (the `wfvae encode` process)        one placement-group bundle per model worker
    plan ─► create store ─► queue of shards ─────►  model worker (actor, model loaded once): owns the shard
            dead worker's shard back in line ◄─────   ◄─ decode tasks (Ray, same bundle, <= prefetch in flight)
            aggregate progress ◄── stats (polled)     ─► encode_clips ─► ShardWriter (flock, status last)
    finalize

Decoding reserves ``decode_cpus`` per task in the worker's bundle. With ``decode_cpus == 0`` (every CPU
runs a model worker) it runs in the worker's own process instead, in threads, exactly like a local run:
Ray kills idle task processes beyond its per-node soft limit (the CPU count), so unreserved decode tasks
would start a new process (importing torch, ~1 s) for nearly every clip; measured, it halved throughput.

Why a shard is the unit of work: zarr loses writes when two writers touch one shard, so the coordinator
hands each shard to exactly one worker at a time, and that worker writes it whole and commits its status
last. Everything per sample (decode, batching, one-by-one fallback, stored values) is the shared code of
:mod:`wfvae_cli.pipeline.stages`, so a Ray run stores what a local run stores.

Why a bundle per worker ({GPU: g, CPU: 1 + its decode CPUs}): a worker and its decode tasks are reserved
together, on one node. Decoded clips (~100x the video's size) never cross the network, every worker gets
the same decode capacity, and a replacement worker can never take the CPUs the survivors' decodes need
(it waits for its own bundle instead, which Ray re-places when the node that held it is gone).

Fault tolerance: when a worker dies (process crash, ``ray.kill``, node loss) its shard goes back to the
front of the queue; whoever takes it reopens the shard and reads its status under the lock, so rows the
dead worker committed stay done and the rest are encoded once. The slot gets a new worker. A shard redone
after a death commits every sample as it goes, so a clip that kills workers is pinned down and failed
alone (:data:`CLIP_DEATHS`). If the coordinator dies, Ray kills its workers; rerunning the command
resumes from the store.

This module imports ray; :mod:`wfvae_cli.pipeline.encode` imports it only when ``EncodeOptions.ray`` is set.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ray
import torch
from ray.exceptions import RayError, RayTaskError
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from wfvae_cli.errors import WfvaeError
from wfvae_cli.model.model import WFVAE
from wfvae_cli.pipeline.local import ProgressFn, RunResult, StageTimes, prefetch_clips
from wfvae_cli.pipeline.options import EncodeOptions
from wfvae_cli.pipeline.planning import DatasetPlan
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
from wfvae_cli.store import LatentStore, Status, StoreError, open_store

#: CPUs a model worker reserves (and torch threads it uses on CPU): it runs the model loop and the
#: host<->device copies. Decoding has its own tasks and CPUs, so on CPU-only clusters workers scale
#: by count, one core each.
CPUS_PER_WORKER = 1.0
#: Decode threads inside a model worker when decoding reserves no CPU of its own (``decode_cpus == 0``).
DECODE_THREADS = 2
#: A dead model worker is replaced this many times, then its slot is given up and the others carry on.
#: The coordinator replaces workers itself (actors have ``max_restarts=0``): it must put the dead worker's
#: shard back in line anyway, and a fresh actor fetches the broadcast model like the first one did.
MAX_RESTARTS = 3
#: A clip is failed once workers died this many times while it was the first unfinished row of its
#: shard, the last time with that shard committed sample by sample (so nothing else was being encoded).
CLIP_DEATHS = 2
#: Seconds a worker waits for a shard's lock: a just-killed previous owner holds it until its process is
#: reaped. A live owner after that means another job writes this store, which stops this one.
LOCK_WAIT = 60.0
#: Seconds between progress reports (and worker stats polls).
POLL = 0.5
#: Give up when no model worker has been alive this long (nodes gone and not coming back).
NO_WORKER_TIMEOUT = 600.0
#: Aim for at least this many shards per worker when picking the shard size ourselves (load balance).
SHARDS_PER_WORKER = 4
#: Test hook: a path; the first model worker to encode one sample of a multi-row shard creates the file
#: and exits (``os._exit``), once per job, so tests can kill a worker mid-shard deterministically.
CRASH_ENV = "WFVAE_RAY_DEBUG_CRASH_ONCE"
#: Test hook: ``bucket/row``; any model worker about to encode that row exits, every time (a clip that
#: kills the process, as a driver bug or an OOM kill would).
POISON_ENV = "WFVAE_RAY_DEBUG_CRASH_ON"
_EPS = 1e-9


# ------------------------------------------------------------------------------------------------ results
@dataclass
class RayStageTimes(StageTimes):
    """Stage seconds summed over all workers; the busy fraction is per worker: model / (wall x workers)."""

    workers: int = 1

    @property
    def model_busy_fraction(self) -> float:
        return self.model / (self.wall * self.workers) if self.wall > 0 and self.workers else 0.0


@dataclass
class WorkerStatus:
    """One model worker (slot) as the coordinator sees it; the progress display shows one line each."""

    index: int
    state: str = "starting"  # starting | idle | running | restarting | dead
    node_id: str = ""
    node_ip: str = ""
    device: str = ""
    done: int = 0
    failed: int = 0
    shards: int = 0
    model_s: float = 0.0
    restarts: int = 0
    ready_s: float | None = None  # run clock when the slot's first worker became ready
    active_s: float = 0.0  # seconds since then

    @property
    def clips_per_s(self) -> float:
        return self.done / self.active_s if self.active_s > 0 else 0.0


@dataclass
class RayRunResult(RunResult):
    """A :class:`RunResult` (so the summary is built exactly as for a local run) plus per-worker detail."""

    workers: list[WorkerStatus] = field(default_factory=list)
    startup_s: float = 0.0  # run clock when the first worker was ready to encode (model loaded)
    shards: int = 0
    shards_done: int = 0
    reassigned: int = 0  # shards handed out again after their worker died


@dataclass
class ShardWork:
    """One shard to encode: the rows the coordinator wants done, and what its past deaths taught."""

    bucket: str
    shard: int
    tasks: list[Task]
    isolate: bool = False  # after a death: batches of one, each sample committed at once
    stuck_row: int | None = None  # first unfinished row at the last death
    deaths: int = 0  # consecutive deaths with that same first unfinished row


# ------------------------------------------------------------------------------------------------ workers
@ray.remote(max_retries=2)  # retried only if the process dies; load_clip reports its own errors
def _load_clip_task(task: Task, opts: EncodeOptions) -> LoadedClip:
    """CPU decode + resize/crop of one clip in a Ray task: the shared stage, unchanged."""
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
    ) -> None:
        self.index = index
        self.opts = opts
        self.prefetch = prefetch
        self.debug = debug or {}
        self.error = ""
        self.current: tuple[str, int, RunResult] = ("", -1, RunResult())
        self.node_id = ray.get_runtime_context().get_node_id()
        self.node_ip = ray.util.get_node_ip_address()
        self.device = "cuda" if ray.get_gpu_ids() else opts.device
        if self.device == "cpu":
            torch.set_num_threads(max(1, int(CPUS_PER_WORKER)))
        self.decode_cpus = decode_cpus
        # Decode tasks run in this worker's own bundle: same node, its own CPUs (see the module docstring).
        self._load = _load_clip_task.options(
            num_cpus=decode_cpus,
            scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=index),
        )
        # Errors here are configuration errors, the same on every retry: report them through ready() so
        # the coordinator stops with one clear line instead of watching workers die.
        shared = "under Ray the store must be on a file system every node mounts at the same path"
        try:
            self.store = open_store(opts.out, "r+")
        except StoreError as exc:
            self.error = f"model worker on {self.node_ip} cannot open the store {opts.out} ({exc}); {shared}"
            return
        if self.store.meta.created_at != store_created_at:  # a node-local directory of the same name
            self.error = f"model worker on {self.node_ip} sees another store at {opts.out}; {shared}"
            return
        self.store.lease = lease  # the coordinator's lease fence: checked before every shard commit
        try:
            # model_ref is wrapped in a list so Ray passes the reference: fetched here, once per worker.
            self.encoder = LatentEncoder(ray.get(model_ref[0]), replace(opts, device=self.device))
        except Exception as exc:
            self.error = f"model worker on {self.node_ip}: {_one_line(exc)}"

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
                        writer.fail(out.task.row, out.error)
                    if work.isolate or time.monotonic() - last_flush > opts.flush_interval:
                        writer.flush()  # isolate: each sample committed, so a fatal clip is the next row
                        last_flush = time.monotonic()
                    times.write += time.perf_counter() - t0
                    result.record(out)
                    self._debug_crash(result)

                if opts.clip_mode == "full":
                    for task in todo:
                        emit(encode_whole(task, self.encoder))
                else:
                    batch_size = 1 if work.isolate else opts.batch_size
                    for batch in iter_batches(self._decoded(todo, emit, times), batch_size):
                        if self.debug.get(POISON_ENV) in {f"{c.task.bucket}/{c.task.row}" for c in batch}:
                            os._exit(1)  # test hook (POISON_ENV)
                        for out in encode_clips(batch, self.encoder):
                            emit(out)
        except OSError as exc:
            raise write_error(self.store.path, exc) from exc
        times.wall = time.perf_counter() - t_start
        return result

    def _decoded(self, tasks: list[Task], emit: Callable[[Encoded], None],
                 times: StageTimes) -> Iterator[LoadedClip]:
        """Clips in row order, with at most ``prefetch`` decoded ahead (the backpressure).

        In order, so that batches (hence latents, to the bit) are a local run's for the same shard. A
        clip that cannot be decoded is emitted as failed here and never reaches the model.
        """
        if self.decode_cpus > 0:
            clips = self._decoded_by_tasks(tasks)
        else:  # no CPU of their own: decode threads in this process, as a local run does
            clips = prefetch_clips(tasks, self.opts, self.prefetch, threads=DECODE_THREADS)
        while True:
            t0 = time.perf_counter()
            clip = next(clips, None)
            times.model_wait += time.perf_counter() - t0
            if clip is None:
                return
            times.decode += clip.seconds
            if clip.video is None:
                emit(Encoded.load_failure(clip))
                continue
            yield clip

    def _decoded_by_tasks(self, tasks: list[Task]) -> Iterator[LoadedClip]:
        """Clips in row order from Ray decode tasks in this worker's bundle, ``prefetch`` in flight."""
        pending: deque[tuple[Task, ray.ObjectRef]] = deque()
        todo = iter(tasks)

        def submit() -> None:
            task = next(todo, None)
            if task is not None:
                pending.append((task, self._load.remote(task, self.opts)))

        for _ in range(self.prefetch):
            submit()
        while pending:
            task, ref = pending.popleft()
            submit()
            try:
                yield ray.get(ref)
            except RayError as exc:  # the decode process died on every retry (e.g. a decoder segfault)
                yield LoadedClip(task, None, error=f"decode worker died: {type(exc).__name__}")

    def _debug_crash(self, result: RunResult) -> None:
        """Test hook (:data:`CRASH_ENV`): die once per job mid-shard, one sample buffered, none written."""
        marker = self.debug.get(CRASH_ENV)
        if not marker or result.done != 1 or result.total < 2:
            return
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os._exit(1)


# ------------------------------------------------------------------------------------------------ coordinator
def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


class RayBackend:
    """The coordinator side: join Ray, size the job, then schedule shards and aggregate progress.

    :meth:`connect` runs before planning (a bad address fails before any work), :meth:`balance` adjusts
    the plan, :meth:`run` encodes. If this backend started Ray, :meth:`run` shuts it down at the end.
    """

    def __init__(self, opts: EncodeOptions, *, started: bool, gpus_per_worker: float, decode_cpus: float,
                 decode_slots: int) -> None:
        self.opts = opts
        self.started = started
        self.gpus_per_worker = gpus_per_worker
        self.decode_cpus = decode_cpus
        self.decode_slots = decode_slots  # decode tasks each worker's bundle runs at once
        #: clips decoded ahead per worker: enough for its decode slots (or threads) plus a batch being encoded
        slots = decode_slots if decode_cpus > 0 else DECODE_THREADS
        self.prefetch = max(2 * opts.batch_size, slots + opts.batch_size)
        self.warnings: list[str] = []

    @property
    def workers(self) -> int:
        return self.opts.workers

    @property
    def bundle(self) -> dict[str, float]:
        """What one model worker reserves together with its decode tasks."""
        out = {"CPU": CPUS_PER_WORKER + self.decode_slots * self.decode_cpus}
        if self.gpus_per_worker:
            out["GPU"] = self.gpus_per_worker
        return out

    # -------------------------------------------------------------------------------- connect + size
    @classmethod
    def connect(cls, opts: EncodeOptions) -> RayBackend:
        """Join (or start) Ray and resolve workers, GPUs and decode CPUs against the cluster's resources."""
        address = (opts.ray or "auto").strip()
        if address != "auto" and os.path.exists(address):
            raise WfvaeError(f"--ray {address!r} is a path, not a Ray address; write --ray auto or --ray HOST:PORT")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        # Worker output is not forwarded (`--json` keeps stdout clean; errors come back as exceptions).
        # WFVAE_* variables go to the workers, so settings and test hooks behave as in a local run.
        env = {k: v for k, v in os.environ.items() if k.startswith("WFVAE_")}
        kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING,
                                  "runtime_env": {"env_vars": env} if env else None}
        started = False
        if ray.is_initialized():
            pass  # the caller (a notebook, a test session) already joined a cluster: use it
        elif address == "auto":
            try:
                ray.init(address="auto", **kwargs)  # RAY_ADDRESS, or a cluster started on this machine
            except ConnectionError:
                ray.init(include_dashboard=False, **kwargs)
                started = True
        else:
            try:
                ray.init(address=address, **kwargs)
            except Exception as exc:
                raise WfvaeError(f"--ray {address}: cannot join a Ray cluster there ({_one_line(exc)}); start "
                                 "one with `ray start --head` or use --ray auto") from exc
        try:
            return cls._size(opts, started)
        except BaseException:
            if started:
                ray.shutdown()
            raise

    @classmethod
    def _size(cls, opts: EncodeOptions, started: bool) -> RayBackend:
        """Check the request against the cluster's totals, so that a job that could never be placed fails now."""
        total = ray.cluster_resources()
        cpus, gpus = float(total.get("CPU", 0.0)), float(total.get("GPU", 0.0))
        gpw = opts.num_gpus_per_worker if opts.num_gpus_per_worker is not None else (1.0 if gpus > 0 else 0.0)
        if gpw > 0 and gpus + _EPS < gpw:
            raise WfvaeError(f"--num-gpus-per-worker {gpw:g}: the Ray cluster has {gpus:g} GPU(s); pass "
                             "--num-gpus-per-worker 0 to encode on CPUs")
        if gpw == 0 and opts.device != "cpu":
            raise WfvaeError(f"--device {opts.device}: the model workers get no GPU (a CPU-only cluster or "
                             "--num-gpus-per-worker 0); use --device cpu")
        workers = opts.workers
        if workers == 0:
            if gpw == 0:
                raise WfvaeError("the Ray cluster has no GPU: pass --workers N (model workers, one CPU each)")
            workers = int(gpus / gpw + _EPS)
        if workers * gpw > gpus + _EPS:
            raise WfvaeError(f"--workers {workers} with --num-gpus-per-worker {gpw:g} needs {workers * gpw:g} "
                             f"GPUs; the Ray cluster has {gpus:g}")
        if workers * CPUS_PER_WORKER > cpus + _EPS:
            raise WfvaeError(f"--workers {workers}: each model worker reserves {CPUS_PER_WORKER:g} CPU and the "
                             f"Ray cluster has {cpus:g}; pass fewer --workers")
        per_worker = (cpus - workers * CPUS_PER_WORKER) / workers  # spare CPUs each worker's decodes may use
        decode_cpus = opts.decode_cpus if opts.decode_cpus is not None else (1.0 if per_worker >= 1 else 0.0)
        if decode_cpus > 0:
            slots = int(per_worker / decode_cpus + _EPS)
            if slots < 1:
                raise WfvaeError(
                    f"--decode-cpus {decode_cpus:g}: {workers} model workers leave {per_worker:g} CPU(s) each "
                    "for decoding, less than one decode task; use --decode-cpus 0 (decode shares the "
                    "workers' cores) or fewer --workers"
                )
        else:
            slots = 0
        return cls(replace(opts, workers=workers), started=started, gpus_per_worker=gpw,
                   decode_cpus=decode_cpus, decode_slots=slots)

    def balance(self, plan: DatasetPlan) -> DatasetPlan:
        """Smaller shards for small buckets, so that every worker has shards to take (unless --shard-size).

        A shard is the unit of parallel work: a bucket of 8 clips in one shard would leave all workers but
        one idle. Large buckets keep their default (~64 MiB) shards.
        """
        if self.opts.shard_size is not None:
            return plan
        buckets = []
        for b in plan.buckets:
            even = max(1, math.ceil(len(b.samples) / (SHARDS_PER_WORKER * self.workers)))
            buckets.append(replace(b, shard_size=min(b.shard_size or even, even)))
        return replace(plan, buckets=buckets)

    # -------------------------------------------------------------------------------- run
    def run(self, store: LatentStore, tasks: list[Task], model: WFVAE,
            progress: ProgressFn | None = None) -> RayRunResult:
        """Encode ``tasks`` on the cluster; returns the counts a local run returns (plus per-worker detail)."""
        try:
            if not tasks:
                return RayRunResult(times=RayStageTimes(workers=self.workers))
            result = _Run(self, store, tasks, model, progress).run()
            if result.reassigned:
                self.warnings.append(f"{result.reassigned} shard(s) went to another model worker after their "
                                     "worker died; each sample was still written once")
            never = [w.index for w in result.workers if w.ready_s is None]
            if never:
                self.warnings.append(f"model worker(s) {never} never started (no room for {self.bundle} on any "
                                     "node?); the others did their work")
            return result
        finally:
            if self.started:
                ray.shutdown()


class _Run:
    """One scheduling loop: idle workers take the next shard; deaths put shards back; stats feed progress."""

    def __init__(self, backend: RayBackend, store: LatentStore, tasks: list[Task], model: WFVAE,
                 progress: ProgressFn | None) -> None:
        self.store, self.progress = store, progress
        self.opts = backend.opts
        self.gpus_per_worker = backend.gpus_per_worker
        self.start = time.perf_counter()
        n = backend.workers
        self.result = RayRunResult(total=len(tasks), times=RayStageTimes(workers=n))
        self.order = {bucket: k for k, bucket in enumerate(store.buckets)}
        self.queue: deque[ShardWork] = deque(self._shards(tasks))
        self.result.shards = len(self.queue)
        self.status = [WorkerStatus(i) for i in range(n)]
        self.running: dict[int, ShardWork] = {}  # worker slot -> the shard it holds
        self.live: dict[int, tuple[int, int, int, float]] = {}  # slot -> counts of that shard so far
        self.failures: dict[tuple[int, int], list[tuple[str, str]]] = {}  # per shard, reported in plan order
        # SPREAD: workers on as many nodes as possible (one per GPU); each bundle on one node.
        self.group = placement_group([backend.bundle] * n, strategy="SPREAD")
        # Loaded once here and broadcast: workers need no access to the checkpoint and provably use the
        # weights whose fingerprint the store records. Held for the whole run (replacements fetch it too).
        self.model_ref = ray.put(model)
        self._actor = ray.remote(ModelWorker)
        self._args = ([self.model_ref], replace(self.opts, out=Path(store.path).absolute()),  # workers' cwd differs
                      self.group, backend.decode_cpus, backend.prefetch, store.meta.created_at,
                      {k: os.environ[k] for k in (CRASH_ENV, POISON_ENV) if os.environ.get(k)})
        self.actors = [self._spawn(i) for i in range(n)]

    def _spawn(self, i: int) -> Any:
        return self._actor.options(
            num_cpus=CPUS_PER_WORKER,
            num_gpus=self.gpus_per_worker,
            max_restarts=0,  # replaced by the coordinator (see MAX_RESTARTS)
            max_concurrency=2,  # encode_shard + stats
            scheduling_strategy=PlacementGroupSchedulingStrategy(self.group, placement_group_bundle_index=i),
        ).remote(i, *self._args, lease=self.store.lease.fence() if self.store.lease is not None else None)

    def _shards(self, tasks: list[Task]) -> list[ShardWork]:
        """Group the rows to do by (bucket, shard), in plan order."""
        work: dict[tuple[str, int], ShardWork] = {}
        for task in tasks:
            key = (task.bucket, self.store.shard_of(task.bucket, task.row))
            work.setdefault(key, ShardWork(key[0], key[1], [])).tasks.append(task)
        return list(work.values())

    def _key(self, work: ShardWork) -> tuple[int, int]:
        return self.order[work.bucket], work.shard

    def now(self) -> float:
        return time.perf_counter() - self.start

    def run(self) -> RayRunResult:
        try:
            self._loop()
        finally:
            # Free the GPUs now, whatever happened; a failing clean-up must not hide the job's own error.
            with contextlib.suppress(Exception):
                for actor in self.actors:
                    ray.kill(actor, no_restart=True)
                remove_placement_group(self.group)
        final = self._snapshot(final=True)
        if self.progress is not None:
            self.progress(final)
        return final

    def _loop(self) -> None:
        busy: dict[ray.ObjectRef, int] = {}  # encode_shard calls in flight -> slot
        probing: dict[ray.ObjectRef, int] = {a.ready.remote(): i for i, a in enumerate(self.actors)}
        stats: dict[ray.ObjectRef, int] = {}
        idle: deque[int] = deque()
        last_alive = time.monotonic()
        next_report = 0.0
        while self.queue or busy:
            while self.queue and idle:
                i = idle.popleft()
                work = self.running[i] = self.queue.popleft()
                busy[self.actors[i].encode_shard.remote(work)] = i
                self.status[i].state = "running"
            if busy or idle:
                last_alive = time.monotonic()
            elif not probing:
                raise WfvaeError(f"all {len(self.actors)} model workers died (see the Ray logs); rerun the same "
                                 "command to resume: finished samples are kept")
            elif time.monotonic() - last_alive > NO_WORKER_TIMEOUT:
                raise WfvaeError(f"no model worker was alive for {NO_WORKER_TIMEOUT:.0f} s (nodes lost, or no node "
                                 "can hold a worker?); rerun the same command to resume: finished samples are kept")
            if time.monotonic() >= next_report:
                self._poll_stats(stats)
                self._report()
                next_report = time.monotonic() + POLL
            ready, _ = ray.wait([*busy, *probing], num_returns=1, timeout=POLL)
            for ref in ready:
                if ref in probing:
                    i = probing.pop(ref)
                    alive = self._on_ready(ref, i)
                else:
                    i = busy.pop(ref)
                    alive = self._on_shard(ref, i)
                if alive:
                    idle.append(i)
                elif self._replace(i):
                    probing[self.actors[i].ready.remote()] = i  # answers once the replacement is up

    def _replace(self, i: int) -> bool:
        """Start a new worker in slot ``i`` after a death, unless the slot used up its replacements."""
        st = self.status[i]
        ray.kill(self.actors[i], no_restart=True)  # dead already, or unreachable: make sure
        if st.restarts >= MAX_RESTARTS:
            st.state = "dead"
            return False
        st.restarts += 1
        st.state = "restarting"
        self.actors[i] = self._spawn(i)
        return True

    def _on_ready(self, ref: ray.ObjectRef, i: int) -> bool:
        """A worker answered ready(): True if it can take a shard, False if it died starting."""
        st = self.status[i]
        try:
            info = ray.get(ref)
        except RayError:
            return False
        if info["error"]:
            raise WfvaeError(info["error"])
        st.node_id, st.node_ip, st.device = info["node_id"], info["node_ip"], info["device"]
        if st.ready_s is None:
            st.ready_s = self.now()
            if not self.result.startup_s:
                self.result.startup_s = st.ready_s
        st.state = "idle"
        return True

    def _on_shard(self, ref: ray.ObjectRef, i: int) -> bool:
        """Account a finished shard (True), or put a dead worker's shard back in line (False)."""
        st = self.status[i]
        work = self.running.pop(i)
        self.live.pop(i, None)
        try:
            shard = ray.get(ref)
        except RayTaskError as exc:  # an error the worker raised (disk full...): the job stops, as locally
            cause = getattr(exc, "cause", None)
            if isinstance(cause, (WfvaeError, StoreError)):
                raise cause from None
            raise
        except RayError as exc:  # the worker, or its node, died mid-shard
            self._requeue(work, exc)
            return False
        r, t = self.result, self.result.times
        r.done += shard.done
        r.failed += shard.failed
        r.frames += shard.frames
        self.failures.setdefault(self._key(work), []).extend(shard.failures)
        t.decode += shard.times.decode
        t.model += shard.times.model
        t.model_wait += shard.times.model_wait
        t.write += shard.times.write
        st.done += shard.done
        st.failed += shard.failed
        st.model_s += shard.times.model
        st.shards += 1
        st.state = "idle"
        r.shards_done += 1
        return True

    def _count(self, work: ShardWork, out: Encoded) -> None:
        """Count an outcome settled by the coordinator (rows a dead worker committed, a fatal clip)."""
        if out.ok:
            self.result.done += 1
            self.result.frames += len(out.task.record.frame_indices)
        else:
            self.result.failed += 1
            self.failures.setdefault(self._key(work), []).append((out.task.record.source, out.error))

    def _requeue(self, work: ShardWork, exc: BaseException) -> None:
        """Count what the dead worker committed, pin a fatal clip, put the rest back first in line."""
        self.result.reassigned += 1
        status = self.store.status(work.bucket)  # the dead writer's process is gone: this is final
        errors = self.store.array(work.bucket, "error")
        remaining = []
        for task in work.tasks:
            state = int(status[task.row])
            if state == Status.DONE:  # committed before the death: counted once, never redone
                self._count(work, Encoded(task, {}))
            elif state == Status.FAILED and not self.opts.retry_failed:
                self._count(work, Encoded(task, None, str(errors[task.row])))
            else:
                remaining.append(task)
        work.tasks = remaining
        if not remaining:
            self.result.shards_done += 1
            return
        first = remaining[0].row
        work.deaths = work.deaths + 1 if first == work.stuck_row else 1
        work.stuck_row = first
        if work.isolate and work.deaths >= CLIP_DEATHS:  # this clip alone was being encoded, each time
            message = (f"a model worker died {work.deaths} times while encoding this clip ({type(exc).__name__}); "
                       "rerun with --retry-failed to try it again")
            with self.store.shard_writer(work.bucket, work.shard, wait=LOCK_WAIT,
                                         retry_failed=self.opts.retry_failed) as writer:
                writer.fail(first, message)
            self._count(work, Encoded(remaining[0], None, message))
            work.tasks, work.deaths, work.stuck_row = remaining[1:], 0, None
            if not work.tasks:
                self.result.shards_done += 1
                return
        work.isolate = True
        self.queue.appendleft(work)

    def _poll_stats(self, stats: dict[ray.ObjectRef, int]) -> None:
        """Collect the answers to the previous poll, then ask every busy worker again (never twice at once)."""
        if stats:
            ready, _ = ray.wait(list(stats), num_returns=len(stats), timeout=0)
            for ref in ready:
                i = stats.pop(ref)
                try:
                    bucket, shard, *counts = ray.get(ref)
                except RayError:
                    continue
                work = self.running.get(i)
                if work is not None and (work.bucket, work.shard) == (bucket, shard):  # not a stale answer
                    self.live[i] = tuple(counts)  # type: ignore[assignment]
        asked = set(stats.values())
        for i in self.running:
            if i not in asked:
                stats[self.actors[i].stats.remote()] = i

    def _snapshot(self, final: bool = False) -> RayRunResult:
        """Committed counts plus, while running, the live counts of the shards in progress."""
        r = self.result
        wall = self.now()
        live = {} if final else self.live
        times = RayStageTimes(
            wall=wall, decode=r.times.decode, model=r.times.model + sum(s[3] for s in live.values()),
            model_wait=r.times.model_wait, write=r.times.write, workers=len(self.actors),
        )
        workers = []
        for st in self.status:
            extra = live.get(st.index, (0, 0, 0, 0.0))
            workers.append(replace(st, done=st.done + extra[0], failed=st.failed + extra[1],
                                   model_s=st.model_s + extra[3],
                                   active_s=wall - st.ready_s if st.ready_s is not None else 0.0))
        return RayRunResult(
            total=r.total,
            done=r.done + sum(s[0] for s in live.values()),
            failed=r.failed + sum(s[1] for s in live.values()),
            frames=r.frames + sum(s[2] for s in live.values()),
            failures=[f for key in sorted(self.failures) for f in self.failures[key]],
            times=times, workers=workers, startup_s=r.startup_s, shards=r.shards, shards_done=r.shards_done,
            reassigned=r.reassigned,
        )

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self._snapshot())
