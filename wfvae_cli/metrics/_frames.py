"""Shape handling shared by the per-frame metrics.

Every frame metric in this package accepts either a batch of clips ``(B, C, T, H, W)`` (the layout of
the model and of the official evaluation) or a batch of images ``(N, C, H, W)`` (each image is then a
one-frame clip). Internally the frames are flattened to ``(B·T, C, H, W)`` so that a metric is a single
vectorized computation, and the per-frame values are folded back to ``(B, T)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FrameLayout:
    """How a ``(B·T, …)`` frame batch maps back to clips: ``clips`` × ``frames`` (``video`` False → images)."""

    clips: int
    frames: int
    video: bool

    def fold(self, per_frame: torch.Tensor) -> torch.Tensor:
        """``(B·T,)`` → ``(B, T)`` for videos, ``(N,)`` for images."""
        return per_frame.reshape(self.clips, self.frames) if self.video else per_frame


def to_frames(x: torch.Tensor, name: str = "x") -> tuple[torch.Tensor, FrameLayout]:
    """Flatten ``(B, C, T, H, W)`` to ``(B·T, C, H, W)``; pass ``(N, C, H, W)`` through."""
    if x.dim() == 5:
        b, c, t, h, w = x.shape
        return x.transpose(1, 2).reshape(b * t, c, h, w), FrameLayout(b, t, video=True)
    if x.dim() == 4:
        return x, FrameLayout(x.shape[0], 1, video=False)
    raise ValueError(
        f"{name}: expected (B, C, T, H, W) clips or (N, C, H, W) images, got shape {tuple(x.shape)}"
    )


def paired_frames(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, FrameLayout]:
    """Flatten a (reference, reconstruction) pair, which must have identical shapes."""
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    fx, layout = to_frames(x, "x")
    fy, _ = to_frames(y, "y")
    if fx.shape[0] == 0:
        raise ValueError(f"empty input: shape {tuple(x.shape)}")
    return fx, fy, layout
