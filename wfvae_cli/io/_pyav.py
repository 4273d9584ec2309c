"""PyAV backend: header-only probing and sequential decoding.

PyAV is the portable backend (wheels everywhere, unlike decord) and the one used for probing, so that clip
planning sees the same frame count whatever decoder later reads the pixels. Decoding is sequential from the
first frame: only the requested frames are converted to RGB (the conversion, not the decode, is PyAV's
bottleneck) and decoding stops right after the last requested frame.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import NamedTuple

import av
import av.logging
import numpy as np

from wfvae_cli.io.errors import VideoDecodeError

# FFmpeg prints to C stderr ("Invalid NAL unit size", "moov atom not found"), repeating what the exception
# we raise already says, once per broken packet. Lower FFmpeg's own level rather than routing its log into
# Python logging (``av.logging.set_level``): that callback takes the GIL from FFmpeg's threads and is known to
# contend or deadlock under threaded decoding. Left alone if the application enabled PyAV logging itself,
# or when WFVAE_DEBUG is set. This is process-wide for PyAV's FFmpeg; decord bundles its own FFmpeg and
# still prints (harmless).
if av.logging.get_level() is None and os.environ.get("WFVAE_DEBUG", "") in ("", "0"):
    av.logging.set_libav_level(av.logging.FATAL)

ERRORS: tuple[type[BaseException], ...] = (av.FFmpegError, OSError)
"""Exceptions from PyAV that mean "this file cannot be decoded" (callers wrap them with the file name)."""


def _is_still_image(container: av.container.InputContainer) -> bool:
    """True for FFmpeg's still-image demuxers (``image2``, ``png_pipe``, ``jpeg_pipe``, …).

    FFmpeg happily opens a PNG as a one-frame "video" at 25 fps; a dataset entry like that is a mistake
    (a thumbnail next to the clip), so it is rejected rather than encoded as a 1-frame clip. Animated
    formats with their own demuxer (gif, apng, webp animations) are still accepted.
    """
    return any(name == "image2" or name.endswith("_pipe") for name in container.format.name.split(","))


@contextlib.contextmanager
def open_video(path: str) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """Open ``path`` and return its first video stream, rejecting audio-only files and still images."""
    with av.open(path, metadata_errors="ignore") as container:
        if _is_still_image(container):
            raise VideoDecodeError(
                f"{path}: is a still image ({container.format.name}), not a video; remove it from the inputs"
            )
        if not container.streams.video:
            raise VideoDecodeError(
                f"{path}: has no video stream (audio or data only); remove it from the inputs"
            )
        yield container, container.streams.video[0]


class Header(NamedTuple):
    """Stream facts read without decoding pixels."""

    num_frames: int
    fps: float
    width: int
    height: int
    codec: str


def probe(path: str) -> Header:
    """Read frame count, rate, size and codec from the container header (no pixel decoding).

    The frame count comes from the header (``nb_frames``) when the container stores it (mp4, mov, avi);
    Matroska/WebM do not, so the video packets are counted by demuxing the file (I/O-bound, no decode).
    Estimating ``duration × fps`` instead would let the sampler plan frames that do not exist.
    """
    with open_video(path) as (container, stream):
        rate = stream.average_rate or stream.guessed_rate
        ctx = stream.codec_context
        num_frames = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
        if not rate or rate <= 0:
            raise VideoDecodeError(
                f"{path}: has no usable frame rate in its header; re-encode it (e.g. ffmpeg -r 24)"
            )
        if num_frames <= 0 or not ctx.width or not ctx.height:
            raise VideoDecodeError(f"{path}: contains no video frames; re-encode or remove it")
        return Header(int(num_frames), float(rate), int(ctx.width), int(ctx.height), ctx.name)


def iter_batches(path: str, wanted: np.ndarray, batch: int, threads: int) -> Iterator[np.ndarray]:
    """Yield the frames ``wanted`` (sorted, unique) as uint8 ``(n, H, W, 3)`` arrays of at most ``batch``.

    Frame ``i`` is the ``i``-th frame in presentation order, which is what the decoder emits and what
    decord calls index ``i`` (the two backends agree bit for bit on the same file).
    """
    targets = wanted.tolist()
    if not targets:
        return
    with open_video(path) as (container, stream):
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        k = 0  # position in targets of the next frame to keep
        out: np.ndarray | None = None
        fill = 0
        decoded = 0
        for decoded, frame in enumerate(container.decode(stream), start=1):
            if decoded - 1 != targets[k]:
                continue
            rgb = frame.to_ndarray(format="rgb24")
            if out is None:
                out = np.empty((min(batch, len(targets) - k), *rgb.shape), np.uint8)
            elif rgb.shape != out.shape[1:]:
                raise VideoDecodeError(
                    f"{path}: changes resolution mid-stream ({out.shape[2]}x{out.shape[1]} → "
                    f"{rgb.shape[1]}x{rgb.shape[0]}); re-encode it at a single size"
                )
            out[fill] = rgb
            fill += 1
            k += 1
            if fill == len(out):
                yield out
                if k == len(targets):
                    return  # stop early: nothing after the last requested frame is decoded
                out, fill = None, 0
        raise VideoDecodeError(
            f"{path}: only {decoded} frames could be decoded but frame {targets[k]} was requested; "
            "the file is truncated or its header overstates the frame count (re-encode it)"
        )
