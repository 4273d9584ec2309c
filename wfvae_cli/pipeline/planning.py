"""Plan an encode job: inputs -> probed videos -> clips -> buckets of equal latent shape.

Planning happens once, in the coordinator, before any latent exists: the store's layout (buckets,
rows, shards) is then fixed, which is what makes resuming and parallel writers safe. Inputs that give
no clip (unreadable, too short, missing from a manifest, duplicates) are *rejected* with a one-line
reason; they are recorded in the store and reported, and never stop the job.

An input whose probe fails for a reason that may not recur (a probe timeout on a loaded machine, an I/O or
network error) is not rejected but *transient*: it gets no row yet, the store's probe table remembers it, and
every rerun probes it again and adds its clips (:meth:`~wfvae_cli.store.LatentStore.extend`). Probe results
are cached in the store (:mod:`wfvae_cli.store.probes`): a rerun re-probes only inputs it has not seen, or whose
size/modification time changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

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
from wfvae_cli.io._backends import VideoInfo
from wfvae_cli.io.errors import failure_is_transient
from wfvae_cli.io.remote import input_identity
from wfvae_cli.model.config import WFVAEConfig
from wfvae_cli.pipeline.options import EncodeOptions
from wfvae_cli.store import BucketPlan, ProbeState, ProbeTable, default_shard_size
from wfvae_cli.store.index import IndexColumns
from wfvae_cli.store.layout import encode_extra


@dataclass
class DatasetPlan:
    """The buckets to create and the inputs that were rejected."""

    buckets: list[BucketPlan]
    rejected: list[tuple[str, str]]
    videos: int  # inputs that yielded at least one clip
    inputs: int  # inputs discovered (including rejected ones)
    #: inputs whose probe failed transiently (timeout, I/O error): no row yet, every rerun probes them again
    transient: list[tuple[str, str]] = field(default_factory=list)
    #: the probe results of every distinct input of this plan (cached ones included): the store's probe table
    probes: ProbeTable = field(default_factory=ProbeTable.empty)
    probed: int = 0  # inputs actually probed (the others came from the cache)

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


#: probe-table numeric columns of a failed probe
_NO_HEADER = (0.0, 0.0, 0.0, 0.0, 0.0)


def probe_inputs(
    paths: Sequence[str],
    opts: EncodeOptions,
    cache: ProbeTable | None = None,
    on_probe: Callable[[int, int], None] | None = None,
) -> tuple[ProbeTable, int]:
    """Probe distinct inputs in parallel (``opts.workers`` threads, each driving a decode subprocess with the
    decode timeout); inputs in ``cache`` with an unchanged identity are not probed again, unless their cached
    probe was transient. Returns the table (row ``i`` = ``paths[i]``) and how many inputs were probed."""
    cached = cache.lookup() if cache is not None and len(cache) else {}

    def probe_one(path: str) -> tuple[str, int, str, tuple[float, ...], str, str] | int:
        identity = input_identity(path)
        row = cached.get(path)
        if (row is not None and identity and str(cache.identity[row]) == identity  # type: ignore[union-attr]
                and int(cache.state[row]) != ProbeState.TRANSIENT):  # type: ignore[union-attr]
            return row
        try:
            info: VideoInfo = probe(path, timeout=opts.decode_timeout)
        except Exception as exc:  # one bad file must never stop planning
            state = ProbeState.TRANSIENT if failure_is_transient(exc) else ProbeState.REJECTED
            return identity, int(state), one_line(exc, limit=1000), _NO_HEADER, "", ""
        numeric = (float(info.num_frames), float(info.fps), float(info.width), float(info.height),
                   float(info.rotation))
        return identity, int(ProbeState.OK), "", numeric, info.codec, info.pix_fmt

    n = len(paths)
    identities, errors, codecs, pix_fmts = [""] * n, [""] * n, [""] * n, [""] * n
    states = np.zeros(n, dtype=np.uint8)
    numeric = np.zeros((n, 5), dtype=np.float64)
    probed = 0
    with ThreadPoolExecutor(max_workers=max(1, opts.workers), thread_name_prefix="wfvae-probe") as pool:
        for i, result in enumerate(pool.map(probe_one, paths)):
            if isinstance(result, int):  # a cache hit: copy the cached row
                assert cache is not None
                identities[i], states[i], errors[i] = str(cache.identity[result]), cache.state[result], \
                    str(cache.error[result])
                numeric[i] = (cache.num_frames[result], cache.fps[result], cache.width[result], cache.height[result],
                              cache.rotation[result])
                codecs[i], pix_fmts[i] = str(cache.codec[result]), str(cache.pix_fmt[result])
            else:
                probed += 1
                identities[i], states[i], errors[i], numeric[i], codecs[i], pix_fmts[i] = result
            if on_probe is not None:
                on_probe(i + 1, n)
    return ProbeTable.build(paths, identities, states, errors, numeric, codecs, pix_fmts), probed


def plan_dataset(
    opts: EncodeOptions,
    config: WFVAEConfig,
    on_probe: Callable[[int, int], None] | None = None,
    *,
    cache: ProbeTable | None = None,
    sources: Sequence[VideoSource] | None = None,
) -> DatasetPlan:
    """Discover, probe (in parallel, with the decode timeout; ``cache``: earlier results) and cut clips; group
    rows into buckets. ``sources``: plan these instead of discovering ``opts.inputs`` (a resume re-planning its
    transient inputs)."""
    if sources is None:
        discovery = discover_videos(opts.inputs, columns=opts.columns, storage_options=opts.storage_options)
        rejected: list[tuple[str, str]] = [(s.path, s.reason) for s in discovery.skipped]
        sources, skipped = discovery.sources, len(discovery.skipped)
    else:
        rejected, skipped = [], 0
    spec = opts.clip_spec(config.temporal_factor)
    paths = list(dict.fromkeys(s.path for s in sources))  # a manifest may cut one file into several segments
    table, probed = probe_inputs(paths, opts, cache, on_probe)
    row_of = {p: i for i, p in enumerate(paths)}

    # per bucket, one list per index column (Python ints/strings while planning; numpy columns in the plan):
    # a SampleRecord per clip costs ~1.5 KB and ~5 µs, held until the store is created
    rows: dict[str, tuple[list[Any], ...]] = {}
    transient: dict[str, str] = {}
    videos = 0
    for source in sources:
        i = row_of[source.path]
        state = int(table.state[i])
        if state == ProbeState.TRANSIENT:
            transient[source.path] = str(table.error[i])
            continue
        if state == ProbeState.REJECTED:
            rejected.append((source.path, str(table.error[i]) or "unreadable"))
            continue
        info = VideoInfo(source.path, int(table.num_frames[i]), float(table.fps[i]), int(table.width[i]),
                         int(table.height[i]), int(table.num_frames[i]) / float(table.fps[i]), str(table.codec[i]),
                         "pyav", int(table.rotation[i]), str(table.pix_fmt[i]))
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
        extra = encode_extra(source.extra)
        for clip in clips:
            bid = bucket_id(clip.num_frames, height, width)
            cols = rows.get(bid)
            if cols is None:
                cols = rows[bid] = tuple([] for _ in range(10))
            for col, value in zip(cols, (
                source.path, int(clip.start_frame), int(clip.end_frame), np.asarray(clip.indices, dtype=np.int64),
                float(info.fps), int(info.width), int(info.height), source.caption or "", source.key, extra,
            ), strict=True):
                col.append(value)
    itemsize = np.dtype(STORE_DTYPES[opts.store_dtype]).itemsize
    buckets = []
    for bid in sorted(rows, key=parse_bucket_id):
        shape = config.latent_shape(*parse_bucket_id(bid))
        columns = IndexColumns.from_lists(*rows.pop(bid))
        shard = opts.shard_size or default_shard_size(int(np.prod(shape)) * itemsize, len(columns))
        buckets.append(BucketPlan(bid, shape, columns, shard_size=min(shard, len(columns))))
    return DatasetPlan(buckets, rejected, videos, len(sources) + skipped, transient=list(transient.items()),
                       probes=table, probed=probed)
