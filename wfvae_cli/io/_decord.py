"""decord backend: random access with ``VideoReader.get_batch``.

decord seeks to the keyframe before each requested run of frames, which makes a clip in the middle of a
long video cheap (PyAV would decode from the start). It ships wheels only for x86_64 Linux/Windows, so it is
optional: :func:`available` tells whether it imports, and every decord failure falls back to PyAV.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np


@functools.cache
def available() -> bool:
    """Whether decord can be imported here (cached: a failed import is not retried)."""
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def errors() -> tuple[type[BaseException], ...]:
    """decord raises ``RuntimeError`` when opening fails and ``DECORDError`` when decoding fails."""
    from decord import DECORDError

    return (RuntimeError, DECORDError)


def iter_batches(path: str, wanted: np.ndarray, batch: int, threads: int) -> Iterator[np.ndarray]:
    """Yield frames ``wanted`` (sorted, unique) as uint8 ``(n, H, W, 3)`` arrays of at most ``batch``."""
    import decord

    reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads)
    for lo in range(0, len(wanted), batch):
        yield reader.get_batch(wanted[lo : lo + batch].tolist()).asnumpy()
