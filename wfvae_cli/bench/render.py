"""Rich tables for profiling and reconstruction reports (what ``wfvae bench`` prints without ``--json``).

Kept out of the CLI module so that notebooks and scripts can print the same tables, and out of the result
modules so that the child processes never import Rich.
"""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from wfvae_cli.bench.recon_results import ReconReport
from wfvae_cli.bench.results import BenchReport, PhaseResult


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "–"
    if n >= 1024**3:
        return f"{n / 1024**3:.2f} GiB"
    return f"{n / 1024**2:.0f} MiB"


def _seconds(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _phase_cells(result: PhaseResult) -> list[str]:
    if result.status != "ok" or result.timing is None:
        tag = {"oom": "[bold red]OOM[/]", "error": "[red]error[/]", "skipped": "skipped"}[result.status]
        return [tag, "", "", "", "", ""]
    t = result.timing
    mem = result.memory
    return [
        _seconds(t.median_s),
        f"{_seconds(t.min_s)}–{_seconds(t.max_s)}",
        f"{result.clips_per_s:.3g}",
        f"{result.frames_per_s:.3g}",
        fmt_bytes(mem.peak_bytes if mem else None),
        fmt_bytes(mem.activation_bytes if mem else None),
    ]


def _model_name(spec: str) -> str:
    """Presets as given; a checkpoint path by its last component (the full path is in the JSON)."""
    return spec.rstrip("/").rsplit("/", 1)[-1] if "/" in spec else spec


def profile_table(report: BenchReport) -> Table:
    """One row per phase of every configuration; OOM/error rows show the tag, reasons go in :func:`profile_notes`.

    The model and input columns spread over a cell's rows (name, then parameter count; size, then direct
    or chunked) to keep the table narrow enough for a terminal.
    """
    s = report.settings
    memory = "GPU allocated" if s.is_cuda else ("RSS, own process" if s.subprocess_per_cell else "RSS, shared process")
    title = (
        f"WF-VAE bench — {report.machine.get('device_name')} ({s.device}, {s.dtype}, batch {s.batch_size}, "
        f"{s.threads} threads), warm-up {s.warmup}, repeat {s.repeat}"
        + (", compiled" if s.compile else "")
        + (", channels-last" if s.channels_last else "")
        + (f", {s.conv_algorithm} convs" if s.conv_algorithm != "auto" else "")
    )
    table = Table(title=title, title_justify="left", caption=f"memory: {memory}; activation = peak − after load",
                  caption_justify="left")
    for name, justify in [
        ("model", "left"), ("input T×H×W", "left"), ("phase", "left"), ("median s", "right"),
        ("min–max s", "right"), ("clips/s", "right"), ("frames/s", "right"), ("peak", "right"),
        ("activation", "right"),
    ]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for cell in report.cells:
        info = report.model(cell.cell.model)
        c = cell.cell
        params = f"{info.params['total'] / 1e6:.1f}M params" if info else ""
        how = "direct" if c.chunk_frames is None else f"chunk {c.chunk_frames}"
        heads = [[escape(_model_name(c.model)), f"{c.frames}×{c.height}×{c.width}"], [params, how]]  # user text
        if len(cell.phases) == 1:
            heads = [[f"{heads[0][0]} ({params})", f"{heads[0][1]} {how}"]]
        for i, result in enumerate(cell.phases):
            head = heads[i] if i < len(heads) else ["", ""]
            table.add_row(*head, result.phase, *_phase_cells(result), end_section=i == len(cell.phases) - 1)
    return table


def profile_notes(report: BenchReport) -> list[str]:
    """One line per OOM/failed phase: which configuration and why."""
    return [
        f"{cell.cell.label}/{r.phase}: {r.status.upper()}: {r.error}"
        for cell in report.cells
        for r in cell.phases
        if r.status != "ok"
    ]


def _metric(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def recon_table(report: ReconReport) -> Table:
    """Mean metrics over the evaluated clips; with a chunked comparison, chunked values and the difference."""
    s = report.settings
    title = (
        f"WF-VAE reconstruction — {escape(report.model.spec)}, {len(report.clips)} clips of "
        f"{s.frames}×{s.height}×{s.width} "
        f"({report.reference_label})"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column(report.reference_label, justify="right")
    compare = report.chunked_summary is not None
    if compare:
        table.add_column(f"chunk {s.compare_chunked}", justify="right")
        table.add_column("Δ (chunked − ref)", justify="right")
    base = report.baseline_summary
    if base is not None:
        table.add_column(report.baseline_name or "baseline", justify="right")
        table.add_column("model − baseline", justify="right")
    extra = (2 if compare else 0) + (2 if base is not None else 0)
    for name in s.metrics:
        if name in report.unavailable:
            table.add_row(name, "[yellow]unavailable[/]", *([""] * extra))
            continue
        ref = report.summary.get(name)
        row = [name, _metric(ref)]
        if compare:
            chunked = report.chunked_summary.get(name) if report.chunked_summary else None
            delta = None if ref is None or chunked is None else chunked - ref
            row += [_metric(chunked), "–" if delta is None else f"{delta:+.2e}"]
        if base is not None:
            b = base.get(name)
            row += [_metric(b), "–" if b is None or ref is None else f"{ref - b:+.4f}"]
        table.add_row(*row)
    if compare:
        table.add_row("max |Δ| recon", "", "", f"{report.max_abs_diff:.2e}" if report.max_abs_diff is not None else "–",
                      *([""] * (2 if base is not None else 0)))
    if base is not None and report.min_psnr_margin is not None:
        table.add_row("worst clip psnr margin", "", *([""] * (2 if compare else 0)), "",
                      f"{report.min_psnr_margin:+.4f}")
    return table
