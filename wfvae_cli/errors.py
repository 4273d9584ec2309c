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
