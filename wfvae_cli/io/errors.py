"""Per-video errors of the input layer.

Both are :class:`~wfvae_cli.errors.WfvaeError` subclasses because their cause is the user's data (a broken
file, a clip too short for the requested options), not a bug. The encode pipeline catches them per sample and
records the one-line message as that sample's failure reason instead of stopping the job; a CLI command that
handles a single video lets them propagate and exit with the usage code.

:class:`VideoDecodeError` carries what a resuming pipeline needs to decide whether to try again:

* ``transient`` — True when the same call may well succeed later (a deadline passed on a loaded machine, an
  I/O error from a flaky mount or a remote reader, a decoder process killed from outside, e.g. by the OOM
  killer). Such samples should stay retryable (pending/failed), never "rejected" for good.
* ``frame`` — the source frame index a damage error is about (``None`` when it concerns the whole file).
"""

from __future__ import annotations

from wfvae_cli.errors import WfvaeError


class VideoDecodeError(WfvaeError):
    """A video file cannot be opened, probed or decoded (missing, empty, corrupt, damaged, not a video,
    timed out). ``transient`` says whether retrying later can help (see the module docstring)."""

    def __init__(self, message: str, *, transient: bool = False, frame: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.frame = frame

    def __reduce__(self):  # crosses the decode-worker process boundary with its attributes
        return (_rebuild, (type(self), str(self), self.transient, self.frame))


def _rebuild(cls: type[VideoDecodeError], message: str, transient: bool, frame: int | None) -> VideoDecodeError:
    return cls(message, transient=transient, frame=frame)


def failure_is_transient(exc: BaseException) -> bool:
    """Whether a probe or decode failure may not recur, the one rule of planning and decoding: what the error
    says (``transient``), else anything that is not a user error (an OSError, a decoder process that died).
    Not :func:`wfvae_cli.storage.is_transient`, which decides whether one remote read is worth retrying."""
    return bool(getattr(exc, "transient", not isinstance(exc, WfvaeError)))


class DamagedVideoError(VideoDecodeError):
    """The decoder reported an error or concealed damage (corrupt packets) at ``frame``: permanent.

    Raised instead of returning the concealed picture: a silently damaged clip is worse in a training set
    than a missing one."""


class ClipPlanError(WfvaeError):
    """A video is readable but cannot supply the requested clip (too short, start/end outside the video)."""
