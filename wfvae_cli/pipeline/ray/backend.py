"""The coordinator side of a Ray encode: join Ray, size the job against the cluster, run the scheduler."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, replace
from typing import Any

import ray

from wfvae_cli.errors import WfvaeError, one_line
from wfvae_cli.model import WFVAE
from wfvae_cli.pipeline.backend import Backend, ProgressFn
from wfvae_cli.pipeline.options import EncodeOptions
from wfvae_cli.pipeline.planning import DatasetPlan
from wfvae_cli.pipeline.ray.results import RayRunResult, RayStageTimes
from wfvae_cli.pipeline.ray.scheduler import ShardScheduler
from wfvae_cli.pipeline.ray.worker import CPUS_PER_WORKER, DECODE_THREADS
from wfvae_cli.pipeline.stages import Task
from wfvae_cli.store import LatentStore

#: Aim for at least this many shards per worker when picking the shard size ourselves (load balance).
SHARDS_PER_WORKER = 4
_EPS = 1e-9


@dataclass(frozen=True)
class RaySizing:
    """The job resolved against the cluster: model workers, what each reserves, decode tasks per worker."""

    workers: int
    gpus_per_worker: float
    decode_cpus: float  # CPUs one decode task reserves (0: decode threads in the worker's process)
    decode_slots: int  # decode tasks each worker keeps in flight (its share of the cluster's spare CPUs)


class RayBackend(Backend):
    """The coordinator side: join Ray, size the job, then schedule shards and aggregate progress.

    :meth:`prepare` joins (or starts) Ray and sizes the job before planning, so a bad address or an
    impossible request fails before any work; :meth:`shape_plan` cuts small buckets into enough shards;
    :meth:`run` encodes; :meth:`close` shuts down a Ray this backend started. ``sizing`` may be given to
    skip :meth:`prepare`'s cluster query (tests of :meth:`shape_plan`).
    """

    def __init__(self, opts: EncodeOptions, sizing: RaySizing | None = None) -> None:
        super().__init__(opts)
        self.started = False  # True if this backend started Ray (and so must stop it)
        self.model: WFVAE | None = None
        self.sizing = sizing
        if sizing is not None:
            self.opts = replace(opts, workers=sizing.workers)

    @property
    def workers(self) -> int:
        return self.opts.workers

    @property
    def gpus_per_worker(self) -> float:
        return self._sized.gpus_per_worker

    @property
    def decode_cpus(self) -> float:
        return self._sized.decode_cpus

    @property
    def prefetch(self) -> int:
        """Clips decoded ahead per worker: enough for its decode slots (or threads) plus a batch being encoded."""
        slots = self._sized.decode_slots if self._sized.decode_cpus > 0 else DECODE_THREADS
        return max(2 * self.opts.batch_size, slots + self.opts.batch_size)

    @property
    def bundle(self) -> dict[str, float]:
        """What one model worker reserves: its own CPU (and GPU). Decode tasks are *not* in the bundle: they
        run on any CPU of the cluster (the worker's node first, Ray's default placement, then CPU-only
        nodes), so decode capacity grows with the cluster, not with the CPUs bundled beside a GPU."""
        sized = self._sized
        out = {"CPU": CPUS_PER_WORKER}
        if sized.gpus_per_worker:
            out["GPU"] = sized.gpus_per_worker
        return out

    @property
    def _sized(self) -> RaySizing:
        if self.sizing is None:
            raise RuntimeError("RayBackend used before prepare()")
        return self.sizing

    def prepare(self, model: WFVAE) -> None:
        """Join Ray, size the job; the model is broadcast to the workers when :meth:`run` starts them."""
        self.model = model
        if self.sizing is None:
            self._connect()
            try:
                self.sizing = self._size(self.opts)
            except BaseException:
                self.close()
                raise
            self.opts = replace(self.opts, workers=self.sizing.workers)

    # -------------------------------------------------------------------------------- connect + size
    def _connect(self) -> None:
        """Join (or start) Ray: a running session, ``--ray auto`` (RAY_ADDRESS, a local cluster, else a new
        one) or ``--ray HOST:PORT``."""
        address = (self.opts.ray or "auto").strip()
        if address != "auto" and os.path.exists(address):
            raise WfvaeError(f"--ray {address!r} is a path, not a Ray address; write --ray auto or --ray HOST:PORT")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        # Worker output is not forwarded (`--json` keeps stdout clean; errors come back as exceptions).
        # WFVAE_* variables go to the workers, so settings and test hooks behave as in a local run.
        env = {k: v for k, v in os.environ.items() if k.startswith("WFVAE_")}
        kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING,
                                  "runtime_env": {"env_vars": env} if env else None}
        if ray.is_initialized():
            pass  # the caller (a notebook, a test session) already joined a cluster: use it
        elif address == "auto":
            try:
                ray.init(address="auto", **kwargs)  # RAY_ADDRESS, or a cluster started on this machine
            except ConnectionError:
                ray.init(include_dashboard=False, **kwargs)
                self.started = True
        else:
            try:
                ray.init(address=address, **kwargs)
            except Exception as exc:
                raise WfvaeError(f"--ray {address}: cannot join a Ray cluster there ({one_line(exc)}); start "
                                 "one with `ray start --head` or use --ray auto") from exc

    @staticmethod
    def _size(opts: EncodeOptions) -> RaySizing:
        """Check the request against the cluster's totals, so that a job that could never be placed fails now."""
        total = ray.cluster_resources()
        cpus, gpus = float(total.get("CPU", 0.0)), float(total.get("GPU", 0.0))
        gpw = opts.num_gpus_per_worker if opts.num_gpus_per_worker is not None else (1.0 if gpus > 0 else 0.0)
        if gpw > 0 and gpus + _EPS < gpw:
            raise WfvaeError(f"--num-gpus-per-worker {gpw:g}: the Ray cluster has {gpus:g} GPU(s); pass "
                             "--num-gpus-per-worker 0 to encode on CPUs")
        if gpw == 0 and opts.device not in ("cpu", "auto"):
            raise WfvaeError(f"--device {opts.device}: the model workers get no GPU (a CPU-only cluster or "
                             "--num-gpus-per-worker 0); use --device cpu")
        workers = opts.workers
        if workers == 0:
            if gpw == 0:
                raise WfvaeError("the Ray cluster has no GPU: pass --model-workers N (model workers, one CPU each)")
            workers = int(gpus / gpw + _EPS)
        if workers * gpw > gpus + _EPS:
            raise WfvaeError(f"--model-workers {workers} with --num-gpus-per-worker {gpw:g} needs {workers * gpw:g} "
                             f"GPUs; the Ray cluster has {gpus:g}")
        if workers * CPUS_PER_WORKER > cpus + _EPS:
            raise WfvaeError(f"--model-workers {workers}: each model worker reserves {CPUS_PER_WORKER:g} CPU and the "
                             f"Ray cluster has {cpus:g}; pass fewer --model-workers")
        spare = cpus - workers * CPUS_PER_WORKER  # the cluster's CPUs the model workers leave for decoding
        decode_cpus = opts.decode_cpus if opts.decode_cpus is not None else (1.0 if spare >= 1 else 0.0)
        if decode_cpus > 0:
            total = int(spare / decode_cpus + _EPS)  # decode tasks the whole cluster runs at once
            if total < 1:
                raise WfvaeError(
                    f"--decode-cpus {decode_cpus:g}: {workers} model workers leave {spare:g} CPU(s) of the "
                    "cluster for decoding, less than one decode task; use --decode-cpus 0 (decode shares the "
                    "workers' cores) or fewer --model-workers"
                )
            slots = math.ceil(total / workers)  # each worker keeps its share in flight (the backpressure)
        else:
            slots = 0
        return RaySizing(workers, gpw, decode_cpus, slots)

    def shape_plan(self, plan: DatasetPlan) -> DatasetPlan:
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
    def run(self, store: LatentStore, tasks: list[Task], progress: ProgressFn | None = None) -> RayRunResult:
        """Encode ``tasks`` on the cluster; returns the counts a local run returns (plus per-worker detail)."""
        if self.model is None or self.sizing is None:
            raise RuntimeError("RayBackend.run() before prepare()")
        if not tasks:
            return RayRunResult(times=RayStageTimes(workers=self.workers))
        result = ShardScheduler(self, store, tasks, self.model, progress).run()
        if result.reassigned:
            self.warnings.append(f"{result.reassigned} shard(s) went to another model worker after their "
                                 "worker died; each sample was still written once")
        never = [w.index for w in result.workers if w.ready_s is None]
        if never:
            self.warnings.append(f"model worker(s) {never} never started (no room for {self.bundle} on any "
                                 "node?); the others did their work")
        return result

    def close(self) -> None:
        """Shut down the Ray this backend started (a joined cluster, or the caller's session, stays up)."""
        if self.started:
            self.started = False
            ray.shutdown()
