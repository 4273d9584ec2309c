"""What `wfvae encode` was asked to do, validated once, in one typed object.

The CLI builds an :class:`EncodeOptions`; so can Python callers. Everything that decides which latent
a clip gets (frames, stride/fps, clip mode, sizes, crop, model, dtypes) is recorded in the store's
``preprocessing`` attribute via :meth:`EncodeOptions.preprocessing`, and a resumed run must agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from wfvae_cli.dtypes import DTYPE_NAMES, STORE_DTYPES, check_dtype
from wfvae_cli.errors import WfvaeError
from wfvae_cli.io import RESIZE_VERSION, ClipSpec, auto_buckets, decoder_identity
from wfvae_cli.io.discover import Columns


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask: containers and ``taskset`` restrict it): the default
    number of decode workers, one decode process per core."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


ComputeDType = Literal["fp32", "bf16", "fp16"]
StoreDType = Literal["fp16", "fp32"]


@dataclass(frozen=True)
class EncodeOptions:
    """Options of one encode job (see ``wfvae encode --help`` for each)."""

    inputs: tuple[str, ...]
    #: the store: a local folder (a ``Path``) or a URL string (``s3://bucket/x.zarr``; any fsspec URL)
    out: Path | str
    model: str = "wfvae-s"
    frames: int = 33
    stride: int | None = None
    fps: float | None = None
    clip_mode: str = "head"
    clips_per_video: int = 1
    #: fixed model input size (H, W); ``None`` when aspect-ratio buckets are used
    size: tuple[int, int] | None = (256, 256)
    #: candidate bucket sizes (H, W) when bucketing; each video goes to the nearest aspect ratio
    buckets: tuple[tuple[int, int], ...] = ()
    crop: str = "center"
    batch_size: int = 1
    dtype: ComputeDType = "fp32"
    store_dtype: StoreDType = "fp32"
    store_sample: bool = False
    seed: int = 0
    chunk_frames: int | None = None
    #: ``auto`` = CUDA when present, else CPU (:func:`wfvae_cli.devices.auto_device`); under Ray each model
    #: worker that was given a GPU uses it, the others the CPU
    device: str = "auto"
    #: build a weightless preset with random weights instead of refusing it (``load_model(random_weights=)``)
    random_weights: bool = False
    workers: int = 2
    decode_timeout: float | None = 300.0
    overwrite: bool = False
    retry_failed: bool = False
    #: on resume, read every done row first (as ``wfvae verify`` does) and re-encode the unreadable ones; without
    #: it a rerun checks only that each done row's chunk exists (the shard indexes: store/verify.py)
    repair: bool = False
    shard_size: int | None = None
    flush_interval: float = 60.0
    #: decoded clips held ahead of the model (in flight + ready), in bytes of uint8 frames; at least one
    #: clip is always in flight, so a clip larger than the bound still encodes (one at a time)
    prefetch_bytes: int = 1 << 30
    command: tuple[str, ...] = field(default_factory=tuple)
    # --- inputs (docs/io.md) ----------------------------------------------------------------------
    #: fsspec storage options for URL inputs and a store on object storage (``--storage-options JSON``);
    #: credentials stay out of the store
    storage_options: dict[str, Any] = field(default_factory=dict, hash=False)
    #: manifest columns (``--path-col``, ``--caption-col``, ``--key-col``)
    path_col: str = "path"
    caption_col: str = "caption"
    key_col: str = "key"
    # --- Ray backend (wfvae_cli/pipeline/ray_backend.py, docs/ray.md) -------------------------------
    #: ``None``: encode on this machine. ``"auto"``: join ``RAY_ADDRESS`` / a running cluster, else start
    #: a local one. ``"host:port"``: join that head. Under Ray ``workers`` counts *model* workers
    #: (0 = one per GPU of the cluster) and decoding runs in Ray tasks instead of threads.
    ray: str | None = None
    #: GPUs each model worker reserves (fractions share a GPU); ``None``: 1 if the cluster has GPUs, else 0
    num_gpus_per_worker: float | None = None
    #: CPUs each decode task reserves; ``None``: 1 if the cluster has CPUs left over by the model
    #: workers, else 0 (decode shares their cores, as the local threads do)
    decode_cpus: float | None = None
    # --- end Ray backend ------------------------------------------------------------------------

    def __post_init__(self) -> None:
        from wfvae_cli.storage import is_url
        from wfvae_cli.store.location import StoreLocation

        # A URL stays a string (a Path would collapse "s3://b/x" to "s3:/b/x", which parse_url then rejects:
        # never a local folder named "s3:"); a local path becomes a Path. Malformed URLs fail here, one line.
        location = StoreLocation(self.out if is_url(str(self.out)) else Path(self.out), self.storage_options)
        object.__setattr__(self, "out", location.path if location.path is not None else str(location))
        if not self.inputs:
            raise WfvaeError(
                "no INPUT given: pass video files, folders, globs, URLs, webdataset shards or a manifest "
                "(.txt/.csv/.jsonl/.parquet)"
            )
        for name in ("path_col", "caption_col", "key_col"):
            if not getattr(self, name).strip():
                raise WfvaeError(f"--{name.replace('_', '-')} '': give the manifest column's name")
        if self.size is None and not self.buckets:
            raise WfvaeError("give a resolution (--resolution / --height --width) or --buckets")
        for h, w in ((self.size,) if self.size else ()) + tuple(self.buckets):
            if h <= 0 or w <= 0 or h % 8 or w % 8:
                raise WfvaeError(f"size {h}x{w}: height and width must be positive multiples of 8")
        if self.crop not in ("center", "none"):
            raise WfvaeError(f"--crop {self.crop!r}: use 'center' or 'none'")
        if self.batch_size < 1:
            raise WfvaeError(f"--batch-size {self.batch_size}: must be >= 1")
        if self.workers < (0 if self.ray is not None else 1):  # 0 = "one per GPU", only under Ray
            raise WfvaeError(
                f"{'--model-workers' if self.ray is not None else '--decode-workers'} {self.workers}: must be >= 1"
            )
        if self.ray is not None and not self.ray.strip():
            raise WfvaeError("--ray '': pass 'auto' or the head's address, e.g. --ray 10.0.0.1:6379")
        if self.num_gpus_per_worker is not None and self.num_gpus_per_worker < 0:
            raise WfvaeError(f"--num-gpus-per-worker {self.num_gpus_per_worker}: must be >= 0")
        if self.decode_cpus is not None and self.decode_cpus < 0:
            raise WfvaeError(f"--decode-cpus {self.decode_cpus}: must be >= 0")
        check_dtype(self.dtype, "--precision", DTYPE_NAMES)
        check_dtype(self.store_dtype, "--store-dtype", STORE_DTYPES, why="bfloat16 is not a Zarr type")
        if self.chunk_frames is not None and self.chunk_frames < 1:
            raise WfvaeError(f"--chunk-frames {self.chunk_frames}: must be >= 1")
        if self.decode_timeout is not None and self.decode_timeout <= 0:
            raise WfvaeError(f"--decode-timeout {self.decode_timeout}: must be > 0 seconds")
        if self.prefetch_bytes < 1:
            raise WfvaeError(f"--prefetch-mb: must be > 0 (got {self.prefetch_bytes} bytes)")
        if self.shard_size is not None and self.shard_size < 1:
            raise WfvaeError(f"--shard-size {self.shard_size}: must be >= 1")
        if self.clip_mode == "full" and self.batch_size != 1:
            raise WfvaeError("--clip-mode full streams one whole video at a time: use --batch-size 1")
        if isinstance(self.out, Path) and self.out.exists() and not self.out.is_dir():
            raise WfvaeError(f"--out {self.out}: exists and is a file; choose a path ending in .zarr")

    @property
    def store_location(self):  # -> StoreLocation (imported lazily, as above)
        """Where the store of these options lives (picklable: Ray workers rebuild their own clients from it)."""
        from wfvae_cli.store.location import StoreLocation

        return StoreLocation(self.out, self.storage_options)

    @property
    def columns(self) -> Columns:
        """The manifest column mapping of these options."""
        return Columns(path=self.path_col, caption=self.caption_col, key=self.key_col)

    @staticmethod
    def parse_buckets(spec: str, res: int) -> tuple[tuple[int, int], ...]:
        """``auto`` -> standard aspect buckets of about res² pixels; else ``HxW,HxW,...``."""
        if spec == "auto":
            return tuple(auto_buckets(res))
        out = []
        for part in spec.split(","):
            try:
                h, w = (int(v) for v in part.lower().split("x"))
            except ValueError as exc:
                raise WfvaeError(f"--buckets {spec!r}: expected 'auto' or HxW,HxW,... e.g. 256x256,192x320") from exc
            out.append((h, w))
        return tuple(out)

    def clip_spec(self, time_compression: int) -> ClipSpec:
        return ClipSpec(
            frames=self.frames,
            stride=self.stride,
            fps=self.fps,
            mode=self.clip_mode,  # type: ignore[arg-type]
            clips_per_video=self.clips_per_video,
            time_compression=time_compression,
        )

    @property
    def kind(self) -> str:
        return "sample" if self.store_sample else "posterior"

    def preprocessing(self) -> dict:
        """Everything that determines a clip's model input; a resumed run must match it exactly."""
        return {
            "frames": self.frames if self.clip_mode != "full" else None,
            "stride": self.stride,
            "fps": self.fps,
            "clip_mode": self.clip_mode,
            "clips_per_video": self.clips_per_video,
            "size": list(self.size) if self.size else None,
            "buckets": [list(b) for b in self.buckets],
            "crop": self.crop,
            "resize": RESIZE_VERSION,
            # which decoder made the pixels (backend, versions, RGB conversion): a resume elsewhere with
            # another one is refused by the store's compatibility check instead of mixing conversions
            "decoder": decoder_identity("auto"),
            "value_range": [-1.0, 1.0],
            "frame_rule": "source index floor(k*r + 1/2) from the clip start, r = stride or source_fps/fps",
            "compute_dtype": self.dtype,
        }
