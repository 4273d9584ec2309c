"""A profiling run over models × resolutions × frames: :func:`run_profile` returns a :class:`BenchReport`.

Models are described once, up front, so that a wrong spec or an impossible frame count fails in one line
before minutes of measurement; presets are built on the ``meta`` device for that (parameter counts without
allocating or initialising weights). Each configuration then runs in a fresh child on CPU (see
:mod:`wfvae_cli.bench.isolate`) or in this process on CUDA, and never stops the run when it fails.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from wfvae_cli.bench.isolate import measure_isolated
from wfvae_cli.bench.machine import machine_info, now_iso
from wfvae_cli.bench.measure import measure_cell
from wfvae_cli.bench.results import BenchReport, CellResult, ModelInfo
from wfvae_cli.bench.settings import BenchSettings, Cell, plan_cells
from wfvae_cli.errors import WfvaeError
from wfvae_cli.model import WFVAE, load_model, preset_config
from wfvae_cli.model.loading import PRESET_SEED

#: ``progress(done, total, label)`` before each configuration (done < total) and once at the end
Progress = Callable[[int, int, str], None]


def describe_model(spec: str) -> ModelInfo:
    """Parameter counts and provenance of ``spec`` (presets: on the meta device, nothing allocated)."""
    model: WFVAE
    try:
        is_preset = not Path(spec).expanduser().exists() and preset_config(spec) is not None
    except KeyError:
        is_preset = False
    if is_preset:
        with torch.device("meta"):
            model = WFVAE(preset_config(spec))
        source = f"preset:{spec.lower()} (random init, seed {PRESET_SEED})"
    else:
        model = load_model(spec)
        source = model.source
    cfg = model.config
    info = ModelInfo(spec, source, model.num_params(), cfg.temporal_factor, cfg.latent_dim)
    del model
    return info


def check_frames(info: ModelInfo, frames: list[int]) -> None:
    m = info.temporal_factor
    for t in frames:
        if t < 1 or (t - 1) % m:
            raise WfvaeError(
                f"--frames {t}: {info.spec} needs {m}k+1 frames (e.g. {m + 1}, {4 * m + 1}, {8 * m + 1})"
            )


def run_cell(cell: Cell, settings: BenchSettings) -> CellResult:
    """One configuration, isolated in a child process when that is what the settings ask for."""
    if settings.subprocess_per_cell:
        return measure_isolated(cell, settings)
    return measure_cell(cell, settings)


def run_profile(
    models: list[str],
    sizes: list[tuple[int, int]],
    frames: list[int],
    settings: BenchSettings,
    progress: Progress | None = None,
) -> BenchReport:
    """Measure every configuration of the grid; failures and OOMs are recorded in their cells."""
    infos = [describe_model(spec) for spec in dict.fromkeys(models)]
    for info in infos:
        check_frames(info, frames)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    else:  # children pin the parent's count, so the report's "threads" holds for every cell
        settings = BenchSettings.from_dict({**settings.to_dict(), "threads": torch.get_num_threads()})
    report = BenchReport(machine_info(settings.device), settings, infos, created=now_iso())
    cells = plan_cells(list(dict.fromkeys(models)), sizes, frames, settings.chunk_frames)
    for i, cell in enumerate(cells):
        if progress:
            progress(i, len(cells), cell.label)
        report.cells.append(run_cell(cell, settings))
    if progress:
        progress(len(cells), len(cells), "done")
    return report
