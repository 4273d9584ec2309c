"""`wfvae info`: inspect a model (preset, checkpoint, hub id)."""

from __future__ import annotations

import typer

from wfvae_cli.cli import console as ui
from wfvae_cli.cli.options import STORE_OPTIONS_HELP, flag, parse_resolution, print_json
from wfvae_cli.errors import WfvaeError

#: this module's commands; cli/app.py adds them to the `wfvae` app (commands never import the app)
app = typer.Typer()


@app.command()
def info(
    spec: str = typer.Argument(..., help="Model (checkpoint dir/file, hub id, wfvae-tiny, or a preset such as wfvae-l with --random-weights) or a latent store (.zarr)."),
    random_weights: bool = flag(False, "--random-weights", help="Allow a preset without trained weights (random init, seeded)."),
    res: str = typer.Option("256", "--resolution", help="Input resolution for the latent shape: N or HxW."),
    frames: int = typer.Option(33, "--frames", help="Input frames for the latent shape (4k+1)."),
    as_json: bool = flag(False, "--json", help="Print machine-readable JSON instead of tables."),
    storage_options: str | None = typer.Option(None, "--storage-options", help=STORE_OPTIONS_HELP),
) -> None:
    """Show a model (config, parameter counts, fingerprint, compression, latent shape) or a latent store
    (metadata, samples per bucket and status, size on disk)."""
    from pathlib import Path

    from wfvae_cli.storage import is_url, parse_storage_options

    if is_url(spec) and not spec.startswith(("hf://", "http://", "https://")):  # a store on object storage
        from wfvae_cli.cli.store_cmds import render_store_info

        render_store_info(spec, as_json, parse_storage_options(storage_options))
        return
    if (Path(spec) / "zarr.json").is_file():
        from wfvae_cli.cli.store_cmds import render_store_info

        render_store_info(Path(spec), as_json)
        return
    from wfvae_cli.model import load_model
    from wfvae_cli.model.summary import model_summary

    height, width = parse_resolution(res)
    if frames < 1:
        raise WfvaeError(f"--frames {frames}: must be >= 1")
    model = load_model(spec, random_weights=random_weights)
    summary = {**model_summary(model, frames, height, width), "random_weights": bool(model.random_weights)}
    from wfvae_cli.model.fastconv import products, winograd

    # how float32 CPU inference computes its 3x3 convs here, with the figures the verdict rests on
    summary["conv_backend"] = {"kernels_available": winograd.available(), **products.verdict()}
    if as_json:
        print_json(summary)
        return
    from rich.table import Table

    table = Table(title=f"WF-VAE  {ui.esc(spec)}", show_header=False, title_justify="left")
    table.add_column(style="bold cyan")
    table.add_column()
    p = summary["params"]
    comp = summary["compression"]
    table.add_row("weights", ui.esc(summary["source"]))
    if summary["random_weights"]:
        table.add_row("random weights", "[bold yellow]yes[/]: not a trained model; latents and reconstructions mean nothing")
    table.add_row("fingerprint", summary["fingerprint"][:16] + "…")
    table.add_row("parameters", f"encoder {p['encoder'] / 1e6:.3f}M · decoder {p['decoder'] / 1e6:.3f}M · total {p['total'] / 1e6:.3f}M")
    table.add_row("compression", f"{comp['temporal']}×{comp['spatial']}×{comp['spatial']} → {comp['latent_channels']} channels ({comp['ratio']}× fewer values)")
    table.add_row("latent shape", f"(3, {frames}, {height}, {width}) → {tuple(summary['latent_shape'])}")
    cfg = summary["config"]
    table.add_row(
        "config",
        f"base {cfg['base_channels']} · flow {cfg['encoder_energy_flow_hidden_size']}/{cfg['decoder_energy_flow_hidden_size']} · "
        f"{cfg['norm_type']} · t_interp {cfg['t_interpolation']} · attention {cfg['use_attention']}",
    )
    cb = summary["conv_backend"]
    table.add_row("CPU conv backend", ui.esc(f"{cb['backend'] or 'direct'} ({cb['source']})"))
    ui.out.print(table)
