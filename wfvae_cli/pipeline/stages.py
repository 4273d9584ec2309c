"""The stages every backend runs: decode (load + transform) clips, batch them, encode, produce store rows.

    tasks --prefetch_clips / Ray decode tasks--> LoadedClip --encode_loaded: iter_batches + encode_clips--> Encoded

They are plain functions/classes (the only threads are :func:`prefetch_clips`' decode pool), so the local
executor and the Ray backend compose the same code: both feed decoded clips to :func:`encode_loaded` (or
each task to :func:`encode_whole`) and write the :class:`Encoded` outcomes; they differ only in where
decoding runs and who owns the shard being written (see :mod:`wfvae_cli.pipeline.backend`).
"""

from __future__ import annotations

import bisect
import hashlib
import io
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wfvae_cli import faults
from wfvae_cli.devices import check_device
from wfvae_cli.dtypes import torch_dtype
from wfvae_cli.errors import WfvaeError, one_line
from wfvae_cli.io import iter_frames, read_frames, to_model_input
from wfvae_cli.io.errors import failure_is_transient
from wfvae_cli.io.remote import set_storage_options
from wfvae_cli.model import WFVAE, DiagonalGaussian
from wfvae_cli.pipeline.backend import StageTimes
from wfvae_cli.pipeline.options import EncodeOptions
from wfvae_cli.store import LatentStore, SampleRecord
from wfvae_cli.store.index import IndexColumns


@dataclass(frozen=True)
class Task:
    """One row of the store to fill."""

    bucket: str
    row: int
    record: SampleRecord
    size: tuple[int, int]  # model input (H, W)


class TaskList(Sequence[Task]):
    """The rows a run encodes, as compact per-bucket index columns: a :class:`Task` (and its record) is built
    when the executor reaches it, so the coordinator never holds a Python object per pending sample.

    Parts are ``(bucket, rows, columns, size)`` in run order (bucket, then row); ``columns`` holds the rows'
    index entries (``IndexColumns.take(rows)``).
    """

    def __init__(self) -> None:
        self._parts: list[tuple[str, np.ndarray, IndexColumns, tuple[int, int]]] = []
        self._offsets = [0]

    def add(self, bucket: str, rows: np.ndarray, columns: IndexColumns, size: tuple[int, int]) -> None:
        if len(rows):
            self._parts.append((bucket, np.asarray(rows, dtype=np.int64), columns, size))
            self._offsets.append(self._offsets[-1] + len(rows))

    def __len__(self) -> int:
        return self._offsets[-1]

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"task {i} out of range for {n}")
        i %= n
        k = bisect.bisect_right(self._offsets, i) - 1
        bucket, rows, columns, size = self._parts[k]
        j = i - self._offsets[k]
        return Task(bucket, int(rows[j]), columns.record(j), size)

    def __iter__(self) -> Iterator[Task]:
        for bucket, rows, columns, size in self._parts:
            for j, row in enumerate(rows.tolist()):
                yield Task(bucket, row, columns.record(j), size)


@dataclass
class LoadedClip:
    """One decoded clip as the decoder gave it: uint8 frames at the model size, or why it failed.

    Clips stay uint8 ``(T, H, W, 3)`` until they are in a batch: 4x fewer bytes to hold, to pass between
    processes (Ray's object store) and to copy to the accelerator than float32, and the scaling to
    [-1, 1] runs once per batch on the model's device (:meth:`LatentEncoder.model_input`).
    """

    task: Task
    frames: torch.Tensor | None  # uint8 (T, H, W, 3) at task.size; None when loading failed
    error: str | None = None
    seconds: float = 0.0
    #: the failure may not recur (timeout, I/O error, decoder killed): keep the row retryable
    transient: bool = False

    @property
    def nbytes(self) -> int:
        return 0 if self.frames is None else self.frames.numel()


