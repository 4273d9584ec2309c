"""Frames → model input: resize/crop to a target size, scale to [-1, 1], and aspect-ratio buckets.

Resizing is ``F.interpolate(mode="bilinear", antialias=True, align_corners=False)`` **on the uint8 frames**
(torch's fixed-point uint8 kernel), giving uint8 frames at the target size, which are then scaled to
[-1, 1] as ``x / 127.5 - 1``. ``antialias=True`` low-pass filters when shrinking (the PIL/torchvision-v2
behaviour); without it a 1080p→256 downscale aliases and the VAE would learn to reproduce moiré.

Why uint8 (resize version 2, recorded in the store's preprocessing as :data:`RESIZE_VERSION`): the decoder
can then resize each frame as soon as it is decoded (:func:`fit_frames`), so a clip never exists at source
resolution in float32 (a 4K frame is 95 MiB in float32, 24 MiB in uint8, and only one is alive at a time).
Version 1 interpolated in float32 without rounding; the two differ by at most one grey level (mean 0.24),
so a store written with version 1 is not resumed with version 2 (the preprocessing check refuses it).
Resizing a whole clip here and resizing it frame by frame in the decoder give identical bytes.

* ``crop="center"``: scale by ``s = max(H_t / H, W_t / W)`` (the shorter side, relative to the target,
  lands exactly on the target), giving ``(round(H s), round(W s))`` clamped to at least the target; then
  cut the centre, offsets ``((H' - H_t) // 2, (W' - W_t) // 2)``. Nothing is stretched; borders are lost.
* ``crop="none"``: scale straight to ``(H_t, W_t)``; the aspect ratio is distorted, nothing is lost.

Target sides must be multiples of 8, WF-VAE's spatial compression, so latents have whole sizes.

Buckets let a dataset of mixed aspect ratios keep most of each frame: every video goes to the bucket whose
aspect ratio is nearest in log space (``|log(w/h) - log(W_b/H_b)|``: 2:1 is as far from 1:1 as 1:2 is), ties
to the larger area, then cropped to it with ``crop="center"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from wfvae_cli.errors import WfvaeError

__all__ = [
    "ASPECT_RATIOS",
    "RESIZE_VERSION",
    "Crop",
    "ResizeSpec",
    "auto_buckets",
    "check_size",
    "choose_bucket",
    "fit_frames",
    "resize_crop",
    "resized_size",
    "to_model_input",
]

Crop = Literal["center", "none"]
SIZE_MULTIPLE = 8
RESIZE_VERSION = "2: shorter side, bilinear, antialias, align_corners=False, in uint8 (torch), then centre crop"
"""What the store records as ``preprocessing.resize``: a change of the numbers makes resumes refuse to mix."""

ASPECT_RATIOS: tuple[tuple[int, int], ...] = ((1, 1), (4, 3), (3, 4), (16, 9), (9, 16))
"""Width:height ratios of :func:`auto_buckets`: square, the 4:3 and 16:9 camera/phone formats and their
portrait versions. Wider cinema ratios (21:9, 2.39:1) are few in video datasets and fall in 16:9 (cropping
their sides); adding a bucket splits batches further, so the set is kept small on purpose."""


def check_size(height: int, width: int) -> tuple[int, int]:
    """Validate a target ``(H, W)``: positive multiples of 8 (a WfvaeError naming the fix otherwise)."""
    for name, side in (("height", height), ("width", width)):
        whole = isinstance(side, (int, np.integer)) and not isinstance(side, bool)
        if not whole or side < SIZE_MULTIPLE or side % SIZE_MULTIPLE:
            near = max(SIZE_MULTIPLE, round(side / SIZE_MULTIPLE) * SIZE_MULTIPLE) if whole else 256
            raise WfvaeError(
                f"target {name} {side!r} must be a positive multiple of {SIZE_MULTIPLE} (e.g. {near})"
            )
    return int(height), int(width)


@dataclass(frozen=True)
class ResizeSpec:
    """Target size and crop policy, validated on construction."""

    height: int
    width: int
    crop: Crop = "center"

    def __post_init__(self) -> None:
        check_size(self.height, self.width)
        if self.crop not in ("center", "none"):
            raise WfvaeError(f"--crop {self.crop!r} is unknown: use 'center' or 'none'")

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width


def resized_size(height: int, width: int, target: tuple[int, int], crop: Crop = "center") -> tuple[int, int]:
    """Size ``(H', W')`` a ``height × width`` frame is scaled to before the centre crop (see module doc)."""
    th, tw = target
    if crop == "none":
        return th, tw
    scale = max(th / height, tw / width)
    return max(th, round(height * scale)), max(tw, round(width * scale))


def _as_uint8_chw(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(T, H, W, 3)`` → a ``(T, 3, H, W)`` view (channels-last in memory: torch's fast uint8 resize path)."""
    clip = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if clip.ndim != 4 or clip.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (T, H, W, 3), got {tuple(clip.shape)}")
    return clip.permute(0, 3, 1, 2)


