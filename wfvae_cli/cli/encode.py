"""`wfvae encode`: a dataset of videos -> a resumable, bucketed Zarr v3 latent store."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from wfvae_cli.cli.options import console, err_console, human_bytes, parse_resolution, print_json
from wfvae_cli.errors import EXIT_OK, EXIT_PARTIAL, WfvaeError
from wfvae_cli.storage import parse_storage_options


def redacted_command(argv: list[str]) -> tuple[str, ...]:
    """The command line recorded in the store, without the value of ``--storage-options`` (it may hold secrets)."""
    out, hide = ["wfvae"], False
    for arg in argv:
        if hide:
            out.append("<redacted>")
            hide = False
        elif arg.startswith("--storage-options="):
            out.append("--storage-options=<redacted>")
        else:
            hide = arg == "--storage-options"
            out.append(arg)
    return tuple(out)

#: this module's commands; cli/app.py adds them to the `wfvae` app (commands never import the app)
app = typer.Typer()


@app.command()
def encode(
    inputs: list[str] = typer.Argument(..., help="Video files, folders (recursive), globs, webdataset shards (.tar, brace ranges) or manifests (.txt/.csv/.jsonl/.parquet); local paths or URLs (s3://, gs://, az://, https://, file://)."),
    out: Path = typer.Option(..., "--out", "-o", help="Latent store to create or resume (e.g. latents.zarr)."),
    model: str = typer.Option(..., "--model", "-m", help="Model: checkpoint dir/file, hub id, or preset (random weights)."),
    frames: int = typer.Option(33, "--frames", help="Frames per clip (4k+1; 8k+1 for 8x models)."),
    stride: int | None = typer.Option(None, "--stride", help="Keep every N-th source frame (default 1)."),
    fps: float | None = typer.Option(None, "--fps", help="Resample clips to this frame rate instead of --stride."),
    clip_mode: str = typer.Option("head", "--clip-mode", help="head | uniform | sliding | full (whole video, streamed)."),
    clips_per_video: int = typer.Option(1, "--clips-per-video", help="Clips per video for uniform/sliding."),
    res: str | None = typer.Option(None, "--res", help="Model input size: N or HxW (multiples of 8). Default 256."),
    height: int | None = typer.Option(None, "--height", help="Model input height (with --width)."),
    width: int | None = typer.Option(None, "--width", help="Model input width (with --height)."),
    buckets: str | None = typer.Option(None, "--buckets", help="'auto' (aspect buckets of ~res² pixels) or HxW,HxW,..."),
    crop: str = typer.Option("center", "--crop", help="center (shorter-side resize + center crop) | none (stretch)."),
    batch_size: int = typer.Option(1, "--batch-size", help="Clips per model call (same bucket)."),
    dtype: str = typer.Option("fp32", "--dtype", help="Compute dtype: fp32 | bf16 | fp16 (autocast on CUDA)."),
    store_dtype: str = typer.Option("fp32", "--store-dtype", help="Stored dtype: fp32 | fp16 (half the size)."),
    store_sample: bool = typer.Option(False, "--store-sample", help="Store one posterior sample (seeded) instead of mean+logvar."),
    seed: int = typer.Option(0, "--seed", help="Seed of the stored sample (per row, independent of batching)."),
    chunk_frames: int | None = typer.Option(None, "--chunk-frames", help="Causal Cache chunk (frames); bounds memory."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N"),
    workers: int | None = typer.Option(None, "--workers", help="Decode threads (prefetching ahead of the model; default 2). With --ray: model workers (default one per GPU of the cluster; required on CPU-only clusters)."),
    decode_timeout: float = typer.Option(300.0, "--decode-timeout", help="Seconds before a hung decode is killed."),
    shard_size: int | None = typer.Option(None, "--shard-size", help="Samples per shard (default: ~64 MiB per shard)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing store instead of resuming it."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="On resume, also redo samples that failed."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (clips, buckets, size, rejects) and exit."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary instead of tables."),
    storage_options: str | None = typer.Option(None, "--storage-options", help="JSON object of fsspec options for URL inputs, e.g. '{\"anon\": true}' or '{\"endpoint_url\": \"http://…\"}' (credentials otherwise come from the standard env/config files)."),
    path_col: str = typer.Option("path", "--path-col", help="Manifest column with the video path or URL."),
    caption_col: str = typer.Option("caption", "--caption-col", help="Manifest column with the caption."),
    key_col: str = typer.Option("key", "--key-col", help="Manifest column with the sample key (default key: the path relative to its input root)."),
    # --- Ray backend (docs/ray.md)
    ray: str | None = typer.Option(None, "--ray", help="Encode on a Ray cluster: 'auto' (RAY_ADDRESS or a running cluster, else start a local one) or the head's HOST:PORT. See docs/ray.md."),
    num_gpus_per_worker: float | None = typer.Option(None, "--num-gpus-per-worker", help="With --ray: GPUs per model worker (default 1 when the cluster has GPUs, else 0; 0.5 puts two on a GPU)."),
    decode_cpus: float | None = typer.Option(None, "--decode-cpus", help="With --ray: CPUs each decode task reserves (default 1 if the model workers leave CPUs free, else 0 = share their cores)."),
) -> None:
    """Encode videos into WF-VAE latents in a Zarr v3 store; rerun the same command to resume.

    Exit code 0 when every input was encoded, 1 when some were rejected or failed (listed), 2 on bad
    options or an incompatible store.
    """
    from wfvae_cli.pipeline import EncodeOptions, encode_dataset

    size, bucket_list = _sizes(res, height, width, buckets)
    opts = EncodeOptions(
        inputs=tuple(inputs), out=out, model=model, frames=frames, stride=stride, fps=fps, clip_mode=clip_mode,
        clips_per_video=clips_per_video, size=size, buckets=bucket_list, crop=crop, batch_size=batch_size,
        dtype=dtype, store_dtype=store_dtype, store_sample=store_sample, seed=seed,  # type: ignore[arg-type]
        chunk_frames=chunk_frames, device=device, decode_timeout=decode_timeout,
        overwrite=overwrite, retry_failed=retry_failed, shard_size=shard_size, command=redacted_command(sys.argv[1:]),
        storage_options=parse_storage_options(storage_options), path_col=path_col, caption_col=caption_col, key_col=key_col,
        # --workers: decode threads locally (default 2); model workers under Ray (default 0 = one per GPU)
        workers=workers if workers is not None else (0 if ray is not None else 2),
        ray=ray, num_gpus_per_worker=num_gpus_per_worker, decode_cpus=decode_cpus,
    )
    with _progress(disable=as_json) as (progress, on_plan, on_run):
        summary = encode_dataset(opts, progress=on_run, on_plan=on_plan, dry_run=dry_run)
        progress.stop()
    if as_json:
        print_json(summary.to_dict())
    else:
        _render(summary)
    raise typer.Exit(EXIT_OK if summary.ok else EXIT_PARTIAL)


def _sizes(res: str | None, height: int | None, width: int | None, buckets: str | None):
    if (height is None) != (width is None):
        raise WfvaeError("--height and --width go together")
    if height is not None and (res is not None or buckets is not None):
        raise WfvaeError("give either --res, --height/--width, or --buckets")
    from wfvae_cli.pipeline import EncodeOptions

    if buckets is not None:
        base = parse_resolution(res or "256")
        return None, EncodeOptions.parse_buckets(buckets, int((base[0] * base[1]) ** 0.5))
    if height is not None:
        return (height, width), ()
    return parse_resolution(res or "256"), ()


class _progress:
    """Rich progress for planning (probing) and encoding; rendered on stderr so --json stays clean."""

    def __init__(self, disable: bool) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("[red]{task.fields[errors]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            disable=disable,
            transient=False,
        )
        self.plan_task = None
        self.run_task = None
        self.worker_tasks: dict[int, TaskID] = {}

    def __enter__(self):
        self.progress.start()
        return self.progress, self.on_plan, self.on_run

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def on_plan(self, stage: str, done: int, total: int) -> None:
        if self.plan_task is None:
            self.plan_task = self.progress.add_task("probing videos", total=total, rate="", errors="")
        self.progress.update(self.plan_task, completed=done)

    def on_run(self, result) -> None:
        t = result.times
        if self.run_task is None:
            self.run_task = self.progress.add_task("encoding clips", total=result.total or None, rate="", errors="")
        wall = max(t.wall, 1e-9)
        self.progress.update(
            self.run_task,
            completed=result.done + result.failed,
            rate=f"{result.done / wall:.2f} clips/s · {result.frames / wall:.1f} frames/s · model busy {t.model_busy_fraction:.0%}",
            errors=f"{result.failed} failed" if result.failed else "",
        )
        for w in getattr(result, "workers", ()):  # --ray: one line per model worker (RayRunResult)
            if w.index not in self.worker_tasks:
                self.worker_tasks[w.index] = self.progress.add_task("", total=None, rate="", errors="")
            self.progress.update(
                self.worker_tasks[w.index],
                description=f"  worker {w.index} · {w.node_ip or '?'} · {w.device or '?'} · {w.state}",
                completed=w.done,
                rate=f"{w.clips_per_s:.2f} clips/s",
                errors=f"{w.failed} failed" if w.failed else "",
            )


def _render(summary) -> None:
    title = "plan (dry run)" if summary.dry_run else ("resumed " if summary.resumed else "") + f"store {summary.store}"
    table = Table(title=title, title_justify="left")
    for col in ("bucket", "latent (C,T,H,W)", "clips", "done", "failed", "pending"):
        table.add_column(col, justify="left" if col == "bucket" else "right")
    for bid, b in summary.buckets.items():
        table.add_row(bid, str(tuple(b["latent_shape"])), str(b["clips"]), str(b.get("done", "")),
                      str(b.get("failed", "")), str(b.get("pending", "")))
    console.print(table)
    line = f"{summary.inputs} inputs · {summary.videos} videos · {summary.clips} clips"
    if summary.dry_run:
        line += f" · estimated latents {human_bytes(summary.estimated_bytes)} (uncompressed)"
    else:
        t = summary.times
        line += (f" · encoded {summary.done} now ({summary.already_done} already done) in {t.get('wall_s', 0):.1f} s"
                 f" · model busy {t.get('model_busy_fraction', 0):.0%}")
    console.print(line)
    for w in summary.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    problems = [("rejected", s, r) for s, r in summary.rejected] + [("failed", s, r) for s, r in summary.failures]
    if problems:
        ptable = Table(title=f"{len(problems)} problem(s)", title_justify="left", title_style="bold red")
        ptable.add_column("")
        ptable.add_column("input", overflow="fold")
        ptable.add_column("reason", overflow="fold")
        for kind, source, reason in problems[:50]:
            ptable.add_row(kind, source, reason.removeprefix(f"{source}: "))
        console.print(ptable)
        if len(problems) > 50:
            console.print(f"… and {len(problems) - 50} more (see --json or `wfvae info {summary.store}`)")
