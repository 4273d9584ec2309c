"""decord backend: random access with ``VideoReader.get_batch``.

decord seeks to the keyframe before each requested run of frames. It ships wheels only for x86_64
Linux/Windows, so it is optional: :func:`available` tells whether it imports. It applies the display matrix
itself (checked bit-identical to PyAV + ``np.rot90``), and for 8-bit 4:2:0 streams of even size its RGB is
bit-identical to PyAV's; other streams (10-bit, 4:2:2/4:4:4, odd sizes) are routed to PyAV by the caller.
It cannot detect damaged frames (FFmpeg's concealment is invisible through its API).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np

from wfvae_cli.io.transform import ResizeSpec, fit_frames

#: frames per get_batch call: bounds the full-resolution frames alive at once (8 × 24 MiB at 4K)
STEP = 8


@functools.cache
def available() -> bool:
    """Whether decord can be imported here (cached: a failed import is not retried)."""
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def version() -> str:
    import decord

    return str(decord.__version__)


def errors() -> tuple[type[BaseException], ...]:
    """decord raises ``RuntimeError`` when opening fails and ``DECORDError`` when decoding fails."""
    from decord import DECORDError

    return (RuntimeError, DECORDError)


def iter_batches(
    path: str, wanted: np.ndarray, batch: int, threads: int, fit: ResizeSpec | None = None
) -> Iterator[np.ndarray]:
    """Yield frames ``wanted`` (sorted, unique) as uint8 ``(n, H, W, 3)`` arrays of at most ``batch``."""
    import decord

    reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads)
    step = min(batch, STEP) if fit is not None else batch
    for lo in range(0, len(wanted), batch):
        part = wanted[lo : lo + batch]
        pieces = []
        for a in range(0, len(part), step):
            frames = reader.get_batch(part[a : a + step].tolist()).asnumpy()
            pieces.append(fit_frames(frames, fit.size, fit.crop) if fit is not None else frames)
        yield pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
