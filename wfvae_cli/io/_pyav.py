"""PyAV backend: probing, keyframe-aware frame-exact decoding, damage detection, rotation, in-decoder resize.

PyAV is the portable backend (wheels everywhere, unlike decord) and the canonical one: probing always uses
it, so that clip planning sees the same frame count and displayed size whatever decoder later reads the
pixels, and ``auto`` decodes with it because it is the only backend that can tell a damaged frame from a
good one.

Frame ``i`` is the ``i``-th frame in presentation order. To reach it without decoding from the start, the
file's packets are demuxed once (I/O only, no decoding; cached per file) into a table of presentation
timestamps: frame ``i`` has the ``i``-th smallest pts, and the keyframes' pts say where decoding may start.
A run of wanted frames is then decoded from the keyframe at or before its first frame, and each decoded
frame is matched to the wanted ones **by pts** (exact, also for variable frame rates and B-frames); frames
before the first wanted one are decoded but never converted. If the file has packets without timestamps the
decoder runs sequentially from frame 0 and frames are counted instead.

Damage: every decoded frame's ``is_corrupt`` flag (FFmpeg sets it when it concealed broken or missing
macroblocks: "error while decoding MB") is checked for every frame decoded on the way to the last wanted one
(a damaged reference frame damages the frames predicted from it), and a decoder error is never skipped;
either becomes a :class:`DamagedVideoError` naming the frame. ``err_detect=explode`` was measured too: it
flags exactly the same damaged files (36 of 64 byte-flip variants of a test clip) but makes the decoder drop
the intact frame it was about to output, so it is not used. The other 28 variants decode as valid syntax
(CABAC parses the flipped bytes without complaint) and no decoder can tell: H.264 and MP4 carry no checksums.
Leading pictures of an open GOP, which reference the GOP before the keyframe we started at, are exempt.

Orientation: the display matrix (``frame.rotation``, counter-clockwise degrees, as a player applies it) is
applied with ``np.rot90`` to the full-resolution uint8 frame, before any resize, so that every backend resizes
the same displayed picture. Sizes reported by :func:`probe` are displayed sizes.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import IO, NamedTuple

import av
import av.logging
import numpy as np

from wfvae_cli.io.errors import DamagedVideoError, VideoDecodeError
from wfvae_cli.io.transform import ResizeSpec, fit_frames

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

Source = str | IO[bytes]
"""A local path or a seekable binary file-like object (e.g. a remote reader's spool)."""

DECODER_OPTIONS: dict[str, str] = {}
"""Codec options for decoding (FFmpeg's defaults: concealment on, and flagged, see the module docstring)."""

EIGHT_BIT_420 = frozenset({"yuv420p", "yuvj420p"})


def name_of(src: Source) -> str:
    """What error messages call the source: its path, or the file-like object's ``name``."""
    return src if isinstance(src, str) else str(getattr(src, "name", None) or f"<{type(src).__name__}>")


def _rewind(src: Source) -> None:
    if not isinstance(src, str):
        src.seek(0)


def _is_still_image(container: av.container.InputContainer) -> bool:
    """True for FFmpeg's still-image demuxers (``image2``, ``png_pipe``, ``jpeg_pipe``, …).

    FFmpeg happily opens a PNG as a one-frame "video" at 25 fps; a dataset entry like that is a mistake
    (a thumbnail next to the clip), so it is rejected rather than encoded as a 1-frame clip. Animated
    formats with their own demuxer (gif, apng, webp animations) are still accepted.
    """
    return any(name == "image2" or name.endswith("_pipe") for name in container.format.name.split(","))


@contextlib.contextmanager
def open_video(src: Source) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """Open ``src`` and return its first video stream, rejecting audio-only files and still images."""
    _rewind(src)
    with av.open(src, metadata_errors="ignore") as container:
        name = name_of(src)
        if _is_still_image(container):
            raise VideoDecodeError(
                f"{name}: is a still image ({container.format.name}), not a video; remove it from the inputs"
            )
        if not container.streams.video:
            raise VideoDecodeError(
                f"{name}: has no video stream (audio or data only); remove it from the inputs"
            )
        yield container, container.streams.video[0]


def normalize_rotation(degrees: float | int | None) -> int:
    """A display-matrix angle → 0/90/180/270 counter-clockwise (nearest quarter turn; players do the same)."""
    if not degrees:
        return 0
    return round(float(degrees) / 90.0) % 4 * 90


def rotate(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a counter-clockwise ``rotation`` to one ``(H, W, 3)`` frame (contiguous copy when rotated)."""
    if not rotation:
        return frame
    return np.ascontiguousarray(np.rot90(frame, k=rotation // 90))


class Header(NamedTuple):
    """Stream facts read from the header and the first decoded frame. Sizes are as displayed."""

    num_frames: int
    fps: float
    width: int
    height: int
    codec: str
    rotation: int
    pix_fmt: str


def probe(src: Source) -> Header:
    """Frame count, rate, displayed size, rotation, pixel format and codec.

    The frame count comes from the header (``nb_frames``) when the container stores it (mp4, mov, avi);
    Matroska/WebM do not, so the video packets are counted by demuxing the file (I/O-bound, no decode).
    Estimating ``duration × fps`` instead would let the sampler plan frames that do not exist. The first
    frame is decoded to read its display matrix (FFmpeg attaches the stream's rotation to decoded frames).
    """
    name = name_of(src)
    with open_video(src) as (container, stream):
        rate = stream.average_rate or stream.guessed_rate
        ctx = stream.codec_context
        ctx.thread_count = 1  # one frame is decoded: threads would only add start-up latency
        if not rate or rate <= 0:
            raise VideoDecodeError(f"{name}: has no usable frame rate in its header; re-encode it (e.g. ffmpeg -r 24)")
        num_frames = stream.frames
        counted = 0
        rotation: int | None = None
        for packet in container.demux(stream):
            if packet.size:
                counted += 1
            if rotation is None:
                for frame in stream.decode(packet):
                    rotation = normalize_rotation(frame.rotation)
                    break
            if rotation is not None and num_frames:
                break
        if not num_frames:
            num_frames = counted
        if num_frames <= 0 or not ctx.width or not ctx.height:
            raise VideoDecodeError(f"{name}: contains no video frames; re-encode or remove it")
        if rotation is None:
            raise VideoDecodeError(f"{name}: not a single frame can be decoded; the file is corrupt, re-encode it")
        width, height = int(ctx.width), int(ctx.height)
        if rotation in (90, 270):
            width, height = height, width
        return Header(int(num_frames), float(rate), width, height, ctx.name, rotation, str(ctx.format.name))


def stream_format(src: Source) -> tuple[str, int, int]:
    """``(pix_fmt, coded width, coded height)`` from the header alone (routing decisions need no decode)."""
    with open_video(src) as (_, stream):
        ctx = stream.codec_context
        return (str(ctx.format.name) if ctx.format else ""), int(ctx.width), int(ctx.height)


class FrameTable(NamedTuple):
    """Presentation timestamps of every frame (sorted: frame ``i`` has ``pts[i]``) and of the keyframes."""

    pts: np.ndarray
    key_pts: list[int]

    def keyframe_before(self, pts: int) -> int:
        """pts of the last keyframe at or before ``pts`` (the first frame is used if there is none)."""
        k = bisect.bisect_right(self.key_pts, pts) - 1
        return self.key_pts[k] if k >= 0 else int(self.pts[0])

    def index_of(self, pts: int | None) -> int | None:
        if pts is None:
            return None
        return int(np.searchsorted(self.pts, pts, side="left"))


def frame_table(container: av.container.InputContainer, stream: av.VideoStream) -> FrameTable | None:
    """Demux every packet once (no decoding). ``None`` when timestamps are missing or repeated: then the
    caller counts decoded frames from the start instead, which needs no timestamps."""
    pts: list[int] = []
    keys: list[int] = []
    for packet in container.demux(stream):
        if not packet.size or packet.is_discard:
            continue
        if packet.pts is None:
            return None
        pts.append(packet.pts)
        if packet.is_keyframe:
            keys.append(packet.pts)
    table = np.sort(np.asarray(pts, np.int64))
    if not len(table) or np.any(np.diff(table) == 0):
        return None
    return FrameTable(table, sorted(keys))


_TABLES: OrderedDict[tuple, FrameTable | None] = OrderedDict()
_TABLES_LOCK = threading.Lock()
_TABLES_MAX = 64


def _cached_table(src: Source, container: av.container.InputContainer, stream: av.VideoStream) -> FrameTable | None:
    """The frame table of ``src``, cached per path, size and mtime (a changed file is re-indexed)."""
    key = None
    if isinstance(src, str):
        with contextlib.suppress(OSError):
            st = os.stat(src)
            key = (src, st.st_size, st.st_mtime_ns)
    if key is not None:
        with _TABLES_LOCK:
            if key in _TABLES:
                _TABLES.move_to_end(key)
                return _TABLES[key]
    table = frame_table(container, stream)
    if key is not None:
        with _TABLES_LOCK:
            _TABLES[key] = table
            while len(_TABLES) > _TABLES_MAX:
                _TABLES.popitem(last=False)
    return table


class _Collector:
    """Converts wanted frames (rotate → resize) into uint8 batches of at most ``batch`` frames."""

    def __init__(self, name: str, total: int, batch: int, fit: ResizeSpec | None, convert: bool = True) -> None:
        self.name, self.left, self.batch, self.fit, self.convert = name, total, batch, fit, convert
        self.out: np.ndarray | None = None
        self.fill = 0
        self.raw_shape: tuple[int, ...] | None = None

    def add(self, frame: av.VideoFrame) -> np.ndarray | None:
        """Add one wanted frame; returns a finished batch when one is full."""
        if not self.convert:  # verification only: the frame was decoded and checked, nothing to keep
            self.left -= 1
            return None
        rgb = frame.to_ndarray(format="rgb24")
        if self.raw_shape is None:
            self.raw_shape = rgb.shape
        elif rgb.shape != self.raw_shape:
            raise VideoDecodeError(
                f"{self.name}: changes resolution mid-stream ({self.raw_shape[1]}x{self.raw_shape[0]} → "
                f"{rgb.shape[1]}x{rgb.shape[0]}); re-encode it at a single size"
            )
        rgb = rotate(rgb, normalize_rotation(frame.rotation))
        if self.fit is not None:
            rgb = fit_frames(rgb[None], self.fit.size, self.fit.crop)[0]
        if self.out is None:
            self.out = np.empty((min(self.batch, self.left), *rgb.shape), np.uint8)
        self.out[self.fill] = rgb
        self.fill += 1
        self.left -= 1
        if self.fill == len(self.out):
            done, self.out, self.fill = self.out, None, 0
            return done
        return None


def _damaged(name: str, frame: int | None, what: str) -> DamagedVideoError:
    where = f"frame {frame}" if frame is not None else "a frame"
    return DamagedVideoError(
        f"{name}: {where} is damaged ({what}); the file is corrupt: re-encode or re-download it, or remove it "
        "from the inputs",
        frame=frame,
    )


def _decode_packets(
    name: str, container, stream, table: FrameTable | None, start_pts: int | None
) -> Iterator[av.VideoFrame]:
    """Decode from the current position, in presentation order, raising on damage.

    Frames before ``start_pts`` (open-GOP leading pictures after a seek) may be damaged without consequence
    (they are never wanted). When a packet fails, the frames the decoder already holds (decoded from earlier
    packets, waiting for reordering) cannot depend on it: they are drained and yielded first, and the error
    is raised only if the caller asks for more. So a clip that ends just before a damaged packet is intact.
    """

    def checked(frames) -> Iterator[av.VideoFrame]:
        for frame in frames:
            leading = start_pts is not None and frame.pts is not None and frame.pts < start_pts
            if frame.is_corrupt and not leading:
                index = table.index_of(frame.pts) if table is not None else None
                raise _damaged(name, index, "the decoder concealed broken or missing data")
            yield frame

    for packet in container.demux(stream):
        try:
            frames = stream.decode(packet)
        except av.FFmpegError as err:
            if start_pts is not None and packet.pts is not None and packet.pts < start_pts:
                continue
            index = table.index_of(packet.pts) if table is not None else None
            damage = _damaged(name, index, f"decoder error: {err.strerror or err}")
            try:
                held = stream.decode(None)  # drain: frames of packets sent before the broken one
            except av.FFmpegError:
                held = []
            yield from checked(held)
            raise damage from None
        yield from checked(frames)


def iter_batches(
    src: Source,
    wanted: np.ndarray,
    batch: int,
    threads: int,
    fit: ResizeSpec | None = None,
    *,
    seek: bool = True,
    convert: bool = True,
) -> Iterator[np.ndarray]:
    """Yield frames ``wanted`` (sorted, unique) as uint8 ``(n, H, W, 3)`` arrays of at most ``batch``.

    Frames are displayed-orientation RGB, resized and cropped to ``fit`` when given (per frame, right after
    decoding: memory is bounded by one source frame plus the output). ``seek=False`` decodes from frame 0
    (for measurements; the result is the same). ``convert=False`` only decodes and checks for damage
    (nothing is yielded): how frames decoded by another backend are verified.
    """
    targets = wanted.tolist()
    if not targets:
        return
    name = name_of(src)
    with open_video(src) as (container, stream):
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        if DECODER_OPTIONS:
            stream.codec_context.options = dict(DECODER_OPTIONS)
        table = _cached_table(src, container, stream) if seek else None
        collect = _Collector(name, len(targets), batch, fit, convert)
        if table is None:
            if seek:
                container.seek(0)  # frame_table demuxed to the end
            yield from _sequential(name, container, stream, targets, collect)
            return
        if targets[-1] >= len(table.pts):
            raise VideoDecodeError(
                f"{name}: only {len(table.pts)} frames could be decoded but frame {targets[-1]} was requested; "
                "the file is truncated or its header overstates the frame count (re-encode it)"
            )
        yield from _seeking(name, container, stream, table, targets, collect)


def _sequential(name, container, stream, targets: list[int], collect: _Collector) -> Iterator[np.ndarray]:
    k = 0
    decoded = 0
    for decoded, frame in enumerate(_decode_packets(name, container, stream, None, None), start=1):
        if decoded - 1 != targets[k]:
            continue
        done = collect.add(frame)
        k += 1
        if done is not None:
            yield done
        if k == len(targets):
            return  # stop early: nothing after the last requested frame is decoded
    raise VideoDecodeError(
        f"{name}: only {decoded} frames could be decoded but frame {targets[k]} was requested; "
        "the file is truncated or its header overstates the frame count (re-encode it)"
    )


def _seeking(
    name, container, stream, table: FrameTable, targets: list[int], collect: _Collector
) -> Iterator[np.ndarray]:
    """Decode each run of targets from its keyframe; within a GOP, decoding just continues."""
    want = table.pts[targets].tolist()
    k = 0
    frames: Iterator[av.VideoFrame] | None = None
    position: int | None = None  # pts of the last decoded frame
    from_start = False  # set when a seek landed after the wanted frame: decode from the beginning instead
    while k < len(want):
        key = table.keyframe_before(want[k])
        if frames is None or (position is not None and key > position and not from_start):
            container.seek(key, stream=stream, backward=True, any_frame=False)
            frames = _decode_packets(name, container, stream, table, key)
            position = None
        for frame in frames:
            if frame.pts is None:
                raise VideoDecodeError(f"{name}: a decoded frame has no timestamp; re-encode it")
            first, position = position is None, frame.pts
            if frame.pts < want[k]:
                continue
            if frame.pts > want[k]:
                if first and not from_start:  # the demuxer's index put us past the frame: start over
                    container.seek(0)
                    frames = _decode_packets(name, container, stream, table, None)
                    from_start, position = True, None
                    break
                raise VideoDecodeError(
                    f"{name}: frame {targets[k]} (pts {want[k]}) was never decoded; the file's timestamps are "
                    "inconsistent or it is damaged: re-encode it"
                )
            done = collect.add(frame)
            k += 1
            if done is not None:
                yield done
            break
        else:
            raise VideoDecodeError(
                f"{name}: decoding ended before frame {targets[k]}; the file is truncated (re-encode it)"
            )


def verify(src: Source, wanted: np.ndarray, threads: int = 0) -> None:
    """Decode frames ``wanted`` (sorted, unique) without converting them; raise if any is damaged."""
    for _ in iter_batches(src, wanted, len(wanted), threads, convert=False):
        pass
