"""`wfvae verify` and `wfvae decode`: check a latent store; turn its latents back into video."""

from __future__ import annotations

from pathlib import Path

import typer

from wfvae_cli.cli import console as ui
from wfvae_cli.cli.options import STORE_OPTIONS_HELP, flag, human_bytes, print_json
from wfvae_cli.errors import EXIT_OK, EXIT_PARTIAL

#: this module's commands; cli/app.py adds them to the `wfvae` app (commands never import the app)
app = typer.Typer()




@app.command()
def verify(
    store: str = typer.Argument(..., help="Latent store: a local path (.zarr) or a URL (s3://bucket/x.zarr)."),
    repair: bool = flag(False, "--repair", help="Take unreadable done samples back to pending (the next encode rerun re-encodes them) and remove temp files."),
    as_json: bool = flag(False, "--json", help="Print machine-readable JSON."),
    storage_options: str | None = typer.Option(None, "--storage-options", help=STORE_OPTIONS_HELP),
) -> None:
    """Check that every done sample is readable and finite (exit 1 if not)."""
    from dataclasses import asdict

    from wfvae_cli.storage import parse_storage_options
    from wfvae_cli.store import verify as verify_store

    report = verify_store(store, repair=repair, storage_options=parse_storage_options(storage_options))
    if as_json:
        print_json({**asdict(report), "ok": report.ok})
    else:
        state = "[green]OK[/green]" if report.ok else f"[red]{len(report.problems)} problem(s)[/red]"
        ui.out.print(f"{ui.esc(store)}: {state} · {report.checked} done samples checked · {report.pending} pending · "
                      f"{report.failed} failed · {report.transient} transient (a rerun retries them)")
        for p in report.problems[:50]:
            ui.out.print(f"  {p}", markup=False)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_PARTIAL)


@app.command()
def decode(
    store: str = typer.Argument(..., help="Latent store: a local path (.zarr) or a URL (s3://bucket/x.zarr)."),
    index: list[int] = typer.Option(..., "--index", "-i", help="Sample index (reader order of done samples); repeatable."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the mp4 files."),
    model: str | None = typer.Option(None, "--model", "-m", help="Override the model recorded in the store."),
    side_by_side: bool = flag(False, "--side-by-side", help="Put the source clip left of the reconstruction."),
    chunk_frames: int | None = typer.Option(None, "--chunk-frames", help="Causal Cache chunk (frames) for decoding."),
    as_json: bool = flag(False, "--json", help="Print machine-readable JSON."),
    storage_options: str | None = typer.Option(None, "--storage-options", help=STORE_OPTIONS_HELP),
) -> None:
    """Decode stored latents back to mp4 with the model that made them."""
    from wfvae_cli.io.remote import set_storage_options
    from wfvae_cli.pipeline.decode import decode_samples
    from wfvae_cli.storage import parse_storage_options

    options = parse_storage_options(storage_options)
    set_storage_options(options)  # --side-by-side reads the source clips, which may be URLs too
    clips = decode_samples(store, index, out, model, side_by_side, chunk_frames, storage_options=options)
    if as_json:
        print_json([{"index": c.index, "path": str(c.path), "source": c.source, "frames": c.frames} for c in clips])
        return
    for c in clips:
        ui.out.print(f"sample {c.index} ({c.frames} frames, from {c.source}) -> {c.path}", markup=False)


def render_store_info(path: Path | str, as_json: bool, storage_options: dict | None = None) -> None:
    """`wfvae info STORE.zarr`: metadata, counts per bucket and status, size on disk, rejected inputs."""
    from rich.table import Table

    from wfvae_cli.store import open_store, summary

    esc = ui.esc
    s = summary(path, storage_options=storage_options)
    runs = open_store(path, storage_options=storage_options).run_stats()
    if as_json:
        print_json({**s.to_dict(), "runs": runs})
        return
    meta = s.meta
    weights = " [bold yellow]RANDOM WEIGHTS[/] (--random-weights: not a trained model)" if meta.random_weights else ""
    ui.out.print(
        f"[bold]{esc(path)}[/bold]  format {meta.format_version} · {meta.kind} · {meta.dtype} · model {esc(meta.model)} "
        f"({meta.weights_sha256[:12]}…){weights} · {human_bytes(s.nbytes)} on disk · "
        f"{'completed ' + meta.completed_at if meta.completed_at else 'incomplete'}"
    )
    table = Table(title_justify="left")
    for col in ("bucket", "latent (C,T,H,W)", "samples", "done", "failed", "transient", "pending", "shards"):
        table.add_column(col, justify="left" if col == "bucket" else "right")
    for b in s.buckets:
        table.add_row(esc(b.bucket_id), str(tuple(b.latent_shape)), str(b.counts.total),
                      str(b.counts.done), str(b.counts.failed), str(b.counts.transient), str(b.counts.pending),
                      str(b.num_shards))
    ui.out.print(table)
    if runs:
        run_id, last = list(runs.items())[-1]
        c, r = last.get("counts", {}), last.get("rates", {})
        ui.out.print(f"{len(runs)} run(s); last {run_id}: {c.get('done', 0)} encoded, {c.get('failed_this_run', 0)} failed, "
                     f"{r.get('clips_per_s', 0)} clips/s (stats/{run_id})", markup=False)
    if s.rejected:
        ui.out.print(f"{len(s.rejected)} input(s) rejected at planning (no clip):")
        for source, reason in s.rejected[:20]:
            ui.out.print(f"  {source}: {reason.removeprefix(source + ': ')}", markup=False)
