"""The on-disk layout of format version 1: array names, dtypes, chunking, sharding and codecs.

Everything that decides *where bytes go* lives here, so that docs/store-format.md has one module to
match. Three kinds of per-bucket arrays, chunked differently on purpose:

* latents (``mean``/``logvar`` or ``sample``): one sample per chunk, ``shard_size`` samples per shard;
  written only by the owner of that shard.
* mutable index arrays (``status``, ``error``, ``encode_seconds``): one chunk per latent shard and no
  sharding, so the owner of latent shard *k* is also the only writer of chunk *k* of these arrays.
* immutable index arrays (``source``, ``clip_start``...): written once by the coordinator in
  :func:`write_index`, so they may pack many chunks into large shards (few files).
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

from wfvae_cli.store.errors import StoreError
from wfvae_cli.store.plan import BucketPlan

BUCKETS_GROUP = "buckets"
REJECTED_GROUP = "rejected"  # inputs that yielded no clip (unreadable, too short, missing): source + reason
PROBES_GROUP = "probes"  # the probe cache: one row per distinct input probed (see ProbeState, PROBE_COLUMNS)
#: Root attribute ``{"rejected": group, "probes": group}``: the current generation of the coordinator's tables.
#: A resume that re-probes transient inputs writes new tables under new names (``rejected.1``, ``probes.1``) and
#: switches to them in the same root write that adds their rows (the commit record), so a kill at any point
#: leaves the old tables and the old rows, never a lost or half-written table. Absent: the names above.
TABLES_ATTR = "tables"
LOCKS_DIR = ".locks"  # inside the status array's directory; zarr never lists it
#: ``--clip-mode full`` checkpoints of rows being streamed: ``buckets/<b>/status/.stream/<row>/<object>``, inside
#: the status array's directory like the locks (zarr never lists it; --overwrite deletes it with the store)
STREAM_DIR = ".stream"
IMMUTABLE_SHARD_ROWS = 65536  # rows per shard of the coordinator-written index arrays


class Status(enum.IntEnum):
    """Per-sample state in the ``status`` array. Only the shard owner changes it."""

    PENDING = 0  # planned; latents absent or not yet trusted
    DONE = 1  # latents fully written (and synced) before this value was written
    FAILED = 2  # gave up on this sample (a permanent problem); ``error`` says why; redone with --retry-failed
    #: failed for a reason that may not recur (a decode timeout, an I/O or network error, a decoder killed from
    #: outside); ``error`` says why. Every rerun retries it (no flag needed): it is work left, not a verdict.
    TRANSIENT = 3


class ProbeState(enum.IntEnum):
    """What became of one input's probe (``state`` column of the probe table)."""

    OK = 0  # probed: the other columns hold its header (it may still give no clip: see the rejected table)
    REJECTED = 1  # a permanent problem (not a video, no video stream, corrupt): ``error`` says which
    #: a problem that may not recur (probe timeout, I/O or network error): every rerun probes it again and, once it
    #: succeeds, adds its clips to the store
    TRANSIENT = 2


#: Columns of the probe table (1-D, one row per distinct input): dtype and fill value.
PROBE_COLUMNS: Mapping[str, tuple[Any, Any]] = {
    "source": (str, ""),
    "identity": (str, ""),  # size + mtime / ETag (wfvae_cli.io.remote.input_identity): a changed file is re-probed
    "state": ("uint8", 0),
    "error": (str, ""),
    "num_frames": ("int64", 0),
    "fps": ("float64", 0.0),
    "width": ("int32", 0),
    "height": ("int32", 0),
    "rotation": ("int16", 0),
    "codec": (str, ""),
    "pix_fmt": (str, ""),
}


def table_name(root_attrs: Mapping[str, Any], table: Literal["rejected", "probes"]) -> str:
    """The group holding the current generation of ``table`` (see :data:`TABLES_ATTR`)."""
    default = REJECTED_GROUP if table == "rejected" else PROBES_GROUP
    tables = root_attrs.get(TABLES_ATTR)
    return str(tables.get(table, default)) if isinstance(tables, Mapping) else default


