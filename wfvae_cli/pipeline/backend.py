"""One encode pipeline, two executors: the :class:`Backend` interface and what every backend reports.

Both executors run the same stage functions of :mod:`wfvae_cli.pipeline.stages` — decode
(:func:`~wfvae_cli.pipeline.stages.prefetch_clips`), batch (:func:`~wfvae_cli.pipeline.stages.iter_batches`),
encode (:func:`~wfvae_cli.pipeline.stages.encode_loaded`) and write (a
:class:`~wfvae_cli.store.StoreWriter` or a shard writer, status committed last) — and differ only in where
the stages run:

* :class:`~wfvae_cli.pipeline.local.LocalBackend`: this process; decode threads, the model on the calling
  thread, one writer thread for the whole store.
* :class:`~wfvae_cli.pipeline.ray.RayBackend`: a Ray cluster; model workers each own one shard at a time
  and write it themselves, this process schedules shards and aggregates progress.

:func:`~wfvae_cli.pipeline.encode.encode_dataset` drives a backend through its life cycle::

    backend = open_backend(opts)       # nothing started yet
    backend.prepare(model)             # model on its device / join Ray and size the job: fails before any work
    plan = backend.shape_plan(plan)    # (new stores) e.g. enough shards for every Ray worker
    result = backend.run(store, tasks, progress)
    backend.close()                    # always (stops a Ray the backend started)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wfvae_cli.model import WFVAE
    from wfvae_cli.pipeline.options import EncodeOptions
    from wfvae_cli.pipeline.planning import DatasetPlan
    from wfvae_cli.pipeline.stages import Encoded, Task
    from wfvae_cli.store import LatentStore


@dataclass
class StageTimes:
    """Seconds spent per stage (decode summed over its threads/tasks) and model idle time.

    ``preprocess``: host work turning decoded uint8 clips into the model's input batch (the copy into the
    pinned batch buffer, the device transfer, the scaling when it runs on the CPU); ``batch``: grouping
    clips into batches; both are on the model's critical path, which is why they are timed apart from
    ``model`` (the network itself).
    """

    wall: float = 0.0
    decode: float = 0.0
    model: float = 0.0
    model_wait: float = 0.0
    write: float = 0.0
    preprocess: float = 0.0
    batch: float = 0.0
    #: CPU seconds (this thread's) of the uint8 → float scaling done on the host because the model runs on the
    #: CPU: on an accelerator that work runs on the device, so the host-side cost per clip there is the
    #: measured CPU minus this (``wfvae bench pipeline`` reports both)
    preprocess_cpu: float = 0.0

    @property
    def model_busy_fraction(self) -> float:
        return self.model / self.wall if self.wall > 0 else 0.0


@dataclass
class RunResult:
    """The counts of one run; every backend returns one (or a subclass), so summaries are built alike."""

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


class Backend(ABC):
    """Where the stages run. Subclasses implement :meth:`prepare` and :meth:`run`; see the module docstring.

    ``opts`` may be refined by :meth:`prepare` (under Ray, ``workers`` becomes the number of model workers
    the cluster can hold); ``warnings`` collects what the summary should tell the user.
    """

    def __init__(self, opts: EncodeOptions) -> None:
        self.opts = opts
        self.warnings: list[str] = []

    @abstractmethod
    def prepare(self, model: WFVAE) -> None:
        """Get ready to encode with ``model``; a configuration that cannot work fails here, before any work."""

    def shape_plan(self, plan: DatasetPlan) -> DatasetPlan:
        """Adjust a new store's plan to this backend (shard sizes); the default keeps it."""
        return plan

    @abstractmethod
    def run(self, store: LatentStore, tasks: list[Task], progress: ProgressFn | None = None) -> RunResult:
        """Encode ``tasks`` (sorted by bucket, then row) into ``store``; per-sample errors become failed rows."""

    def close(self) -> None:  # noqa: B027 - optional hook: most backends hold nothing
        """Release what :meth:`prepare` acquired (idempotent; called whether or not :meth:`run` succeeded)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_backend(opts: EncodeOptions) -> Backend:
    """The backend ``opts`` ask for: Ray with ``opts.ray``, else this machine (Ray is imported only then)."""
    if opts.ray is not None:
        from wfvae_cli.pipeline.ray import RayBackend

        return RayBackend(opts)
    from wfvae_cli.pipeline.local import LocalBackend

    return LocalBackend(opts)
