"""torchcodec backend (optional, ``pip install torchcodec`` plus a system FFmpeg 4–8).

torchcodec is PyTorch's maintained decoder (CPU, and CUDA NVDEC on GPU machines). ``seek_mode="exact"``
indexes the file's packets once, so frame ``i`` is the ``i``-th in presentation order, as everywhere here.
It applies the display matrix, and for 8-bit 4:2:0 streams of even size its RGB is bit-identical to PyAV's
(checked with torchcodec 0.17 on FFmpeg 5.1 beside PyAV 18's FFmpeg 8); other streams are routed to PyAV by
the caller. Like decord it cannot report damaged frames. Its wheel must match the installed torch
(torchcodec 0.17 ↔ torch 2.14 was checked); :func:`available` is False when the import or the FFmpeg
libraries fail, so a broken install degrades to the other backends instead of failing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np

from wfvae_cli.io.transform import ResizeSpec, fit_frames

STEP = 8  # frames per call: bounds the full-resolution frames alive at once


@functools.cache
def available() -> bool:
    """Whether torchcodec imports and can load its FFmpeg libraries here."""
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception:  # ImportError, or RuntimeError "Could not load libtorchcodec" (no system FFmpeg)
        return False
    return True


def version() -> str:
    import torchcodec

    return str(torchcodec.__version__)


def errors() -> tuple[type[BaseException], ...]:
    return (RuntimeError, ValueError, OSError)


def iter_batches(
    src, wanted: np.ndarray, batch: int, threads: int, fit: ResizeSpec | None = None
) -> Iterator[np.ndarray]:
    """Yield frames ``wanted`` (sorted, unique) as uint8 ``(n, H, W, 3)`` arrays of at most ``batch``."""
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(src, seek_mode="exact", dimension_order="NHWC", num_ffmpeg_threads=threads)
    step = min(batch, STEP) if fit is not None else batch
    for lo in range(0, len(wanted), batch):
        part = wanted[lo : lo + batch]
        pieces = []
        for a in range(0, len(part), step):
            frames = decoder.get_frames_at(part[a : a + step].tolist()).data.numpy()
            pieces.append(fit_frames(frames, fit.size, fit.crop) if fit is not None else frames)
        yield pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
