"""`wfvae bench` (speed/memory profiling) and `wfvae bench recon` (reconstruction quality).

``bench`` is a Typer sub-app whose callback profiles when no subcommand is given, so both
``wfvae bench --res 256 --frames 17`` and ``wfvae bench recon VIDEOS --model M`` work. Progress goes to
stderr so that ``--json`` output on stdout stays machine-readable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from wfvae_cli.cli import console as ui
from wfvae_cli.cli.options import (
    Precision,
    check_device,
    flag,
    parse_int_list,
    parse_resolution,
    print_json,
    split_list,
)
from wfvae_cli.errors import EXIT_PARTIAL, WfvaeError


class Phase(str, Enum):
    encode = "encode"
    decode = "decode"
    both = "both"


class ConvAlgorithm(str, Enum):
    auto = "auto"
    direct = "direct"
    winograd = "winograd"

class Baseline(str, Enum):
    """Baselines ``bench recon`` can score beside the model."""

    pool = "pool"  # 4x8x8 causal average pooling + trilinear upsampling (wfvae_cli.metrics.baseline)


bench_app = typer.Typer(
    invoke_without_command=True,
    add_completion=False,
    rich_markup_mode="rich",
    help="Profile encode/decode speed and peak memory; [bold]bench recon[/] measures reconstruction quality.",
)

@contextmanager
def _progress(what: str) -> Iterator[Callable[[int, int, str], None]]:
    """Progress on stderr, driven by the library's ``progress(done, total, label)`` callback: a Rich bar on a
    terminal, a plain line per finished step otherwise (a benchmark step takes seconds to minutes)."""
    if not ui.interactive():
        def log(done: int, total: int, label: str) -> None:
            ui.log(f"{what}: {done}/{total} {label}")

        yield log
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(f"[bold]{what}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}", markup=False),
        console=ui.err,
        transient=True,
    ) as bar:
        task = bar.add_task("", total=None)

        def update(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=label)

        yield update


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def _emit_json(data: dict[str, Any], report_path: Path | None, as_json: bool) -> bool:
    """Write ``--report`` and print ``--json`` the one way every bench command does; True if stdout got JSON
    (the caller then prints no table, so stdout stays parseable)."""
    if report_path:
        _write_json(report_path, data)
    if as_json:
        print_json(data)
    return as_json


@bench_app.callback()
def bench(
    ctx: typer.Context,
    model: list[str] = typer.Option(["wfvae-l"], "--model", "-m", help="Model(s) to compare: preset or checkpoint; repeat or comma-separate."),
    res: list[str] = typer.Option(["256"], "--resolution", help="Resolution(s): N or HxW, comma-separated (256,512,768)."),
    frames: list[str] = typer.Option(["33"], "--frames", help="Frame count(s), 4k+1, comma-separated (17,33,65)."),
    batch_size: int = typer.Option(1, "--batch-size", help="Clips per batch."),
    precision: Precision = typer.Option(Precision.fp32, "--precision", help="CUDA: autocast; CPU: model cast."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N, mps or auto."),
    chunk_frames: int | None = typer.Option(None, "--chunk-frames", help="Also measure Causal-Cache chunked inference with N-frame chunks."),
    mode: Phase = typer.Option(Phase.both, "--mode", help="Which phases to time."),
    warmup: int = typer.Option(2, "--warmup", help="Untimed runs before timing."),
    repeat: int = typer.Option(5, "--repeat", help="Timed runs (median, min, max reported)."),
    compile_: bool = flag(False, "--compile", help="torch.compile the encoder/decoder modules."),
    channels_last: bool = flag(False, "--channels-last", help="channels_last_3d memory format for model and input."),
    conv_algorithm: ConvAlgorithm = typer.Option(ConvAlgorithm.auto, "--conv-algorithm", help="3x3 convs: auto (Winograd where faster on CPU), direct or winograd."),
    isolate: bool = flag(True, "--isolate/--no-isolate", help="CPU: each configuration in a fresh subprocess (clean peak RSS)."),
    max_rss_gb: float | None = typer.Option(None, "--max-rss-gb", help="CPU: kill a configuration whose RSS exceeds this many GiB (cell: OOM)."),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads (default: torch's)."),
    as_json: bool = flag(False, "--json", help="Print the report as JSON (schema wfvae-bench/1) instead of a table."),
    report_path: Path | None = typer.Option(None, "--report", dir_okay=False, help="Also write the JSON report to this file."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a time-vs-memory figure (png/pdf/svg)."),
) -> None:
    """Profile encode/decode time and peak memory over models × resolutions × frames."""
    if ctx.invoked_subcommand is not None:
        return
    from wfvae_cli.bench import BenchSettings, plot_report, resolve_device, run_profile
    from wfvae_cli.bench.render import profile_notes, profile_table

    device = check_device(device, allow_auto=True)
    sizes = [parse_resolution(r) for r in split_list(res)]
    lengths = parse_int_list(frames, "--frames")
    settings = BenchSettings(
        device=resolve_device(device), dtype=precision.value, batch_size=batch_size, warmup=warmup, repeat=repeat,
        mode=mode.value, chunk_frames=chunk_frames, compile=compile_, channels_last=channels_last,  # type: ignore[arg-type]
        conv_algorithm=conv_algorithm.value, isolate=isolate, max_rss_gb=max_rss_gb, threads=threads,
    )
    with _progress("bench") as update:
        report = run_profile(split_list(model), sizes, lengths, settings, progress=update)
    data = report.to_dict()
    if report_path:
        _write_json(report_path, data)
    if plot:
        plot_report(report, plot)
    if as_json:
        print_json(data)
    else:
        from rich.console import Console

        # a redirected table is not cut to 80 columns: it is read in a file, not a terminal
        out_console = ui.out if ui.out.is_terminal else Console(width=max(ui.out.width, 120))
        out_console.print(profile_table(report))
        for note in profile_notes(report):
            out_console.print(f"[yellow]{ui.esc(note)}[/]", highlight=False, soft_wrap=True)
    if report.failed:
        raise typer.Exit(EXIT_PARTIAL)


@bench_app.command("recon")
def recon(
    inputs: list[str] = typer.Argument(..., help="Videos, folders, globs, shards (.tar) or manifests (.txt/.csv/.jsonl/.parquet); paths or URLs."),
    model: str = typer.Option(..., "--model", "-m", help="Model: checkpoint dir/file, hub id, wfvae-tiny, or a preset with --random-weights."),
    random_weights: bool = flag(False, "--random-weights", help="Allow a preset without trained weights (plumbing checks: the numbers mean nothing)."),
    storage_options: str | None = typer.Option(None, "--storage-options", help="JSON object of fsspec options for URL inputs."),
    frames: int = typer.Option(33, "--frames", help="Frames per clip (4k+1); the head clip of each video."),
    res: str = typer.Option("256", "--resolution", help="Resolution N or HxW (resize + centre crop)."),
    chunk_frames: int | None = typer.Option(None, "--chunk-frames", help="Reference inference in Causal-Cache chunks of N frames (default: direct)."),
    metrics: str = typer.Option("psnr,ssim,lpips,fvd", "--metrics", help="Comma-separated: psnr, ssim, lpips, fvd."),
    lpips_weights: Path | None = typer.Option(None, "--lpips-weights", help="alexnet-owt-7be5be79.pth (or its folder)."),
    i3d: Path | None = typer.Option(None, "--i3d", help="i3d_torchscript.pt (or its folder) for rFVD."),
    limit: int | None = typer.Option(None, "--limit", help="Evaluate at most N videos (in sorted order)."),
    save_videos: Path | None = typer.Option(None, "--save-videos", help="Write the reconstructions as mp4 here."),
    compare_chunked: int | None = typer.Option(None, "--compare-chunked", help="Also run chunked inference (N frames) and report the difference."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N, mps or auto."),
    precision: Precision = typer.Option(Precision.fp32, "--precision", help="Compute precision."),
    decode_timeout: float = typer.Option(60.0, "--decode-timeout", help="Seconds allowed to read one video."),
    as_json: bool = flag(False, "--json", help="Print the report as JSON (schema wfvae-bench-recon/1)."),
    report_path: Path | None = typer.Option(None, "--report", dir_okay=False, help="Also write the JSON report to this file."),
    baseline: Baseline | None = typer.Option(None, "--baseline", help="Also score a baseline on the same clips: pool (4x8x8 causal average pooling + trilinear upsampling)."),
) -> None:
    """Reconstruction quality (PSNR, SSIM, LPIPS, rFVD) of a model on real videos; direct vs chunked."""
    from wfvae_cli.bench import ReconSettings, run_recon
    from wfvae_cli.bench.render import recon_table
    from wfvae_cli.io.remote import set_storage_options
    from wfvae_cli.storage import parse_storage_options

    device = check_device(device, allow_auto=True)
    set_storage_options(parse_storage_options(storage_options))  # URL inputs, here and in the decode workers
    height, width = parse_resolution(res)
    settings = ReconSettings(
        inputs=tuple(inputs), model=model, frames=frames, height=height, width=width, chunk_frames=chunk_frames,
        metrics=tuple(split_list([metrics])), lpips_weights=str(lpips_weights) if lpips_weights else None,
        i3d=str(i3d) if i3d else None, limit=limit, save_videos=str(save_videos) if save_videos else None,
        compare_chunked=compare_chunked, device=device, dtype=precision.value, decode_timeout=decode_timeout,
        random_weights=random_weights, baseline=baseline.value if baseline is not None else None,
    )
    with _progress("recon") as update:
        report = run_recon(settings, progress=update)
    if not _emit_json(report.to_dict(), report_path, as_json):
        ui.out.print(recon_table(report))
    esc = ui.esc
    for name, why in report.unavailable.items():
        ui.err.print(f"[yellow]{esc(name)} unavailable:[/] {esc(why)}", highlight=False, soft_wrap=True)
    for note in report.notes:
        ui.err.print(f"[yellow]note:[/] {esc(note)}", highlight=False, soft_wrap=True)
    for failure in report.failures:
        ui.err.print(f"[red]failed[/] {esc(failure.path)} ({esc(failure.stage)}): {esc(failure.reason)}",
                     highlight=False, soft_wrap=True)
    if not report.clips:
        raise WfvaeError("no clip could be evaluated: every input failed (see the lines above)")
    if report.failures:
        raise typer.Exit(EXIT_PARTIAL)


@bench_app.command("pipeline")
def pipeline(
    inputs: list[str] = typer.Argument(..., help="Videos, folders, globs, shards or manifests, as for `wfvae encode`."),
    model_time: float = typer.Option(..., "--model-time", help="Seconds per clip the stand-in model takes (no CPU used), e.g. 0.05 for WF-VAE-L 33x512² on an H100."),
    model: str = typer.Option("wfvae-l", "--model", "-m", help="Preset or checkpoint whose config gives the latent shape (no weights are loaded)."),
    frames: int = typer.Option(33, "--frames", help="Frames per clip (4k+1)."),
    sample_rate: int | None = typer.Option(None, "--sample-rate", help="Keep every N-th source frame."),
    fps: float | None = typer.Option(None, "--fps", help="Resample clips to this frame rate instead of --sample-rate."),
    clip_mode: str = typer.Option("uniform", "--clip-mode", help="head, uniform or sliding."),
    clips_per_video: int = typer.Option(8, "--clips-per-video", help="Clips per video for uniform/sliding."),
    res: str = typer.Option("512", "--resolution", help="Model input size N or HxW."),
    crop: str = typer.Option("center", "--crop", help="center or none."),
    batch_size: int = typer.Option(1, "--batch-size", help="Clips per model call."),
    precision: Precision = typer.Option(Precision.fp32, "--precision", help="Compute precision of the model input."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N, mps or auto (CUDA when present)."),
    decode_workers: int | None = typer.Option(None, "--decode-workers", help="Decode processes (default: one per usable core)."),
    decode_timeout: float = typer.Option(300.0, "--decode-timeout", help="Seconds before a hung decode is killed."),
    prefetch_mb: float | None = typer.Option(None, "--prefetch-mb", help="Decoded clips held ahead of the model, in MiB (default as encode)."),
    ray: str | None = typer.Option(None, "--ray", help="Run on the Ray executor: 'auto' or HOST:PORT (see docs/ray.md)."),
    model_workers: int | None = typer.Option(None, "--model-workers", help="With --ray: stand-in model workers (default 1)."),
    decode_cpus: float | None = typer.Option(None, "--decode-cpus", help="With --ray: CPUs per decode task."),
    raw: bool = flag(True, "--raw/--no-raw", help="Also measure the bare-decoder limit on the same clips (before and after)."),
    out: Path | None = typer.Option(None, "--out", help="Where the throwaway store goes (default: a temp dir; deleted after)."),
    as_json: bool = flag(False, "--json", help="Print the report as JSON (schema wfvae-bench-pipeline/1)."),
    report_path: Path | None = typer.Option(None, "--report", dir_okay=False, help="Also write the JSON report to this file."),
) -> None:
    """The real encode pipeline with a stand-in model of --model-time s/clip: clips/s vs the bare-decoder limit."""
    import shutil

    from wfvae_cli.bench.pipeline import default_out, render_text, run_pipeline_bench, usable_cores
    from wfvae_cli.pipeline import EncodeOptions

    device = check_device(device, allow_auto=True)
    if ray is None and (model_workers is not None or decode_cpus is not None):
        raise WfvaeError("--model-workers/--decode-cpus are for --ray")
    size = parse_resolution(res)
    workers = (model_workers or 1) if ray is not None else (decode_workers or usable_cores())
    target = out if out is not None else default_out()
    extra = {"prefetch_bytes": int(prefetch_mb * 2**20)} if prefetch_mb is not None else {}
    opts = EncodeOptions(
        inputs=tuple(inputs), out=target, model=model, frames=frames, stride=sample_rate, fps=fps,
        clip_mode=clip_mode, clips_per_video=clips_per_video, size=size, crop=crop, batch_size=batch_size,
        dtype=precision.value, device=device, workers=workers, decode_timeout=decode_timeout,  # type: ignore[arg-type]
        ray=ray, decode_cpus=decode_cpus, command=("wfvae", "bench", "pipeline"), **extra,
    )
    try:
        with _progress("bench pipeline") as update:
            report = run_pipeline_bench(opts, model_time, raw=raw, progress=update)
    finally:
        if out is None:
            shutil.rmtree(target.parent, ignore_errors=True)
    if not _emit_json(report.to_dict(), report_path, as_json):
        for line in render_text(report):
            ui.out.print(line, markup=False, highlight=False, soft_wrap=True)
    if report.failed:
        raise typer.Exit(EXIT_PARTIAL)
