"""The stages every backend runs: decode (load + transform) clips, batch them, encode, produce store rows.

    tasks --prefetch_clips / Ray decode tasks--> LoadedClip --encode_loaded: iter_batches + encode_clips--> Encoded

They are plain functions/classes (the only threads are :func:`prefetch_clips`' decode pool), so the local
executor and the Ray backend compose the same code: both feed decoded clips to :func:`encode_loaded` (or
each task to :func:`encode_whole`) and write the :class:`Encoded` outcomes; they differ only in where
decoding runs and who owns the shard being written (see :mod:`wfvae_cli.pipeline.backend`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wfvae_cli import faults
from wfvae_cli.dtypes import torch_dtype
from wfvae_cli.errors import WfvaeError, one_line
from wfvae_cli.io import iter_frames, read_frames, to_model_input
from wfvae_cli.io.remote import set_storage_options
from wfvae_cli.model import WFVAE, DiagonalGaussian
from wfvae_cli.pipeline.backend import StageTimes
from wfvae_cli.pipeline.options import EncodeOptions
from wfvae_cli.store import SampleRecord


@dataclass(frozen=True)
class Task:
    """One row of the store to fill."""

    bucket: str
    row: int
    record: SampleRecord
    size: tuple[int, int]  # model input (H, W)


@dataclass
class LoadedClip:
    task: Task
    video: torch.Tensor | None  # (3, T, H, W) in [-1, 1]; None when loading failed
    error: str | None = None
    seconds: float = 0.0
    #: the failure may not recur (timeout, I/O error, decoder killed): keep the row retryable
    transient: bool = False


def load_clip(task: Task, opts: EncodeOptions, retries: int = 1) -> LoadedClip:
    """Decode the clip's frames (resized while decoding) and scale them; a failure that may be transient is
    retried ``retries`` times (a damaged or unsupported file is not: it would fail the same way), then
    reported with its :attr:`~wfvae_cli.io.VideoDecodeError.transient` flag."""
    t0 = time.perf_counter()
    error, transient = "not attempted", False
    set_storage_options(opts.storage_options)  # a Ray worker opens URL inputs with the job's options
    for _ in range(retries + 1):
        try:
            frames = read_frames(task.record.source, np.asarray(task.record.frame_indices),
                                 timeout=opts.decode_timeout, threads=1, size=task.size, crop=opts.crop)  # type: ignore[arg-type]
            video = to_model_input(frames, task.size, opts.crop)  # type: ignore[arg-type]  # already at size
            return LoadedClip(task, video, seconds=time.perf_counter() - t0)
        except Exception as exc:  # per-sample errors never stop the job
            error = one_line(exc, limit=500)
            transient = bool(getattr(exc, "transient", not isinstance(exc, WfvaeError)))
            if not transient:
                break
    return LoadedClip(task, None, error=error, seconds=time.perf_counter() - t0, transient=transient)


def prefetch_clips(tasks: list[Task], opts: EncodeOptions, depth: int, threads: int) -> Iterator[LoadedClip]:
    """Load clips in order with at most ``depth`` in flight (bounded memory, ordered output).

    ``threads`` decode at once: the decoders (FFmpeg via decord/PyAV) and the resize (torch) release the
    GIL. Used by the local executor and inside Ray model workers that decode in their own process.
    """
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wfvae-decode") as pool:
        pending: list[Future[LoadedClip]] = []
        it = iter(tasks)
        for task in it:
            pending.append(pool.submit(load_clip, task, opts))
            if len(pending) >= depth:
                break
        while pending:
            clip = pending.pop(0).result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(load_clip, nxt, opts))
            yield clip


def iter_clip_chunks(task: Task, opts: EncodeOptions, chunk: int) -> Iterator[torch.Tensor]:
    """A long clip as (1, 3, n, H, W) chunks, for Causal-Cache streaming with bounded memory."""
    set_storage_options(opts.storage_options)
    for frames in iter_frames(task.record.source, np.asarray(task.record.frame_indices), chunk,
                              timeout=opts.decode_timeout, threads=1, size=task.size, crop=opts.crop):  # type: ignore[arg-type]
        yield to_model_input(frames, task.size, opts.crop)[None]  # type: ignore[arg-type]


def sample_seed(seed: int, bucket: str, row: int) -> int:
    """A per-row seed: the stored draw does not depend on batching, worker or resume order."""
    digest = hashlib.sha256(f"{seed}/{bucket}/{row}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class LatentEncoder:
    """Runs the model on batches of one bucket and returns the arrays the store expects per row."""

    def __init__(self, model: WFVAE, opts: EncodeOptions) -> None:
        self.model = model
        self.opts = opts
        self.device = torch.device(opts.device)
        self.dtype = torch_dtype(opts.dtype)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise WfvaeError(f"--device {opts.device}: CUDA is not available on this machine; use --device cpu")
        # On GPU, low precision runs under autocast (weights stay fp32); on CPU the model is cast.
        self.autocast = self.device.type == "cuda" and self.dtype != torch.float32
        target_dtype = torch.float32 if self.autocast else self.dtype
        self.model.to(device=self.device, dtype=target_dtype).eval()
        self.input_dtype = target_dtype

    def _posterior(self, video: torch.Tensor) -> DiagonalGaussian:
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.autocast):
            return self.model.encode(video, chunk_frames=self.opts.chunk_frames)

    def _rows(self, tasks: list[Task], posterior: DiagonalGaussian) -> list[dict[str, np.ndarray]]:
        mean = posterior.mean.float().cpu()
        logvar = posterior.logvar.float().cpu()
        if not self.opts.store_sample:
            return [{"mean": mean[i].numpy(), "logvar": logvar[i].numpy()} for i in range(len(tasks))]
        out = []
        for i, task in enumerate(tasks):
            gen = torch.Generator().manual_seed(sample_seed(self.opts.seed, task.bucket, task.row))
            eps = torch.randn(mean[i].shape, generator=gen)
            out.append({"sample": (mean[i] + torch.exp(0.5 * logvar[i]) * eps).numpy()})
        return out

    @torch.inference_mode()
    def encode_batch(self, clips: list[LoadedClip]) -> list[dict[str, np.ndarray]]:
        """Encode clips of one bucket together; returns one dict of arrays per clip."""
        faults.encode_delay()  # test hook: make a tiny model slow enough to be killed mid-run
        video = torch.stack([c.video for c in clips]).to(self.device, self.input_dtype)  # type: ignore[misc]
        return self._rows([c.task for c in clips], self._posterior(video))

    @torch.inference_mode()
    def encode_stream(self, task: Task) -> dict[str, np.ndarray]:
        """Encode one (long) clip chunk by chunk through the Causal Cache (``--clip-mode full``)."""
        chunk = self.opts.chunk_frames or 4 * self.model.config.temporal_factor
        parts = []
        with (
            torch.autocast(self.device.type, dtype=self.dtype, enabled=self.autocast),
            self.model.stream_encoder(chunk_frames=chunk) as enc,
        ):
            for frames in iter_clip_chunks(task, self.opts, chunk):
                parts.append(enc.push(frames.to(self.device, self.input_dtype)))
            parts.append(enc.flush())
        return self._rows([task], DiagonalGaussian.cat(parts))[0]


@dataclass
class Encoded:
    """What became of one clip: the arrays to store, or the one-line reason it failed.

    Both backends reduce every clip to one of these before writing, so a decode error, a model error
    and a success are recorded (and counted) the same way whichever backend ran them.
    """

    task: Task
    arrays: dict[str, np.ndarray] | None
    error: str = ""
    seconds: float = 0.0  # model seconds attributed to this clip (its share of the batch)

    @property
    def ok(self) -> bool:
        return self.arrays is not None

    @classmethod
    def load_failure(cls, clip: LoadedClip) -> Encoded:
        """A clip that could not be decoded: it fails alone, the model never sees it."""
        return cls(clip.task, None, clip.error or "could not load the clip")


def iter_batches(clips: Iterable[LoadedClip], size: int) -> Iterator[list[LoadedClip]]:
    """Consecutive clips of the same bucket, up to ``size``; a full batch is yielded at once.

    Yielding as soon as a batch is full (rather than when the next clip arrives) keeps the model from
    waiting on one more decode than it needs.
    """
    batch: list[LoadedClip] = []
    for clip in clips:
        if batch and clip.task.bucket != batch[0].task.bucket:
            yield batch
            batch = []
        batch.append(clip)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _model_error(exc: BaseException) -> str:
    return f"model error: {one_line(exc, limit=487)}"


def encode_clips(batch: list[LoadedClip], encoder: LatentEncoder) -> list[Encoded]:
    """Encode one batch; if the batch fails, retry its clips one by one so one bad clip fails alone.

    A single clip that fails is tried once more (a transient error, e.g. CUDA OOM from a neighbour,
    should not cost a sample) before it is reported.
    """
    t0 = time.perf_counter()
    try:
        rows = encoder.encode_batch(batch)
    except Exception:
        if len(batch) > 1:
            return [out for clip in batch for out in encode_clips([clip], encoder)]
        try:
            rows = encoder.encode_batch(batch)
        except Exception as exc:
            return [Encoded(batch[0].task, None, _model_error(exc), time.perf_counter() - t0)]
    share = (time.perf_counter() - t0) / len(batch)
    return [Encoded(clip.task, arrays, "", share) for clip, arrays in zip(batch, rows, strict=True)]


def encode_loaded(
    clips: Iterable[LoadedClip],
    encoder: LatentEncoder,
    batch_size: int,
    times: StageTimes,
    before_batch: Callable[[list[LoadedClip]], None] | None = None,
) -> Iterator[Encoded]:
    """Batch and encode decoded clips (in their order); one :class:`Encoded` per clip, failures included.

    The one model loop of both executors: a clip that could not be decoded fails alone (the model never
    sees it); the others go through :func:`iter_batches` (same bucket, up to ``batch_size``) and
    :func:`encode_clips`. ``times.decode`` sums the clips' decode seconds and ``times.model_wait`` the time
    spent waiting for the next decoded clip. ``before_batch`` sees every batch before it is encoded.
    """
    source = iter(clips)
    failed: list[Encoded] = []

    def decoded() -> Iterator[LoadedClip]:
        while True:
            t0 = time.perf_counter()
            clip = next(source, None)
            times.model_wait += time.perf_counter() - t0
            if clip is None:
                return
            times.decode += clip.seconds
            if clip.video is None:
                failed.append(Encoded.load_failure(clip))
                continue
            yield clip

    for batch in iter_batches(decoded(), batch_size):
        yield from failed  # the clips that failed to load while this batch filled up, in order
        failed.clear()
        if before_batch is not None:
            before_batch(batch)
        yield from encode_clips(batch, encoder)
    yield from failed


def encode_whole(task: Task, encoder: LatentEncoder) -> Encoded:
    """``--clip-mode full``: stream one whole video through the Causal Cache; any error fails this video only."""
    t0 = time.perf_counter()
    try:
        arrays = encoder.encode_stream(task)
    except Exception as exc:  # decode or model error of this one video
        return Encoded(task, None, one_line(exc, limit=500), time.perf_counter() - t0)
    return Encoded(task, arrays, "", time.perf_counter() - t0)


def write_error(store_path: Path, exc: BaseException) -> BaseException:
    """The error to stop a job with when writing fails: OS errors become one actionable line.

    Disk full, a read-only remount or a vanished NFS mount are the user's to fix; the write-then-mark
    invariant means nothing done is lost, so the message says to fix it and rerun.
    """
    if isinstance(exc, OSError):
        return WfvaeError(
            f"cannot write to {store_path}: {exc.strerror or exc}; fix it and rerun the same command "
            "to resume (samples already marked done are intact)"
        )
    return exc