def write_table(parent: zarr.Group, name: str, columns: Mapping[str, np.ndarray], specs: Mapping[str, tuple[Any, Any]],
                *, overwrite: bool = False) -> None:
    """One table as a group of equal-length 1-D arrays (one chunk each up to 65536 rows: few objects)."""
    group = parent.create_group(name, overwrite=overwrite)
    lengths = {len(col) for col in columns.values()}
    if len(lengths) > 1:
        raise StoreError(f"table {name}: columns of different lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    for col, (dtype, fill) in specs.items():
        array = group.create_array(
            col, shape=(n,), chunks=(max(1, min(n, IMMUTABLE_SHARD_ROWS)),), dtype=dtype, fill_value=fill,
            compressors=[ZstdCodec(level=3)],
        )
        if n:
            values = columns[col]
            array[:] = values.astype(np.dtypes.StringDType()) if dtype is str else values


def read_table(root: zarr.Group, name: str, specs: Mapping[str, tuple[Any, Any]]) -> dict[str, np.ndarray] | None:
    """The columns of a table written by :func:`write_table` (``None`` when the store has none)."""
    if name not in root:
        return None
    group = root[name]
    n = group[next(iter(specs))].shape[0]
    out = {}
    for col, (dtype, _) in specs.items():
        out[col] = np.asarray(group[col][:]) if n else np.zeros(0, dtype=np.dtypes.StringDType() if dtype is str
                                                                   else dtype)
    return out


@dataclass(frozen=True)
class Compression:
    """Codec of the latent chunks.

    ``zstd`` is the zarr v3 core codec (readable everywhere); ``blosc-zstd`` adds a bit-shuffle that
    usually compresses float latents a few percent better. Each chunk also carries a crc32c checksum so
    a corrupted sample is detected (and pinpointed) on read instead of decoding to garbage.
    """

    name: Literal["zstd", "blosc-zstd"] = "zstd"
    level: int = 3

    def codecs(self) -> list[Any]:
        if self.name == "zstd":
            main: Any = ZstdCodec(level=self.level)
        elif self.name == "blosc-zstd":
            main = BloscCodec(cname="zstd", clevel=self.level, shuffle="bitshuffle")
        else:
            raise StoreError(f"unknown compression {self.name!r}; use 'zstd' or 'blosc-zstd'")
        return [main, Crc32cCodec()]


@dataclass(frozen=True)
class ArraySpec:
    """dtype and fill value of one per-sample index array (its rows are samples)."""

    dtype: Any
    fill_value: Any
    mutable: bool


#: Per-sample index arrays of a bucket. frame_indices is 2-D (N, frames); all others are 1-D (N,).
INDEX_ARRAYS: Mapping[str, ArraySpec] = {
    "source": ArraySpec(str, "", mutable=False),
    "caption": ArraySpec(str, "", mutable=False),
    "key": ArraySpec(str, "", mutable=False),  # stable sample key (docs/store-format.md, "Sample metadata")
    "extra": ArraySpec(str, "", mutable=False),  # the source's other metadata: one JSON object per row
    "clip_start": ArraySpec("int64", 0, mutable=False),
    "clip_end": ArraySpec("int64", 0, mutable=False),
    "frame_indices": ArraySpec("int64", -1, mutable=False),
    "fps": ArraySpec("float64", 0.0, mutable=False),
    "width": ArraySpec("int32", 0, mutable=False),
    "height": ArraySpec("int32", 0, mutable=False),
    "status": ArraySpec("uint8", int(Status.PENDING), mutable=True),
    "error": ArraySpec(str, "", mutable=True),
    "encode_seconds": ArraySpec("float32", float("nan"), mutable=True),
}
MUTABLE_ARRAYS = tuple(name for name, spec in INDEX_ARRAYS.items() if spec.mutable)


@dataclass(frozen=True)
class BucketInfo:
    """Static layout of one bucket, as recorded in its group attributes."""

    bucket_id: str
    latent_shape: tuple[int, int, int, int]
    num_samples: int
    shard_size: int
    num_frames: int

    @property
    def num_shards(self) -> int:
        return math.ceil(self.num_samples / self.shard_size)

    def shard_range(self, shard: int) -> range:
        """Rows owned by ``shard``; the last shard may be shorter."""
        if not 0 <= shard < self.num_shards:
            raise StoreError(f"bucket {self.bucket_id} has shards 0..{self.num_shards - 1}, not {shard}")
        start = shard * self.shard_size
        return range(start, min(start + self.shard_size, self.num_samples))

    def shard_of(self, index: int) -> int:
        """The shard that owns row ``index``."""
        if not 0 <= index < self.num_samples:
            raise StoreError(f"bucket {self.bucket_id} has rows 0..{self.num_samples - 1}, not {index}")
        return index // self.shard_size

    def to_attrs(self) -> dict[str, Any]:
        return {
            "latent_shape": list(self.latent_shape),
            "num_samples": self.num_samples,
            "shard_size": self.shard_size,
            "num_frames": self.num_frames,
        }

    @classmethod
    def from_attrs(cls, bucket_id: str, attrs: Mapping[str, Any]) -> BucketInfo:
        shape = tuple(int(d) for d in attrs["latent_shape"])
        return cls(
            bucket_id=bucket_id,
            latent_shape=(shape[0], shape[1], shape[2], shape[3]),
            num_samples=int(attrs["num_samples"]),
            shard_size=int(attrs["shard_size"]),
            num_frames=int(attrs["num_frames"]),
        )


#: index arrays added after format version 1 was first released: a store without them reads as if empty
OPTIONAL_INDEX_ARRAYS = ("key", "extra")


def _json_safe(value: Any) -> Any:
    """``value`` as plain JSON types: numpy/pyarrow scalars unwrapped, dates as ISO strings, NaN/inf as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            import base64

            return "base64:" + base64.b64encode(bytes(value)).decode("ascii")
    if hasattr(value, "isoformat"):  # datetime, date, time, pandas Timestamp
        return value.isoformat()
    if hasattr(value, "__float__"):  # Decimal and friends
        return _json_safe(float(value))
    return str(value)


def encode_extra(extra: Mapping[str, Any] | None) -> str:
    """A source's extra metadata as the JSON text stored per row (``""`` for none; keys sorted, UTF-8)."""
    if not extra:
        return ""
    return json.dumps(
        _json_safe(dict(extra)), sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    )


def decode_extra(text: str) -> dict[str, Any]:
    """The stored JSON text back as a dict (``{}`` for an empty cell)."""
    return json.loads(text) if text else {}


def to_str_list(values: np.ndarray) -> list[str]:
    """zarr 3 returns string arrays as numpy ``StringDType``; hand Python ``str`` to callers."""
    return [str(v) for v in np.asarray(values).reshape(-1).tolist()]


def to_str(value: np.ndarray | str) -> str:
    """One element of a string array (a 0-d ``StringDType`` array from zarr) as a Python ``str``."""
    return str(np.asarray(value).reshape(-1)[0]) if not isinstance(value, str) else value


def create_bucket(
    parent: zarr.Group,
    plan: BucketPlan,
    *,
    latent_names: tuple[str, ...],
    dtype: str,
    compression: Compression,
    overwrite: bool = False,
) -> BucketInfo:
    """Create one bucket's group and empty arrays; return its layout. Index rows come from :func:`write_index`.

    ``overwrite``: replace a group of that name (left by an interrupted :meth:`LatentStore.extend`)."""
    n = len(plan.samples)
    info = BucketInfo(
        bucket_id=plan.bucket_id,
        latent_shape=plan.latent_shape,
        num_samples=n,
        shard_size=plan.resolved_shard_size(np.dtype(dtype).itemsize),
        num_frames=plan.num_frames,
    )
    group = parent.create_group(plan.bucket_id, attributes=info.to_attrs(), overwrite=overwrite)
    s = info.shard_size
    for name in latent_names:
        group.create_array(
            name,
            shape=(n, *info.latent_shape),
            chunks=(1, *info.latent_shape),
            shards=(s, *info.latent_shape),
            dtype=dtype,
            # NaN fill: a "done" sample whose chunk went missing reads as NaN, which verify() flags.
            fill_value=float("nan"),
            compressors=compression.codecs(),
            dimension_names=("sample", "channel", "time", "height", "width"),
        )
    immutable_shard = s * max(1, min(math.ceil(n / s), IMMUTABLE_SHARD_ROWS // s))
    for name, spec in INDEX_ARRAYS.items():
        trailing = (info.num_frames,) if name == "frame_indices" else ()
        group.create_array(
            name,
            shape=(n, *trailing),
            chunks=(s, *trailing),
            shards=None if spec.mutable else (immutable_shard, *trailing),
            dtype=spec.dtype,
            fill_value=spec.fill_value,
            compressors=[ZstdCodec(level=3)],
            dimension_names=("sample", "frame")[: 1 + len(trailing)],
        )
    return info


def write_index(group: zarr.Group, plan: BucketPlan, start: int = 0) -> None:
    """Write the immutable index rows of a bucket's new rows ``start:start+len(plan.samples)`` (all of a freshly
    created bucket; the appended rows of :meth:`LatentStore.extend`). Status stays at its PENDING fill."""
    rows = plan.samples
    stop = start + len(rows)
    if isinstance(getattr(rows, "frame_indices", None), np.ndarray):  # IndexColumns: written as they are
        for name in ("source", "caption", "key", "extra", "clip_start", "clip_end", "frame_indices", "fps", "width",
                     "height"):
            group[name][start:stop] = getattr(rows, name)
        return
    group["source"][start:stop] = np.array([r.source for r in rows], dtype=np.dtypes.StringDType())
    group["caption"][start:stop] = np.array([r.caption for r in rows], dtype=np.dtypes.StringDType())
    group["key"][start:stop] = np.array([r.key for r in rows], dtype=np.dtypes.StringDType())
    group["extra"][start:stop] = np.array([r.extra for r in rows], dtype=np.dtypes.StringDType())
    group["clip_start"][start:stop] = np.array([r.clip_start for r in rows], dtype=np.int64)
    group["clip_end"][start:stop] = np.array([r.clip_end for r in rows], dtype=np.int64)
    group["frame_indices"][start:stop] = np.array([r.frame_indices for r in rows], dtype=np.int64)
    group["fps"][start:stop] = np.array([r.fps for r in rows], dtype=np.float64)
    group["width"][start:stop] = np.array([r.width for r in rows], dtype=np.int32)
    group["height"][start:stop] = np.array([r.height for r in rows], dtype=np.int32)


def write_rejected(root: zarr.Group, rejected: Sequence[tuple[str, str]], name: str = REJECTED_GROUP,
                   *, overwrite: bool = False) -> None:
    """Record the inputs that could not be planned (no row in any bucket), with a one-line reason each.

    Written by the coordinator: at creation, and as a new generation (``name``, see :data:`TABLES_ATTR`) when a
    resume re-probes transient inputs. Two string arrays of equal length; empty when nothing was rejected.
    """
    group = root.create_group(name, overwrite=overwrite)
    n = len(rejected)
    for name, column in (("source", [r[0] for r in rejected]), ("error", [r[1] for r in rejected])):
        array = group.create_array(
            name, shape=(n,), chunks=(max(1, min(n, IMMUTABLE_SHARD_ROWS)),), dtype=str, fill_value="",
            compressors=[ZstdCodec(level=3)],
        )
        if n:
            array[:] = np.array(column, dtype=np.dtypes.StringDType())


def read_rejected(root: zarr.Group) -> list[tuple[str, str]]:
    """The rejected inputs of a store (``[]`` for stores without the table)."""
    name = table_name(root.attrs.asdict(), "rejected")
    if name not in root:
        return []
    group = root[name]
    if group["source"].shape[0] == 0:
        return []
    return list(zip(to_str_list(group["source"][:]), to_str_list(group["error"][:]), strict=True))


_NO_CHUNK = 2**64 - 1  # a shard index entry of an absent inner chunk (offset and length)


def decode_latent_shard(
    data: bytes | None, array_meta: Mapping[str, Any], rows: int
) -> tuple[np.ndarray, dict[int, str]] | None:
    """Decode the first ``rows`` samples of one latent shard object (``data``: its bytes, ``None`` if absent).

    A bulk reader of this module's latent layout (one sample per inner chunk, index at the end, inner codecs
    bytes + zstd/blosc + crc32c), for ``verify``: zarr decodes inner chunks one async task at a time (~0.5 ms
    each, measured: 3 s per 4000 samples), this loop ~15 µs each on 2 loaded cores. Returns the samples
    (absent chunks read as the fill value, NaN) and ``{row: reason}`` of chunks that fail their checksum or do
    not decode; ``None`` when the array's codecs are not this layout's (callers then read through zarr).
    """
    import google_crc32c

    codecs = list(array_meta.get("codecs", ()))
    if len(codecs) != 1 or codecs[0].get("name") != "sharding_indexed":
        return None
    conf = codecs[0].get("configuration", {})
    inner = [c.get("name") for c in conf.get("codecs", ())]
    index = [c.get("name") for c in conf.get("index_codecs", ())]
    if conf.get("index_location", "end") != "end" or index != ["bytes", "crc32c"] or len(inner) != 3 \
            or inner[0] != "bytes" or inner[2] != "crc32c" or inner[1] not in ("zstd", "blosc"):
        return None
    if any(c.get("configuration", {}).get("endian", "little") != "little" for c in conf["codecs"][:1]):
        return None
    chunk_shape = tuple(int(d) for d in conf["chunk_shape"])
    shard_shape = tuple(int(d) for d in array_meta["chunk_grid"]["configuration"]["chunk_shape"])
    if chunk_shape[0] != 1 or chunk_shape[1:] != shard_shape[1:]:
        return None
    dtype = np.dtype(str(array_meta["data_type"])).newbyteorder("<")
    sample_shape = chunk_shape[1:]
    out = np.full((rows, *sample_shape), np.nan, dtype=dtype)
    if data is None:
        return out, {}
    n = shard_shape[0]
    size = 16 * n + 4
    buf = memoryview(data)
    if len(buf) < size or google_crc32c.value(bytes(buf[-size:-4])) != int.from_bytes(buf[-4:], "little"):
        return out, dict.fromkeys(range(rows), "shard index unreadable (truncated or checksum mismatch)")
    entries = np.frombuffer(buf[-size:-4], dtype="<u8").reshape(n, 2)[:rows].tolist()
    if inner[1] == "zstd":
        from numcodecs.zstd import decompress
    else:
        from numcodecs.blosc import decompress
    nbytes = int(np.prod(sample_shape)) * dtype.itemsize
    blob = bytes(buf) if not isinstance(data, bytes) else data
    crc = google_crc32c.value
    nan = out[0].tobytes() if rows else b""
    parts: list[bytes] = []  # one decoded chunk per row (NaN bytes for absent or bad ones), joined once
    bad: dict[int, str] = {}
    for k, (offset, length) in enumerate(entries):
        if offset == _NO_CHUNK:
            parts.append(nan)
            continue
        end = offset + length
        payload = blob[offset:end - 4]
        if length < 4 or end > len(blob) - size or crc(payload) != int.from_bytes(blob[end - 4:end], "little"):
            bad[k] = "chunk checksum mismatch (crc32c)"
            parts.append(nan)
            continue
        try:
            raw = decompress(payload)
            if len(raw) != nbytes:
                raise ValueError(f"{len(raw)} bytes, expected {nbytes}")
        except Exception as exc:
            bad[k] = f"chunk does not decode ({type(exc).__name__}: {exc})"
            raw = nan
        parts.append(bytes(raw))
    if rows:
        out = np.frombuffer(b"".join(parts), dtype=dtype).reshape(rows, *sample_shape).copy()
    return out, bad
