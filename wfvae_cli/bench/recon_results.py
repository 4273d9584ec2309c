"""Typed settings and results of ``wfvae bench recon`` and their JSON form (schema ``wfvae-bench-recon/1``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from wfvae_cli.bench.results import ModelInfo
from wfvae_cli.dtypes import check_dtype
from wfvae_cli.errors import WfvaeError

RECON_SCHEMA = "wfvae-bench-recon/1"
METRICS: tuple[str, ...] = ("psnr", "ssim", "lpips", "fvd")
CLIP_METRICS: tuple[str, ...] = ("psnr", "ssim", "lpips")
"""Per-clip metrics (averaged over clips); FVD is one distance over the whole set."""
BASELINES: tuple[str, ...] = ("pool",)
"""``--baseline pool``: 4×8×8 causal average pooling + trilinear upsampling (:mod:`wfvae_cli.metrics.baseline`)."""


@dataclass(frozen=True)
class ReconSettings:
    """Options of a reconstruction evaluation (the CLI flags one to one; see docs/bench.md)."""

    inputs: tuple[str, ...]
    model: str
    frames: int = 33
    height: int = 256
    width: int = 256
    chunk_frames: int | None = None
    metrics: tuple[str, ...] = METRICS
    lpips_weights: str | None = None
    i3d: str | None = None
    limit: int | None = None
    save_videos: str | None = None
    compare_chunked: int | None = None
    #: a preset's architecture with random weights (plumbing checks only: the numbers mean nothing)
    random_weights: bool = False
    device: str = "cpu"
    dtype: str = "fp32"
    decode_timeout: float | None = 60.0
    #: also score a trivial baseline on the same clips (``pool``), so the model's margin is visible
    baseline: str | None = None

    def __post_init__(self) -> None:
        if self.baseline is not None and self.baseline not in BASELINES:
            raise WfvaeError(f"--baseline {self.baseline!r}: choose from {', '.join(BASELINES)}")
        if not self.inputs:
            raise WfvaeError("no INPUT given: pass video files, folders, globs or manifests")
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise WfvaeError(f"--metrics {','.join(self.metrics)!r}: choose from {','.join(METRICS)}")
        check_dtype(self.dtype, "--precision")
        for name in ("chunk_frames", "compare_chunked", "limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise WfvaeError(f"--{name.replace('_', '-')} {value}: must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["inputs"], d["metrics"] = list(self.inputs), list(self.metrics)
        return d


@dataclass(frozen=True)
class ClipOutcome:
    """One evaluated clip: per-clip metrics for the reference pass and, if compared, the chunked pass."""

    path: str
    start_frame: int
    end_frame: int
    fps: float
    metrics: dict[str, float]
    chunked_metrics: dict[str, float] | None = None
    max_abs_diff: float | None = None
    seconds: float = 0.0
    saved: str | None = None
    #: the baseline's per-clip metrics (``--baseline``), same clip, same metric code
    baseline_metrics: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ClipFailure:
    """An input that could not be evaluated (``stage``: discover, probe/plan, decode) and why; not fatal."""

    path: str
    stage: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ReconReport:
    """A whole evaluation. ``summary`` holds clip means (and set-level ``fvd``) for the reference pass."""

    machine: dict[str, Any]
    settings: ReconSettings
    model: ModelInfo
    created: str = ""
    clips: list[ClipOutcome] = field(default_factory=list)
    failures: list[ClipFailure] = field(default_factory=list)
    summary: dict[str, float] = field(default_factory=dict)
    chunked_summary: dict[str, float] | None = None
    max_abs_diff: float | None = None
    fvd: dict[str, Any] | None = None
    chunked_fvd: dict[str, Any] | None = None
    unavailable: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: clip means of the baseline (``--baseline``); ``None`` without one
    baseline_summary: dict[str, float] | None = None

    @property
    def baseline_name(self) -> str | None:
        if self.settings.baseline != "pool":
            return None
        t, s = self.model.temporal_factor, 8
        return f"pool {t}x{s}x{s} trilinear"

    @property
    def margin(self) -> dict[str, float] | None:
        """Model minus baseline per metric (positive PSNR/SSIM and negative LPIPS favour the model)."""
        if self.baseline_summary is None:
            return None
        return {k: v - self.baseline_summary[k] for k, v in self.summary.items() if k in self.baseline_summary}

    @property
    def reference_label(self) -> str:
        chunk = self.settings.chunk_frames
        return "direct" if chunk is None else f"chunk {chunk}"

    @property
    def delta(self) -> dict[str, float] | None:
        """Chunked minus reference, per metric (the paper's Tab. 5 comparison)."""
        if self.chunked_summary is None:
            return None
        return {k: self.chunked_summary[k] - v for k, v in self.summary.items() if k in self.chunked_summary}

    @property
    def min_psnr_margin(self) -> float | None:
        """The model's worst per-clip PSNR margin over the baseline (the clip a user should look at)."""
        margins = [
            c.metrics["psnr"] - c.baseline_metrics["psnr"]
            for c in self.clips
            if c.baseline_metrics and "psnr" in c.baseline_metrics and "psnr" in c.metrics
        ]
        return min(margins) if margins else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": RECON_SCHEMA,
            "created": self.created,
            "machine": self.machine,
            "settings": self.settings.to_dict(),
            "model": self.model.to_dict(),
            "reference": self.reference_label,
            "summary": self.summary,
            "chunked_summary": self.chunked_summary,
            "delta": self.delta,
            "max_abs_diff": self.max_abs_diff,
            "fvd": self.fvd,
            "chunked_fvd": self.chunked_fvd,
            "unavailable": self.unavailable,
            "notes": self.notes,
            "baseline": None if self.baseline_summary is None else {
                "name": self.baseline_name, "summary": self.baseline_summary, "margin": self.margin,
                "min_psnr_margin": self.min_psnr_margin,
            },
            "clips": [c.to_dict() for c in self.clips],
            "failures": [f.to_dict() for f in self.failures],
        }
