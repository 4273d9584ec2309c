"""Which source frames make a clip: :class:`ClipSpec` (the options) and :func:`plan_clips` (the rule).

A video (or its ``[start, end)`` segment) is first resampled to a **grid** of source-frame indices, then the
clips are windows of consecutive grid entries. With source rate ``F`` and segment frames ``[s0, s1)``::

    step   r = stride                     (``stride`` given, integer; default 1)
           r = F / fps                    (``fps`` given: target rate; r < 1 repeats frames)
    grid   g_k = s0 + floor(k * r + 1/2)  for k = 0, 1, …  while g_k <= s1 - 1

i.e. output frame ``k`` is the source frame nearest to time ``start + k / fps`` (ties round up), and no grid
entry is ever past the segment's last frame. Segment bounds come from seconds: frame ``i`` is shown at
``i / F``, and the segment holds the frames with ``start <= i / F < end``: ``s0 = ceil(start * F)``,
``s1 = min(N, ceil(end * F))`` (computed with a 1e-6 tolerance so that 1.0 s at 30 fps is frame 30, not 31).

With ``K`` grid entries and ``T = frames``:

* ``head``    one clip, grid entries ``[0, T)``;
* ``uniform`` ``n = clips_per_video`` clips, starting at grid entries ``round_half_up(j * (K - T) / (n - 1))``
  for ``j < n`` (first clip at the start, last one at the end; ``n = 1`` is centred at ``(K - T) // 2``);
  clips may overlap when the video is short, and identical starts are merged (fewer clips, never duplicates);
* ``sliding`` consecutive non-overlapping windows ``[jT, (j+1)T)`` for ``j = 0, 1, …`` while they fit,
  at most ``clips_per_video`` of them (0 = all);
* ``full``    one clip with the whole grid trimmed down to ``4j + 1`` entries: the trailing ``(K - 1) % 4``
  entries (1–3) are dropped. WF-VAE compresses time by 4 after its first frame, so the official model
  silently ignores them too; here the clip says so (its ``end_frame``). ``frames`` is then the minimum length.

``frames`` must be ``4j + 1`` (1, 5, 9, …, 17, 33, 65): checked when the spec is built. (4 is
``ClipSpec.time_compression``; a model with 8x temporal compression needs ``8j + 1`` and trims to it.)
A segment whose grid is shorter than ``frames`` raises :class:`ClipPlanError` ("has K frames at stride r,
needs T").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from wfvae_cli.errors import WfvaeError
from wfvae_cli.io._backends import VideoInfo
from wfvae_cli.io.errors import ClipPlanError

__all__ = [
    "MODES",
    "Clip",
    "ClipPlanError",
    "ClipSpec",
    "Mode",
    "plan_clips",
    "segment_frames",
    "source_grid",
]

Mode = Literal["head", "uniform", "sliding", "full"]
MODES: tuple[str, ...] = ("head", "uniform", "sliding", "full")
_EPS = 1e-6  # absorbs float error in seconds→frames and in k * r, far below one frame


def _whole(value: object) -> bool:
    """An integer, but not a bool (``True`` would otherwise pass as 1)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclass(frozen=True)
class ClipSpec:
    """How to cut clips out of each video; validated on construction (a bad option is a WfvaeError).

    ``stride`` and ``fps`` are alternatives (at most one): keep every ``stride``-th source frame, or resample
    to ``fps`` frames per second by nearest-time rounding. Neither means stride 1 (native rate).
    ``time_compression`` is the model's temporal factor ``m`` (4 for the released WF-VAEs, 8 for the 8x
    variant): clip lengths must be ``m·k + 1``. The pipeline sets it from the model config.
    """

    frames: int = 33
    stride: int | None = None
    fps: float | None = None
    mode: Mode = "head"
    clips_per_video: int = 1
    time_compression: int = 4

    def __post_init__(self) -> None:
        m = self.time_compression
        if not _whole(m) or m < 1:
            raise ValueError(f"time_compression must be a whole number >= 1, got {m!r}")
        if not _whole(self.frames) or self.frames < 1 or self.frames % m != 1 % m:
            examples = ", ".join(str(m * k + 1) for k in (0, 1, 2, 4, 8))
            raise WfvaeError(
                f"--frames {self.frames!r} is not {m}k+1: this WF-VAE needs {examples}, … frames"
            )
        if self.stride is not None and self.fps is not None:
            raise WfvaeError("--sample-rate and --fps are alternatives: give one of them, not both")
        if self.stride is not None and (not _whole(self.stride) or self.stride < 1):
            raise WfvaeError(f"--sample-rate {self.stride!r} must be a whole number >= 1")
        if self.fps is not None and not (_number(self.fps) and math.isfinite(self.fps) and self.fps > 0):
            raise WfvaeError(f"--fps {self.fps!r} must be a positive number of frames per second")
        if self.mode not in MODES:
            raise WfvaeError(f"--clip-mode {self.mode!r} is unknown: use one of {', '.join(MODES)}")
        if not _whole(self.clips_per_video) or self.clips_per_video < 0:
            raise WfvaeError(f"--clips-per-video {self.clips_per_video!r} must be a whole number >= 0")
        if self.mode == "uniform" and self.clips_per_video < 1:
            raise WfvaeError("--clips-per-video must be >= 1 with --clip-mode uniform")
        if self.mode in ("head", "full") and self.clips_per_video != 1:
            raise WfvaeError(
                f"--clip-mode {self.mode} makes one clip per video: drop --clips-per-video or use uniform/sliding"
            )

    def step(self, source_fps: float) -> float:
        """Source frames per output frame (``r`` in the module docstring)."""
        if self.fps is not None:
            return source_fps / self.fps
        return float(self.stride or 1)

    def describe_step(self) -> str:
        return f"{self.fps:g} fps" if self.fps is not None else f"stride {self.stride or 1}"


