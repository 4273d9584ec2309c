"""The coordinator's scheduling loop: idle model workers take the next shard; a dead worker's shard goes
back to the front of the queue (the rows it committed stay done); workers' stats feed the progress display.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import RayError, RayTaskError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from wfvae_cli import faults
from wfvae_cli.errors import WfvaeError
from wfvae_cli.model import WFVAE
from wfvae_cli.pipeline.backend import ProgressFn
from wfvae_cli.pipeline.ray.results import RayRunResult, RayStageTimes, ShardWork, WorkerStatus
from wfvae_cli.pipeline.ray.worker import CPUS_PER_WORKER, LOCK_WAIT, ModelWorker
from wfvae_cli.pipeline.stages import Encoded, Task
from wfvae_cli.storage import storage_env
from wfvae_cli.store import LatentStore, Status, StoreError

if TYPE_CHECKING:
    from wfvae_cli.pipeline.ray.backend import RayBackend

#: A dead model worker is replaced this many times, then its slot is given up and the others carry on.
#: The coordinator replaces workers itself (actors have ``max_restarts=0``): it must put the dead worker's
#: shard back in line anyway, and a fresh actor fetches the broadcast model like the first one did.
MAX_RESTARTS = 3
#: A clip is failed once workers died this many times while it was the first unfinished row of its
#: shard, the last time with that shard committed sample by sample (so nothing else was being encoded).
CLIP_DEATHS = 2
#: Seconds between progress reports (and worker stats polls).
POLL = 0.5
#: Give up when no model worker has been alive this long (nodes gone and not coming back).
NO_WORKER_TIMEOUT = 600.0


class ShardScheduler:
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
        self._args = ([self.model_ref], replace(self.opts, out=store.location.absolute()),  # workers' cwd differs
                      self.group, backend.decode_cpus, backend.prefetch, store.meta.created_at,
                      faults.snapshot())
        self.actors = [self._spawn(i) for i in range(n)]

    def _spawn(self, i: int) -> Any:
        return self._actor.options(
            num_cpus=CPUS_PER_WORKER,
            num_gpus=self.gpus_per_worker,
            max_restarts=0,  # replaced by the coordinator (see MAX_RESTARTS)
            max_concurrency=2,  # encode_shard + stats
            scheduling_strategy=PlacementGroupSchedulingStrategy(self.group, placement_group_bundle_index=i),
        ).remote(i, *self._args, lease=self.store.lease.fence() if self.store.lease is not None else None,
                 env=storage_env())

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
        t.preprocess += shard.times.preprocess
        t.preprocess_cpu += shard.times.preprocess_cpu
        t.batch += shard.times.batch
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
            model_wait=r.times.model_wait, write=r.times.write, preprocess=r.times.preprocess,
            preprocess_cpu=r.times.preprocess_cpu, batch=r.times.batch, workers=len(self.actors),
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
