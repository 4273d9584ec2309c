"""Typed results of a profiling run and their JSON form (schema ``wfvae-bench/1``, see docs/bench.md).

Results cross a process boundary (CPU children report back as JSON lines) and end up in files people
compare months later, so every field is explicit, in SI units (seconds, bytes), and round-trips through
``to_dict``/``from_dict``. Bump :data:`SCHEMA` when a field changes meaning or disappears.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Literal

from wfvae_cli.bench.settings import BenchSettings, Cell, Phase

SCHEMA = "wfvae-bench/1"

Status = Literal["ok", "oom", "error", "skipped"]
MemoryKind = Literal["cuda", "rss"]


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of the timed repeats (warm-up excluded); the median is the headline number
    because one slow repeat (another process, a page fault storm) should not move it."""

    times_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    @property
    def max_s(self) -> float:
        return max(self.times_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            "times_s": list(self.times_s),
            "median_s": self.median_s,
            "min_s": self.min_s,
            "max_s": self.max_s,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Timing:
        return cls(tuple(float(t) for t in data["times_s"]))


@dataclass(frozen=True)
class MemoryStats:
    """Peak memory of one phase.

    ``kind="cuda"``: ``torch.cuda`` allocator bytes (``max_memory_allocated`` after a reset);
    ``kind="rss"``: resident set size of the (child) process. ``baseline_bytes`` is the usage when the
    phase starts (model weights + input, after load); ``peak_bytes`` the maximum during the timed repeats
    (the peak is restarted after the warm-up, so one-off first-call costs such as compilation are left
    out); ``activation_bytes = peak - baseline`` is what the inference itself needs. ``phase_scoped`` is
    False when the peak could not be reset at the phase start (no ``/proc/self/clear_refs``), so the peak
    is the process lifetime's.
    """

    kind: MemoryKind
    peak_bytes: int
    baseline_bytes: int
    phase_scoped: bool = True

    @property
    def activation_bytes(self) -> int:
        return max(0, self.peak_bytes - self.baseline_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "peak_bytes": self.peak_bytes,
            "baseline_bytes": self.baseline_bytes,
            "activation_bytes": self.activation_bytes,
            "phase_scoped": self.phase_scoped,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryStats:
        return cls(data["kind"], int(data["peak_bytes"]), int(data["baseline_bytes"]), bool(data["phase_scoped"]))


@dataclass(frozen=True)
class PhaseResult:
    """Encode or decode of one cell: timing and memory when ``status == "ok"``, else ``error`` says why."""

    phase: Phase
    status: Status
    timing: Timing | None = None
    memory: MemoryStats | None = None
    clips: int = 1
    frames: int = 0
    error: str | None = None

    @property
    def clips_per_s(self) -> float | None:
        return self.clips / self.timing.median_s if self.timing and self.timing.median_s > 0 else None

    @property
    def frames_per_s(self) -> float | None:
        """Video frames per second (input frames for encode, output frames for decode)."""
        return self.clips * self.frames / self.timing.median_s if self.timing and self.timing.median_s > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "status": self.status,
            "error": self.error,
            "timing": self.timing.to_dict() if self.timing else None,
            "clips_per_s": self.clips_per_s,
            "frames_per_s": self.frames_per_s,
            "memory": self.memory.to_dict() if self.memory else None,
            "clips": self.clips,
            "frames": self.frames,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhaseResult:
        return cls(
            phase=data["phase"],
            status=data["status"],
            timing=Timing.from_dict(data["timing"]) if data.get("timing") else None,
            memory=MemoryStats.from_dict(data["memory"]) if data.get("memory") else None,
            clips=int(data.get("clips", 1)),
            frames=int(data.get("frames", 0)),
            error=data.get("error"),
        )


@dataclass(frozen=True)
class CellResult:
    """All phases of one configuration; ``status`` is the worst phase status (error > oom > ok)."""

    cell: Cell
    phases: tuple[PhaseResult, ...]
    batch_size: int
    latent_shape: tuple[int, ...] | None = None
    isolated: bool = False
    error: str | None = None

    @property
    def status(self) -> Status:
        states = {p.status for p in self.phases} or {"error"}
        for worst in ("error", "oom", "skipped"):
            if worst in states:
                return worst  # type: ignore[return-value]
        return "ok"

    def phase(self, name: Phase) -> PhaseResult | None:
        return next((p for p in self.phases if p.phase == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.cell.to_dict(),
            "inference": self.cell.inference,
            "label": self.cell.label,
            "batch_size": self.batch_size,
            "status": self.status,
            "error": self.error,
            "latent_shape": list(self.latent_shape) if self.latent_shape else None,
            "isolated": self.isolated,
            **{p.phase: p.to_dict() for p in self.phases},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellResult:
        cell = Cell(data["model"], data["frames"], data["height"], data["width"], data.get("chunk_frames"))
        phases = tuple(PhaseResult.from_dict(data[name]) for name in ("encode", "decode") if data.get(name))
        latent = data.get("latent_shape")
        return cls(cell, phases, int(data["batch_size"]), tuple(latent) if latent else None,
                   bool(data.get("isolated")), data.get("error"))


@dataclass(frozen=True)
class ModelInfo:
    """A benchmarked model: where its weights came from and its size (speed does not depend on weights)."""

    spec: str
    source: str
    params: dict[str, int]
    temporal_factor: int
    latent_dim: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "source": self.source,
            "params": dict(self.params),
            "temporal_factor": self.temporal_factor,
            "latent_dim": self.latent_dim,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        return cls(data["spec"], data["source"], dict(data["params"]), int(data["temporal_factor"]),
                   int(data["latent_dim"]))


@dataclass
class BenchReport:
    """A whole profiling run: machine, settings, models and one :class:`CellResult` per configuration."""

    machine: dict[str, Any]
    settings: BenchSettings
    models: list[ModelInfo]
    cells: list[CellResult] = field(default_factory=list)
    created: str = ""

    @property
    def failed(self) -> list[CellResult]:
        """Cells that errored (OOM is a measurement, not a failure)."""
        return [c for c in self.cells if c.status == "error"]

    def model(self, spec: str) -> ModelInfo | None:
        return next((m for m in self.models if m.spec == spec), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "created": self.created,
            "machine": self.machine,
            "settings": self.settings.to_dict(),
            "models": [m.to_dict() for m in self.models],
            "cells": [c.to_dict() for c in self.cells],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchReport:
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} report (schema {data.get('schema')!r})")
        return cls(
            machine=data["machine"],
            settings=BenchSettings.from_dict(data["settings"]),
            models=[ModelInfo.from_dict(m) for m in data["models"]],
            cells=[CellResult.from_dict(c) for c in data["cells"]],
            created=data.get("created", ""),
        )
