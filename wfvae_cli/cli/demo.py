"""`wfvae demo`: a first look without downloads — sample clips, model facts, a round trip with PSNR."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from wfvae_cli.cli import console as ui
from wfvae_cli.cli.options import check_device, flag, parse_resolution, print_json

#: this module's commands; cli/app.py adds them to the `wfvae` app (commands never import the app)
app = typer.Typer()


@app.command()
def demo(
    model_spec: str = typer.Option("wfvae-tiny", "--model", "-m", help="Model: wfvae-tiny (trained, shipped), checkpoint dir/file, hub id, or a preset with --random-weights."),
    random_weights: bool = flag(False, "--random-weights", help="Allow a preset without trained weights (random init: PSNR means nothing)."),
    out: Path = typer.Option(Path("wfvae-demo"), "--out", help="Folder for the generated sample clips."),
    clips: int = typer.Option(2, "--clips", min=1, help="Number of sample clips to generate and round-trip."),
    frames: int = typer.Option(17, "--frames", help="Frames per clip (4k+1)."),
    res: str = typer.Option("128", "--resolution", help="Clip resolution: N or HxW (multiples of 8)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N or mps."),
    chunk_frames: int = typer.Option(8, "--chunk-frames", min=1, help="Causal Cache chunk for the streamed pass."),
    as_json: bool = flag(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Generate sample clips (pan/zoom over scikit-image photos), show the model, and round-trip each clip
    through encode/decode, directly and with the Causal Cache, reporting PSNR/SSIM and |chunked - direct|."""
    import torch

    from wfvae_cli.extras import require
    from wfvae_cli.io import make_sample_clips, probe, read_frames, to_model_input
    from wfvae_cli.metrics import psnr, ssim
    from wfvae_cli.model import load_model
    from wfvae_cli.model.summary import model_summary

    device = check_device(device)
    height, width = parse_resolution(res)
    require("skimage.data", "wfvae demo")  # the sample clips; checked before anything is written
    ui.status(f"generating {clips} sample clip(s) in {out} …")
    paths = make_sample_clips(out, n=clips, frames=frames, size=(height, width))
    ui.status(f"loading the model {model_spec} …")
    model = load_model(model_spec, random_weights=random_weights, device=device)
    summary = model_summary(model, frames, height, width)
    rows = []
    with torch.inference_mode():
        for path in paths:
            info = probe(path)
            video = to_model_input(read_frames(path, range(info.num_frames)))[None].to(device)
            t0 = time.perf_counter()
            posterior = model.encode(video)
            t1 = time.perf_counter()
            recon = model.decode(posterior.mode())
            t2 = time.perf_counter()
            chunked = model.decode(model.encode(video, chunk_frames=chunk_frames).mode(), chunk_frames=chunk_frames)
            real, fake = (video + 1) / 2, ((recon.clamp(-1, 1) + 1) / 2)
            rows.append(
                {
                    "clip": str(path),
                    "latent_shape": list(posterior.mean.shape[1:]),
                    "encode_s": round(t1 - t0, 3),
                    "decode_s": round(t2 - t1, 3),
                    "psnr": round(float(psnr(fake, real).mean()), 3),
                    "ssim": round(float(ssim(fake, real).mean()), 4),
                    "max_abs_chunked_vs_direct": float((chunked - recon).abs().max()),
                }
            )
    if as_json:
        print_json({"model": {**summary, "random_weights": bool(model.random_weights)}, "clips": rows})
        return
    from rich.table import Table

    ui.out.print(
        f"[bold]{ui.esc(model_spec)}[/bold]: {summary['params_M']['total']}M parameters, weights {ui.esc(summary['source'])}, "
        f"fingerprint {summary['fingerprint'][:12]}…"
    )
    table = Table(title="round trip; Δ chunk = max |Causal Cache chunked − direct|", title_justify="left")
    for col in ("clip", "latent", "enc s", "dec s", "PSNR", "SSIM", "Δ chunk"):
        table.add_column(col, justify="right" if col != "clip" else "left")
    for r in rows:
        table.add_row(
            ui.esc(Path(r["clip"]).stem), "×".join(map(str, r["latent_shape"])), f"{r['encode_s']:.2f}",
            f"{r['decode_s']:.2f}", f"{r['psnr']:.2f}", f"{r['ssim']:.3f}", f"{r['max_abs_chunked_vs_direct']:.0e}",
        )
    ui.out.print(table)
    if model.random_weights:
        ui.warn("random weights: PSNR is meaningless until you pass a trained checkpoint with --model "
                "(e.g. a local copy of chestnutlzj/WF-VAE-L-16Chn)")


@app.command()
def samples(
    out: Path = typer.Argument(Path("wfvae-samples"), help="Folder to write the sample clips to."),
    clips: int = typer.Option(4, "--clips", min=1, help="Number of clips."),
    frames: int = typer.Option(33, "--frames", min=1, help="Frames per clip."),
    res: str = typer.Option("256", "--resolution", help="Clip size: N or HxW."),
    fps: float = typer.Option(16, "--fps", help="Frame rate."),
) -> None:
    """Generate sample clips (pan/zoom over the photos scikit-image ships) to try the tools offline."""
    from wfvae_cli.extras import require
    from wfvae_cli.io import make_sample_clips

    require("skimage.data", "wfvae samples")  # before the folder is created

    height, width = parse_resolution(res)
    for path in make_sample_clips(out, n=clips, frames=frames, size=(height, width), fps=fps):
        typer.echo(str(path))
