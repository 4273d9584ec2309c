"""`wfvae encode`: a dataset of videos -> a resumable, bucketed Zarr v3 latent store."""

from __future__ import annotations

import sys
import time
from enum import Enum
from pathlib import Path

import typer

from wfvae_cli.cli import console as ui
from wfvae_cli.cli.options import (
    Precision,
    StoreDtype,
    check_device,
    flag,
    human_bytes,
    parse_resolution,
    print_json,
)
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


class ClipMode(str, Enum):
    head = "head"
    uniform = "uniform"
    sliding = "sliding"
    full = "full"


class Crop(str, Enum):
    center = "center"
    none = "none"


@app.command()
def encode(
    inputs: list[str] = typer.Argument(..., help="Video files, folders (recursive), globs, webdataset shards (.tar, brace ranges) or manifests (.txt/.csv/.jsonl/.parquet); local paths or URLs (s3://, gs://, az://, https://, file://)."),
    out: str = typer.Option(..., "--out", "-o", help="Latent store to create or resume: a local path (latents.zarr) or a URL (s3://bucket/latents.zarr, any fsspec URL)."),
    model: str = typer.Option(..., "--model", "-m", help="Model: checkpoint dir/file, hub id, wfvae-tiny, or a preset with --random-weights."),
    random_weights: bool = flag(False, "--random-weights", help="Allow a preset without trained weights (random init, seeded): plumbing tests only."),
    frames: int = typer.Option(33, "--frames", help="Frames per clip (4k+1; 8k+1 for 8x models)."),
    sample_rate: int | None = typer.Option(None, "--sample-rate", help="Keep every N-th source frame (default 1; recipes: data.sample_rate)."),
    fps: float | None = typer.Option(None, "--fps", help="Resample clips to this frame rate instead of --sample-rate."),
    clip_mode: ClipMode = typer.Option(ClipMode.head, "--clip-mode", help="Clips per video: head, uniform, sliding, or full (whole video, streamed)."),
    clips_per_video: int = typer.Option(1, "--clips-per-video", help="Clips per video for uniform/sliding."),
    resolution: str | None = typer.Option(None, "--resolution", help="Model input size: N or HxW (multiples of 8). Default 256."),
    height: int | None = typer.Option(None, "--height", help="Model input height (with --width)."),
    width: int | None = typer.Option(None, "--width", help="Model input width (with --height)."),
    buckets: str | None = typer.Option(None, "--buckets", help="'auto' (aspect buckets of ~resolution² pixels) or HxW,HxW,..."),
    crop: Crop = typer.Option(Crop.center, "--crop", help="center (shorter-side resize + center crop) or none (stretch)."),
    batch_size: int = typer.Option(1, "--batch-size", help="Clips per model call (same bucket)."),
    precision: Precision = typer.Option(Precision.fp32, "--precision", help="Compute precision (autocast on CUDA)."),
    store_dtype: StoreDtype = typer.Option(StoreDtype.fp32, "--store-dtype", help="Stored dtype (fp16: half the size)."),
    store_sample: bool = flag(False, "--store-sample", help="Store one posterior sample (seeded) instead of mean+logvar."),
    seed: int = typer.Option(0, "--seed", help="Seed of the stored sample (per row, independent of batching)."),
    chunk_frames: int | None = typer.Option(None, "--chunk-frames", help="Causal Cache chunk (frames); bounds memory."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N or mps. With --ray: a worker given a GPU uses it."),
    decode_workers: int | None = typer.Option(None, "--decode-workers", help="Decode processes working ahead of the model (default: one per usable core). Not with --ray (use --decode-cpus)."),
    prefetch_mb: float = typer.Option(1024.0, "--prefetch-mb", help="Decoded clips held ahead of the model, in MiB of uint8 frames (bounds memory whatever --batch-size)."),
    decode_timeout: float = typer.Option(300.0, "--decode-timeout", help="Seconds before a hung decode is killed."),
    shard_size: int | None = typer.Option(None, "--shard-size", help="Samples per shard (default: ~64 MiB per shard)."),
    overwrite: bool = flag(False, "--overwrite", help="Replace an existing store instead of resuming it."),
    retry_failed: bool = flag(False, "--retry-failed", help="On resume, also redo samples that failed."),
    repair: bool = flag(False, "--repair", help="On resume, first read every done sample (as wfvae verify does) and re-encode the unreadable ones. Without it a rerun re-encodes done samples whose chunks are missing."),
    dry_run: bool = flag(False, "--dry-run", help="Print the plan (clips, buckets, size, rejects) and exit."),
    as_json: bool = flag(False, "--json", help="Print a machine-readable summary instead of tables."),
    log_every: float = typer.Option(10.0, "--log-every", min=0.1, help="Seconds between plain progress lines when stderr is not a terminal (and in --log-file)."),
    log_file: Path | None = typer.Option(None, "--log-file", dir_okay=False, help="Also append timestamped status/progress/error lines to this file."),
    storage_options: str | None = typer.Option(None, "--storage-options", help="JSON object of fsspec options for URL inputs and a URL --out, e.g. '{\"anon\": true}' or '{\"endpoint_url\": \"http://…\"}' (credentials otherwise come from the standard env/config files)."),
    path_col: str = typer.Option("path", "--path-col", help="Manifest column with the video path or URL."),
    caption_col: str = typer.Option("caption", "--caption-col", help="Manifest column with the caption."),
    key_col: str = typer.Option("key", "--key-col", help="Manifest column with the sample key (default key: the path relative to its input root)."),
    # --- Ray backend (docs/ray.md)
    ray: str | None = typer.Option(None, "--ray", help="Encode on a Ray cluster: 'auto' (RAY_ADDRESS or a running cluster, else start a local one) or the head's HOST:PORT. See docs/ray.md."),
    model_workers: int | None = typer.Option(None, "--model-workers", help="With --ray: model workers (default one per GPU of the cluster; required on CPU-only clusters)."),
    num_gpus_per_worker: float | None = typer.Option(None, "--num-gpus-per-worker", help="With --ray: GPUs per model worker (default 1 when the cluster has GPUs, else 0; 0.5 puts two on a GPU)."),
    decode_cpus: float | None = typer.Option(None, "--decode-cpus", help="With --ray: CPUs each decode task reserves (default 1 if the model workers leave CPUs free, else 0 = share their cores)."),
) -> None:
    """Encode videos into WF-VAE latents in a Zarr v3 store; rerun the same command to resume.

    Exit code 0 when every input was encoded, 1 when some were rejected or failed (listed), 2 on bad
    options or an incompatible store, 130 on Ctrl-C (rerun the same command to resume). Each run also
    leaves its statistics in the store (stats/<run id>, see docs/store-format.md).
    """
    if log_file is not None:
        ui.set_log_file(log_file)
    # before anything is created; under Ray "auto" is decided per model worker (a GPU if it was given one)
    device = "cpu" if ray is not None and device.strip().lower() == "auto" else check_device(device)
    if ray is None and model_workers is not None:
        raise WfvaeError("--model-workers is for --ray (Ray model workers); locally use --decode-workers")
    if ray is not None and decode_workers is not None:
        raise WfvaeError("--decode-workers is for the local run; with --ray decoding runs as Ray tasks (--decode-cpus)")
    from wfvae_cli.pipeline import EncodeOptions, encode_dataset
    from wfvae_cli.pipeline.options import usable_cores

    size, bucket_list = _sizes(resolution, height, width, buckets)
    workers = (model_workers if model_workers is not None else 0) if ray is not None else (
        decode_workers if decode_workers is not None else usable_cores())
    opts = EncodeOptions(
        inputs=tuple(inputs), out=out, model=model, frames=frames, stride=sample_rate, fps=fps,
        clip_mode=clip_mode.value, clips_per_video=clips_per_video, size=size, buckets=bucket_list,
        crop=crop.value, batch_size=batch_size, dtype=precision.value,  # type: ignore[arg-type]
        store_dtype=store_dtype.value, store_sample=store_sample, seed=seed,  # type: ignore[arg-type]
        chunk_frames=chunk_frames, device=device, decode_timeout=decode_timeout, random_weights=random_weights,
        overwrite=overwrite, retry_failed=retry_failed, repair=repair, shard_size=shard_size, command=redacted_command(sys.argv[1:]),
        storage_options=parse_storage_options(storage_options), path_col=path_col, caption_col=caption_col,
        key_col=key_col, workers=workers, prefetch_bytes=max(1, int(prefetch_mb * 2**20)), ray=ray, num_gpus_per_worker=num_gpus_per_worker, decode_cpus=decode_cpus,
    )
    ui.status(f"loading the model {model} …")
    with _progress(disable=as_json, log_every=log_every) as (on_plan, on_run):
        summary = encode_dataset(opts, progress=on_run, on_plan=on_plan, dry_run=dry_run)
    if as_json:
        print_json(summary.to_dict())
    else:
        _render(summary)
    raise typer.Exit(EXIT_OK if summary.ok else EXIT_PARTIAL)


def _sizes(res: str | None, height: int | None, width: int | None, buckets: str | None):
    if (height is None) != (width is None):
        raise WfvaeError("--height and --width go together")
    if height is not None and (res is not None or buckets is not None):
        raise WfvaeError("give either --resolution, --height/--width, or --buckets")
    from wfvae_cli.pipeline import EncodeOptions

    if buckets is not None:
        base = parse_resolution(res or "256")
        return None, EncodeOptions.parse_buckets(buckets, int((base[0] * base[1]) ** 0.5))
    if height is not None:
        return (height, width), ()
    return parse_resolution(res or "256"), ()


class _progress:
    """Encode progress on stderr (so ``--json`` stays clean): a live Rich bar on a terminal, plain periodic lines
    (:class:`~wfvae_cli.cli.console.ProgressLog`) otherwise; both copied to ``--log-file``.

    The bar's columns fit 80: ``encode ━━━━━━━━ 120/1000 2.31 clips/s 3 failed 0:01:02 0:06:20``. Ray's per-worker
    lines are added below it.
    """

    def __init__(self, disable: bool, log_every: float) -> None:
        self.disable = disable
        self.live = ui.interactive() and not disable
        self.log = ui.ProgressLog("encode", log_every, to_stderr=not self.live and not disable)
        self.progress = None
        self.plan_task = None
        self.run_task = None
        self.worker_tasks: dict[int, object] = {}
        self._stage = ""
        self._probe_log = ui.ProgressLog("probe", log_every, to_stderr=not self.live and not disable, unit="videos")
        self._t0 = time.monotonic()

    def _bar(self):
        if self.progress is None:
            self.progress = ui.progress_bar("{task.fields[rate]}", "[red]{task.fields[errors]}")
            self.progress.start()
        return self.progress

    def __enter__(self):
        return self.on_plan, self.on_run

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.log._state is not None:  # the closing line: final counts and rate
            self.log.finish()

    def on_plan(self, stage: str, done: int, total: int) -> None:
        if self.disable:
            return
        if stage != self._stage:
            self._stage = stage
            ui.status({"probe": f"planning: probing {total} video(s) …"}.get(stage, f"{stage} …"))
        if stage != "probe":
            return
        if self.live:
            if self.plan_task is None:
                self.plan_task = self._bar().add_task("probe", total=total, rate="", errors="")
            self._bar().update(self.plan_task, completed=done)
        else:
            self._probe_log.update(done, 0, total, time.monotonic() - self._t0)

    def on_run(self, result) -> None:
        if self.disable:
            return
        t = result.times
        wall = max(t.wall, 1e-9)
        self.log.update(result.done, result.failed, result.total or None, wall)
        if not self.live:
            return
        bar = self._bar()
        if self.run_task is None:
            self.run_task = bar.add_task("encode", total=result.total or None, rate="", errors="")
        bar.update(
            self.run_task,
            completed=result.done + result.failed,
            rate=f"{result.done / wall:.2f} clips/s",
            errors=f"{result.failed} failed" if result.failed else "",
        )
        for w in getattr(result, "workers", ()):  # --ray: one line per model worker (RayRunResult)
            if w.index not in self.worker_tasks:
                self.worker_tasks[w.index] = bar.add_task("", total=None, rate="", errors="")
            bar.update(
                self.worker_tasks[w.index],
                description=f"  w{w.index} {ui.esc(w.node_ip or '?')} {ui.esc(w.device or '?')} {ui.esc(w.state)}",
                completed=w.done,
                rate=f"{w.clips_per_s:.2f} clips/s",
                errors=f"{w.failed} failed" if w.failed else "",
            )


def _render(summary) -> None:
    """Tables on stdout; every cell that holds user text (paths, reasons) is escaped."""
    from rich.table import Table

    esc = ui.esc
    title = "plan (dry run)" if summary.dry_run else ("resumed " if summary.resumed else "") + f"store {summary.store}"
    table = Table(title=esc(title), title_justify="left")
    for col in ("bucket", "latent (C,T,H,W)", "clips", "done", "failed", "transient", "pending"):
        table.add_column(col, justify="left" if col == "bucket" else "right")
    for bid, b in summary.buckets.items():
        table.add_row(esc(bid), str(tuple(b["latent_shape"])), str(b["clips"]), str(b.get("done", "")),
                      str(b.get("failed", "")), str(b.get("transient", "")), str(b.get("pending", "")))
    ui.out.print(table)
    line = f"{summary.inputs} inputs · {summary.videos} videos · {summary.clips} clips"
    if summary.dry_run:
        line += f" · estimated latents {human_bytes(summary.estimated_bytes)} (uncompressed)"
    else:
        t = summary.times
        line += (f" · encoded {summary.done} now ({summary.already_done} already done) in {t.get('wall_s', 0):.1f} s"
                 f" · model busy {t.get('model_busy_fraction', 0):.0%}")
    ui.out.print(line, markup=False)
    for w in summary.warnings:
        ui.warn(w)
    problems = ([("rejected", s, r) for s, r in summary.rejected]
                + [("transient", s, r) for s, r in summary.transient_inputs]
                + [("failed", s, r) for s, r in summary.failures])
    if problems:
        ptable = Table(title=f"{len(problems)} problem(s)", title_justify="left", title_style="bold red")
        ptable.add_column("")
        ptable.add_column("input", overflow="fold")
        ptable.add_column("reason", overflow="fold")
        for kind, source, reason in problems[:50]:
            ptable.add_row(kind, esc(source), esc(reason.removeprefix(f"{source}: ")))
        ui.out.print(ptable)
        if len(problems) > 50:
            ui.out.print(f"… and {len(problems) - 50} more (see --json or `wfvae info {summary.store}`)", markup=False)
    if summary.transient or summary.transient_inputs:
        ui.out.print(f"{summary.transient} clip(s) and {len(summary.transient_inputs)} input(s) failed for a reason "
                     "that may not recur (timeout, I/O error): rerun the same command to retry them (no flag "
                     "needed; --retry-failed also redoes the permanent failures)", markup=False)
