"""Video input layer: find videos, probe and decode them, choose clip frames, resize to model input.

Typical flow (what the encode pipeline does per video)::

    from wfvae_cli.io import ClipSpec, discover_videos, plan_clips, probe, read_frames, to_model_input

    spec = ClipSpec(frames=33, fps=16, mode="uniform", clips_per_video=2)   # validated here
    found = discover_videos(["data/", "extra.csv"])                         # found.skipped: (path, reason)
    for src in found.sources:
        info = probe(src.path, timeout=30)                                  # VideoDecodeError if broken
        for clip in plan_clips(info, spec, src.start, src.end):            # ClipPlanError if too short
            frames = read_frames(src.path, clip.indices, timeout=30, size=(256, 256))  # uint8 (T, 256, 256, 3)
            x = to_model_input(frames)                                      # float (3, T, 256, 256) in [-1, 1]

The rules (manifest columns, index formulas, crop and bucket choice, backends, timeouts) are in docs/io.md.
"""

from __future__ import annotations

from wfvae_cli.io.discover import (
    MANIFEST_EXTENSIONS,
    VIDEO_EXTENSIONS,
    Discovery,
    Skipped,
    VideoSource,
    discover_videos,
)
from wfvae_cli.io.errors import ClipPlanError, DamagedVideoError, VideoDecodeError
from wfvae_cli.io.samples import make_bad_inputs, make_sample_clips, write_video
from wfvae_cli.io.sampling import Clip, ClipSpec, plan_clips
from wfvae_cli.io.transform import (
    RESIZE_VERSION,
    ResizeSpec,
    auto_buckets,
    choose_bucket,
    fit_frames,
    resize_crop,
    resized_size,
    to_model_input,
)
from wfvae_cli.io.video import (
    BACKENDS,
    Backend,
    VideoInfo,
    decoder_identity,
    iter_frames,
    probe,
    read_frames,
    resolve_backend,
)

__all__ = [
    "BACKENDS",
    "MANIFEST_EXTENSIONS",
    "RESIZE_VERSION",
    "VIDEO_EXTENSIONS",
    "Backend",
    "Clip",
    "ClipPlanError",
    "ClipSpec",
    "DamagedVideoError",
    "Discovery",
    "ResizeSpec",
    "Skipped",
    "VideoDecodeError",
    "VideoInfo",
    "VideoSource",
    "auto_buckets",
    "choose_bucket",
    "decoder_identity",
    "discover_videos",
    "fit_frames",
    "iter_frames",
    "make_bad_inputs",
    "make_sample_clips",
    "plan_clips",
    "probe",
    "read_frames",
    "resize_crop",
    "resized_size",
    "resolve_backend",
    "to_model_input",
    "write_video",
]
