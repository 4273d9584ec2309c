"""The plan a coordinator hands to :func:`~wfvae_cli.store.create_store`: buckets and their sample rows.

Planning happens once, before any latent exists, so that the store's layout (array shapes, shard
boundaries, index rows) is fixed up front. Workers then only fill latents into a layout nobody else
changes, which is what makes concurrent writing and resuming safe.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from wfvae_cli.store.errors import StoreError

#: A shard of one latent array aims at this many uncompressed bytes: large enough that object stores and
#: file systems see few, big files; small enough that a writer buffering a whole shard stays cheap.
TARGET_SHARD_BYTES = 64 * 2**20
#: Upper bound on samples per shard, so that small latents still give many shards (= units of parallel
#: work for writers) and a whole-shard buffer never holds more than this many clips.
MAX_SHARD_SAMPLES = 256

_BUCKET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def validate_bucket_id(bucket_id: str) -> str:
    """Return ``bucket_id`` if it is a safe group name (it becomes a directory), else raise."""
    if not isinstance(bucket_id, str) or not _BUCKET_ID.match(bucket_id):
        raise StoreError(
            f"bucket id {bucket_id!r} is invalid; use letters, digits, '.', '_' or '-' "
            "(e.g. '33x256x256'), at most 64 characters"
        )
    return bucket_id


def default_shard_size(sample_nbytes: int, num_samples: int) -> int:
    """Samples per shard: ~:data:`TARGET_SHARD_BYTES` per latent array, at most :data:`MAX_SHARD_SAMPLES`.

    Never more than the bucket holds (a shard larger than the bucket would only waste writer memory).
    """
    by_bytes = max(1, TARGET_SHARD_BYTES // max(1, sample_nbytes))
    return max(1, min(by_bytes, MAX_SHARD_SAMPLES, num_samples))


@dataclass(frozen=True)
class SampleRecord:
    """One clip to encode: where it comes from and which source frames it covers.

    Attributes:
        source: path or URI of the source video, as the pipeline opened it.
        clip_start, clip_end: source frame range of the clip, ``clip_end`` exclusive.
        frame_indices: the exact source frames fed to the model, in order (repeats allowed, e.g. when a
            short clip is padded). Explicit indices make a latent auditable without re-deriving a
            stride/fps rule whose rounding differs between libraries.
        fps: frame rate of the source video.
        width, height: size of the source video in pixels (before resize/crop).
        caption: free text; may be empty.
        key: the sample's stable key (manifest key column, webdataset ``__key__``, else the path relative to
            its input root); clips of one source share it. Empty for rows planned without one.
        extra: the source's other metadata as a JSON object string (``""`` = none); see
            :func:`wfvae_cli.store.layout.encode_extra`.
    """

    source: str
    clip_start: int
    clip_end: int
    frame_indices: tuple[int, ...]
    fps: float
    width: int
    height: int
    caption: str = ""
    key: str = ""
    extra: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "frame_indices", tuple(int(k) for k in self.frame_indices))
        where = f"sample {self.source!r}"
        if not 0 <= self.clip_start < self.clip_end:
            raise StoreError(
                f"{where}: need 0 <= clip_start < clip_end, got {self.clip_start}, {self.clip_end}"
            )
        if not self.frame_indices:
            raise StoreError(f"{where}: frame_indices is empty")
        if min(self.frame_indices) < self.clip_start or max(self.frame_indices) >= self.clip_end:
            raise StoreError(f"{where}: frame_indices must lie in [clip_start, clip_end)")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise StoreError(f"{where}: fps must be a positive number, got {self.fps}")
        if self.width <= 0 or self.height <= 0:
            raise StoreError(f"{where}: width and height must be positive, got {self.width}x{self.height}")


@dataclass(frozen=True)
class BucketPlan:
    """All clips that share one latent shape, in their final row order.

    Attributes:
        bucket_id: group name under ``buckets/``; convention ``{frames}x{height}x{width}`` of the model
            input (e.g. ``"33x256x256"``), any safe name is accepted.
        latent_shape: ``(C, T, H, W)`` of one sample.
        samples: the rows; row ``i`` of every per-sample array describes ``samples[i]``.
        shard_size: samples per shard; ``None`` picks :func:`default_shard_size`.
    """

    bucket_id: str
    latent_shape: tuple[int, int, int, int]
    samples: Sequence[SampleRecord]  # or an IndexColumns (store/index.py): the compact form planning builds
    shard_size: int | None = None
    num_frames: int = field(init=False)

    def __post_init__(self) -> None:
        validate_bucket_id(self.bucket_id)
        shape = tuple(int(d) for d in self.latent_shape)
        if len(shape) != 4 or min(shape) < 1:
            raise StoreError(f"bucket {self.bucket_id}: latent_shape must be (C, T, H, W) > 0, got {shape}")
        object.__setattr__(self, "latent_shape", shape)
        if not self.samples:
            raise StoreError(f"bucket {self.bucket_id} has no samples; leave it out of the plan")
        columns = getattr(self.samples, "frame_indices", None)  # IndexColumns: (N, F), no record per row
        frames = ({int(columns.shape[1])} if getattr(columns, "ndim", 0) == 2
                  else {len(s.frame_indices) for s in self.samples})
        if len(frames) != 1:
            raise StoreError(
                f"bucket {self.bucket_id}: samples have {sorted(frames)} frames; one bucket needs one frame count"
            )
        object.__setattr__(self, "num_frames", frames.pop())
        if self.shard_size is not None and self.shard_size < 1:
            raise StoreError(f"bucket {self.bucket_id}: shard_size must be >= 1, got {self.shard_size}")

    def resolved_shard_size(self, itemsize: int) -> int:
        """The shard size to use for a latent dtype of ``itemsize`` bytes."""
        if self.shard_size is not None:
            return min(self.shard_size, len(self.samples))
        return default_shard_size(math.prod(self.latent_shape) * itemsize, len(self.samples))
