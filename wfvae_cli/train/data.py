"""Training data: clips that are a pure function of ``(seed, slot)``, so that resuming is exact.

Why slots: a run interrupted at step ``s`` must see, after ``--resume``, exactly the clips it would have
seen without the interruption, whatever the number of loader workers or devices. Every clip therefore has a
global *slot* number, ``slot = step · batch_size + j`` (``j`` < global batch), and everything random about
it (which video, where the temporal crop starts, the frame stride with ``dynamic_sample``, the camera path
of a synthetic clip) comes from ``numpy.random.default_rng([seed, 0, slot])``. The sampler position stored
in a checkpoint is simply the next step. Which video a slot reads is a per-"epoch" permutation, so every
video is used once per pass, in a shuffled order.

Two sources:

* :class:`VideoClips`: real videos found like ``wfvae encode`` does (:func:`wfvae_cli.io.discover_videos`),
  decoded with :func:`wfvae_cli.io.read_frames` and resized/centre-cropped with
  :func:`wfvae_cli.io.to_model_input`. The temporal crop follows the official ``TrainVideoDataset``: a
  random window of ``frames · rate`` source frames from which ``frames`` are taken with ``linspace``.
* :class:`SyntheticClips`: pan/zoom/rotation camera paths over ``skimage.data`` photos, rendered straight
  to tensors (:func:`wfvae_cli.io.samples.render_clip`): no files and no codec time, for the CPU demo and
  tests. Photos are first shrunk (antialiased) to one of a few scales so that a clip shows natural detail
  at the training resolution rather than an aliased whole photo.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from wfvae_cli.errors import WfvaeError

if TYPE_CHECKING:
    from wfvae_cli.train.recipe import SyntheticSection

log = logging.getLogger(__name__)

__all__ = [
    "SYNTHETIC_PHOTOS",
    "SlotPlan",
    "StepBatchSampler",
    "SyntheticClips",
    "VideoClips",
    "make_loader",
]

SYNTHETIC_PHOTOS: tuple[str, ...] = (
    "astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass",
    "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "text",
    "horse", "motorcycle_left", "motorcycle_right", "grace_hopper", "china", "flower",
)
"""Photos that ship offline: ``skimage.data`` (greyscale replicated to RGB), matplotlib's ``grace_hopper``,
scikit-learn's ``china``/``flower`` (needs scikit-learn); see :mod:`wfvae_cli.train.synthetic`."""

_TRAIN, _EVAL = 0, 1  # RNG stream ids: train and eval clips never share randomness
_PHOTO_SCALES = (1.0, 1.5, 2.25, 3.5)  # photo short side / clip short side, before the camera zooms in


# ================================================================================================ slots
@dataclass(frozen=True)
class SlotPlan:
    """Which global slots one rank reads at one micro-step: the arithmetic of the deterministic order.

    ``batch_size`` is the global batch of an optimizer step; ``micro_batch_size`` clips per device per
    micro-step; ``accum = batch_size / (micro_batch_size · world_size)`` micro-steps per step.
    """

    batch_size: int
    micro_batch_size: int
    world_size: int = 1
    rank: int = 0

    def __post_init__(self) -> None:
        per_round = self.micro_batch_size * self.world_size
        if self.batch_size % per_round:
            raise WfvaeError(
                f"data.batch_size={self.batch_size} is not divisible by data.micro_batch_size "
                f"({self.micro_batch_size}) x {self.world_size} devices; change one of them"
            )

    @property
    def accum(self) -> int:
        return self.batch_size // (self.micro_batch_size * self.world_size)

    def slots(self, step: int, micro: int) -> list[int]:
        base = step * self.batch_size + micro * self.micro_batch_size * self.world_size
        first = base + self.rank * self.micro_batch_size
        return list(range(first, first + self.micro_batch_size))


class StepBatchSampler(Sampler[list[int]]):
    """Yields the slot lists of steps ``start, start+1, …, stop-1`` (``accum`` micro-batches per step)."""

    def __init__(self, plan: SlotPlan, start: int, stop: int) -> None:
        self.plan, self.start, self.stop = plan, start, stop

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            for micro in range(self.plan.accum):
                yield self.plan.slots(step, micro)

    def __len__(self) -> int:
        return max(0, self.stop - self.start) * self.plan.accum


