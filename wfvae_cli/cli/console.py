"""The one place the CLI renders text: two consoles, escaping, status and log lines, progress.

Rules every command follows (and why):

* **Results** (tables, summaries) go to :data:`out` (stdout); **everything else** (errors, warnings, status,
  progress) to :data:`err` (stderr), so ``--json`` output and pipes stay clean.
* **User text is never markup.** File names, model specs and error messages may contain ``[...]``
  (``Broken one [xyz789].mp4``, ``ckpt[/bold]``, ``pip install 'wfvae[ray]'``), which Rich would eat or
  choke on. Anything that did not come from a literal in our code goes through :func:`esc` (or is printed
  with ``markup=False``).
* **Batch jobs are observable without a terminal.** When stderr is not a TTY (a log file, a cluster job),
  there is no progress bar: :class:`ProgressLog` prints a plain line every few seconds instead, and
  :func:`status` says what a long start-up is doing. ``--log-file PATH`` copies those plain lines, with
  timestamps, to a file in both cases.

The library never imports this module: it reports through callbacks, and the commands render here.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.markup import escape

out = Console()
err = Console(stderr=True)

_log_file: IO[str] | None = None


def esc(value: Any) -> str:
    """``str(value)`` with Rich markup escaped: safe to embed in a markup string or a table cell."""
    return escape(str(value))


def interactive() -> bool:
    """True when stderr is a terminal (then a live progress bar is shown; else plain periodic lines)."""
    return err.is_terminal


def set_log_file(path: Path | None) -> None:
    """Append timestamped plain copies of status/progress/warning/error lines to ``path`` (``--log-file``)."""
    global _log_file
    if _log_file is not None:
        _log_file.close()
        _log_file = None
    if path is None:
        return
    from wfvae_cli.errors import WfvaeError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _log_file = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed at exit
    except OSError as exc:
        raise WfvaeError(f"--log-file {path}: cannot open it for writing ({exc.strerror or exc})") from None


def _to_log(line: str) -> None:
    if _log_file is not None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        _log_file.write(f"{stamp} {line}\n")


def log(line: str) -> None:
    """A plain line on stderr (no markup interpretation) and in the log file."""
    err.print(line, markup=False, highlight=False, soft_wrap=True)
    _to_log(line)


def status(line: str) -> None:
    """What the command is doing now (``loading the model ...``): dim on a terminal, plain otherwise."""
    if interactive():
        err.print(f"[dim]{esc(line)}[/dim]", highlight=False, soft_wrap=True)
    else:
        err.print(line, markup=False, highlight=False, soft_wrap=True)
    _to_log(line)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {esc(message)}", highlight=False, soft_wrap=True)
    _to_log(f"warning: {message}")


def error(message: str, *, label: str = "error") -> None:
    """The one-line error format of every command (``error: <what> ...``)."""
    err.print(f"[bold red]{label}:[/bold red] {esc(message)}", highlight=False, soft_wrap=True)
    _to_log(f"{label}: {message}")


def print_json(data: Any) -> None:
    """Machine-readable output on stdout, nothing else."""
    import json

    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def progress_bar(*fields: str) -> Any:
    """The one progress-bar style (on stderr): label, bar, done/total, the given task-field columns (Rich
    templates such as ``"{task.fields[rate]}"``), elapsed and remaining time. Sized to fit 80 columns."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(bar_width=None), MofNCompleteColumn(),
        *(TextColumn(field) for field in fields), TimeElapsedColumn(), TimeRemainingColumn(),
        console=err, transient=False, expand=False,
    )


def format_duration(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3725`` -> ``1h02m``: short enough for an 80-column line."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


class ProgressLog:
    """Periodic plain progress lines for a job: ``encode: 120/1000 done · 3 failed · 2.31 clips/s · ETA 6m20s``.

    ``to_stderr`` is true when no live bar is shown (stderr is not a terminal); the lines always go to the
    ``--log-file``. ``every`` seconds apart (``--log-every``), plus one final line from :meth:`finish`.
    """

    def __init__(self, what: str, every: float, to_stderr: bool, unit: str = "clips") -> None:
        self.what, self.every, self.to_stderr, self.unit = what, every, to_stderr, unit
        self._last = 0.0
        self._state: tuple[int, int, int | None, float] | None = None

    def line(self, done: int, failed: int, total: int | None, wall: float) -> str:
        rate = done / wall if wall > 0 else 0.0
        parts = [f"{self.what}: {done + failed}/{total if total is not None else '?'} done"]
        if failed:
            parts.append(f"{failed} failed")
        parts.append(f"{rate:.2f} {self.unit}/s")
        if total is not None and rate > 0:
            parts.append(f"ETA {format_duration((total - done - failed) / rate)}")
        parts.append(f"elapsed {format_duration(wall)}")
        return " · ".join(parts)

    def update(self, done: int, failed: int, total: int | None, wall: float) -> None:
        self._state = (done, failed, total, wall)
        now = time.monotonic()
        if now - self._last < self.every:
            return
        self._last = now
        self._emit(self.line(done, failed, total, wall))

    def finish(self) -> None:
        if self._state is not None:
            self._emit(self.line(*self._state))

    def _emit(self, line: str) -> None:
        if self.to_stderr:
            err.print(line, markup=False, highlight=False, soft_wrap=True)
        _to_log(line)
