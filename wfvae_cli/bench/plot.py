"""The paper's Fig. 1/4 view of a report: time against peak memory, one marker per model.

x is the median time of a phase, y its peak memory; each point is labelled with its input size, so a
model's points trace how it scales. Lower-left is better. One panel per measured phase (encode, decode).
Chunked (Causal Cache) cells use hollow markers: same time axis, lower memory is the point of them. An
axis switches to log scale when its values span more than 10x. Rendering uses the Agg backend, so it works
on headless machines and never opens a window.
"""

from __future__ import annotations

from pathlib import Path

from wfvae_cli.bench.results import BenchReport, CellResult
from wfvae_cli.bench.settings import Phase

GIB = 1024**3
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _points(report: BenchReport, phase: Phase) -> list[tuple[CellResult, float, float]]:
    out = []
    for cell in report.cells:
        result = cell.phase(phase)
        if result and result.status == "ok" and result.timing and result.memory:
            out.append((cell, result.timing.median_s, result.memory.peak_bytes / GIB))
    return out


def _size_label(cell: CellResult, several_lengths: bool) -> str:
    c = cell.cell
    size = f"{c.height}²" if c.height == c.width else f"{c.height}×{c.width}"
    return f"{size}×{c.frames}" if several_lengths else size


def _spread(values: list[float]) -> bool:
    positive = [v for v in values if v > 0]
    return len(positive) >= 2 and max(positive) / min(positive) > 10


def plot_report(report: BenchReport, path: str | Path) -> Path:
    """Write the figure to ``path`` (format from the suffix, e.g. ``.png``/``.pdf``) and return it."""
    from wfvae_cli.extras import require

    matplotlib = require("matplotlib", "--plot")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    phases = report.settings.phases
    fig, axes = plt.subplots(1, len(phases), figsize=(6.4 * len(phases), 4.8), squeeze=False)
    several_lengths = len({c.cell.frames for c in report.cells}) > 1
    specs = [m.spec for m in report.models]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    memory_name = "peak allocated" if report.settings.is_cuda else "peak RSS"
    for ax, phase in zip(axes[0], phases, strict=True):
        points = _points(report, phase)
        for k, spec in enumerate(specs):
            for chunked in (False, True):
                sel = [p for p in points if p[0].cell.model == spec and (p[0].cell.chunk_frames is not None) == chunked]
                if not sel:
                    continue
                color = colors[k % len(colors)]
                name = spec.rstrip("/").rsplit("/", 1)[-1]
                label = name if not chunked else f"{name} (chunk {sel[0][0].cell.chunk_frames})"
                ax.plot(
                    [p[1] for p in sel],
                    [p[2] for p in sel],
                    linestyle="--" if chunked else "-",
                    marker=_MARKERS[k % len(_MARKERS)],
                    markersize=8,
                    color=color,
                    markerfacecolor="none" if chunked else color,
                    label=label,
                )
                for cell, x, y in sel:
                    ax.annotate(_size_label(cell, several_lengths), (x, y), textcoords="offset points",
                                xytext=(6, 4), fontsize=8)
        if _spread([p[1] for p in points]):
            ax.set_xscale("log")
        if _spread([p[2] for p in points]):
            ax.set_yscale("log")
        failed = sum(1 for c in report.cells if (r := c.phase(phase)) is not None and r.status != "ok")
        title = f"{phase} — {report.settings.device}, {report.settings.dtype}, batch {report.settings.batch_size}"
        ax.set_title(title + (f" ({failed} OOM/failed not shown)" if failed else ""), fontsize=10)
        ax.set_xlabel(f"{phase} time per batch (s, median)")
        ax.set_ylabel(f"{memory_name} (GiB)")
        ax.grid(True, which="both", alpha=0.3)
        if points:
            ax.legend(fontsize=8)
    fig.suptitle(f"WF-VAE — {report.machine.get('device_name', '')}", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