def _resize_chw(clip: torch.Tensor, size: tuple[int, int], crop: Crop) -> torch.Tensor:
    th, tw = size
    nh, nw = resized_size(clip.shape[2], clip.shape[3], (th, tw), crop)
    if (nh, nw) != tuple(clip.shape[2:]):
        if clip.dtype == torch.uint8:
            clip = F.interpolate(clip, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        else:  # float input (already scaled by the caller): resize in its own precision
            clip = F.interpolate(clip.float(), size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - th) // 2, (nw - tw) // 2
    return clip[:, :, top : top + th, left : left + tw]


def fit_frames(frames: np.ndarray, size: tuple[int, int], crop: Crop = "center") -> np.ndarray:
    """Resize + crop uint8 ``(n, H, W, 3)`` frames to uint8 ``(n, H_t, W_t, 3)`` (the decoder's resize).

    Exactly what :func:`resize_crop` does to uint8 input, frame for frame, so decoding with ``size=`` and
    resizing afterwards give the same bytes; used per frame right after decoding to bound memory.
    """
    th, tw = check_size(*size)
    if frames.shape[1:3] == (th, tw):
        return frames
    out = _resize_chw(_as_uint8_chw(frames), (th, tw), crop)
    return np.ascontiguousarray(out.permute(0, 2, 3, 1).numpy())


def resize_crop(
    frames: np.ndarray | torch.Tensor, size: tuple[int, int], crop: Crop = "center"
) -> torch.Tensor:
    """Resize (and centre-crop) a clip: uint8 ``(T, H, W, 3)`` → float32 ``(T, 3, H_t, W_t)`` in [0, 255].

    uint8 input is resized in uint8 (see the module docstring), then cast; float input in float32.
    """
    th, tw = check_size(*size)
    return _resize_chw(_as_uint8_chw(frames), (th, tw), crop).to(torch.float32)


def _as_float_clip(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` → float32 ``(T, 3, H, W)`` in [0, 255] (a view where possible, then one cast)."""
    return _as_uint8_chw(frames).to(torch.float32)


def to_model_input(
    frames: np.ndarray | torch.Tensor, size: tuple[int, int] | None = None, crop: Crop = "center"
) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` → float32 ``(3, T, H_t, W_t)`` in [-1, 1] as ``x / 127.5 - 1``.

    ``size=None`` keeps the frame size (it must then already be a multiple of 8). Add the batch axis with
    ``[None]`` or stack several clips of one bucket.
    """
    clip = resize_crop(frames, size, crop) if size is not None else _as_float_clip(frames)
    if size is None:
        check_size(clip.shape[2], clip.shape[3])
    return (clip / 127.5 - 1.0).permute(1, 0, 2, 3).contiguous()


def choose_bucket(width: int, height: int, buckets: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The ``(H, W)`` bucket nearest in log aspect ratio to a ``width × height`` video; ties → larger area.

    Equal distance and area (only for duplicate buckets) keep the first in the list, so the choice is
    deterministic.
    """
    if not buckets:
        raise WfvaeError("no buckets given: pass at least one HxW bucket (or use auto buckets)")
    if width <= 0 or height <= 0:
        raise ValueError(f"video size must be positive, got {width}x{height}")
    sizes = np.asarray(buckets, dtype=np.float64).reshape(-1, 2)  # (H, W)
    distance = np.abs(np.log(width / height) - np.log(sizes[:, 1] / sizes[:, 0]))
    area = sizes[:, 0] * sizes[:, 1]
    # lexsort: last key is primary. Distances are rounded so that float noise cannot beat a real tie.
    best = np.lexsort((np.arange(len(sizes)), -area, np.round(distance, 9)))[0]
    return tuple(buckets[best])  # type: ignore[return-value]


def auto_buckets(res: int, multiple: int = SIZE_MULTIPLE) -> list[tuple[int, int]]:
    """``(H, W)`` buckets of about ``res²`` pixels for :data:`ASPECT_RATIOS`, sides multiples of ``multiple``.

    For width:height ``a:b``: ``H = res·sqrt(b/a)``, ``W = res·sqrt(a/b)``, each rounded to the nearest
    multiple (so the area is within a few percent of ``res²`` and the ratio within one rounding step).
    """
    if res < multiple or res % multiple:
        raise WfvaeError(f"bucket resolution {res!r} must be a positive multiple of {multiple} (e.g. 256)")

    def snap(x: float) -> int:
        return max(multiple, round(x / multiple) * multiple)

    return [(snap(res * math.sqrt(b / a)), snap(res * math.sqrt(a / b))) for a, b in ASPECT_RATIOS]