def clip_bytes(task: Task) -> int:
    """Bytes of a task's decoded clip (uint8 frames at the model size): the unit of the prefetch bound."""
    return len(task.record.frame_indices) * task.size[0] * task.size[1] * 3


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
            if frames.shape[1:] != (*task.size, 3):
                raise RuntimeError(f"decoder returned frames of {frames.shape[1:]}, expected {(*task.size, 3)}")
            return LoadedClip(task, torch.from_numpy(frames), seconds=time.perf_counter() - t0)
        except Exception as exc:  # per-sample errors never stop the job
            error = one_line(exc, limit=500)
            transient = failure_is_transient(exc)
            if not transient:
                break
    return LoadedClip(task, None, error=error, seconds=time.perf_counter() - t0, transient=transient)


def prefetch_clips(
    tasks: list[Task], opts: EncodeOptions, depth: int, threads: int, max_bytes: int | None = None
) -> Iterator[LoadedClip]:
    """Load clips in order with at most ``depth`` clips and ``max_bytes`` of decoded frames in flight or
    ready (bounded memory, ordered output); at least one clip is always in flight, so a clip larger than
    ``max_bytes`` still loads (alone).

    ``threads`` decode at once: each borrows a decode worker process (with a decode timeout) or decodes in
    this process (FFmpeg and the resize release the GIL). A clip's bytes count until it is yielded; the
    consumer holds at most one batch beyond the bound. Used by the local executor and by Ray model workers
    that decode in their own process.
    """
    budget = opts.prefetch_bytes if max_bytes is None else max_bytes
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wfvae-decode") as pool:
        pending: deque[tuple[int, Future[LoadedClip]]] = deque()
        held = 0
        it = iter(tasks)
        nxt = next(it, None)
        while nxt is not None or pending:
            while nxt is not None and (not pending or (len(pending) < depth and held + clip_bytes(nxt) <= budget)):
                size = clip_bytes(nxt)
                pending.append((size, pool.submit(load_clip, nxt, opts)))
                held += size
                nxt = next(it, None)
            size, future = pending.popleft()
            clip = future.result()
            held -= size
            yield clip


def iter_clip_chunks(task: Task, opts: EncodeOptions, chunk: int, start: int = 0) -> Iterator[torch.Tensor]:
    """A long clip as (1, 3, n, H, W) chunks, for Causal-Cache streaming with bounded memory; ``start``: the
    first frame (of the clip's frames) to decode, for a stream continued from a checkpoint."""
    set_storage_options(opts.storage_options)
    indices = np.asarray(task.record.frame_indices)[start:]
    if not len(indices):
        return
    for frames in iter_frames(task.record.source, indices, chunk,
                              timeout=opts.decode_timeout, threads=1, size=task.size, crop=opts.crop):  # type: ignore[arg-type]
        yield to_model_input(frames, task.size, opts.crop)[None]  # type: ignore[arg-type]


