"""Shared fixtures of the io tests: sample clips and broken inputs, generated once per test session."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from wfvae_cli.io.samples import make_bad_inputs, make_hard_inputs, make_sample_clips

# (H, W): square, landscape, portrait, odd (4:4:4). Small, so that decoding every frame stays cheap.
CLIP_SIZES = [(64, 64), (72, 128), (128, 80), (97, 175)]
CLIP_FRAMES = 33
CLIP_FPS = 16


class SampleClip(NamedTuple):
    """A generated clip and the facts it was made with (the truth probe/read are checked against)."""

    path: Path
    height: int
    width: int
    frames: int
    fps: float


@pytest.fixture(scope="session")
def sample_clips(tmp_path_factory: pytest.TempPathFactory) -> list[SampleClip]:
    out = tmp_path_factory.mktemp("io_clips")
    paths = make_sample_clips(out, n=len(CLIP_SIZES), frames=CLIP_FRAMES, size=CLIP_SIZES, fps=CLIP_FPS)
    return [SampleClip(p, h, w, CLIP_FRAMES, CLIP_FPS) for p, (h, w) in zip(paths, CLIP_SIZES, strict=True)]


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_bad_inputs(tmp_path_factory.mktemp("io_bad"))


@pytest.fixture(scope="session")
def hard_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Damaged, rotated, 10-bit, odd-size 4:2:0 and long-GOP clips (see ``make_hard_inputs``)."""
    return make_hard_inputs(tmp_path_factory.mktemp("io_hard"))