@dataclass(frozen=True, eq=False)
class Clip:
    """One clip: its source frame indices and where it sits in the source.

    ``end_frame`` is exclusive (``indices[-1] + 1``); ``stride`` is source frames per clip frame (fractional
    when resampling by fps) and ``fps`` the clip's frame rate; ``clip_index`` numbers the clips of a video.
    """

    start_frame: int
    end_frame: int
    indices: np.ndarray = field(repr=False)
    stride: float
    fps: float
    clip_index: int = 0

    @property
    def num_frames(self) -> int:
        return len(self.indices)


def segment_frames(info: VideoInfo, start: float | None = None, end: float | None = None) -> tuple[int, int]:
    """Source frame range ``[s0, s1)`` of the ``[start, end)`` seconds of the video (None = its edge)."""
    name = info.path
    if start is not None and not (math.isfinite(start) and start >= 0):
        raise ClipPlanError(f"{name}: start {start!r} s must be a number >= 0; fix the manifest")
    if end is not None and not (math.isfinite(end) and end > 0):
        raise ClipPlanError(f"{name}: end {end!r} s must be a number > 0; fix the manifest")
    if start is not None and end is not None and end <= start:
        raise ClipPlanError(f"{name}: end {end:g} s is not after start {start:g} s; fix the manifest")
    s0 = 0 if start is None else math.ceil(start * info.fps - _EPS)
    s1 = info.num_frames if end is None else min(info.num_frames, math.ceil(end * info.fps - _EPS))
    if s0 >= info.num_frames:
        raise ClipPlanError(
            f"{name}: start {start:g} s is past the end of the video ({info.duration:.3g} s); fix the manifest"
        )
    return s0, s1


def source_grid(s0: int, s1: int, step: float) -> np.ndarray:
    """``g_k = s0 + floor(k * step + 1/2)`` for every k with ``g_k < s1`` (int64, non-decreasing)."""
    count = math.ceil((s1 - s0) / step) + 1  # a bound on K; the mask below is exact
    offsets = np.floor(np.arange(count) * step + 0.5 + _EPS).astype(np.int64)
    return s0 + offsets[offsets < s1 - s0]


def _window_starts(spec: ClipSpec, grid_len: int) -> np.ndarray:
    slack = grid_len - spec.frames
    if spec.mode == "head":
        return np.zeros(1, np.int64)
    if spec.mode == "sliding":
        count = grid_len // spec.frames
        if spec.clips_per_video:
            count = min(count, spec.clips_per_video)
        return np.arange(count, dtype=np.int64) * spec.frames
    n = spec.clips_per_video  # uniform
    if n == 1:
        return np.array([slack // 2], np.int64)
    return np.unique(np.floor(np.arange(n) * (slack / (n - 1)) + 0.5 + _EPS).astype(np.int64))


def plan_clips(
    info: VideoInfo, spec: ClipSpec, start: float | None = None, end: float | None = None
) -> list[Clip]:
    """Cut ``info``'s ``[start, end)`` seconds into clips per ``spec`` (rules in the module docstring).

    Raises :class:`ClipPlanError` (naming the file) when the segment is too short or start/end are invalid.
    """
    s0, s1 = segment_frames(info, start, end)
    step = spec.step(info.fps)
    grid = source_grid(s0, s1, step)
    if len(grid) < spec.frames:
        raise ClipPlanError(
            f"{info.path}: has {len(grid)} frames at {spec.describe_step()}, needs {spec.frames}; "
            "lower --frames/--stride/--fps or drop the video"
        )
    clip_fps = info.fps / step
    if spec.mode == "full":
        m = spec.time_compression
        windows = [grid[: (len(grid) - 1) // m * m + 1]]
    else:
        windows = [grid[a : a + spec.frames] for a in _window_starts(spec, len(grid))]
    return [Clip(int(w[0]), int(w[-1]) + 1, w, step, clip_fps, clip_index=j) for j, w in enumerate(windows)]
