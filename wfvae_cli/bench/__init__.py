"""Benchmarks of the WF-VAE: speed and memory profiling, and reconstruction quality (see docs/bench.md).

Profiling::

    from wfvae_cli.bench import BenchSettings, run_profile, plot_report
    report = run_profile(["wfvae-s", "wfvae-l"], [(256, 256)], [33], BenchSettings(device="cpu", repeat=3))
    report.to_dict()                     # {"schema": "wfvae-bench/1", "machine": ..., "cells": [...]}
    plot_report(report, "bench.png")     # time vs peak memory, one marker per model

Reconstruction::

    from wfvae_cli.bench import ReconSettings, run_recon
    report = run_recon(ReconSettings(inputs=("videos/",), model="wfvae-l", metrics=("psnr", "ssim")))

This package imports neither Rich nor matplotlib at import time (CPU measurement children import it, and
whatever they import is part of the memory they measure); :mod:`wfvae_cli.bench.render` and
:func:`plot_report` bring those in when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wfvae_cli.bench.recon_results import RECON_SCHEMA, ClipFailure, ClipOutcome, ReconReport, ReconSettings
from wfvae_cli.bench.results import (
    SCHEMA,
    BenchReport,
    CellResult,
    MemoryStats,
    ModelInfo,
    PhaseResult,
    Timing,
)
from wfvae_cli.bench.settings import BenchSettings, Cell, plan_cells, resolve_device

if TYPE_CHECKING:
    from wfvae_cli.bench.plot import plot_report
    from wfvae_cli.bench.profile import run_profile
    from wfvae_cli.bench.recon import run_recon

__all__ = [
    "RECON_SCHEMA",
    "SCHEMA",
    "BenchReport",
    "BenchSettings",
    "Cell",
    "CellResult",
    "ClipFailure",
    "ClipOutcome",
    "MemoryStats",
    "ModelInfo",
    "PhaseResult",
    "ReconReport",
    "ReconSettings",
    "Timing",
    "plan_cells",
    "plot_report",
    "resolve_device",
    "run_profile",
    "run_recon",
]

_LAZY = {
    "plot_report": "wfvae_cli.bench.plot",
    "run_profile": "wfvae_cli.bench.profile",
    "run_recon": "wfvae_cli.bench.recon",
}


def __getattr__(name: str) -> Any:
    """Lazy entry points: ``run_recon`` pulls in the video and metric stacks, ``plot_report`` matplotlib."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
