"""In-process probing and decoding: backend selection, routing, the fallback and error classification.

Everything here runs in the calling process and has no deadline; :mod:`wfvae_cli.io._worker` runs the same
functions in a subprocess when a timeout is wanted. Every failure caused by the file becomes a
:class:`VideoDecodeError` naming it (``transient`` set for I/O trouble that a retry may cure), so callers only
ever catch one exception type.

Backends and why ``auto`` means PyAV: PyAV seeks to keyframes, resizes right after decoding and is the only
backend that detects damaged frames (``err_detect=explode`` + ``frame.is_corrupt``); decord and torchcodec
return FFmpeg's concealed pictures as if they were good. They are kept as explicit choices (and for the
bare-decoder measurement in :mod:`wfvae_cli.io.bench`), restricted to the streams on which their RGB is
bit-identical to PyAV's (8-bit 4:2:0, even size); any other stream is decoded by PyAV whatever was asked, and
a decord/torchcodec failure part-way continues with PyAV, so one store never holds two conversions.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import av
import numpy as np

from wfvae_cli.errors import WfvaeError
from wfvae_cli.io import _decord, _pyav, _torchcodec, remote
from wfvae_cli.io._pyav import Source, name_of
from wfvae_cli.io.errors import VideoDecodeError
from wfvae_cli.io.transform import RESIZE_VERSION, ResizeSpec

log = logging.getLogger(__name__)

Backend = Literal["auto", "pyav", "decord", "torchcodec"]
BACKENDS: tuple[str, ...] = ("auto", "pyav", "decord", "torchcodec")
_OPTIONAL = {"decord": _decord, "torchcodec": _torchcodec}

#: errno values of I/O trouble that a later retry may not meet again (flaky mounts, remote readers)
TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("EIO", "ETIMEDOUT", "ECONNRESET", "ECONNABORTED", "ECONNREFUSED", "EAGAIN", "ENETDOWN",
                 "ENETUNREACH", "EHOSTUNREACH", "ESTALE", "EINTR", "ENOMEM", "EBUSY")
    if hasattr(errno, name)
)

CONVERSION = (
    "rgb24 by the decoder's swscale defaults (BT.601 matrix, range from the stream), display matrix applied "
    "with rot90 before resizing; 10-bit and non-4:2:0 or odd-size streams always through PyAV"
)
"""How decoded pictures become RGB; recorded with the decoder identity."""


@dataclass(frozen=True)
class VideoInfo:
    """What the sampler needs to know about a video, read from its header (no pixels decoded but one).

    Frame ``i`` is taken to be shown at ``i / fps`` seconds: clip planning works on frame indices, and for a
    variable-frame-rate file ``fps`` is the average rate, so times are approximate there (indices are exact).
    ``duration`` is ``num_frames / fps`` (consistent with that model, not the container's own duration).
    ``width``/``height`` are the **displayed** size (the display matrix applied: a portrait phone video
    stored as 1920x1080 with a 90° rotation is 1080x1920 here, as the decoded frames are). ``rotation`` is
    that counter-clockwise angle (0/90/180/270), ``pix_fmt`` the stream's pixel format. ``backend`` is the
    library that read the header (always PyAV, so plans do not depend on which decoders are installed).
    """

    path: str
    num_frames: int
    fps: float
    width: int
    height: int
    duration: float
    codec: str
    backend: str = "pyav"
    rotation: int = 0
    pix_fmt: str = ""


def check_backend(backend: str) -> None:
    """Reject an unknown backend name, or an optional one that is not installed (user errors)."""
    if backend not in BACKENDS:
        raise WfvaeError(f"unknown decode backend {backend!r}: use one of {', '.join(BACKENDS)}")
    module = _OPTIONAL.get(backend)
    if module is not None and not module.available():
        raise WfvaeError(
            f"decode backend {backend!r} is not installed here: pip install {backend}, or use 'auto'/'pyav'"
        )


def resolve_backend(backend: str = "auto") -> str:
    """The concrete backend a name stands for (``auto`` → ``pyav``, see the module docstring)."""
    check_backend(backend)
    return "pyav" if backend == "auto" else backend


def decoder_identity(backend: str = "auto") -> dict[str, str]:
    """What produced the pixels, for the store's preprocessing record: a resume with another is refused.

    PyAV's version and its FFmpeg's libavcodec/libswscale versions are all included, since any of them can
    change decoded or converted pixels; for decord/torchcodec their own version is added (they bundle or load
    their own FFmpeg). ``resize`` is the resize rule's version (:data:`RESIZE_VERSION`).
    """
    name = resolve_backend(backend)
    libs = av.library_versions
    ident = {
        "backend": name,
        "pyav": av.__version__,
        "libavcodec": ".".join(map(str, libs["libavcodec"])),
        "libswscale": ".".join(map(str, libs["libswscale"])),
        "conversion": CONVERSION,
        "resize": RESIZE_VERSION,
    }
    if name in _OPTIONAL:
        ident[name] = _OPTIONAL[name].version()
    return ident


def check_file(src: Source) -> None:
    """Fail fast with a specific reason before FFmpeg turns it into a generic "Invalid data"."""
    if not isinstance(src, str):
        return  # a file-like object: the caller opened it, FFmpeg reports what is wrong with its bytes
    path = src
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise VideoDecodeError(f"{path}: no such file; check the path or remove it from the inputs") from None
    except OSError as err:
        raise VideoDecodeError(
            f"{path}: cannot be accessed ({err.strerror}); check the path and permissions",
            transient=err.errno in TRANSIENT_ERRNOS,
        ) from None
    if stat.S_ISDIR(st.st_mode):
        raise VideoDecodeError(
            f"{path}: is a directory, not a video file; pass it as an input folder instead"
        )
    if not stat.S_ISREG(st.st_mode):
        raise VideoDecodeError(f"{path}: is not a regular file; point to the video file itself")
    if st.st_size == 0:
        raise VideoDecodeError(f"{path}: is empty (0 bytes); the copy or download failed, fetch it again")
    if not os.access(path, os.R_OK):
        raise VideoDecodeError(
            f"{path}: is not readable (permission denied); fix its permissions (chmod a+r)"
        )


def _wrap(src: Source, err: BaseException, other_err: BaseException | None = None) -> VideoDecodeError:
    """Turn a library exception into a one-line VideoDecodeError naming the file and the way out.

    An ``OSError`` with an errno of :data:`TRANSIENT_ERRNOS` (EIO, timeouts, resets: the storage, not the
    file) is marked transient and says so; FFmpeg's own "Invalid data" and friends are permanent.
    """
    reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
    note = f"; the other decoder also failed: {_first_line(other_err)}" if other_err is not None else ""
    code = getattr(err, "errno", None)
    if isinstance(err, OSError) and not isinstance(err, av.FFmpegError) and code in TRANSIENT_ERRNOS:
        return VideoDecodeError(
            f"{name_of(src)}: could not be read ({reason}); an I/O error, probably transient: a plain rerun "
            "of the same command retries it (no flag needed)",
            transient=True,
        )
    return VideoDecodeError(
        f"{name_of(src)}: cannot be decoded ({reason}{note}); the file is corrupt, truncated or not a video: "
        "re-encode it or remove it from the inputs"
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


@contextlib.contextmanager
def _opened(src: Source) -> Iterator[Source]:
    """``src`` ready for PyAV: a local path (checked) or file object as is, a URL or tar member opened."""
    if not isinstance(src, str):
        yield src
        return
    if remote.is_local(src):
        check_file(src)
    with remote.open_input(src) as handle:
        yield handle  # type: ignore[misc]


def probe(src: Source) -> VideoInfo:
    """Probe ``src`` with PyAV (header and first frame); see :class:`VideoInfo`.

    URLs and webdataset members are opened as ranged-read file objects (:func:`wfvae_cli.io.remote.open_input`).
    """
    try:
        with _opened(src) as handle:
            head = _pyav.probe(handle)
    except VideoDecodeError:
        raise
    except _pyav.ERRORS as err:
        raise _wrap(src, err) from None
    return VideoInfo(
        name_of(src), head.num_frames, head.fps, head.width, head.height, head.num_frames / head.fps,
        head.codec, "pyav", head.rotation, head.pix_fmt,
    )


def identical_to_pyav(src: Source) -> bool:
    """Whether decord/torchcodec give PyAV's exact RGB on this stream: 8-bit 4:2:0 of even coded size."""
    pix_fmt, width, height = _pyav.stream_format(src)
    return pix_fmt in _pyav.EIGHT_BIT_420 and width % 2 == 0 and height % 2 == 0


def decode_batches(
    src: Source,
    wanted: np.ndarray,
    batch: int,
    backend: str = "auto",
    threads: int = 0,
    fit: ResizeSpec | None = None,
    verify: bool = True,
) -> Iterator[np.ndarray]:
    """Yield frames ``wanted`` (sorted, unique, non-negative) in order, in uint8 batches of ≤ ``batch``.

    ``verify=False`` skips the PyAV damage check of decord/torchcodec frames (bare-decoder measurements only).

    ``fit`` resizes and crops each frame right after it is decoded (see :func:`~wfvae_cli.io.fit_frames`).
    With ``decord``/``torchcodec``, a stream they do not decode identically goes to PyAV, and a failure
    part-way continues with PyAV for the frames not yet delivered (identical pixels, seamless).
    """
    name = resolve_backend(backend)
    local = not isinstance(src, str) or remote.is_local(src)
    if isinstance(src, str) and local:
        check_file(src)
    done = 0
    other_err: BaseException | None = None
    module = _OPTIONAL.get(name)
    if module is not None:
        try:
            # remote sources: PyAV over ranged reads (decord/torchcodec would read the whole object)
            routed = isinstance(src, str) and local and identical_to_pyav(src)
        except (*_pyav.ERRORS, VideoDecodeError):
            routed = False  # PyAV below reports what is wrong with the file
        if routed and verify:
            # decord/torchcodec return FFmpeg's concealment as good pixels: PyAV decodes the same frames
            # (no RGB conversion) only to check them, before any frame is delivered
            try:
                _pyav.verify(src, wanted, threads)
            except VideoDecodeError:
                raise
            except _pyav.ERRORS as err:
                raise _wrap(src, err) from None
        if routed:
            try:
                for frames in module.iter_batches(src, wanted, batch, threads, fit):
                    done += len(frames)
                    yield frames
                return
            except module.errors() as err:
                log.debug("%s failed on %s after %d frames, continuing with PyAV: %s", name, src, done, err)
                other_err = err
    try:
        with _opened(src) as handle:
            yield from _pyav.iter_batches(handle, wanted[done:], batch, threads, fit)
    except VideoDecodeError:
        raise
    except _pyav.ERRORS as err:
        raise _wrap(src, err, other_err) from None


def as_indices(indices: np.ndarray | list[int], *, ordered: bool = False) -> np.ndarray:
    """Validate frame indices (a programming error if wrong, hence ValueError, not WfvaeError)."""
    idx = np.asarray(indices)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(
            f"frame indices must be a non-empty 1-D integer array, got shape {idx.shape} {idx.dtype}"
        )
    if idx.min() < 0:
        raise ValueError(f"frame indices must be >= 0, got {int(idx.min())}")
    if ordered and np.any(np.diff(idx) < 0):
        raise ValueError("streamed frame indices must be non-decreasing (use read_frames for any order)")
    return idx.astype(np.int64, copy=False)


def read_local(
    src: Source, indices: np.ndarray, backend: str = "auto", threads: int = 0, fit: ResizeSpec | None = None
) -> np.ndarray:
    """Decode frames ``indices`` (any order, repeats allowed) into one uint8 ``(T, H, W, 3)`` array.

    Each distinct frame is decoded once, in file order; repeats and reordering are a single gather at the end.
    """
    idx = as_indices(indices)
    wanted, inverse = np.unique(idx, return_inverse=True)
    out: np.ndarray | None = None
    filled = 0
    for frames in decode_batches(src, wanted, len(wanted), backend, threads, fit):
        if out is None:
            if len(frames) == len(wanted):
                out, filled = frames, len(frames)  # everything at once: no copy
                continue
            out = np.empty((len(wanted), *frames.shape[1:]), np.uint8)
        out[filled : filled + len(frames)] = frames
        filled += len(frames)
    if out is None or filled != len(wanted):
        raise RuntimeError(f"{name_of(src)}: the decoder delivered {filled} of {len(wanted)} frames")
    return out if len(wanted) == len(idx) and np.array_equal(wanted, idx) else out[inverse]


def iter_local(
    src: Source,
    indices: np.ndarray,
    chunk: int,
    backend: str = "auto",
    threads: int = 0,
    fit: ResizeSpec | None = None,
) -> Iterator[np.ndarray]:
    """Yield frames ``indices`` (non-decreasing, repeats allowed) in chunks of exactly ``chunk`` (last ≤).

    Memory stays at about two chunks whatever the video length: distinct frames are decoded in batches of
    ``chunk`` and a small buffer re-cuts them into output chunks (a repeated frame may straddle two chunks).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    idx = as_indices(indices, ordered=True)
    wanted, pos = np.unique(idx, return_inverse=True)
    batches = decode_batches(src, wanted, chunk, backend, threads, fit)
    buf: np.ndarray | None = None
    buf_lo = 0  # position in `wanted` of buf[0]
    try:
        for lo in range(0, len(idx), chunk):
            need = pos[lo : lo + chunk]
            while buf is None or buf_lo + len(buf) <= need[-1]:
                new = next(batches, None)
                if new is None:
                    raise RuntimeError(f"{name_of(src)}: decoder ended before frame {int(wanted[need[-1]])}")
                buf = new if buf is None or not len(buf) else np.concatenate([buf, new])
            local = need - buf_lo
            whole = len(local) == len(buf) and np.array_equal(local, np.arange(len(buf)))
            out = buf if whole else buf[local]
            drop = int(need[-1]) - buf_lo  # later chunks never need frames before need[-1]
            buf = buf[drop:].copy() if whole else buf[drop:]  # never alias a chunk we handed out
            buf_lo += drop
            yield out
    finally:
        batches.close()