def _epoch_index(slot: int, n_items: int, epoch_len: int, seed: int) -> int:
    """Item of ``slot`` under a fresh permutation per pass of ``epoch_len`` slots (every item once per pass)."""
    epoch, pos = divmod(slot, epoch_len)
    perm = np.random.default_rng([seed, 2, epoch]).permutation(epoch_len)
    return int(perm[pos] % n_items)


def _worker_init(_: int) -> None:
    # loader workers decode/render; the training process owns the cores for the model
    torch.set_num_threads(1)


def make_loader(dataset: Dataset, plan: SlotPlan, start: int, stop: int, workers: int, pin_memory: bool) -> DataLoader:
    """A DataLoader over :class:`StepBatchSampler`: order fixed by slots, so workers only add speed."""
    return DataLoader(
        dataset,
        batch_sampler=StepBatchSampler(plan, start, stop),
        num_workers=workers,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )


# ================================================================================================ synthetic
def _photo(name: str) -> torch.Tensor:
    """float32 ``(3, H, W)`` in [0, 255] (cached by :func:`wfvae_cli.train.synthetic.load_photo`)."""
    from wfvae_cli.train.synthetic import load_photo

    return load_photo(name)


@lru_cache(maxsize=256)
def _scaled_photo(name: str, short_side: int) -> np.ndarray:
    """The photo shrunk (antialiased) so its short side is ``short_side``; uint8 ``(H, W, 3)``."""
    photo = _photo(name)
    h, w = photo.shape[1:]
    s = min(1.0, short_side / min(h, w))
    if s < 1.0:
        size = (max(8, round(h * s)), max(8, round(w * s)))
        photo = F.interpolate(photo[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    return photo.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


class SyntheticClips(Dataset):
    """Rendered camera-motion clips over photos; ``__getitem__(slot)`` → ``(3, T, H, W)`` in [-1, 1].

    ``train=False`` gives a fixed held-out set: item ``i`` is photo ``photos[i % n]`` with its own camera
    path (length ``len(self)`` = ``clips``).
    """

    def __init__(
        self,
        photos: Sequence[str],
        frames: int,
        size: tuple[int, int],
        seed: int,
        *,
        epoch_clips: int = 1024,
        train: bool = True,
        clips: int = 0,
        style: str = "camera",
        low_key: float = 0.0,
        fast: float = 0.0,
        still: float = 0.0,
    ) -> None:
        if not photos:
            raise WfvaeError("synthetic data needs at least one photo")
        if style not in ("camera", "scenes"):
            raise WfvaeError(f"synthetic style {style!r}: use 'camera' or 'scenes'")
        self.photos, self.frames, self.size, self.seed = tuple(photos), frames, size, seed
        self.epoch_clips, self.train, self.clips, self.style = epoch_clips, train, clips, style
        self.low_key, self.fast, self.still = low_key, fast, still

    @classmethod
    def from_section(
        cls, section: SyntheticSection, frames: int, size: tuple[int, int], seed: int, *, train: bool = True,
        clips: int = 0,
    ) -> SyntheticClips:
        """The training (``photos``) or held-out (``eval_photos``) clips a recipe's ``[data.synthetic]`` describes."""
        return cls(
            section.photos if train else section.eval_photos, frames, size, seed, epoch_clips=section.epoch_clips,
            train=train, clips=clips, style=section.style, low_key=section.low_key, fast=section.fast,
            still=section.still,
        )

    def __len__(self) -> int:
        return self.clips if not self.train else self.epoch_clips

    def __getitem__(self, slot: int) -> torch.Tensor:
        from wfvae_cli.io.samples import render_clip

        if self.train:
            name = self.photos[_epoch_index(slot, len(self.photos), self.epoch_clips, self.seed)]
            rng = np.random.default_rng([self.seed, _TRAIN, slot])
        else:
            name = self.photos[slot % len(self.photos)]
            rng = np.random.default_rng([self.seed, _EVAL, slot])
        if self.style == "scenes":
            from wfvae_cli.train.synthetic import render_scene

            # the slot's photo is the background; objects come from the whole set
            clip = render_scene(rng, self.photos, self.frames, self.size, background=name, low_key=self.low_key,
                                fast=self.fast, still=self.still)
            return torch.from_numpy(clip).permute(3, 0, 1, 2).float().div_(127.5).sub_(1.0)
        scale = _PHOTO_SCALES[int(rng.integers(len(_PHOTO_SCALES)))]
        photo = _scaled_photo(name, math.ceil(min(self.size) * scale))
        clip = render_clip(photo, self.frames, self.size, rng)  # uint8 (T, H, W, 3)
        return torch.from_numpy(clip).permute(3, 0, 1, 2).float().div_(127.5).sub_(1.0)


# ================================================================================================ videos
@dataclass(frozen=True)
class _Entry:
    path: str
    s0: int  # first usable source frame
    s1: int  # one past the last
    width: int
    height: int


def _index(inputs: Sequence[str], timeout: float | None, what: str) -> list[_Entry]:
    """Discover and probe every input video (threads: probing is I/O bound)."""
    from wfvae_cli.io import VideoDecodeError, discover_videos, probe
    from wfvae_cli.io.sampling import segment_frames

    found = discover_videos(list(inputs))
    for skipped in found.skipped:
        log.warning("%s: skipped %s (%s)", what, skipped.path, skipped.reason)

    def one(source) -> _Entry | None:
        try:
            info = probe(source.path, timeout=timeout)
            s0, s1 = segment_frames(info, source.start, source.end)
        except (VideoDecodeError, WfvaeError) as exc:
            log.warning("%s: skipped %s", what, exc)
            return None
        return _Entry(source.path, s0, s1, info.width, info.height)

    with ThreadPoolExecutor(max_workers=8) as pool:
        entries = [e for e in pool.map(one, found.sources) if e is not None]
    if not entries:
        raise WfvaeError(f"{what}: none of the {len(found.sources)} videos could be opened; check the inputs")
    return entries


class VideoClips(Dataset):
    """Random (train) or head (eval) clips of real videos; ``__getitem__(slot)`` → ``(3, T, H, W)`` in [-1, 1].

    A video shorter than ``frames · rate`` source frames uses the largest rate that fits; one shorter than
    ``frames`` is dropped at indexing time (with a warning). A video that fails to decode during training is
    replaced by the next one (deterministically) and logged, rather than stopping a week-long run.
    """

    def __init__(
        self,
        inputs: Sequence[str],
        frames: int,
        size: tuple[int, int],
        seed: int,
        *,
        sample_rate: int = 1,
        dynamic_sample: bool = False,
        decode_timeout: float | None = None,
        train: bool = True,
        clips: int = 0,
        what: str = "data.inputs",
    ) -> None:
        self.frames, self.size, self.seed = frames, size, seed
        self.sample_rate, self.dynamic_sample, self.train = sample_rate, dynamic_sample, train
        self.timeout = decode_timeout
        entries = _index(inputs, decode_timeout, what)
        usable = [e for e in entries if e.s1 - e.s0 >= frames]
        if len(usable) < len(entries):
            log.warning("%s: %d video(s) shorter than %d frames dropped", what, len(entries) - len(usable), frames)
        if not usable:
            raise WfvaeError(f"{what}: no video has {frames} frames; lower data.frames or add longer videos")
        self.entries = usable
        self.clips = min(clips, len(usable)) if not train else len(usable)

    def __len__(self) -> int:
        return self.clips

    def _indices(self, entry: _Entry, rng: np.random.Generator) -> np.ndarray:
        length = entry.s1 - entry.s0
        rate = int(rng.integers(1, self.sample_rate + 1)) if self.dynamic_sample else self.sample_rate
        rate = max(1, min(rate, length // self.frames))  # the largest rate that fits
        span = self.frames * rate
        start = int(rng.integers(0, length - span + 1)) if self.train else 0
        # official TrainVideoDataset: `frames` indices spread with linspace over a window of frames·rate
        return entry.s0 + np.linspace(start, start + span - 1, self.frames).astype(np.int64)

    def __getitem__(self, slot: int) -> torch.Tensor:
        from wfvae_cli.io import VideoDecodeError, read_frames, to_model_input

        n = len(self.entries)
        first = _epoch_index(slot, n, n, self.seed) if self.train else slot % n
        rng = np.random.default_rng([self.seed, _TRAIN if self.train else _EVAL, slot])
        for attempt in range(min(n, 8)):
            entry = self.entries[(first + attempt) % n]
            try:
                frames = read_frames(entry.path, self._indices(entry, rng), timeout=self.timeout)
            except VideoDecodeError as exc:
                log.warning("slot %d: %s; using the next video", slot, exc)
                continue
            return to_model_input(frames, self.size)
        raise WfvaeError(f"slot {slot}: {min(n, 8)} videos in a row failed to decode; check the dataset")
