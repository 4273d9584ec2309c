"""Probing and decoding videos: :func:`probe`, :func:`read_frames`, :func:`iter_frames`.

Frames come back as uint8 ``(T, H, W, 3)`` RGB **as a player shows them** (the container's rotation
applied), frame ``i`` being the ``i``-th frame in presentation order. With ``size=(H, W)`` each frame is
resized and centre-cropped right after it is decoded (uint8, :func:`~wfvae_cli.io.fit_frames`), so a 4K clip
never sits in memory at full resolution; without it frames come at their displayed size.

Backends (docs/io.md): ``auto`` = ``pyav``, the canonical decoder (keyframe seeking, damage detection);
``decord`` and ``torchcodec`` are optional and used only on streams where they give PyAV's exact pixels.
A damaged frame raises :class:`~wfvae_cli.io.errors.DamagedVideoError` (naming it) instead of returning the
decoder's concealment.

Sources: a path, or a seekable binary file-like object (a remote reader's spool). Deadlines need a path.

Deadlines: with ``timeout=None`` the work runs in the calling thread (fastest, but a decoder stuck in C
code would block it forever). With ``timeout=S`` it runs in a pooled decode subprocess that is killed if it
has not answered within S seconds (per call for probe/read, per chunk for streaming) and the call raises
:class:`VideoDecodeError` with ``transient=True``; a decoder crash becomes the same error instead of killing
the caller. The pool keeps one worker per concurrently decoding thread (see :mod:`wfvae_cli.io._worker`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import numpy as np

from wfvae_cli.io import _backends, _worker
from wfvae_cli.io._backends import (
    BACKENDS,
    Backend,
    VideoInfo,
    check_backend,
    decoder_identity,
    resolve_backend,
)
from wfvae_cli.io.errors import DamagedVideoError, VideoDecodeError
from wfvae_cli.io.transform import Crop, ResizeSpec

__all__ = [
    "BACKENDS",
    "Backend",
    "DamagedVideoError",
    "VideoDecodeError",
    "VideoInfo",
    "decoder_identity",
    "iter_frames",
    "probe",
    "read_frames",
    "resolve_backend",
]

Indices = np.ndarray | Sequence[int]
VideoSource = str | Path | IO[bytes]


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")


def _source(src: VideoSource, timeout: float | None) -> str | IO[bytes]:
    if isinstance(src, (str, Path)):
        return str(src)
    if timeout is not None:
        raise ValueError("a decode timeout needs a file path (the decode worker cannot read a file object)")
    return src


def _fit(size: tuple[int, int] | None, crop: Crop) -> ResizeSpec | None:
    return None if size is None else ResizeSpec(int(size[0]), int(size[1]), crop)


def probe(path: VideoSource, *, timeout: float | None = None) -> VideoInfo:
    """Read a video's header: frame count, rate, displayed size, rotation, codec (one frame is decoded).

    Raises :class:`VideoDecodeError` (naming the file) for a missing, empty, unreadable, corrupt or non-video
    file, and when ``timeout`` seconds pass without an answer (then ``transient=True``).
    """
    _check_timeout(timeout)
    src = _source(path, timeout)
    if timeout is None:
        return _backends.probe(src)
    with _worker.borrow() as worker:
        return worker.probe(src, timeout)  # type: ignore[arg-type]


def read_frames(
    path: VideoSource,
    indices: Indices,
    backend: Backend = "auto",
    timeout: float | None = None,
    *,
    threads: int = 0,
    size: tuple[int, int] | None = None,
    crop: Crop = "center",
) -> np.ndarray:
    """Decode the frames at ``indices`` (any order, repeats allowed) as uint8 ``(len(indices), H, W, 3)``.

    ``threads`` is FFmpeg's decode thread count (0 = FFmpeg decides); lower it when many decodes run at once.
    ``size``/``crop``: resize while decoding (the same bytes :func:`~wfvae_cli.io.fit_frames` gives).
    An index past the last decodable frame raises :class:`VideoDecodeError` (plan with :func:`probe` first).
    """
    check_backend(backend)
    _check_timeout(timeout)
    src, idx, fit = _source(path, timeout), _backends.as_indices(indices), _fit(size, crop)
    if timeout is None:
        return _backends.read_local(src, idx, backend, threads, fit)
    with _worker.borrow() as worker:
        return worker.read(src, idx, backend, threads, timeout, fit)  # type: ignore[arg-type]


def iter_frames(
    path: VideoSource,
    indices: Indices,
    chunk: int,
    *,
    backend: Backend = "auto",
    timeout: float | None = None,
    threads: int = 0,
    size: tuple[int, int] | None = None,
    crop: Crop = "center",
) -> Iterator[np.ndarray]:
    """Yield the frames at ``indices`` (non-decreasing) in uint8 chunks of ``chunk`` frames (the last ≤).

    For streaming a long video through the model with bounded memory (about two chunks are held at a time).
    With a ``timeout``, each chunk must arrive within that many seconds. Closing the generator early stops
    the decoder. ``size``/``crop`` as in :func:`read_frames`.
    """
    check_backend(backend)
    _check_timeout(timeout)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    src, idx, fit = _source(path, timeout), _backends.as_indices(indices, ordered=True), _fit(size, crop)
    if timeout is None:
        yield from _backends.iter_local(src, idx, chunk, backend, threads, fit)
        return
    with _worker.borrow() as worker:
        yield from worker.iter(src, idx, chunk, backend, threads, timeout, fit)  # type: ignore[arg-type]
