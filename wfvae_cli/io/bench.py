"""The bare-decoder limit: how many clips per second plain decoder loops reach on given files and cores.

``wfvae bench pipeline`` compares the encode pipeline's throughput with :func:`raw_decode_rate`: the same
clips (planned as the pipeline plans them), decoded **and resized to the model size** by the fastest loop a
backend offers, in ``processes`` processes, with nothing else (no subprocess transport, no batching, no
store). A pipeline at that rate is decode-bound; the gap is the pipeline's overhead.

Backends here are bare: ``pyav`` is this package's PyAV decoder (keyframe seek, uint8 resize per frame,
damage checks included since they cost nothing measurable: one flag per frame); ``decord`` and
``torchcodec`` call the library and resize in uint8 after it, *without* the PyAV damage verification that
``read_frames`` adds for them. ``verified=True`` measures them with it, i.e. what a correct pipeline would
pay (:func:`choose_backend` uses that). ``backend="best"`` reports the fastest available.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wfvae_cli.errors import WfvaeError
from wfvae_cli.io import _backends, _decord, _pyav, _torchcodec
from wfvae_cli.io.sampling import ClipSpec, plan_clips
from wfvae_cli.io.transform import Crop, ResizeSpec

__all__ = [
    "ClipJob",
    "RawDecodeStats",
    "available_backends",
    "choose_backend",
    "decode_clip",
    "plan_jobs",
    "raw_decode_rate",
    "raw_decode_stats",
]

_MODULES = {"decord": _decord, "torchcodec": _torchcodec}


@dataclass(frozen=True)
class ClipJob:
    """One clip to decode: the file and its source frame indices (sorted)."""

    path: str
    indices: tuple[int, ...]


def available_backends() -> list[str]:
    """Concrete backends importable here, PyAV first."""
    return ["pyav", *(name for name, mod in _MODULES.items() if mod.available())]


def plan_jobs(paths: Sequence[str | Path], clip_spec: ClipSpec) -> list[ClipJob]:
    """Probe ``paths`` and plan their clips exactly as the encode pipeline does (unusable files skipped)."""
    jobs = []
    for path in paths:
        try:
            info = _backends.probe(str(path))
            clips = plan_clips(info, clip_spec)
        except WfvaeError:
            continue
        jobs += [ClipJob(str(path), tuple(int(i) for i in np.unique(c.indices))) for c in clips]
    if not jobs:
        raise WfvaeError("no clip can be planned from these files with these clip options")
    return jobs


def decode_clip(job: ClipJob, backend: str, fit: ResizeSpec, *, verified: bool = False, threads: int = 1) -> int:
    """Decode and resize one clip with a bare backend loop; returns the frame count (work is discarded)."""
    wanted = np.asarray(job.indices, np.int64)
    if backend == "pyav":
        batches = _pyav.iter_batches(job.path, wanted, len(wanted), threads, fit)
    else:
        if verified:
            _pyav.verify(job.path, wanted, threads)
        batches = _MODULES[backend].iter_batches(job.path, wanted, len(wanted), threads, fit)
    return sum(len(b) for b in batches)


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # one core per process: the processes are the parallelism


def _run(args: tuple[list[ClipJob], str, ResizeSpec, bool, int]) -> tuple[int, float]:
    """Decode ``jobs``; (frames, CPU seconds this process spent on them)."""
    jobs, backend, fit, verified, threads = args
    cpu = time.process_time()
    frames = sum(decode_clip(j, backend, fit, verified=verified, threads=threads) for j in jobs)
    return frames, time.process_time() - cpu


def _ready(_: int) -> int:
    time.sleep(0.2)  # overlapping warm-up tasks make the pool start every process (they start on demand)
    return os.getpid()


def raw_decode_rate(
    paths: Sequence[str | Path],
    clip_spec: ClipSpec,
    size: tuple[int, int],
    backend: str = "best",
    processes: int = 1,
    *,
    crop: Crop = "center",
    verified: bool = False,
    repeat: int = 1,
) -> float:
    """Clips per second that ``processes`` bare ``backend`` loops decode+resize ``paths``'s clips at.

    ``backend="best"`` measures every available backend and returns the fastest rate. Process start-up is
    excluded (the pool is warmed first); the clips are split evenly over the processes, each decoding with
    one FFmpeg thread and one torch thread. ``repeat`` runs the whole set several times (the best run
    counts, as timing noise only ever slows a run down).
    """
    if backend == "best":
        return max(
            raw_decode_rate(paths, clip_spec, size, b, processes, crop=crop, verified=verified, repeat=repeat)
            for b in available_backends()
        )
    return raw_decode_stats(
        paths, clip_spec, size, backend, processes, crop=crop, verified=verified, repeat=repeat
    ).clips_per_s


@dataclass(frozen=True)
class RawDecodeStats:
    """A bare-decoder measurement: throughput (wall clock, all processes) and CPU seconds per clip.

    On a shared machine the rate moves with the neighbours' load while the CPU per clip barely does, so
    comparisons across runs should use ``cpu_s_per_clip``; side-by-side ones may use either.
    """

    clips_per_s: float
    cpu_s_per_clip: float


def raw_decode_stats(
    paths: Sequence[str | Path],
    clip_spec: ClipSpec,
    size: tuple[int, int],
    backend: str,
    processes: int = 1,
    *,
    crop: Crop = "center",
    verified: bool = False,
    repeat: int = 1,
) -> RawDecodeStats:
    """:func:`raw_decode_rate` of one concrete backend, with the CPU seconds per clip of its best run."""
    if backend not in ("pyav", *_MODULES):
        raise WfvaeError(
            f"unknown backend {backend!r}: use pyav, decord or torchcodec (raw_decode_rate also takes best)"
        )
    if backend in _MODULES and not _MODULES[backend].available():
        raise WfvaeError(f"backend {backend!r} is not installed here")
    if processes < 1:
        raise WfvaeError(f"processes must be >= 1, got {processes}")
    return _stats(plan_jobs(paths, clip_spec), size, backend, processes, crop, verified, repeat)


def _rate(
    jobs: list[ClipJob], size: tuple[int, int], backend: str, processes: int, crop: Crop, verified: bool,
    repeat: int,
) -> float:
    return _stats(jobs, size, backend, processes, crop, verified, repeat).clips_per_s


def _stats(
    jobs: list[ClipJob], size: tuple[int, int], backend: str, processes: int, crop: Crop, verified: bool,
    repeat: int,
) -> RawDecodeStats:
    fit = ResizeSpec(size[0], size[1], crop)
    parts = [jobs[i::processes] for i in range(processes)]
    parts = [p for p in parts if p]
    best, best_cpu = float("inf"), 0.0
    if len(parts) == 1:
        _worker_init()
        for _ in range(repeat):
            t0 = time.perf_counter()
            _, cpu = _run((parts[0], backend, fit, verified, 1))
            if time.perf_counter() - t0 < best:
                best, best_cpu = time.perf_counter() - t0, cpu
        return RawDecodeStats(len(jobs) / best, best_cpu / len(jobs))
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(len(parts), mp_context=context, initializer=_worker_init) as pool:
        list(pool.map(_ready, range(len(parts))))  # start (and import in) every process before timing
        for _ in range(repeat):
            t0 = time.perf_counter()
            results = list(pool.map(_run, [(p, backend, fit, verified, 1) for p in parts]))
            if time.perf_counter() - t0 < best:
                best, best_cpu = time.perf_counter() - t0, sum(cpu for _, cpu in results)
    return RawDecodeStats(len(jobs) / best, best_cpu / len(jobs))


def choose_backend(
    paths: Sequence[str | Path],
    clip_spec: ClipSpec,
    size: tuple[int, int],
    *,
    crop: Crop = "center",
    sample: int = 4,
) -> str:
    """The fastest *correct* backend on ``sample`` clips of the first ``sample`` files, measured once
    (call it once per run; a few seconds).

    Correct means damage-checked and bit-identical: PyAV as is, decord/torchcodec with PyAV verification
    (:func:`~wfvae_cli.io.decoder_identity` of the result is what the store then records). With PyAV's
    keyframe seeking the verification alone costs about as much as PyAV's own decode, so PyAV wins unless
    a GPU decoder is far faster; measured, not assumed.
    """
    files = [str(p) for p in list(paths)[: max(1, sample)]]
    jobs = plan_jobs(files, clip_spec)
    jobs = [jobs[i] for i in np.linspace(0, len(jobs) - 1, min(sample, len(jobs))).round().astype(int)]
    rates = {b: _rate(jobs, size, b, 1, crop, True, 1) for b in available_backends()}
    return max(rates, key=lambda b: (rates[b], b == "pyav"))
