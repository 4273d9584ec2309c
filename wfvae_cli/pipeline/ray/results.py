"""What a Ray encode run reports: per-stage times over all workers, per-worker status, shard work items."""

from __future__ import annotations

from dataclasses import dataclass, field

from wfvae_cli.pipeline.backend import RunResult, StageTimes
from wfvae_cli.pipeline.stages import Task


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