def sample_seed(seed: int, bucket: str, row: int) -> int:
    """A per-row seed: the stored draw does not depend on batching, worker or resume order."""
    digest = hashlib.sha256(f"{seed}/{bucket}/{row}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class StreamCheckpoint:
    """The progress of one ``--clip-mode full`` video, kept in the store next to its row, so that a killed run
    loses at most the chunk it was encoding.

    After every chunk the latent frames it produced are written as their own object (``part-<fingerprint>-000007``),
    then the session's state (``state``: frames consumed, the Causal Cache, how many parts count, a fingerprint):
    the state object is the commit record, written last, so a kill at any point leaves either the previous state or
    the new one, each with all the parts it names. A rerun restores the cache, decodes from the next frame on
    and pushes the same chunks an uninterrupted run would have pushed, so the row's latents are bit-identical.

    The fingerprint covers everything the numbers depend on (weights, source, frames, chunk size, target size,
    crop, device type, precision, torch version): a checkpoint made under other conditions is ignored and the
    video starts again. Checkpoints are deleted once their row is done or failed (:func:`clear_checkpoints`).
    """

    STATE = "state"

    def __init__(self, store: LatentStore, task: Task, fingerprint: str) -> None:
        self.store, self.task, self.fingerprint = store, task, fingerprint
        self.parts = 0

    def _part(self, k: int) -> str:
        """Name of part ``k``: the fingerprint is in it, so a state never names a part made under other settings."""
        return f"part-{self.fingerprint[:16]}-{k:06d}"

    @staticmethod
    def _dumps(obj: object) -> bytes:
        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()

    def _load(self, name: str, device: torch.device) -> dict | None:
        data = self.store.get_stream_object(self.task.bucket, self.task.row, name)
        if data is None:
            return None
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)

    def load(self, device: torch.device) -> tuple[int, list[DiagonalGaussian], dict | None] | None:
        """``(frames consumed, latent parts so far, session state or None when the stream was complete)`` of a
        usable checkpoint, or ``None`` (no checkpoint, another fingerprint, or unreadable: start again)."""
        try:
            state = self._load(self.STATE, device)
            if state is None or state.get("fingerprint") != self.fingerprint:
                return None
            parts = []
            for k in range(int(state["parts"])):
                part = self._load(self._part(k), device)
                if part is None:
                    return None
                parts.append(DiagonalGaussian(part["mean"], part["logvar"]))
        except Exception:  # a damaged checkpoint costs the video's progress, never its correctness
            return None
        self.parts = len(parts)
        return int(state["frames"]), parts, state.get("session")

    def save(self, frames: int, part: DiagonalGaussian, session: dict | None) -> None:
        """Commit one more chunk: its latent part first, then the state naming it (``session=None``: complete)."""
        faults.stream_checkpoint(before=True)
        t, r = self.task, self.task.row
        self.store.put_stream_object(t.bucket, r, self._part(self.parts),
                                     self._dumps({"mean": part.mean.detach(), "logvar": part.logvar.detach()}))
        self.parts += 1
        state = {"fingerprint": self.fingerprint, "frames": frames, "parts": self.parts, "session": session}
        self.store.put_stream_object(t.bucket, r, self.STATE, self._dumps(state))
        faults.stream_checkpoint(before=False)


def clear_checkpoints(store: LatentStore) -> int:
    """Delete the stream checkpoints of rows that are no longer pending (after a run; leftovers of killed runs
    included). Returns the number of rows cleared."""
    return sum(store.clear_streams(bucket) for bucket in store.buckets)


