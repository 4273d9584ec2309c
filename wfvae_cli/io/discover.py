"""Turn the user's INPUT arguments into a deterministic list of videos: :func:`discover_videos`.

An input is, in this order of precedence:

* an existing **manifest** file, recognised by its extension: ``.txt`` (one path per line, ``#`` starts a
  comment line, blank lines ignored), ``.csv`` (header row with a ``path`` column) or ``.jsonl`` (one JSON
  object per line with a ``path`` key). Optional ``caption`` (text), ``start`` and ``end`` (seconds, float)
  columns are kept; any other column lands in ``extra``. Relative paths are relative to the manifest's folder;
* an existing **directory**: searched recursively for :data:`VIDEO_EXTENSIONS` (case-insensitive), skipping
  hidden files and folders (``.git``, macOS ``._name.mp4`` resource forks, which are not videos);
* an existing **file** of any other kind: taken as a video as is (it was named explicitly);
* otherwise, a **glob** pattern (``*``, ``?``, ``[``, and ``**`` for any depth): matching directories are
  searched as above and matching files kept if they have a video extension; manifests are never globbed.

A top-level input that does not exist, or yields no video at all, is a :class:`WfvaeError` (a typo should not
start a job on nothing). Problems with single entries are not: an entry whose file is missing, or whose row is
malformed, comes back in :attr:`Discovery.skipped` with the reason, so the job can record it as a failed sample.

Duplicates are entries with the same file (after resolving symlinks) **and** the same ``start``/``end``: the
first occurrence is kept and the others are skipped as ``duplicate of …``. The same file listed with different
segments is not a duplicate (several captioned clips of one long video is the common manifest layout).
Sources are returned sorted by path, then start, then end, so the order never depends on the file system.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from wfvae_cli.errors import WfvaeError

__all__ = [
    "MANIFEST_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "Discovery",
    "Skipped",
    "VideoSource",
    "discover_videos",
]

VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".mkv",
        ".webm",
        ".avi",
        ".mpg",
        ".mpeg",
        ".ts",
        ".flv",
        ".wmv",
        ".3gp",
        ".ogv",
        ".gif",
    }
)
"""Extensions picked up when searching folders and globs. ``.gif`` is included because animated GIFs are a
common clip format and both backends decode them; ``.ts`` is MPEG transport stream, not TypeScript, in a
video folder."""

MANIFEST_EXTENSIONS: frozenset[str] = frozenset({".txt", ".csv", ".jsonl"})
_KNOWN_COLUMNS = ("path", "caption", "start", "end")


@dataclass(frozen=True)
class VideoSource:
    """One video (or one ``[start, end)`` segment of it, in seconds) to encode.

    ``path`` is absolute and normalised (symlinks are kept as given, so names in reports are the user's).
    ``extra`` holds the manifest's other columns verbatim (CSV values are strings, JSONL values keep their
    JSON type); it is a dict, so a VideoSource is not hashable.
    """

    path: str
    caption: str | None = None
    start: float | None = None
    end: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Skipped(NamedTuple):
    """An entry that will not be encoded, and why (``path`` is the entry as written when it has no file)."""

    path: str
    reason: str


@dataclass
class Discovery:
    """Result of :func:`discover_videos`: what to encode and what was left out."""

    sources: list[VideoSource]
    skipped: list[Skipped]


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _normalise(path: str | Path, base: Path | None = None) -> str:
    p = Path(os.path.expanduser(str(path)))
    if base is not None and not p.is_absolute():
        p = base / p
    return os.path.normpath(os.path.abspath(p))


def _walk(folder: Path) -> Iterator[str]:
    """Video files under ``folder``, recursively, without hidden entries; symlinked folders are not followed
    (a link back to a parent would loop forever)."""
    for root, dirs, files in os.walk(folder, onerror=None, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS:
                yield os.path.join(root, name)


class _Row(NamedTuple):
    origin: str  # "manifest.csv:12", for reasons
    fields: Mapping[str, Any]
    error: str | None = None  # why the line could not be read as a row


def _text_rows(path: Path) -> Iterator[_Row]:
    with path.open(encoding="utf-8-sig") as f:
        for n, line in enumerate(f, start=1):
            entry = line.strip()
            if entry and not entry.startswith("#"):
                yield _Row(f"{path}:{n}", {"path": entry})


def _csv_rows(path: Path) -> Iterator[_Row]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "path" not in columns:
            raise WfvaeError(
                f"{path}: has no 'path' column (found: {', '.join(columns) or 'nothing'}); "
                "add a header row with a 'path' column"
            )
        reader.fieldnames = columns
        for row in reader:
            # line_num is the physical line of the row's end, which is what an editor shows for the row
            yield _Row(f"{path}:{reader.line_num}", {k: v for k, v in row.items() if k is not None})


def _jsonl_rows(path: Path) -> Iterator[_Row]:
    with path.open(encoding="utf-8-sig") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            origin = f"{path}:{n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                yield _Row(origin, {}, f"invalid JSON ({err.msg} at column {err.colno})")
                continue
            if isinstance(obj, dict):
                yield _Row(origin, obj)
            else:
                yield _Row(origin, {}, "line is not a JSON object")


_READERS = {".txt": _text_rows, ".csv": _csv_rows, ".jsonl": _jsonl_rows}


def _seconds(value: Any, name: str) -> float | None:
    """Parse an optional seconds column; empty means absent. Raises ValueError with a reason."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name} {value!r} is not a number of seconds")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} {value!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name} {value!r} must be a finite number >= 0")
    return seconds


