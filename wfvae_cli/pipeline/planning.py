"""Plan an encode job: inputs -> probed videos -> clips -> buckets of equal latent shape.

Planning happens once, in the coordinator, before any latent exists: the store's layout (buckets,
rows, shards) is then fixed, which is what makes resuming and parallel writers safe. Inputs that give
no clip (unreadable, too short, missing from a manifest, duplicates) are *rejected* with a one-line
reason; they are recorded in the store and reported, and never stop the job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from wfvae_cli.dtypes import STORE_DTYPES
from wfvae_cli.errors import one_line
from wfvae_cli.io import (
    ClipPlanError,
    VideoDecodeError,
    VideoSource,
    choose_bucket,
    discover_videos,
    plan_clips,
    probe,
)
from wfvae_cli.model.config import WFVAEConfig
from wfvae_cli.pipeline.options import EncodeOptions
from wfvae_cli.store import BucketPlan, SampleRecord, default_shard_size
from wfvae_cli.store.layout import encode_extra


@dataclass
class DatasetPlan:
    """The buckets to create and the inputs that were rejected."""

    buckets: list[BucketPlan]
    rejected: list[tuple[str, str]]
    videos: int  # inputs that yielded at least one clip
    inputs: int  # inputs discovered (including rejected ones)

    @property
    def clips(self) -> int:
        return sum(len(b.samples) for b in self.buckets)

    def estimated_bytes(self, store_dtype: str, kind: str) -> int:
        """Uncompressed size of the latent arrays (latents compress little)."""
        itemsize = np.dtype(STORE_DTYPES[store_dtype]).itemsize
        arrays = 1 if kind == "sample" else 2
        return sum(len(b.samples) * int(np.prod(b.latent_shape)) * itemsize * arrays for b in self.buckets)


def bucket_id(frames: int, height: int, width: int) -> str:
    """``{frames}x{H}x{W}`` of the model input: one bucket per latent shape."""
    return f"{frames}x{height}x{width}"


def parse_bucket_id(bid: str) -> tuple[int, int, int]:
    """(frames, H, W) of a bucket id made by :func:`bucket_id`."""
    frames, height, width = (int(v) for v in bid.split("x"))
    return frames, height, width


def _target_size(opts: EncodeOptions, width: int, height: int) -> tuple[int, int]:
    if opts.size is not None:
        return opts.size
    return choose_bucket(width, height, list(opts.buckets))


def plan_dataset(
    opts: EncodeOptions,
    config: WFVAEConfig,
    on_probe: Callable[[int, int], None] | None = None,
) -> DatasetPlan:
    """Discover, probe (in parallel, with the decode timeout) and cut clips; group rows into buckets."""
    discovery = discover_videos(opts.inputs, columns=opts.columns, storage_options=opts.storage_options)
    rejected: list[tuple[str, str]] = [(s.path, s.reason) for s in discovery.skipped]
    sources: Sequence[VideoSource] = discovery.sources
    spec = opts.clip_spec(config.temporal_factor)

    def probe_one(source: VideoSource):
        try:
            return probe(source.path, timeout=opts.decode_timeout), None
        except Exception as exc:  # one bad file must never stop planning
            return None, one_line(exc, limit=1000)

    rows: dict[str, list[SampleRecord]] = {}
    videos = 0
    with ThreadPoolExecutor(max_workers=max(1, opts.workers)) as pool:
        for done, (source, (info, error)) in enumerate(zip(sources, pool.map(probe_one, sources), strict=True), 1):
            if on_probe is not None:
                on_probe(done, len(sources))
            if info is None:
                rejected.append((source.path, error or "unreadable"))
                continue
            try:
                clips = plan_clips(info, spec, source.start, source.end)
            except (ClipPlanError, VideoDecodeError) as exc:
                rejected.append((source.path, one_line(exc, limit=1000)))
                continue
            if not clips:
                rejected.append((source.path, f"no clip of {opts.frames} frames fits"))
                continue
            videos += 1
            height, width = _target_size(opts, info.width, info.height)
            for clip in clips:
                bid = bucket_id(clip.num_frames, height, width)
                rows.setdefault(bid, []).append(
                    SampleRecord(
                        source=source.path,
                        clip_start=int(clip.start_frame),
                        clip_end=int(clip.end_frame),
                        frame_indices=tuple(int(i) for i in clip.indices),
                        fps=float(info.fps),
                        width=int(info.width),
                        height=int(info.height),
                        caption=source.caption or "",
                        key=source.key,
                        extra=encode_extra(source.extra),
                    )
                )
    itemsize = np.dtype(STORE_DTYPES[opts.store_dtype]).itemsize
    buckets = []
    for bid in sorted(rows, key=parse_bucket_id):
        shape = config.latent_shape(*parse_bucket_id(bid))
        shard = opts.shard_size or default_shard_size(int(np.prod(shape)) * itemsize, len(rows[bid]))
        buckets.append(BucketPlan(bid, shape, tuple(rows[bid]), shard_size=min(shard, len(rows[bid]))))
    return DatasetPlan(buckets, rejected, videos, len(sources) + len(discovery.skipped))
