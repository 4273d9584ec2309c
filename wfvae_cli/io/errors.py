"""Per-video errors of the input layer.

Both are :class:`~wfvae_cli.errors.WfvaeError` subclasses because their cause is the user's data (a broken
file, a clip too short for the requested options), not a bug. The encode pipeline catches them per sample and
records the one-line message as that sample's failure reason instead of stopping the job; a CLI command that
handles a single video lets them propagate and exit with the usage code.
"""

from __future__ import annotations

from wfvae_cli.errors import WfvaeError


class VideoDecodeError(WfvaeError):
    """A video file cannot be opened, probed or decoded (missing, empty, corrupt, not a video, timed out)."""


class ClipPlanError(WfvaeError):
    """A video is readable but cannot supply the requested clip (too short, start/end outside the video)."""