class _Collector:
    """Accumulates sources in input order, dropping duplicates, then sorts."""

    def __init__(self) -> None:
        self.sources: list[VideoSource] = []
        self.skipped: list[Skipped] = []
        self._seen: dict[tuple[str, float | None, float | None], str] = {}

    def add(self, source: VideoSource, origin: str) -> bool:
        key = (os.path.realpath(source.path), source.start, source.end)
        first = self._seen.get(key)
        if first is not None:
            self.skipped.append(Skipped(source.path, f"duplicate of {first} (listed again at {origin})"))
            return False
        self._seen[key] = f"{source.path}{_segment(source)}"
        self.sources.append(source)
        return True

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append(Skipped(path, reason))

    def result(self) -> Discovery:
        def order(s: VideoSource) -> tuple[str, float, float]:
            return s.path, -1.0 if s.start is None else s.start, math.inf if s.end is None else s.end

        return Discovery(sorted(self.sources, key=order), self.skipped)


def _segment(source: VideoSource) -> str:
    """`` [2s, 4s)`` for a segment, empty for a whole video (used in duplicate reasons)."""
    if source.start is None and source.end is None:
        return ""
    start = f"{source.start or 0:g}s"
    end = "end" if source.end is None else f"{source.end:g}s"
    return f" [{start}, {end})"


def _add_manifest(manifest: Path, out: _Collector) -> int:
    """Add a manifest's entries; returns how many rows it listed (valid or not)."""
    base = manifest.parent
    rows = 0
    try:
        for origin, row, error in _READERS[manifest.suffix.lower()](manifest):
            rows += 1
            if error is not None:
                out.skip(origin, f"{origin}: {error}")
                continue
            raw = row.get("path")
            if not isinstance(raw, str) or not raw.strip():
                out.skip(origin, f"{origin}: no path given")
                continue
            path = _normalise(raw.strip(), base)
            try:
                start, end = _seconds(row.get("start"), "start"), _seconds(row.get("end"), "end")
            except ValueError as err:
                out.skip(path, f"{origin}: {err}")
                continue
            if start is not None and end is not None and end <= start:
                out.skip(path, f"{origin}: end {end:g} s is not after start {start:g} s")
                continue
            if not os.path.isfile(path):
                what = "is a directory" if os.path.isdir(path) else "file not found"
                out.skip(path, f"{what} (listed at {origin})")
                continue
            caption = row.get("caption")
            extra = {k: v for k, v in row.items() if k not in _KNOWN_COLUMNS}
            source = VideoSource(path, None if caption in (None, "") else str(caption), start, end, extra)
            out.add(source, origin)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise WfvaeError(
            f"{manifest}: cannot be read as a {manifest.suffix} manifest ({err}); fix or re-save it as UTF-8"
        ) from None
    return rows


def _expand(item: str | Path) -> list[str]:
    """Video files of a folder or glob input; a WfvaeError if it does not exist or holds no video."""
    text = os.path.expanduser(str(item))
    if os.path.isdir(text):
        files = list(_walk(Path(text)))
        if not files:
            raise WfvaeError(
                f"folder {item} contains no video files ({', '.join(sorted(VIDEO_EXTENSIONS))}); check the input"
            )
        return files
    if not _is_glob(text):
        raise WfvaeError(
            f"input {item} does not exist; check the path (quote glob patterns so the shell keeps them)"
        )
    matches = sorted(glob.glob(text, recursive=True))
    files = [m for m in matches if os.path.isfile(m) and os.path.splitext(m)[1].lower() in VIDEO_EXTENSIONS]
    for folder in (m for m in matches if os.path.isdir(m)):
        files.extend(_walk(Path(folder)))
    if not files:
        raise WfvaeError(f"pattern {item!r} matches no video files; check the input")
    return files


def discover_videos(inputs: Sequence[str | Path]) -> Discovery:
    """Expand folders, globs, files and manifests into sorted, de-duplicated :class:`VideoSource` s.

    Rules in the module docstring. Raises :class:`WfvaeError` for an input that does not exist or yields
    nothing, and for a manifest that cannot be parsed at all (no ``path`` column, unreadable, not UTF-8).
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    if not inputs:
        raise WfvaeError(
            "no input given: pass video files, folders, glob patterns or manifests (.txt/.csv/.jsonl)"
        )
    out = _Collector()
    for item in inputs:
        path = Path(os.path.expanduser(str(item)))
        if path.is_file() and path.suffix.lower() in MANIFEST_EXTENSIONS:
            if _add_manifest(path, out) == 0:
                raise WfvaeError(
                    f"{item}: the manifest lists no videos; add one path per line (or a 'path' column)"
                )
        else:
            files = [str(path)] if path.is_file() else _expand(item)
            for file in files:
                out.add(VideoSource(_normalise(file)), str(item))
    return out.result()
