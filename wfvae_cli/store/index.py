"""A bucket's index as numpy columns: the coordinator's compact, vectorised view of its rows.

At 10^6 samples a :class:`~wfvae_cli.store.plan.SampleRecord` per row costs ~1.5 KB of Python objects (a tuple
of frame ints, several strings, a frozen dataclass) and a Python loop per comparison; the same rows as columns
cost ~150-300 bytes each (``frame_indices`` is the bulk) and compare in a few vectorised passes. Everything
that reads or compares the whole index (resume, :meth:`LatentStore.check_plan`, ``records``, the task list of
a run) goes through :class:`IndexColumns`; records are only built for the rows being worked on.

The columns are read through zarr (never the file system directly), so this works on object storage too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import zarr

from wfvae_cli.store.errors import StoreError
from wfvae_cli.store.layout import OPTIONAL_INDEX_ARRAYS, to_str_list
from wfvae_cli.store.plan import SampleRecord

_STR = np.dtypes.StringDType()

#: the immutable per-row index arrays, in :class:`SampleRecord` field order
INDEX_COLUMNS: tuple[str, ...] = (
    "source", "clip_start", "clip_end", "frame_indices", "fps", "width", "height", "caption", "key", "extra",
)
_STRING_COLUMNS = frozenset({"source", "caption", "key", "extra"})


def _frames_dtype(values: np.ndarray) -> np.dtype:
    """int32 when every index fits (always, in practice): halves the largest column of the index."""
    if values.size == 0 or (values.min() >= np.iinfo(np.int32).min and values.max() <= np.iinfo(np.int32).max):
        return np.dtype(np.int32)
    return np.dtype(np.int64)


@dataclass(frozen=True, eq=False)
class IndexColumns:
    """The planned rows of one bucket (or a subset of them) as numpy arrays, row ``i`` = sample ``i``.

    Strings are numpy ``StringDType`` arrays, ``frame_indices`` is ``(N, F)`` (int32 when it fits).
    """

    source: np.ndarray
    clip_start: np.ndarray
    clip_end: np.ndarray
    frame_indices: np.ndarray
    fps: np.ndarray
    width: np.ndarray
    height: np.ndarray
    caption: np.ndarray
    key: np.ndarray
    extra: np.ndarray

    def __len__(self) -> int:
        return int(self.source.shape[0])

    @property
    def nbytes(self) -> int:
        """Memory held by the columns (string heaps approximated by their characters)."""
        total = 0
        for f in fields(self):
            col = getattr(self, f.name)
            total += int(col.nbytes) + (int(np.strings.str_len(col).sum()) if f.name in _STRING_COLUMNS else 0)
        return total

    def __getitem__(self, i: int) -> SampleRecord:
        """Row ``i`` as a record: columns stand in for a sequence of records (a :class:`BucketPlan`'s samples)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} out of range for {len(self)} rows")
        return self.record(i % len(self))

    def __iter__(self) -> Iterator[SampleRecord]:
        return (self.record(i) for i in range(len(self)))

    @classmethod
    def from_lists(cls, source: list[str], clip_start: list[int], clip_end: list[int], frame_indices: list[Any],
                   fps: list[float], width: list[int], height: list[int], caption: list[str], key: list[str],
                   extra: list[str]) -> IndexColumns:
        """Columns from per-field lists (planning builds these instead of a record per clip), checked as
        :class:`SampleRecord` checks one record, but vectorised."""
        frames = np.array(frame_indices, dtype=np.int64).reshape(len(source), -1)
        cols = cls(
            source=np.array(source, dtype=_STR), clip_start=np.array(clip_start, dtype=np.int64),
            clip_end=np.array(clip_end, dtype=np.int64), frame_indices=frames.astype(_frames_dtype(frames)),
            fps=np.array(fps, dtype=np.float64), width=np.array(width, dtype=np.int32),
            height=np.array(height, dtype=np.int32), caption=np.array(caption, dtype=_STR),
            key=np.array(key, dtype=_STR), extra=np.array(extra, dtype=_STR),
        )
        cols.check()
        return cols

    def check(self) -> None:
        """Raise :class:`StoreError` naming the first row a :class:`SampleRecord` would refuse."""
        if not len(self):
            return
        f = self.frame_indices
        bad = ((self.clip_start < 0) | (self.clip_start >= self.clip_end) | ~np.isfinite(self.fps) | (self.fps <= 0)
               | (self.width <= 0) | (self.height <= 0))
        if f.ndim != 2 or f.shape[1] == 0:
            bad[:] = True
        else:
            bad |= (f.min(axis=1) < self.clip_start) | (f.max(axis=1) >= self.clip_end)
        rows = np.flatnonzero(bad)
        if rows.size:
            self.record(int(rows[0]))  # raises the record's own message
            raise StoreError(f"row {int(rows[0])} of the plan is invalid")

    @classmethod
    def from_records(cls, records: Sequence[SampleRecord]) -> IndexColumns:
        """Columns of planned records (one pass over them; columns are returned as they are)."""
        if isinstance(records, IndexColumns):
            return records
        frames = np.array([r.frame_indices for r in records], dtype=np.int64).reshape(len(records), -1)
        return cls(
            source=np.array([r.source for r in records], dtype=_STR),
            clip_start=np.array([r.clip_start for r in records], dtype=np.int64),
            clip_end=np.array([r.clip_end for r in records], dtype=np.int64),
            frame_indices=frames.astype(_frames_dtype(frames)),
            fps=np.array([r.fps for r in records], dtype=np.float64),
            width=np.array([r.width for r in records], dtype=np.int32),
            height=np.array([r.height for r in records], dtype=np.int32),
            caption=np.array([r.caption for r in records], dtype=_STR),
            key=np.array([r.key for r in records], dtype=_STR),
            extra=np.array([r.extra for r in records], dtype=_STR),
        )

    def take(self, rows: np.ndarray | slice) -> IndexColumns:
        """The columns of ``rows`` only (e.g. the rows still to encode)."""
        return IndexColumns(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def record(self, i: int) -> SampleRecord:
        """Row ``i`` as a :class:`SampleRecord` (built on demand, for the row being worked on)."""
        return SampleRecord(
            source=str(self.source[i]),
            clip_start=int(self.clip_start[i]),
            clip_end=int(self.clip_end[i]),
            frame_indices=tuple(self.frame_indices[i].tolist()),
            fps=float(self.fps[i]),
            width=int(self.width[i]),
            height=int(self.height[i]),
            caption=str(self.caption[i]),
            key=str(self.key[i]),
            extra=str(self.extra[i]),
        )

    def records(self) -> list[SampleRecord]:
        """Every row as a record (tooling and tests; the pipeline never holds these for a whole bucket)."""
        lists = {name: getattr(self, name).tolist() for name in INDEX_COLUMNS}
        return [
            SampleRecord(
                source=lists["source"][i], clip_start=lists["clip_start"][i], clip_end=lists["clip_end"][i],
                frame_indices=tuple(lists["frame_indices"][i]), fps=lists["fps"][i], width=lists["width"][i],
                height=lists["height"][i], caption=lists["caption"][i], key=lists["key"][i],
                extra=lists["extra"][i],
            )
            for i in range(len(self))
        ]

    def differs(self, other: IndexColumns) -> np.ndarray:
        """Boolean mask of rows that differ from ``other``'s (same length required), field by field, exactly
        as ``SampleRecord.__eq__`` would decide."""
        n = len(self)
        if len(other) != n:
            raise ValueError(f"cannot compare {n} rows with {len(other)}")
        mask = np.zeros(n, dtype=bool)
        for name in INDEX_COLUMNS:
            a, b = getattr(self, name), getattr(other, name)
            if name == "frame_indices":
                if a.shape != b.shape:
                    return np.ones(n, dtype=bool)
                mask |= (a != b).any(axis=1) if a.ndim == 2 and a.shape[1] else False
            else:
                mask |= a != b
        return mask

    def first_difference(self, other: IndexColumns) -> int | None:
        """The first row that differs from ``other``'s, or None."""
        rows = np.flatnonzero(self.differs(other))
        return int(rows[0]) if rows.size else None


def read_columns(array: Callable[[str], zarr.Array | None], n: int) -> IndexColumns:
    """Read a bucket's index columns; ``array(name)`` returns the zarr array or None when it is absent
    (``key``/``extra`` of stores written before they existed read as empty strings)."""
    out: dict[str, np.ndarray] = {}
    for name in INDEX_COLUMNS:
        arr = array(name)
        if arr is None:
            if name not in OPTIONAL_INDEX_ARRAYS:
                raise KeyError(name)
            out[name] = np.full(n, "", dtype=_STR)
            continue
        values = np.asarray(arr[:])
        if name in _STRING_COLUMNS:
            out[name] = values.astype(_STR, copy=False) if values.dtype != _STR else values
        elif name == "frame_indices":
            out[name] = values.astype(_frames_dtype(values), copy=False)
        else:
            out[name] = values
    return IndexColumns(**out)


def unique_strings(columns: Sequence[np.ndarray]) -> set[str]:
    """The distinct strings of several string columns, as a set (membership tests at Python speed are
    ~5x faster than numpy's sorting-based ``unique``/``isin`` on ``StringDType``; measured)."""
    out: set[str] = set()
    for col in columns:
        out.update(to_str_list(col) if col.dtype != _STR else col.tolist())
    return out
