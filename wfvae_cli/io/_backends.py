"""In-process probing and decoding with backend selection and the decord → PyAV fallback.

Everything here runs in the calling process and has no deadline; :mod:`wfvae_cli.io._worker` runs the same
functions in a subprocess when a timeout is wanted. Every failure caused by the file becomes a
:class:`VideoDecodeError` naming it, so callers only ever catch one exception type.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from wfvae_cli.errors import WfvaeError
from wfvae_cli.io import _decord, _pyav, remote
from wfvae_cli.io.errors import VideoDecodeError

log = logging.getLogger(__name__)

Backend = Literal["auto", "decord", "pyav"]
BACKENDS: tuple[str, ...] = ("auto", "decord", "pyav")


@dataclass(frozen=True)
class VideoInfo:
    """What the sampler needs to know about a video, read from its header (no pixels decoded).

    Frame ``i`` is taken to be shown at ``i / fps`` seconds: clip planning works on frame indices, and for a
    variable-frame-rate file ``fps`` is the average rate, so times are approximate there (indices are exact).
    ``duration`` is ``num_frames / fps`` (consistent with that model, not the container's own duration).
    ``backend`` is the library that read the header (always PyAV, so plans do not depend on decord).
    """

    path: str
    num_frames: int
    fps: float
    width: int
    height: int
    duration: float
    codec: str
    backend: str = "pyav"


def check_backend(backend: str) -> None:
    """Reject an unknown backend name, or ``decord`` where it is not installed (user errors)."""
    if backend not in BACKENDS:
        raise WfvaeError(f"unknown decode backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "decord" and not _decord.available():
        raise WfvaeError(
            "decode backend 'decord' is not installed here: pip install decord, or use 'auto'/'pyav'"
        )


def check_file(path: str) -> None:
    """Fail fast with a specific reason before FFmpeg turns it into a generic "Invalid data"."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise VideoDecodeError(f"{path}: no such file; check the path or remove it from the inputs") from None
    except OSError as err:
        raise VideoDecodeError(
            f"{path}: cannot be accessed ({err.strerror}); check the path and permissions"
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


def _wrap(path: str, err: BaseException, decord_err: BaseException | None = None) -> VideoDecodeError:
    """Turn a library exception into a one-line VideoDecodeError naming the file and the way out."""
    reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
    note = f"; decord also failed: {_first_line(decord_err)}" if decord_err is not None else ""
    return VideoDecodeError(
        f"{path}: cannot be decoded ({reason}{note}); the file is corrupt, truncated or not a video: "
        "re-encode it or remove it from the inputs"
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def probe(path: str) -> VideoInfo:
    """Probe ``path`` with PyAV (header only); see :class:`VideoInfo`."""
    try:
        with remote.open_input(path) as src:  # URLs and tar members: a ranged-read file object (io/remote.py)
            if isinstance(src, str):
                check_file(src)
            head = _pyav.probe(src)  # type: ignore[arg-type]
    except VideoDecodeError:
        raise
    except _pyav.ERRORS as err:
        raise _wrap(path, err) from None
    return VideoInfo(
        path, head.num_frames, head.fps, head.width, head.height, head.num_frames / head.fps, head.codec
    )


def decode_batches(
    path: str, wanted: np.ndarray, batch: int, backend: str = "auto", threads: int = 0
) -> Iterator[np.ndarray]:
    """Yield frames ``wanted`` (sorted, unique, non-negative) in order, in uint8 batches of ≤ ``batch``.

    With ``auto``, decord is tried first; if it cannot open the file or fails part-way, PyAV decodes the
    frames decord had not delivered yet (both give identical pixels, so a fallback mid-video is seamless).
    """
    check_backend(backend)
    local = remote.is_local(path)  # remote sources: PyAV over ranged reads (decord would read the whole file)
    if local:
        check_file(path)
    done = 0
    decord_err: BaseException | None = None
    if backend != "pyav" and _decord.available() and (local or backend == "decord"):
        try:
            with remote.open_input(path) as src:
                for frames in _decord.iter_batches(src, wanted, batch, threads):  # type: ignore[arg-type]
                    done += len(frames)
                    yield frames
            return
        except _decord.errors() as err:
            if backend == "decord":
                raise _wrap(path, err) from None
            log.debug("decord failed on %s after %d frames, falling back to PyAV: %s", path, done, err)
            decord_err = err
    try:
        with remote.open_input(path) as src:
            yield from _pyav.iter_batches(src, wanted[done:], batch, threads)  # type: ignore[arg-type]
    except VideoDecodeError:
        raise
    except _pyav.ERRORS as err:
        raise _wrap(path, err, decord_err) from None


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


def read_local(path: str, indices: np.ndarray, backend: str = "auto", threads: int = 0) -> np.ndarray:
    """Decode frames ``indices`` (any order, repeats allowed) into one uint8 ``(T, H, W, 3)`` array.

    Each distinct frame is decoded once, in file order; repeats and reordering are a single gather at the end.
    """
    idx = as_indices(indices)
    wanted, inverse = np.unique(idx, return_inverse=True)
    out: np.ndarray | None = None
    filled = 0
    for frames in decode_batches(path, wanted, len(wanted), backend, threads):
        if out is None:
            if len(frames) == len(wanted):
                out, filled = frames, len(frames)  # decord delivers everything at once: no copy
                continue
            out = np.empty((len(wanted), *frames.shape[1:]), np.uint8)
        out[filled : filled + len(frames)] = frames
        filled += len(frames)
    if out is None or filled != len(wanted):
        raise RuntimeError(f"{path}: the decoder delivered {filled} of {len(wanted)} frames")
    return out if len(wanted) == len(idx) and np.array_equal(wanted, idx) else out[inverse]


def iter_local(
    path: str, indices: np.ndarray, chunk: int, backend: str = "auto", threads: int = 0
) -> Iterator[np.ndarray]:
    """Yield frames ``indices`` (non-decreasing, repeats allowed) in chunks of exactly ``chunk`` (last ≤).

    Memory stays at about two chunks whatever the video length: distinct frames are decoded in batches of
    ``chunk`` and a small buffer re-cuts them into output chunks (a repeated frame may straddle two chunks).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    idx = as_indices(indices, ordered=True)
    wanted, pos = np.unique(idx, return_inverse=True)
    batches = decode_batches(path, wanted, chunk, backend, threads)
    buf: np.ndarray | None = None
    buf_lo = 0  # position in `wanted` of buf[0]
    try:
        for lo in range(0, len(idx), chunk):
            need = pos[lo : lo + chunk]
            while buf is None or buf_lo + len(buf) <= need[-1]:
                new = next(batches, None)
                if new is None:
                    raise RuntimeError(f"{path}: decoder ended before frame {int(wanted[need[-1]])}")
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
