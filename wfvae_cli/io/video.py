"""Probing and decoding videos: :func:`probe`, :func:`read_frames`, :func:`iter_frames`.

Frames come back as uint8 ``(T, H, W, 3)`` RGB, frame ``i`` being the ``i``-th frame in presentation order.
Two backends give bit-identical pixels: decord (random access, preferred when installed) and PyAV
(sequential, everywhere); ``backend="auto"`` tries decord and falls back to PyAV per file, even part-way.

Deadlines: with ``timeout=None`` the work runs in the calling thread (fastest, but a decoder stuck in C
code would block it forever). With ``timeout=S`` it runs in a pooled decode subprocess that is killed if it
has not answered within S seconds (per call for probe/read, per chunk for streaming) and the call raises
:class:`VideoDecodeError`; a decoder crash becomes the same error instead of killing the caller. The pool
keeps one worker per concurrently decoding thread, reused across calls (see :mod:`wfvae_cli.io._worker`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from wfvae_cli.io import _backends, _worker
from wfvae_cli.io._backends import BACKENDS, Backend, VideoInfo, check_backend
from wfvae_cli.io.errors import VideoDecodeError

__all__ = ["BACKENDS", "Backend", "VideoDecodeError", "VideoInfo", "iter_frames", "probe", "read_frames"]

Indices = np.ndarray | Sequence[int]


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")


def probe(path: str | Path, *, timeout: float | None = None) -> VideoInfo:
    """Read a video's header: frame count, rate, size, codec (no pixels are decoded).

    Raises :class:`VideoDecodeError` (naming the file) for a missing, empty, unreadable, corrupt or non-video
    file, and when ``timeout`` seconds pass without an answer.
    """
    _check_timeout(timeout)
    path = str(path)
    if timeout is None:
        return _backends.probe(path)
    with _worker.borrow() as worker:
        return worker.probe(path, timeout)


def read_frames(
    path: str | Path,
    indices: Indices,
    backend: Backend = "auto",
    timeout: float | None = None,
    *,
    threads: int = 0,
) -> np.ndarray:
    """Decode the frames at ``indices`` (any order, repeats allowed) as uint8 ``(len(indices), H, W, 3)``.

    ``threads`` is FFmpeg's decode thread count (0 = FFmpeg decides); lower it when many decodes run at once.
    An index past the last decodable frame raises :class:`VideoDecodeError` (plan with :func:`probe` first).
    """
    check_backend(backend)
    _check_timeout(timeout)
    path, idx = str(path), _backends.as_indices(indices)
    if timeout is None:
        return _backends.read_local(path, idx, backend, threads)
    with _worker.borrow() as worker:
        return worker.read(path, idx, backend, threads, timeout)


def iter_frames(
    path: str | Path,
    indices: Indices,
    chunk: int,
    *,
    backend: Backend = "auto",
    timeout: float | None = None,
    threads: int = 0,
) -> Iterator[np.ndarray]:
    """Yield the frames at ``indices`` (non-decreasing) in uint8 chunks of ``chunk`` frames (the last ≤).

    For streaming a long video through the model with bounded memory (about two chunks are held at a time).
    With a ``timeout``, each chunk must arrive within that many seconds. Closing the generator early stops
    the decoder.
    """
    check_backend(backend)
    _check_timeout(timeout)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    path, idx = str(path), _backends.as_indices(indices, ordered=True)
    if timeout is None:
        yield from _backends.iter_local(path, idx, chunk, backend, threads)
        return
    with _worker.borrow() as worker:
        yield from worker.iter(path, idx, chunk, backend, threads, timeout)
