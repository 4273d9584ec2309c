"""Create and open latent stores: the coordinator's side (plan, resume, finalize) and the reader's side.

One :class:`LatentStore` class serves both: every mode can read; ``mode="r+"`` additionally allows the
writes, which all go through a :class:`~wfvae_cli.store.writer.ShardWriter` so the shard-ownership rule
holds whichever entry point a caller uses. A store is a local folder or a prefix on object storage
(``s3://bucket/x.zarr``, any fsspec URL); everything location-specific goes through
:class:`~wfvae_cli.store.location.StoreLocation`.

Opening costs one request: the root ``zarr.json`` carries consolidated metadata (every group's and array's
metadata), which the coordinator rewrites whenever it changes the hierarchy (:meth:`LatentStore.consolidate`).
Root-attribute updates (``finalize``) keep it: zarr rewrites the root document with its consolidated part.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import zarr

from wfvae_cli.errors import one_line
from wfvae_cli.store.errors import StoreError, UnreadableSampleError
from wfvae_cli.store.index import IndexColumns, read_columns
from wfvae_cli.store.layout import (
    BUCKETS_GROUP,
    INDEX_ARRAYS,
    LOCKS_DIR,
    OPTIONAL_INDEX_ARRAYS,
    PROBE_COLUMNS,
    PROBES_GROUP,
    REJECTED_GROUP,
    STREAM_DIR,
    TABLES_ATTR,
    BucketInfo,
    Compression,
    Status,
    create_bucket,
    decode_extra,
    read_rejected,
    read_table,
    table_name,
    to_str,
    write_index,
    write_rejected,
    write_table,
)
from wfvae_cli.store.lease import LeaseFence, WriterLease
from wfvae_cli.store.location import ROOT_KEY, StoreLocation, as_location
from wfvae_cli.store.locks import ShardLock
from wfvae_cli.store.meta import StoreMeta, to_json_native, utc_now
from wfvae_cli.store.plan import BucketPlan, SampleRecord
from wfvae_cli.store.probes import ProbeTable
from wfvae_cli.store.writer import ShardWriter

#: root group holding one sub-group per run, its attributes the run's statistics (docs/store-format.md)
STATS_GROUP = "stats"

Mode = Literal["r", "r+"]

#: Per-sample index fields a reader returns, with the conversion from what zarr hands back.
_INDEX_FIELDS: dict[str, Callable[[Any], Any]] = {
    "source": to_str,
    "caption": to_str,
    "key": to_str,
    "extra": lambda v: decode_extra(to_str(v)),
    "clip_start": int,
    "clip_end": int,
    "frame_indices": lambda v: np.asarray(v, dtype=np.int64),
    "fps": float,
    "width": int,
    "height": int,
}


class LatentStore:
    """An opened store. Use :func:`create_store` or :func:`open_store` rather than the constructor.

    Reading (all modes): ``len(store)`` counts *done* samples across buckets, ``store[i]`` returns the
    i-th done sample (buckets in plan order, rows ascending) as a dict of numpy arrays and Python
    scalars. The done-list is a snapshot taken on first use; :meth:`refresh` retakes it.

    Writing (``"r+"``): :meth:`shard_writer` for pipelines, :meth:`write_block` / :meth:`write_sample`
    / :meth:`mark_failed` as one-shot helpers (each owns the shard for the duration of the call).
    """

    def __init__(self, location: StoreLocation, root: zarr.Group, mode: Mode) -> None:
        self.location = location
        #: how messages name the store: the local ``Path``, or the URL string of a store on object storage
        self.path: Path | str = location.path if location.path is not None else str(location)
        self.mode = mode
        self._root = root
        self.meta = StoreMeta.from_attrs(root.attrs.asdict(), path=self.path)
        bucket_ids = root.attrs.get("buckets")
        if not isinstance(bucket_ids, list):
            raise StoreError(f"{self.path} has no 'buckets' root attribute; the store is damaged, re-encode it")
        self.buckets: dict[str, BucketInfo] = {
            b: BucketInfo.from_attrs(b, root[f"{BUCKETS_GROUP}/{b}"].attrs.asdict()) for b in bucket_ids
        }
        self._arrays: dict[tuple[str, str], zarr.Array] = {}
        self._done: list[tuple[str, np.ndarray]] | None = None
        self._offsets: np.ndarray | None = None
        #: the job's writer lease (set by the encode pipeline); shard writers check it before every commit
        self.lease: WriterLease | LeaseFence | None = None

    # ------------------------------------------------------------------ layout
    def info(self, bucket: str) -> BucketInfo:
        try:
            return self.buckets[bucket]
        except KeyError:
            raise StoreError(f"{self.path} has no bucket {bucket!r}; it has {sorted(self.buckets)}") from None

    def array(self, bucket: str, name: str) -> zarr.Array:
        """The zarr array ``buckets/<bucket>/<name>`` (handles are cached per store object)."""
        key = (bucket, name)
        if key not in self._arrays:
            self.info(bucket)
            node = self._root[f"{BUCKETS_GROUP}/{bucket}/{name}"]
            assert isinstance(node, zarr.Array)
            self._arrays[key] = node
        return self._arrays[key]

    def shard_ranges(self, bucket: str) -> list[range]:
        """Row ranges of the shards of ``bucket``: the unit of write ownership (and of parallel work)."""
        info = self.info(bucket)
        return [info.shard_range(k) for k in range(info.num_shards)]

    def shard_of(self, bucket: str, index: int) -> int:
        """The shard that owns row ``index`` of ``bucket``."""
        return self.info(bucket).shard_of(index)

    def shard_lock(self, bucket: str, shard: int) -> ShardLock:
        """The (unacquired) ownership lock of one shard; used by :class:`ShardWriter`."""
        self.info(bucket).shard_range(shard)  # validates
        what = f"shard {shard} of bucket {bucket} in {self.path}"
        if self.location.path is None:  # object storage: no flock; the lease + disjoint assignment (locks.py)
            return ShardLock(None, what, key=f"{self.location.absolute()}/{bucket}/{shard}")
        lock_path = self.location.path / BUCKETS_GROUP / bucket / "status" / LOCKS_DIR / f"{shard}.lock"
        return ShardLock(lock_path, what)

    def chunk_key(self, bucket: str, name: str, shard: int) -> str:
        """The store key (object name below the store) of shard ``shard`` of an array (chunk ``shard`` of an
        unsharded index array)."""
        arr = self.array(bucket, name)
        coords = (shard,) + (0,) * (arr.ndim - 1)
        return f"{arr.path}/{arr.metadata.encode_chunk_key(coords)}"

    def chunk_file(self, bucket: str, name: str, shard: int) -> Path:
        """The file holding shard ``shard`` of a latent array (local stores; see :meth:`chunk_key`)."""
        return self.location.local_path("a chunk file") / self.chunk_key(bucket, name, shard)

    # ------------------------------------------------------------------ stream checkpoints
    def stream_key(self, bucket: str, row: int, name: str = "") -> str:
        """Key of a checkpoint object of row ``row`` (``name=""``: the row's checkpoint prefix; see layout.py)."""
        self.info(bucket).shard_of(row)  # validates
        return f"{BUCKETS_GROUP}/{bucket}/status/{STREAM_DIR}/{row}/{name}"

    def put_stream_object(self, bucket: str, row: int, name: str, data: bytes) -> None:
        """Write one checkpoint object (atomic: a file replace or one PUT) and make it durable before returning,
        so that an object written after it may refer to it (the write-then-mark rule, for checkpoints)."""
        self._require_writable()
        if self.lease is not None:
            self.lease.check()  # fenced like a commit: a job that lost its lease never overwrites a checkpoint
        key = self.stream_key(bucket, row, name)
        _put_all(self.location.zarr_store(read_only=False), {key: data})
        self.location.sync(key)

    def get_stream_object(self, bucket: str, row: int, name: str) -> bytes | None:
        """A checkpoint object, or ``None`` when it does not exist."""
        try:
            return _get_all(self.location.zarr_store(read_only=True), [self.stream_key(bucket, row, name)])[
                self.stream_key(bucket, row, name)]
        except KeyError:
            return None

    def clear_streams(self, bucket: str, rows: Sequence[int] | None = None) -> int:
        """Delete the checkpoints of ``rows`` (default: of every row that is not pending any more); returns how
        many rows had one. One listing of the bucket's checkpoint prefix, then one delete per object."""
        import asyncio

        from zarr.core.sync import sync

        self._require_writable()
        store = self.location.zarr_store(read_only=False)
        prefix = f"{BUCKETS_GROUP}/{bucket}/status/{STREAM_DIR}"

        async def listed() -> list[str]:
            return [k async for k in store.list_dir(prefix)]

        try:
            present = {int(name.strip("/")) for name in sync(listed()) if name.strip("/").isdigit()}
        except FileNotFoundError:
            return 0
        if rows is None:
            status = self.status(bucket)
            wanted = {r for r in present if status[r] != Status.PENDING}
        else:
            wanted = present & {int(r) for r in rows}

        async def delete_all() -> None:
            await asyncio.gather(*(store.delete_dir(f"{prefix}/{r}") for r in sorted(wanted)))

        if wanted:
            sync(delete_all())
        return len(wanted)

    # ------------------------------------------------------------------ status
    def status(self, bucket: str) -> np.ndarray:
        """A fresh read of the ``status`` array of ``bucket`` (uint8, see :class:`Status`)."""
        # sliced to the recorded row count: an append interrupted after resizing shows no phantom rows
        return np.asarray(self.array(bucket, "status")[: self.info(bucket).num_samples], dtype=np.uint8)

    def pending_samples(self, bucket: str, *, include_failed: bool = False) -> np.ndarray:
        """Rows still to encode: pending and transient (retried by every run), plus failed ones when retrying them."""
        status = self.status(bucket)
        mask = (status == Status.PENDING) | (status == Status.TRANSIENT)
        if include_failed:
            mask |= status == Status.FAILED
        return np.flatnonzero(mask)

    def failed_samples(self, bucket: str, state: Status = Status.FAILED) -> list[tuple[int, str]]:
        """``(row, error message)`` of every failed row (``state=Status.TRANSIENT``: of every transient one)."""
        rows = np.flatnonzero(self.status(bucket) == state)
        if rows.size == 0:
            return []
        errors = self.array(bucket, "error")
        return [(int(r), to_str(errors[int(r)])) for r in rows]

    def counts(self, bucket: str) -> dict[str, int]:
        """Number of rows per status name (``pending``, ``done``, ``failed``, ``transient``)."""
        tally = np.bincount(self.status(bucket), minlength=len(Status))
        return {s.name.lower(): int(tally[s]) for s in Status}

    # ------------------------------------------------------------------ writing (r+)
    def _require_writable(self) -> None:
        if self.mode != "r+":
            raise StoreError(f"{self.path} is open read-only; open it with mode='r+' to write")

    def shard_writer(
        self,
        bucket: str,
        shard: int,
        *,
        wait: float | None = 0.0,
        retry_failed: bool = False,
        durable: bool = True,
    ) -> ShardWriter:
        """Own ``shard`` of ``bucket`` and return its writer (use it as a context manager).

        ``wait``: seconds to wait for a current owner (``None``: forever; default: fail at once).
        ``durable=False`` skips the fsyncs (still crash-safe against a killed process, not power loss).
        """
        self._require_writable()
        return ShardWriter(self, bucket, shard, wait=wait, retry_failed=retry_failed, durable=durable)

    def write_block(
        self,
        bucket: str,
        start: int,
        *,
        encode_seconds: float | None = None,
        **latents: npt.ArrayLike,
    ) -> None:
        """Write rows ``start:start+B`` (``latents`` are ``(B, C, T, H, W)``) and mark them done.

        The block must lie inside one shard (ideally be the whole shard: one file write). Waits for the
        shard's current owner, if any, so concurrent callers are serialised rather than corrupting it.
        """
        if not latents:
            raise StoreError(
                f"write_block on {self.path} got no latent arrays; pass {self.meta.latent_names}"
            )
        shard = self.shard_of(bucket, start)
        with self.shard_writer(bucket, shard, wait=None, retry_failed=True) as writer:
            writer.write_block(start, encode_seconds=encode_seconds, **latents)

    def write_sample(
        self, bucket: str, index: int, *, encode_seconds: float | None = None, **latents: npt.ArrayLike
    ) -> None:
        """Write one row and mark it done (slow path: rewrites the whole shard file; prefer a ShardWriter)."""
        with self.shard_writer(bucket, self.shard_of(bucket, index), wait=None, retry_failed=True) as writer:
            writer.add(index, encode_seconds=encode_seconds, **latents)

    def reset_rows(self, bucket: str, problems: Mapping[int, str]) -> None:
        """Take rows of ``bucket`` back to pending, ``row -> reason`` (latents missing or unreadable: see
        :func:`~wfvae_cli.store.verify.find_damaged`); the next encode run re-encodes exactly those rows."""
        by_shard: dict[int, dict[int, str]] = {}
        for row, reason in problems.items():
            by_shard.setdefault(self.shard_of(bucket, int(row)), {})[int(row)] = reason
        for shard, rows in sorted(by_shard.items()):
            with self.shard_writer(bucket, shard, wait=None, retry_failed=True) as writer:
                writer.reset(rows)
        self.refresh()

    def mark_failed(self, bucket: str, index: int, message: str) -> None:
        """Record that row ``index`` failed with ``message`` (serialised through the shard's owner lock)."""
        with self.shard_writer(bucket, self.shard_of(bucket, index), wait=None, retry_failed=True) as writer:
            writer.fail(index, message)

    def finalize(self, completed_at: str | None = None, *, allow_pending: bool = False) -> StoreMeta:
        """Stamp ``completed_at`` (coordinator only, after all writers closed) and return the new meta.

        Raises if rows are still pending (or transient: work a rerun does), because a store that says
        "completed" must not silently miss clips; pass ``allow_pending=True`` for deliberately partial runs.
        """
        self._require_writable()
        pending = {b: int(c["pending"] + c["transient"]) for b in self.buckets if (c := self.counts(b))}
        if not allow_pending and any(pending.values()):
            raise StoreError(
                f"{self.path} still has pending samples {pending}; finish (resume) the encode before finalizing"
            )
        self.meta = self.meta.replace(completed_at=completed_at or utc_now())
        self._root.attrs.update({"completed_at": self.meta.completed_at})  # keeps the consolidated metadata
        return self.meta

    def consolidate(self) -> None:
        """Rewrite the root's consolidated metadata after the hierarchy changed (coordinator only).

        Readers open the store from the root document alone (one request on object storage), so every new
        group or array must be followed by this call, or readers would not see it.
        """
        self._require_writable()
        self._root = _consolidate(self.location)
        self._arrays.clear()

    # ------------------------------------------------------------------ reading
    def refresh(self) -> None:
        """Forget the done-list snapshot; the next ``len``/``[i]`` re-reads the status arrays."""
        self._done = None
        self._offsets = None

    def write_run_stats(self, run_id: str, stats: Mapping[str, Any]) -> None:
        """Keep one run's statistics (counts, rates, stage times, failures) under ``stats/<run_id>``.

        Stored as the attributes of a small zarr group, i.e. a JSON object in ``stats/<run_id>/zarr.json``, so it
        goes through the same zarr store as the latents (a local folder or object storage) and any zarr reader
        can list it; earlier runs' entries are kept (``video2dataset`` keeps a ``_stats.json`` per shard).
        """
        self._require_writable()
        if not run_id or "/" in run_id:
            raise StoreError(f"run id {run_id!r}: must be a non-empty name without '/'")
        attrs = to_json_native(dict(stats), where=f"stats/{run_id}")
        if self._root.metadata.consolidated_metadata is None:  # a store written before consolidation
            group = self._root.require_group(STATS_GROUP)
            group.create_group(run_id, attributes=attrs, overwrite=True)
            return
        self._add_groups({STATS_GROUP: {}, f"{STATS_GROUP}/{run_id}": attrs})

    def _add_groups(self, groups: Mapping[str, Any]) -> None:
        """Create groups (``path -> attributes``) and add them to the consolidated metadata in a few requests.

        The group documents are written first, then the root document with the new entries in its consolidated
        part (zarr's inline format: a flat ``path -> metadata`` object): readers, who only read the root, see the
        groups once they are complete. Costs 1 GET + one PUT per new group + 1 PUT, instead of re-listing and
        re-reading the whole hierarchy as a full :meth:`consolidate` does. Existing groups are left as they are.
        """
        store = self.location.zarr_store(read_only=False)
        root = json.loads(_get_all(store, [ROOT_KEY])[ROOT_KEY])
        known = root["consolidated_metadata"]["metadata"]
        new = {path: {"attributes": dict(attrs), "zarr_format": 3, "node_type": "group"}
               for path, attrs in groups.items() if path not in known or groups[path]}
        _put_all(store, {f"{path}/{ROOT_KEY}": json.dumps(doc, indent=2).encode() for path, doc in new.items()})
        for path, doc in new.items():
            known[path] = {**doc, "consolidated_metadata": {"kind": "inline", "must_understand": False, "metadata": {}}}
        _put_all(store, {ROOT_KEY: json.dumps(root, indent=2).encode()})
        self._root = _open_root(self.location, self.mode)
        self._arrays.clear()

    def run_stats(self) -> dict[str, dict[str, Any]]:
        """Every run's statistics, oldest first (run ids start with their UTC start time)."""
        if STATS_GROUP not in self._root:
            return {}
        group = self._root[STATS_GROUP]
        assert isinstance(group, zarr.Group)
        return {name: dict(group[name].attrs) for name in sorted(group.group_keys())}

    def rejected(self) -> list[tuple[str, str]]:
        """Inputs that yielded no clip when the store was planned: ``(source, reason)`` pairs."""
        return read_rejected(self._root)

    def probes(self) -> ProbeTable | None:
        """The probe cache (``None`` for stores written before it existed); see :mod:`wfvae_cli.store.probes`."""
        columns = read_table(self._root, table_name(self._root.attrs.asdict(), "probes"), PROBE_COLUMNS)
        return None if columns is None else ProbeTable.from_columns(columns)

    def extend(self, plan: Sequence[BucketPlan], rejected: Sequence[tuple[str, str]], probes: ProbeTable) -> None:
        """Add rows (the clips of inputs whose probe failed transiently and now succeeded) and replace the
        rejected and probe tables, in one commit (coordinator only, holding the writer lease, no writer running).

        ``plan``: the new rows per bucket; a bucket id the store has gets them appended (its shard size kept), a
        new one is created after the existing buckets (done samples keep their dataset positions). Everything is
        written where readers do not look yet (resized arrays' own metadata, new groups, the next generation of
        the tables), then the root document is rewritten once with the new shapes, buckets and table names: the
        commit record. A kill before it leaves the store as it was (the inputs still transient; the next run
        redoes this); after it, the new rows are pending like any others.
        """
        self._require_writable()
        names = {t: table_name(self._root.attrs.asdict(), t) for t in ("rejected", "probes")}
        generation = 1 + max(int(n.rpartition(".")[2]) if "." in n else 0 for n in names.values())
        new_names = {"rejected": f"{REJECTED_GROUP}.{generation}", "probes": f"{PROBES_GROUP}.{generation}"}
        store = self.location.zarr_store(read_only=False)
        writable = zarr.open_group(store=store, mode="r+", zarr_format=3, use_consolidated=False)
        buckets_group = writable[BUCKETS_GROUP]
        assert isinstance(buckets_group, zarr.Group)
        changed: list[str] = []
        bucket_ids = list(self.buckets)
        array_names = (*self.meta.latent_names, *INDEX_ARRAYS)
        for bucket_plan in plan:
            bid = bucket_plan.bucket_id
            prefix = f"{BUCKETS_GROUP}/{bid}"
            if bid in self.buckets:
                info = self.buckets[bid]
                if tuple(bucket_plan.latent_shape) != info.latent_shape or bucket_plan.num_frames != info.num_frames:
                    raise StoreError(f"{self.path} bucket {bid} is {info.latent_shape}, the new rows "
                                     f"{bucket_plan.latent_shape}; rerun with --overwrite to re-plan")
                old, new = info.num_samples, info.num_samples + len(bucket_plan.samples)
                group = buckets_group[bid]
                for name in array_names:  # the consolidated view (old shape) is what readers keep seeing
                    arr = group[name]
                    arr.resize((new, *arr.shape[1:]))
                write_index(group, bucket_plan, start=old)
                group["status"][old:new] = np.zeros(new - old, dtype=np.uint8)  # PENDING, whatever a killed
                group["error"][old:new] = np.full(new - old, "", dtype=np.dtypes.StringDType())  # attempt left
                group["encode_seconds"][old:new] = np.full(new - old, np.nan, dtype=np.float32)
                group.attrs.update({**info.to_attrs(), "num_samples": new})
            else:
                create_bucket(buckets_group, bucket_plan, latent_names=self.meta.latent_names, dtype=self.meta.dtype,
                              compression=_compression_of(self, bucket_ids[0]), overwrite=True)
                write_index(buckets_group[bid], bucket_plan)
                bucket_ids.append(bid)
            changed += [prefix, *(f"{prefix}/{name}" for name in array_names)]
        write_rejected(writable, rejected, new_names["rejected"], overwrite=True)
        write_table(writable, new_names["probes"], probes.columns(), PROBE_COLUMNS, overwrite=True)
        for table in new_names.values():
            changed += [table, *(f"{table}/{c}" for c in ("source", "error"))]
        changed += [f"{new_names['probes']}/{c}" for c in PROBE_COLUMNS if c not in ("source", "error")]
        # the commit record: one write of the root document (attributes + consolidated metadata)
        root = json.loads(_get_all(store, [ROOT_KEY])[ROOT_KEY])
        root["attributes"].update({"buckets": bucket_ids, TABLES_ATTR: new_names})
        known = root["consolidated_metadata"]["metadata"]
        for old_name in names.values():
            for key in [k for k in known if k == old_name or k.startswith(old_name + "/")]:
                del known[key]
        docs = _get_all(store, [f"{path}/{ROOT_KEY}" for path in changed])
        for path in changed:
            doc = json.loads(docs[f"{path}/{ROOT_KEY}"])
            if doc.get("node_type") == "group":
                doc["consolidated_metadata"] = {"kind": "inline", "must_understand": False, "metadata": {}}
            known[path] = doc
        _put_all(store, {ROOT_KEY: json.dumps(root, indent=2).encode()})
        for old_name in names.values():  # garbage now (readers follow the root); a kill here only leaves it
            if old_name in writable:
                del writable[old_name]
        self._root = _open_root(self.location, self.mode)
        self._arrays.clear()
        self.buckets = {b: BucketInfo.from_attrs(b, self._root[f"{BUCKETS_GROUP}/{b}"].attrs.asdict())
                        for b in bucket_ids}
        self.refresh()

    def done_rows(self) -> list[tuple[str, np.ndarray]]:
        """``(bucket, rows with status done)`` for every bucket in plan order (a cached snapshot)."""
        if self._done is None:
            self._done = [(b, np.flatnonzero(self.status(b) == Status.DONE)) for b in self.buckets]
            self._offsets = np.cumsum([0] + [len(rows) for _, rows in self._done])
        return self._done

    def __len__(self) -> int:
        self.done_rows()
        assert self._offsets is not None
        return int(self._offsets[-1])

    def locate(self, i: int) -> tuple[str, int]:
        """``(bucket, row)`` of the i-th done sample."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range for {n} done samples")
        i %= n
        assert self._offsets is not None and self._done is not None
        k = int(np.searchsorted(self._offsets, i, side="right")) - 1
        bucket, rows = self._done[k]
        return bucket, int(rows[i - self._offsets[k]])

    def __getitem__(self, i: int) -> dict[str, Any]:
        bucket, row = self.locate(i)
        return self.read_sample(bucket, row)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]

    def read_latents(self, bucket: str, row: int, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The latent arrays of one row (``names``: a subset, e.g. ``("mean",)``), ``(C, T, H, W)`` in the stored
        dtype.

        Raises :class:`UnreadableSampleError` for a row whose latents cannot be trusted instead of returning
        zarr's NaN fill value: a chunk that is missing (deleted shard file or chunk), fails its checksum, or
        belongs to a row that is not done. The writer never stores a non-finite latent (such a row is marked
        failed), so a done row that reads non-finite is always missing or damaged data.
        """
        return self.read_row(bucket, row, tuple(names or self.meta.latent_names), ())[0]

    def read_row(self, bucket: str, row: int, latents: Sequence[str], fields: Sequence[str]
                 ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Latent arrays and index entries of one row, read concurrently: one round trip through zarr's event
        loop instead of one per array (a random read of latents + 4 index fields: ~6x fewer waits; on object
        storage the GETs overlap). Unreadable or missing latents raise :class:`UnreadableSampleError`
        (:meth:`read_latents`)."""
        self.info(bucket).shard_of(row)  # validates the row
        present = [f for f in fields if not (f in OPTIONAL_INDEX_ARRAYS and not self._has_array(bucket, f))]
        arrays = [self.array(bucket, name) for name in (*latents, *present)]
        try:
            values = _gather_rows(arrays, row)
        except (IndexError, StoreError):
            raise
        except Exception as exc:  # a checksum mismatch, a truncated shard, an object-store read error
            raise self._unreadable_array(bucket, row, (*latents, *present), exc) from exc
        out_latents = {}
        for name, value in zip(latents, values[: len(latents)], strict=True):
            value = np.asarray(value)
            if not np.isfinite(value).all():
                raise self._unreadable(bucket, row, f"{name} is missing (it reads as the fill value)")
            out_latents[name] = value
        got = dict(zip(present, values[len(latents):], strict=True))
        info = {f: _INDEX_FIELDS[f](got[f]) if f in got else _INDEX_FIELDS[f]("") for f in fields}
        return out_latents, info

    def _unreadable_array(self, bucket: str, row: int, names: Sequence[str], exc: Exception) -> UnreadableSampleError:
        """The error for a concurrent read that failed: the arrays are read one by one (rare path) to name the
        damaged one."""
        for name in names:
            try:
                np.asarray(self.array(bucket, name)[row])
            except Exception as one:
                return self._unreadable(bucket, row, f"{name} is unreadable ({one_line(one, limit=200)})")
        return self._unreadable(bucket, row, f"the row is unreadable ({one_line(exc, limit=200)})")

    def _unreadable(self, bucket: str, row: int, what: str) -> UnreadableSampleError:
        """The error for a row that cannot be read, naming it, its status and the fix."""
        info = self.info(bucket)
        state = Status(int(self.array(bucket, "status")[row])).name.lower() if 0 <= row < info.num_samples else "?"
        try:  # the index fields only (no latents): they live in other arrays than the damaged ones
            names = self.read_sample_info(bucket, row, ("key", "source"))
            key, source = names["key"], names["source"]
        except Exception:  # the index is damaged too: the row number alone still names it
            key = source = "?"
        if state != "done":
            fix = "only done rows hold latents; finish the encode (rerun the same command)"
        else:
            fix = (f"the store is damaged: `wfvae verify {self.path}` lists every such row, and rerunning the same "
                   "wfvae encode command re-encodes them")
        return UnreadableSampleError(
            f"{self.path}: bucket {bucket} row {row} (key {key!r}, source {source!r}, status {state}): {what}; {fix}"
        )

    def read_sample_info(
        self, bucket: str, row: int, fields: Sequence[str] = tuple(_INDEX_FIELDS)
    ) -> dict[str, Any]:
        """Index entries of one row as Python scalars (``frame_indices``: an int64 array)."""
        return self.read_row(bucket, row, (), fields)[1]

    def _has_array(self, bucket: str, name: str) -> bool:
        if (bucket, name) not in self._arrays:
            try:
                self.array(bucket, name)
            except KeyError:
                return False
        return True

    def read_sample(self, bucket: str, row: int) -> dict[str, Any]:
        """One row: its latents plus ``bucket``, ``row`` and every index entry (see :meth:`read_sample_info`)."""
        latents, info = self.read_row(bucket, row, self.meta.latent_names, tuple(_INDEX_FIELDS))
        sample: dict[str, Any] = dict(latents)
        sample.update(bucket=bucket, row=row, **info)
        return sample

    def index_columns(self, bucket: str) -> IndexColumns:
        """The planned rows of ``bucket`` as numpy columns (one read per index array; see store/index.py)."""
        n = self.info(bucket).num_samples
        return read_columns(lambda name: self.array(bucket, name) if self._has_array(bucket, name) else None, n)

    def records(self, bucket: str) -> list[SampleRecord]:
        """The planned rows of ``bucket`` as :class:`SampleRecord` (tooling; pipelines use :meth:`index_columns`)."""
        return self.index_columns(bucket).records()

    def check_plan(self, plan: Sequence[BucketPlan]) -> None:
        """Refuse to resume with a plan whose buckets or rows differ from the stored ones.

        Rows are addressed by position, so a re-discovered dataset in another order (or with new files)
        would otherwise write latents next to the wrong source.
        """
        planned = [p.bucket_id for p in plan]
        if planned != list(self.buckets):
            raise StoreError(
                f"{self.path} holds buckets {list(self.buckets)} but the new plan has {planned}; "
                "rerun with --overwrite to re-plan"
            )
        for p in plan:
            info = self.buckets[p.bucket_id]
            if tuple(p.latent_shape) != info.latent_shape or len(p.samples) != info.num_samples:
                raise StoreError(
                    f"{self.path} bucket {p.bucket_id} is {info.num_samples} x {info.latent_shape} but the new plan "
                    f"has {len(p.samples)} x {p.latent_shape}; rerun with --overwrite to re-plan"
                )
            stored = self.index_columns(p.bucket_id)
            row = stored.first_difference(IndexColumns.from_records(p.samples))  # vectorised, column by column
            if row is not None:
                old, new = stored.record(row), p.samples[row]
                raise StoreError(
                    f"{self.path} bucket {p.bucket_id} row {row} is {old.source!r} "
                    f"[{old.clip_start}:{old.clip_end}] but the new plan has {new.source!r} "
                    f"[{new.clip_start}:{new.clip_end}]; rerun with --overwrite to re-plan"
                )


def _open_root(location: StoreLocation, mode: Literal["r", "r+", "w-"], **kwargs: Any) -> zarr.Group:
    """The root group (zarr v3 only: no probing for v2 metadata objects, which would cost requests)."""
    try:
        return zarr.open_group(store=location.zarr_store(read_only=mode == "r"), mode=mode, zarr_format=3, **kwargs)
    except (StoreError, FileNotFoundError, KeyError, ValueError):
        raise
    except OSError as exc:
        if location.is_local:
            raise
        raise location.describe_error(exc) from exc


def _gather_rows(arrays: Sequence[zarr.Array], row: int) -> list[Any]:
    """``array[row]`` of several arrays, concurrently on zarr's event loop (see :meth:`LatentStore.read_row`)."""
    import asyncio

    from zarr.core.sync import sync

    async def get_all() -> list[Any]:
        return await asyncio.gather(*(a._async_array.getitem(row) for a in arrays))

    return list(sync(get_all()))


def _put_all(store: Any, objects: Mapping[str, bytes], concurrency: int = 32) -> None:
    """Write whole objects to a zarr store, ``concurrency`` at a time (each one atomic: a file replace or a PUT)."""
    import asyncio

    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    async def put_all() -> None:
        gate = asyncio.Semaphore(concurrency)
        proto = default_buffer_prototype()

        async def put(key: str, data: bytes) -> None:
            async with gate:
                await store.set(key, proto.buffer.from_bytes(data))

        await asyncio.gather(*(put(k, v) for k, v in objects.items()))

    sync(put_all())


def _get_all(store: Any, keys: Sequence[str]) -> dict[str, bytes]:
    """Read whole objects of a zarr store concurrently (a missing key raises ``KeyError``)."""
    import asyncio

    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    async def get_all() -> list[Any]:
        proto = default_buffer_prototype()
        return await asyncio.gather(*(store.get(k, proto) for k in keys))

    out = {}
    for key, buf in zip(keys, sync(get_all()), strict=True):
        if buf is None:
            raise KeyError(key)
        out[key] = bytes(buf.to_bytes())
    return out


def _compression_of(store: LatentStore, bucket: str) -> Compression:
    """The latent codec of an existing bucket (new buckets of :meth:`LatentStore.extend` use the same)."""
    codecs = store.array(bucket, store.meta.latent_names[0]).metadata.to_dict()["codecs"]
    inner = next((c for c in codecs if c.get("name") == "sharding_indexed"), {}).get("configuration", {}).get(
        "codecs", codecs)
    for codec in inner:
        conf = codec.get("configuration", {})
        if codec.get("name") == "zstd":
            return Compression("zstd", int(conf.get("level", 3)))
        if codec.get("name") == "blosc":
            return Compression("blosc-zstd", int(conf.get("clevel", 3)))
    return Compression()


def _consolidate(location: StoreLocation) -> zarr.Group:
    """Write the consolidated metadata into the root document; returns the root opened through it."""
    with warnings.catch_warnings():  # "consolidated metadata is not part of the v3 spec": known, and wanted
        warnings.simplefilter("ignore")
        return zarr.consolidate_metadata(location.zarr_store(read_only=False), zarr_format=3)


def _root_attrs(location: StoreLocation) -> dict[str, Any] | None:
    """The root attributes, or ``None`` when there is no readable zarr v3 root."""
    if not location.has_root():
        return None
    try:
        return _open_root(location, "r").attrs.asdict()
    except Exception:
        return None


def _is_store_or_empty(location: StoreLocation) -> bool:
    if location.is_empty():
        return True
    attrs = _root_attrs(location)
    return attrs is not None and attrs.get("format") == "wfvae-latents"


def create_store(
    path: str | os.PathLike[str] | StoreLocation,
    meta: StoreMeta,
    plan: Sequence[BucketPlan],
    *,
    compression: Compression | None = None,
    overwrite: bool = False,
    rejected: Sequence[tuple[str, str]] = (),
    storage_options: dict[str, Any] | None = None,
    probes: ProbeTable | None = None,
) -> LatentStore:
    """Create the whole layout once: root attributes, every bucket's arrays, every index row (pending).

    Run this in the coordinator before any writer starts; afterwards only shard owners write. ``path`` is a
    local folder or a URL (``storage_options``: fsspec options for it, as for the inputs).

    Raises:
        StoreError: the path exists (without ``overwrite``), or exists and is not a wfvae store (never
            deleted, even with ``overwrite``), or the plan is invalid.
    """
    location = as_location(path, storage_options)
    path = location.path or str(location)  # type: ignore[assignment]
    compression = compression or Compression()
    ids = [p.bucket_id for p in plan]
    if not plan:
        raise StoreError(f"cannot create {path}: the plan has no buckets (no clips were found)")
    if len(set(ids)) != len(ids):
        raise StoreError(f"cannot create {path}: bucket ids repeat in the plan: {ids}")
    channels = {p.latent_shape[0] for p in plan}
    if len(channels) != 1:
        raise StoreError(f"cannot create {path}: buckets disagree on latent channels {sorted(channels)}")
    (c,) = channels
    for name, values in (("scale", meta.scale), ("shift", meta.shift)):
        if len(values) not in (1, c):  # checked now, not when training reads the store
            raise StoreError(
                f"cannot create {path}: {name} has {len(values)} values for {c} latent channels; "
                "record one value per channel or a single value"
            )
    if location.exists():
        # An empty directory or a store whose creation was interrupted is replaced without --overwrite: the
        # caller holds the writer lease, so nobody else is creating it, and nothing in it was ever marked done.
        if not (location.is_dir_or_prefix() and (location.is_empty() or is_half_created(location))):
            if not overwrite:
                raise StoreError(f"{path} already exists; resume it, choose another path, or pass --overwrite")
            if not location.is_dir_or_prefix() or not _is_store_or_empty(location):
                raise StoreError(f"{path} exists and is not a wfvae latent store; refusing to delete it")
            # Mark it half-created first: a delete interrupted half-way (object stores delete key by key) leaves
            # a store the next encode replaces, never a damaged store that looks complete or orphan objects.
            _open_root(location, "r+").attrs.update({CREATING_ATTR: True})
        location.delete()
    # The layout is built in memory first (every group, array and index chunk, then the consolidated metadata)
    # and copied to the location in one concurrent batch of whole-object writes: on object storage that is one
    # PUT per object and no existence checks or re-reads (zarr's node-by-node creation costs ~10 requests per
    # array; docs/store-format.md, "Object storage").
    # Creation is resumable: the root is written first with CREATING_ATTR set, and the final root (consolidated,
    # without that attribute; one atomic write of zarr.json) only after every other object exists. A kill or
    # ENOSPC in between leaves a store that open_store refuses and the same encode command re-creates.
    staging = zarr.storage.MemoryStore()
    root = zarr.open_group(store=staging, mode="w-", zarr_format=3,
                           attributes={**meta.to_attrs(), "buckets": ids, CREATING_ATTR: True})
    buckets_group = root.create_group(BUCKETS_GROUP)
    for bucket_plan in plan:
        create_bucket(
            buckets_group,
            bucket_plan,
            latent_names=meta.latent_names,
            dtype=meta.dtype,
            compression=compression,
        )
        write_index(buckets_group[bucket_plan.bucket_id], bucket_plan)
    write_rejected(root, rejected)
    write_table(root, PROBES_GROUP, (probes or ProbeTable.empty()).columns(), PROBE_COLUMNS)
    creating_root = bytes(staging._store_dict[ROOT_KEY].to_bytes())
    with warnings.catch_warnings():  # "consolidated metadata is not part of the v3 spec": known, and wanted
        warnings.simplefilter("ignore")
        staged = zarr.consolidate_metadata(staging, zarr_format=3)
    del staged.attrs[CREATING_ATTR]
    target = location.zarr_store(read_only=False)
    _put_all(target, {ROOT_KEY: creating_root})
    _put_all(target, {k: bytes(v.to_bytes()) for k, v in staging._store_dict.items() if k != ROOT_KEY})
    _put_all(target, {ROOT_KEY: bytes(staging._store_dict[ROOT_KEY].to_bytes())})  # the commit record
    root = _open_root(location, "r+")
    return LatentStore(location, root, "r+")


#: root attribute present while a store is being created (see create_store)
CREATING_ATTR = "creating"


def is_half_created(path: str | os.PathLike[str] | StoreLocation, storage_options: dict[str, Any] | None = None
                    ) -> bool:
    """True for a wfvae store whose creation was interrupted (kill -9, ENOSPC): rerun the encode to complete it."""
    attrs = _root_attrs(as_location(path, storage_options))
    return attrs is not None and attrs.get("format") == "wfvae-latents" and bool(attrs.get(CREATING_ATTR))


def open_store(
    path: str | os.PathLike[str] | StoreLocation, mode: Mode = "r", *, storage_options: dict[str, Any] | None = None
) -> LatentStore:
    """Open an existing store for reading (``"r"``) or resuming (``"r+"``): a local folder or a URL.

    ``storage_options``: fsspec options for a URL (credentials and endpoints otherwise come from the cloud's
    standard environment). On object storage this costs one GET (the root document with consolidated metadata).
    """
    location = as_location(path, storage_options)
    if mode not in ("r", "r+"):
        raise StoreError(f"mode must be 'r' or 'r+', got {mode!r}")
    if location.is_local and not location.has_root():  # (a LocalStore opened "r+" would create the folder)
        raise StoreError(f"{location} is not a zarr v3 store (no zarr.json); check the path")
    try:
        root = _open_root(location, mode)
    except (FileNotFoundError, KeyError) as exc:
        raise StoreError(f"{location} is not a zarr v3 store (no zarr.json); check the path") from exc
    except (ValueError, TypeError) as exc:  # zarr's "not a group" (a v2 store, an array) and friends
        if not location.has_root():
            raise StoreError(f"{location} is not a zarr v3 store (no zarr.json); check the path") from None
        raise StoreError(f"{location} is not a wfvae latent store ({exc})") from None
    if root.attrs.get(CREATING_ATTR):
        raise StoreError(
            f"{location}: the store's creation was interrupted (killed or out of space) before it was complete; "
            "rerun the same wfvae encode command to create it again (no sample was written yet)"
        )
    return LatentStore(location, root, mode)
