"""The `wfvae` command-line entry point: the Typer app, global options and the error policy.

Error policy: a :class:`~wfvae_cli.errors.WfvaeError` (the user's input is wrong) prints one red line
and exits 2; any other exception is a bug and prints one line plus a hint to rerun with ``--debug``
(which shows the traceback) and exits 3. Commands that process many samples exit 1 when some failed.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from wfvae_cli import __version__
from wfvae_cli.errors import EXIT_INTERNAL, WfvaeError

app = typer.Typer(
    name="wfvae",
    help="WF-VAE toolkit: encode video datasets to latents, inspect, benchmark and train the Wavelet-Flow VAE.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

err_console = Console(stderr=True)
_state = {"debug": os.environ.get("WFVAE_DEBUG", "") not in ("", "0")}


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"wfvae {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """WF-VAE toolkit."""
    if debug:
        _state["debug"] = True


def _register() -> None:
    """Add every command to :data:`app`, in one place and one way (the command modules never import this one).

    Imported here, not at the top, so that building the app costs nothing until a command runs.
    """
    if _state.get("registered"):
        return
    from wfvae_cli.cli import bench, demo, encode, info, store_cmds, train

    for module in (demo, encode, info, store_cmds):
        app.add_typer(module.app)  # no name: the module's commands become top-level commands
    app.add_typer(bench.bench_app, name="bench")
    app.add_typer(train.train_app, name="train")
    _state["registered"] = True


def main(argv: list[str] | None = None) -> None:
    """Run the CLI with the project's error policy (see the module docstring)."""
    _register()
    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args:
        _state["debug"] = True
    try:
        app(args=args, prog_name="wfvae")  # usage errors are handled (exit 2) and exits raise SystemExit
    except WfvaeError as exc:
        if _state["debug"]:
            raise
        err_console.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/red]")
        sys.exit(130)
    except Exception as exc:
        if _state["debug"]:
            raise
        err_console.print(
            f"[bold red]internal error:[/bold red] {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(EXIT_INTERNAL)