class LatentEncoder:
    """Runs the model on batches of one bucket and returns the arrays the store expects per row."""

    def __init__(self, model: WFVAE, opts: EncodeOptions) -> None:
        self.model = model
        self.opts = opts
        self.device = torch.device(check_device(opts.device))  # "auto" resolved by the one rule
        self.dtype = torch_dtype(opts.dtype)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise WfvaeError(f"--device {opts.device}: CUDA is not available on this machine; use --device cpu")
        # On GPU, low precision runs under autocast (weights stay fp32); on CPU the model is cast.
        self.autocast = self.device.type == "cuda" and self.dtype != torch.float32
        target_dtype = torch.float32 if self.autocast else self.dtype
        self.model.to(device=self.device, dtype=target_dtype).eval()
        self.input_dtype = target_dtype
        #: where :meth:`model_input` adds its seconds (``batch``, ``preprocess``); set by :func:`encode_loaded`
        self.times: StageTimes | None = None
        self._host: torch.Tensor | None = None  # pinned uint8 staging buffer (accelerators only), reused
        self._host_free: torch.cuda.Event | None = None  # set when the last copy out of it has finished
        self._input: torch.Tensor | None = None  # the float batch on the device, reused across batches
        #: uint8 to the device through a staging buffer, converted there (accelerators); the CPU converts in
        #: place instead. Device-agnostic, so tests run the accelerator path on the CPU by setting it.
        self.stage_on_device = self.device.type != "cpu"

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, **kw: object) -> torch.Tensor:
        """A reused buffer: a fresh 100 MB allocation per batch costs page faults (CPU) or allocator churn."""
        buf = getattr(self, name)
        if buf is None or tuple(buf.shape) != shape or buf.dtype != dtype:
            buf = torch.empty(shape, dtype=dtype, **kw)  # type: ignore[arg-type]
            setattr(self, name, buf)
        return buf

    def model_input(self, clips: list[LoadedClip]) -> torch.Tensor:
        """uint8 clips → the model's (B, 3, T, H, W) input in [-1, 1] on its device, as ``x / 127.5 - 1``.

        The same numbers as :func:`~wfvae_cli.io.to_model_input`, with as few passes over the pixels as it
        takes: on an accelerator the uint8 clips are copied once into a reused pinned buffer, sent with a
        ``non_blocking`` copy (4x fewer bytes than float32) and converted there; on the CPU each clip is
        converted straight into a reused float batch and scaled in place, frame by frame. No intermediate batch
        exists. Bit-identical to ``to_model_input(frames).to(dtype)`` (float32 division, one rounding).
        """
        t0 = time.perf_counter()
        first = clips[0].frames
        assert first is not None
        t, h, w, _ = first.shape
        shape = (len(clips), 3, t, h, w)
        if not self.stage_on_device:
            out = self._buffer("_input", shape, self.input_dtype)
            t1 = time.perf_counter()
            c1 = time.thread_time()
            # numpy, frame by frame: single-threaded (no OpenMP team spinning against the decoders for a
            # core) and the three passes stay in cache; 10 ms per 33x512² clip here vs 17 ms whole-clip torch.
            # Low precision: scale in float32 and round once, as to_model_input(...).to(dtype) does.
            scratch = None if self.input_dtype == torch.float32 else np.empty((3, h, w), np.float32)
            dest = out.numpy() if scratch is None else None
            for i, clip in enumerate(clips):
                src = clip.frames.numpy().transpose(3, 0, 1, 2)  # type: ignore[union-attr]  # (3, T, H, W) view
                for k in range(t):
                    frame = dest[i, :, k] if dest is not None else scratch
                    frame[...] = src[:, k]
                    np.divide(frame, np.float32(127.5), out=frame)
                    np.subtract(frame, np.float32(1.0), out=frame)
                    if dest is None:
                        out[i, :, k].copy_(torch.from_numpy(scratch))
            if self.times is not None:
                self.times.preprocess_cpu += time.thread_time() - c1
        else:
            pin = self.device.type == "cuda"
            if self._host_free is not None:
                self._host_free.synchronize()  # the previous batch's copy has left the staging buffer
            host = self._buffer("_host", (len(clips), t, h, w, 3), torch.uint8, pin_memory=pin)
            for i, clip in enumerate(clips):
                host[i].copy_(clip.frames)  # type: ignore[arg-type]
            t1 = time.perf_counter()
            staged = host.to(self.device, non_blocking=pin)
            if pin:
                self._host_free = torch.cuda.Event()
                self._host_free.record()
            out = self._buffer("_input", shape, self.input_dtype, device=self.device)
            if self.input_dtype == torch.float32:
                out.copy_(staged.permute(0, 4, 1, 2, 3))
                out.div_(127.5).sub_(1.0)  # in place: the bytes of to_model_input's `x / 127.5 - 1`
            else:  # a low-precision model without autocast (not CUDA): scale in float32, round once
                out.copy_(staged.permute(0, 4, 1, 2, 3).float().div_(127.5).sub_(1.0))
        if self.times is not None:
            t2 = time.perf_counter()
            self.times.batch += t1 - t0
            self.times.preprocess += t2 - t1
        return out

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
        return self._rows([c.task for c in clips], self._posterior(self.model_input(clips)))

    def stream_fingerprint(self, task: Task, chunk: int, weights: str) -> str:
        """What a stream checkpoint of ``task`` must match to be continued (see :class:`StreamCheckpoint`)."""
        from wfvae_cli import __version__

        spec = {
            "weights": weights, "source": task.record.source, "frames": list(task.record.frame_indices),
            "chunk": chunk, "size": list(task.size), "crop": self.opts.crop, "device": self.device.type,
            "dtype": str(self.dtype), "input_dtype": str(self.input_dtype), "autocast": self.autocast,
            "torch": torch.__version__, "wfvae": __version__,
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()

    @torch.inference_mode()
    def encode_stream(self, task: Task, store: LatentStore | None = None) -> dict[str, np.ndarray]:
        """Encode one (long) clip chunk by chunk through the Causal Cache (``--clip-mode full``).

        With ``store`` (opened for writing) the stream is checkpointed after every chunk and continued from the
        last checkpoint if one exists (:class:`StreamCheckpoint`): a kill loses at most one chunk of work.
        """
        chunk = self.opts.chunk_frames or 4 * self.model.config.temporal_factor
        checkpoint = None
        if store is not None and store.mode == "r+":
            checkpoint = StreamCheckpoint(store, task, self.stream_fingerprint(task, chunk, store.meta.weights_sha256))
        saved = checkpoint.load(self.device) if checkpoint is not None else None
        parts: list[DiagonalGaussian] = []
        start = 0
        with (
            torch.autocast(self.device.type, dtype=self.dtype, enabled=self.autocast),
            self.model.stream_encoder(chunk_frames=chunk) as enc,
        ):
            if saved is not None:
                start, parts, session = saved
                if session is None:  # the stream was complete: only the commit of the row was lost
                    return self._rows([task], DiagonalGaussian.cat(parts))[0]
                enc.load_state_dict(session)
            for frames in iter_clip_chunks(task, self.opts, chunk, start):
                part = enc.push(frames.to(self.device, self.input_dtype))
                parts.append(part)
                if checkpoint is not None:
                    checkpoint.save(enc.frames_in, part, enc.state_dict())
            tail = enc.flush()
            parts.append(tail)
            if checkpoint is not None:
                checkpoint.save(enc.frames_in, tail, None)
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
    #: the failure may not recur (timeout, I/O error): stored as Status.TRANSIENT, retried by every rerun
    transient: bool = False

    @property
    def ok(self) -> bool:
        return self.arrays is not None

    @classmethod
    def load_failure(cls, clip: LoadedClip) -> Encoded:
        """A clip that could not be decoded: it fails alone, the model never sees it."""
        return cls(clip.task, None, clip.error or "could not load the clip", transient=clip.transient)


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
    times = encoder.times
    host0 = (times.batch + times.preprocess) if times is not None else 0.0
    try:
        rows = encoder.encode_batch(batch)
    except Exception:
        if len(batch) > 1:
            return [out for clip in batch for out in encode_clips([clip], encoder)]
        try:
            rows = encoder.encode_batch(batch)
        except Exception as exc:
            return [Encoded(batch[0].task, None, _model_error(exc), time.perf_counter() - t0)]
    host = (times.batch + times.preprocess - host0) if times is not None else 0.0  # timed as their own stages
    share = (time.perf_counter() - t0 - host) / len(batch)
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
    encoder.times = times

    def decoded() -> Iterator[LoadedClip]:
        while True:
            t0 = time.perf_counter()
            clip = next(source, None)
            times.model_wait += time.perf_counter() - t0
            if clip is None:
                return
            times.decode += clip.seconds
            if clip.frames is None:
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


def encode_whole(task: Task, encoder: LatentEncoder, store: LatentStore | None = None) -> Encoded:
    """``--clip-mode full``: stream one whole video through the Causal Cache; any error fails this video only.

    ``store``: where the stream's checkpoints go (see :class:`StreamCheckpoint`); ``None`` keeps none.
    """
    t0 = time.perf_counter()
    try:
        arrays = encoder.encode_stream(task, store)
    except Exception as exc:  # decode or model error of this one video
        # only errors that say so (a decode timeout / I/O error): a model error here would fail the same way again
        transient = bool(getattr(exc, "transient", False))
        return Encoded(task, None, one_line(exc, limit=500), time.perf_counter() - t0, transient=transient)
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
