"""User-facing errors.

Every error a user can cause (a bad path, a wrong checkpoint, an impossible option) is raised as a
:class:`WfvaeError` whose message is one line naming the culprit and the fix. The CLI prints that line
and exits with :data:`EXIT_USAGE`; anything else is a bug and exits with :data:`EXIT_INTERNAL`.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PARTIAL = 1  # the job ran, but some samples failed (listed in the summary / store)
EXIT_USAGE = 2  # bad input or options: nothing was done (or nothing was lost)
EXIT_INTERNAL = 3  # an unexpected exception: a bug, please report it (rerun with --debug)


class WfvaeError(Exception):
    """An error caused by the user's input; the message is shown as-is, without a traceback."""

    exit_code: int = EXIT_USAGE


class CheckpointError(WfvaeError):
    """A checkpoint or config that cannot be read or does not match the model."""


class OfflineError(WfvaeError):
    """Something must be downloaded but the machine is offline (or the hub is unreachable)."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``exc`` as one line for a table cell, a store's ``error`` column or a summary.

    A :class:`WfvaeError` already names the culprit and the fix, so its message is kept as is; anything else
    is prefixed with its type (``OSError: ...``), because ``str()`` of many exceptions (``KeyError('x')``,
    a bare ``MemoryError``) says nothing on its own. Whitespace runs (torch messages span pages) collapse
    to single spaces and the result is cut at ``limit`` characters.
    """
    text = " ".join(str(exc).split())
    if not isinstance(exc, WfvaeError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:limit]
