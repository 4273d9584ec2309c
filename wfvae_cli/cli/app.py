"""The `wfvae` command-line entry point: the Typer app, global options and the error policy.

Error policy: a :class:`~wfvae_cli.errors.WfvaeError` (the user's input is wrong) prints one red line
and exits 2; any other exception is a bug and prints one line plus a hint to rerun with ``--debug``
(which shows the traceback) and exits 3. Commands that process many samples exit 1 when some failed.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import typer

from wfvae_cli import __version__
from wfvae_cli.cli import console
from wfvae_cli.cli.options import flag
from wfvae_cli.errors import EXIT_INTERNAL, WfvaeError

app = typer.Typer(
    name="wfvae",
    help="WF-VAE toolkit: encode video datasets to latents, inspect, benchmark and train the Wavelet-Flow VAE.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

_state = {"debug": os.environ.get("WFVAE_DEBUG", "") not in ("", "0")}
INTERRUPTED = "interrupted; rerun the same command to resume"
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"wfvae {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = flag(False, "--debug", help="Show full tracebacks on errors."),
    log_file: Path | None = typer.Option(
        None, "--log-file", help="Also append timestamped status/progress/error lines to this file.", dir_okay=False
    ),
    version: bool = flag(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """WF-VAE toolkit."""
    if debug:
        _state["debug"] = True
    if log_file is not None:
        console.set_log_file(log_file)


# Old option spellings, kept working with a warning: (command, old) -> new. Commands are the first word
# (sub-commands such as `bench recon` share their group's entry). One vocabulary across commands and
# recipes: --resolution / --precision / --sample-rate as in recipes, --out is always a folder or store,
# and each kind of worker has its own name.
DEPRECATED: dict[tuple[str, str], str] = {
    **{(cmd, "--res"): "--resolution" for cmd in ("encode", "info", "demo", "samples", "bench")},
    **{(cmd, "--dtype"): "--precision" for cmd in ("encode", "bench")},
    ("train", "--dtype"): "--store-dtype",
    ("encode", "--stride"): "--sample-rate",
    ("train", "--workers"): "--train-workers",
    ("bench", "--out"): "--report",
}


def rewrite_deprecated(args: list[str]) -> list[str]:
    """Map deprecated option spellings to the current ones, warning once per spelling (see DEPRECATED)."""
    words = [a for a in args if not a.startswith("-")]
    command = words[0] if words else ""
    out: list[str] = []
    for arg in args:
        name, eq, value = arg.partition("=")
        new = DEPRECATED.get((command, name))
        if new is None and command == "encode" and name == "--workers":
            new = "--model-workers" if any(a == "--ray" or a.startswith("--ray=") for a in args) else "--decode-workers"
        if new is not None:
            console.warn(f"{name} is deprecated, use {new}")
            arg = new + eq + value
        out.append(arg)
    return out


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
    args = rewrite_deprecated(list(sys.argv[1:] if argv is None else argv))
    if "--debug" in args:
        _state["debug"] = True
    try:  # Typer >= 0.22 carries its own copy of click; older ones use click itself
        from typer._click import exceptions as click_exc
    except ImportError:
        from click import exceptions as click_exc

    try:
        # standalone_mode=False: usage errors reach us and get the same one-line format as every other error
        code = app(args=args, prog_name="wfvae", standalone_mode=False)
    except _NO_ARGS_IS_HELP(click_exc) as exc:  # `wfvae` / `wfvae bench` alone: show the help
        typer.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        sys.exit(exc.exit_code)
    except click_exc.UsageError as exc:
        where = f"wfvae {exc.ctx.command_path.removeprefix('wfvae').strip()} --help".replace("  ", " ") if exc.ctx else "wfvae --help"
        console.error(f"{exc.format_message().replace('Value error, ', '')} (see `{where}`)")
        sys.exit(exc.exit_code)
    except typer.Abort:  # Ctrl-C inside a click prompt
        console.log(INTERRUPTED)
        _quiet_exit(EXIT_INTERRUPTED)
    except click_exc.ClickException as exc:
        console.error(exc.format_message())
        sys.exit(exc.exit_code)
    except WfvaeError as exc:
        if _state["debug"]:
            raise
        console.error(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        if _state["debug"]:
            raise
        console.log(INTERRUPTED)
        _quiet_exit(EXIT_INTERRUPTED)
    except Exception as exc:
        if _state["debug"]:
            raise
        console.error(f"{type(exc).__name__}: {exc} (rerun with --debug for the traceback)", label="internal error")
        sys.exit(EXIT_INTERNAL)
    else:
        if code == EXIT_INTERRUPTED:  # Typer turns a KeyboardInterrupt inside a command into Exit(130)
            console.log(INTERRUPTED)
            console.set_log_file(None)
            _quiet_exit(EXIT_INTERRUPTED)
    finally:
        console.set_log_file(None)
    sys.exit(code if isinstance(code, int) else 0)


def _NO_ARGS_IS_HELP(module):
    """click >= 8.2 raises NoArgsIsHelpError for a bare group; older versions print the help themselves."""
    return getattr(module, "NoArgsIsHelpError", ())


def _quiet_exit(code: int) -> None:
    """Exit after Ctrl-C without tracebacks: a second Ctrl-C is ignored, decode workers are stopped, and the
    interpreter does not wait for (or print the KeyboardInterrupt of) pipeline threads. Nothing is lost:
    every store write is write-then-mark, so a rerun resumes from the last marked sample."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker = sys.modules.get("wfvae_cli.io._worker")
    if worker is not None:
        with contextlib.suppress(Exception):  # best effort: we are leaving anyway
            worker.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
