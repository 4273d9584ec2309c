"""`wfvae train RECIPE [key=value ...]` and `wfvae train export CKPT --out DIR`.

``train`` is a Typer group whose default command is ``run``: ``wfvae train recipe.toml optim.lr=2e-5`` is
``wfvae train run recipe.toml optim.lr=2e-5``, while ``wfvae train export ...`` reaches the export command.
Under ``torchrun --nproc-per-node N -m wfvae_cli train recipe.toml`` every process runs the same command and
joins the process group from torchrun's environment; ``--ray --train-workers N`` hands the same function to Ray
Train's ``TorchTrainer`` (Ray is an optional dependency, imported only then); both launchers live in
:mod:`wfvae_cli.train.launch`, this module only parses options and renders progress.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from wfvae_cli.cli import console as ui
from wfvae_cli.cli.options import WeightsDtype, flag
from wfvae_cli.errors import WfvaeError


class _DefaultRun(TyperGroup):
    """A group that treats an unknown first word (the recipe path, or an option) as ``run``'s argument."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        help_names = set(self.get_help_option_names(ctx))
        if args and args[0] not in self.list_commands(ctx) and args[0] not in help_names:
            args = ["run", *args]
        return super().parse_args(ctx, args)


train_app = typer.Typer(
    cls=_DefaultRun,
    add_completion=False,
    rich_markup_mode="rich",
    no_args_is_help=True,
    help="Train WF-VAE from a TOML recipe ([bold]wfvae train RECIPE \\[key=value ...][/]); "
    "[bold]train export[/] writes a checkpoint in the official layout.",
)


@train_app.command("run")
def run(
    recipe: Path = typer.Argument(..., help="Recipe TOML (see recipes/)."),
    overrides: list[str] = typer.Argument(None, help="Overrides: section.key=value (TOML values; `none` unsets)."),
    print_config: bool = flag(False, "--print-config", help="Print the fully resolved recipe and exit."),
    resume: bool = flag(False, "--resume", help="Continue from the newest checkpoint in output_dir/checkpoints."),
    resume_from: Path | None = typer.Option(None, "--resume-from", help="Continue from this training checkpoint."),
    use_ray: bool = flag(False, "--ray", help="Run on a Ray cluster with Ray Train (needs: pip install 'wfvae\\[ray]')."),
    workers: int = typer.Option(1, "--train-workers", help="With --ray: Ray Train workers (one per device)."),
    gpu: bool | None = flag(None, "--gpu/--no-gpu", help="Ray workers use a GPU each (default: if CUDA is here)."),
    quiet: bool = flag(False, "--quiet", "-q", help="No progress bar (logs and metrics.jsonl only)."),
) -> None:
    """Train (or resume) a run described by RECIPE; `--print-config` shows the resolved recipe."""
    from wfvae_cli.train.recipe import dump_recipe, load_recipe

    loaded = load_recipe(recipe, overrides or [])
    if print_config:
        typer.echo(dump_recipe(loaded), nl=False)
        return
    if resume and resume_from is not None:
        raise WfvaeError("--resume and --resume-from are alternatives: give one")
    resume_arg: Path | bool | None = resume_from if resume_from is not None else (True if resume else None)
    if use_ray:
        _run_ray(recipe, overrides or [], resume_arg, workers, gpu)
        return
    if workers != 1:
        raise WfvaeError("--train-workers is for --ray; with torchrun use --nproc-per-node")
    _run_local(loaded, resume_arg, progress=not quiet)


def _run_local(recipe: Any, resume: Path | bool | None, progress: bool) -> None:
    from wfvae_cli.train.launch import train_here

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with _ProgressBar() as bar:
        result = train_here(recipe, resume=resume, progress=bar.update if progress else None)
    if result is not None:
        _summary(result)


class _ProgressBar:
    """Renders the trainer's progress reports as a Rich bar on stderr (started at the first report)."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, report: Any) -> None:
        from wfvae_cli.train.trainer import short_stats

        if self.bar is None:
            self.bar = ui.progress_bar("{task.fields[info]}")
            self.bar.start()
            self.task = self.bar.add_task("train", total=report.total, completed=report.step, info="")
        if report.event == "step":
            info = f"{short_stats(report.stats)} {report.clips_per_s:.3g} clips/s"
            self.bar.update(self.task, completed=report.step, info=info)
        elif report.event == "eval":
            self.bar.console.print(f"step {report.step}: " + short_stats(report.stats))
        elif report.event == "end":
            self.bar.stop()
            self.bar = None


def _summary(result: Any) -> None:
    ui.out.print(f"trained to step {result.step} · output {result.output_dir}", markup=False)
    if result.checkpoint is not None:
        ui.out.print(f"checkpoint {result.checkpoint}  (export: wfvae train export {result.checkpoint} --out DIR)",
                     markup=False)
    if result.last_eval:
        ui.out.print("eval: " + " ".join(f"{k}={v:.4g}" for k, v in result.last_eval.items()), markup=False)


def _run_ray(recipe: Path, overrides: list[str], resume: Path | bool | None, workers: int, gpu: bool | None) -> None:
    from wfvae_cli.train.launch import train_on_ray

    train_on_ray(recipe, overrides, resume=resume, workers=workers, use_gpu=gpu)
    ui.log(f"ray: {workers} worker(s) finished")


@train_app.command("export")
def export(
    checkpoint: Path = typer.Argument(..., help="Training checkpoint (output_dir/checkpoints/step_*.pt) or its folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for config.json + diffusion_pytorch_model.safetensors."),
    raw: bool = flag(False, "--raw", help="Export the raw weights instead of the EMA weights."),
    store_dtype: WeightsDtype = typer.Option(WeightsDtype.fp32, "--store-dtype", help="Stored precision of the weights."),
) -> None:
    """Write the official HF layout (what `load_model` and the official code read); EMA weights by default."""
    import torch

    from wfvae_cli.dtypes import torch_dtype
    from wfvae_cli.train.checkpoint import export_checkpoint, latest_checkpoint

    stored = torch_dtype(store_dtype.value, "--store-dtype")
    if checkpoint.is_dir():
        found = latest_checkpoint(checkpoint)
        if found is None:
            raise WfvaeError(f"{checkpoint}: no step_*.pt checkpoint in this folder")
        checkpoint = found
    folder = export_checkpoint(checkpoint, out, ema=not raw, dtype=None if stored == torch.float32 else stored)
    ui.out.print(f"exported {'raw' if raw else 'EMA'} weights of {checkpoint} to {folder}", markup=False)
