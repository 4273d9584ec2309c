"""Turn the user's INPUT arguments into a deterministic list of videos: :func:`discover_videos`.

Every input may be a local path or a URL of any fsspec scheme (``s3://``, ``gs://``, ``az://``, ``https://``,
``file://``); brace ranges as webdataset writes them (``shards/data-{000000..000099}.tar``, ``{a,b}``) are
expanded first. An input is, in this order of precedence:

* a **manifest** file, recognised by its extension: ``.txt`` (one path per line, ``#`` starts a comment
  line, blank lines ignored), ``.csv`` (header row with a path column), ``.jsonl`` (one JSON object per
  line) or ``.parquet``. Columns are mapped by :class:`Columns` (``--path-col``, ``--caption-col``,
  ``--key-col``; defaults ``path``, ``caption``, ``key``; ``start``/``end`` in seconds). Every other column
  lands in ``extra`` (CSV values are strings, JSONL and parquet values keep their types). Relative paths are
  relative to the manifest's own folder, local or remote;
* a **webdataset shard** (``.tar``, uncompressed): indexed by :mod:`wfvae_cli.io.webdataset` into one source
  per sample (the video member, read later by byte range), caption from ``.txt``/``.caption``/the
  ``.json``'s ``caption``, every ``.json`` field in ``extra``;
* a **directory** (or an object-store prefix): searched recursively for :data:`VIDEO_EXTENSIONS`
  (case-insensitive) and ``.tar`` shards, skipping hidden files and folders (``.git``, macOS ``._name.mp4``
  resource forks, which are not videos);
* an existing **file** of any other kind: taken as a video as is (it was named explicitly);
* otherwise, a **glob** pattern (``*``, ``?``, ``[``, and ``**`` for any depth): matching directories are
  searched as above and matching files kept if they have a video extension (or are shards); manifests are
  never globbed.

A top-level input that does not exist, or yields no video at all, is a :class:`WfvaeError` (a typo should not
start a job on nothing); a malformed URL, a missing bucket, refused credentials or an unreachable endpoint
are a :class:`~wfvae_cli.storage.StorageError` (one line naming the URL and the fix). Problems with single
entries are not: an entry whose file is missing, or whose row is malformed, comes back in
:attr:`Discovery.skipped` with the reason, so the job can record it as a failed sample.

Keys: every source gets a stable string ``key`` to join latents with other tables: the manifest's key
column, the webdataset ``__key__``, else the path relative to its input root (the folder, the glob's fixed
prefix, the manifest's folder; a single file's name), with ``#t=START,END`` appended for a segment. Keys
depend only on the inputs, never on the run, so a resumed job sees the same keys. Two different sources
with the same key are a :class:`WfvaeError` naming both (a join on the key would be ambiguous).

Duplicates are entries with the same file (after resolving symlinks) **and** the same ``start``/``end``: the
first occurrence is kept and the others are skipped as ``duplicate of …``. The same file listed with different
segments is not a duplicate (several captioned clips of one long video is the common manifest layout).
Sources are returned sorted by path, then start, then end, so the order never depends on the file system.
"""

from __future__ import annotations

import csv
import functools
import glob
import io
import json
import math
import os
import posixpath
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from wfvae_cli.errors import WfvaeError
from wfvae_cli.storage import describe_error, filesystem, is_url, parse_url

__all__ = [
    "MANIFEST_EXTENSIONS",
    "SHARD_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "Columns",
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

MANIFEST_EXTENSIONS: frozenset[str] = frozenset({".txt", ".csv", ".jsonl", ".parquet"})
SHARD_EXTENSIONS: frozenset[str] = frozenset({".tar"})


@dataclass(frozen=True)
class Columns:
    """Which manifest columns hold what (``--path-col``, ``--caption-col``, ``--key-col``)."""

    path: str = "path"
    caption: str = "caption"
    key: str = "key"
    start: str = "start"
    end: str = "end"

    def known(self) -> frozenset[str]:
        """The mapped columns; every other column is ``extra`` metadata."""
        return frozenset((self.path, self.caption, self.key, self.start, self.end))


@dataclass(frozen=True)
class VideoSource:
    """One video (or one ``[start, end)`` segment of it, in seconds) to encode.

    ``path`` is the source string the decoders open (:mod:`wfvae_cli.io.remote`): an absolute, normalised
    local path (symlinks kept as given, so names in reports are the user's), a URL, or a tar member of a
    webdataset shard. ``extra`` holds the manifest's other columns (CSV values are strings, JSONL and parquet
    values keep their type) or the webdataset ``.json`` fields; it is a dict, so a VideoSource is not
    hashable. ``key`` is the stable sample key (module docstring).
    """

    path: str
    caption: str | None = None
    start: float | None = None
    end: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    key: str = ""


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


def _ext(name: str) -> str:
    return posixpath.splitext(name)[1].lower()


def _normalise(path: str | Path, base: str | Path | None = None) -> str:
    # os.path, not pathlib: this runs once per manifest row (~3x cheaper; 10^6 rows, docs/performance.md)
    p = os.path.expanduser(str(path))
    if base is not None and not os.path.isabs(p):
        p = os.path.join(str(base), p)
    return os.path.normpath(os.path.abspath(p))


@functools.lru_cache(maxsize=4096)
def _real_dir(folder: str) -> str:
    return os.path.realpath(folder)


def _realpath(path: str) -> str:
    """``os.path.realpath`` with the folders' resolution cached: one ``lstat`` per file instead of one per path
    component (many files share a folder). A symlinked file is resolved in full, as realpath would."""
    folder, name = os.path.split(path)
    full = os.path.join(_real_dir(folder), name)
    return os.path.realpath(full) if os.path.islink(full) else full


def _wanted(name: str) -> bool:
    return _ext(name) in VIDEO_EXTENSIONS or _ext(name) in SHARD_EXTENSIONS


def _walk(folder: Path) -> Iterator[str]:
    """Video files (and shards) under ``folder``, recursively, without hidden entries; symlinked folders are
    not followed (a link back to a parent would loop forever)."""
    for root, dirs, files in os.walk(folder, onerror=None, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and _wanted(name):
                yield os.path.join(root, name)


def _rel_key(path: str, root: str) -> str:
    """``path`` relative to ``root`` with ``/`` separators (the default sample key)."""
    rel = posixpath.relpath(path, root) if is_url(path) else os.path.relpath(path, root)
    return rel.replace(os.sep, "/")


class _Row(NamedTuple):
    origin: str  # "manifest.csv:12", for reasons
    fields: Mapping[str, Any]
    error: str | None = None  # why the line could not be read as a row


def _open_text(location: str) -> io.TextIOBase:
    """A manifest as text: a local file, or a URL read through ranged reads (never downloaded to disk)."""
    if not is_url(location):
        return open(location, encoding="utf-8-sig", newline="")
    from wfvae_cli.io import remote

    raw = remote.open_binary(location)
    return io.TextIOWrapper(io.BufferedReader(raw, buffer_size=2**20), encoding="utf-8-sig", newline="")


def _text_rows(location: str, columns: Columns) -> Iterator[_Row]:
    with _open_text(location) as f:
        for n, line in enumerate(f, start=1):
            entry = line.strip()
            if entry and not entry.startswith("#"):
                yield _Row(f"{location}:{n}", {columns.path: entry})


def _csv_rows(location: str, columns: Columns) -> Iterator[_Row]:
    with _open_text(location) as f:
        reader = csv.DictReader(f)
        names = [c.strip() for c in reader.fieldnames or []]
        _require_path_column(location, names, columns)
        reader.fieldnames = names
        for row in reader:
            # line_num is the physical line of the row's end, which is what an editor shows for the row
            yield _Row(f"{location}:{reader.line_num}", {k: v for k, v in row.items() if k is not None})


def _jsonl_rows(location: str, columns: Columns) -> Iterator[_Row]:
    with _open_text(location) as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            origin = f"{location}:{n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                yield _Row(origin, {}, f"invalid JSON ({err.msg} at column {err.colno})")
                continue
            if isinstance(obj, dict):
                yield _Row(origin, obj)
            else:
                yield _Row(origin, {}, "line is not a JSON object")


def _parquet_rows(location: str, columns: Columns) -> Iterator[_Row]:
    """Rows of a parquet table, read in record batches (a million-row table never sits in memory twice)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise WfvaeError(f"{location}: reading parquet manifests needs pyarrow; pip install 'wfvae[parquet]'") from None
    from wfvae_cli.io import remote

    source = remote.open_binary(location) if is_url(location) else location
    try:
        table = pq.ParquetFile(source)
        _require_path_column(location, table.schema_arrow.names, columns)
        n = 0
        for batch in table.iter_batches(batch_size=65536):
            for row in batch.to_pylist():
                n += 1
                yield _Row(f"{location}:row {n}", row)
    finally:
        if not isinstance(source, str):
            source.close()


def _require_path_column(location: str, names: Sequence[str], columns: Columns) -> None:
    if columns.path not in names:
        hint = "add a header row with a 'path' column" if columns.path == "path" else "check --path-col"
        raise WfvaeError(
            f"{location}: has no {columns.path!r} column (found: {', '.join(names) or 'nothing'}); {hint}"
            + (" or pass --path-col COLUMN" if columns.path == "path" else "")
        )


_READERS = {".txt": _text_rows, ".csv": _csv_rows, ".jsonl": _jsonl_rows, ".parquet": _parquet_rows}


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
    """Accumulates sources in input order, dropping duplicates and refusing repeated keys, then sorts."""

    def __init__(self) -> None:
        self.sources: list[VideoSource] = []
        self.skipped: list[Skipped] = []
        self._seen: dict[tuple[str, float | None, float | None], str] = {}
        self._keys: dict[str, str] = {}  # key -> origin of its first source

    def add(self, source: VideoSource, origin: str) -> bool:
        from wfvae_cli.io.remote import is_local

        identity = _realpath(source.path) if is_local(source.path) else source.path
        key = (identity, source.start, source.end)
        first = self._seen.get(key)
        if first is not None:
            self.skipped.append(Skipped(source.path, f"duplicate of {first} (listed again at {origin})"))
            return False
        where = f"{source.path}{_segment(source)} (from {origin})" if origin != source.path else source.path
        if source.key in self._keys:
            raise WfvaeError(
                f"sample key {source.key!r} is used twice: by {self._keys[source.key]} and by {where}; keys must be "
                "unique: give a manifest with a unique key column (--key-col), or rename one of the files"
            )
        self._keys[source.key] = where
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


def _segment_key(key: str, start: float | None, end: float | None) -> str:
    """``clip.mp4#t=2,4`` (W3C media-fragment style) for a segment, ``clip.mp4`` for a whole video."""
    if start is None and end is None:
        return key
    return f"{key}#t={start or 0:g}" + ("" if end is None else f",{end:g}")


def _manifest_base(location: str) -> str:
    return posixpath.dirname(location) if is_url(location) else str(Path(location).parent)


def _resolve_entry(raw: str, base: str) -> str:
    """A manifest entry as a source string: URLs validated, ``file://`` made local, relative paths joined."""
    from wfvae_cli.io import remote

    if is_url(raw):
        url = parse_url(raw, what="entry")
        return url.fs_path if url.scheme == "file" else url.url
    if is_url(base):
        return remote.join(base, os.path.expanduser(raw) if raw.startswith("~") else raw)
    return _normalise(raw, base)


def _default_key(raw: str, path: str, base: str) -> str:
    """The key of a manifest entry without a key column: the path as written if relative, else relative to
    the manifest's folder when inside it, else the full path or URL."""
    if not is_url(raw) and not os.path.isabs(os.path.expanduser(raw)):
        return posixpath.normpath(raw.replace(os.sep, "/"))
    inside = path.startswith(base.rstrip("/") + "/") if is_url(path) == is_url(base) else False
    return _rel_key(path, base) if inside else path


def _add_manifest(location: str, out: _Collector, columns: Columns) -> int:
    """Add a manifest's entries; returns how many rows it listed (valid or not)."""
    base = _manifest_base(location)
    rows = 0
    try:
        for origin, row, error in _READERS[_ext(location)](location, columns):
            rows += 1
            if error is not None:
                out.skip(origin, f"{origin}: {error}")
                continue
            raw = row.get(columns.path)
            if not isinstance(raw, str) or not raw.strip():
                out.skip(origin, f"{origin}: no path given")
                continue
            raw = raw.strip()
            try:
                path = _resolve_entry(raw, base)
            except WfvaeError as err:
                out.skip(raw, f"{origin}: {err}")
                continue
            try:
                start = _seconds(row.get(columns.start), columns.start)
                end = _seconds(row.get(columns.end), columns.end)
            except ValueError as err:
                out.skip(path, f"{origin}: {err}")
                continue
            if start is not None and end is not None and end <= start:
                out.skip(path, f"{origin}: end {end:g} s is not after start {start:g} s")
                continue
            if not is_url(path) and not os.path.isfile(path):
                what = "is a directory" if os.path.isdir(path) else "file not found"
                out.skip(path, f"{what} (listed at {origin})")
                continue
            caption = row.get(columns.caption)
            given_key = row.get(columns.key)
            key = str(given_key).strip() if given_key not in (None, "") else _default_key(raw, path, base)
            if given_key in (None, ""):
                key = _segment_key(key, start, end)
            extra = {k: v for k, v in row.items() if k not in columns.known()}
            source = VideoSource(path, None if caption in (None, "") else str(caption), start, end, extra, key)
            out.add(source, origin)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise WfvaeError(
            f"{location}: cannot be read as a {_ext(location)} manifest ({err}); fix or re-save it as UTF-8"
        ) from None
    except Exception as err:
        if isinstance(err, WfvaeError):
            raise
        if type(err).__module__.startswith("pyarrow"):
            raise WfvaeError(f"{location}: cannot be read as a parquet table ({err}); check the file") from None
        raise
    return rows


def _add_shard(shard: str, out: _Collector) -> int:
    """Add the samples of one webdataset shard; returns how many samples (and problems) it held."""
    from wfvae_cli.io.webdataset import index_shard

    samples, problems = index_shard(shard, VIDEO_EXTENSIONS)
    for origin, reason in problems:
        out.skip(origin, reason)
    for sample in samples:
        out.add(VideoSource(sample.source, sample.caption, extra=sample.extra, key=sample.key), f"{shard}#{sample.key}")
    return len(samples) + len(problems)


def _add_files(files: Sequence[tuple[str, str]], out: _Collector, origin: str) -> None:
    """Add ``(source, key)`` pairs: videos as they are, ``.tar`` shards by their samples."""
    for file, key in files:
        if _ext(file) in SHARD_EXTENSIONS:
            _add_shard(file, out)
        else:
            out.add(VideoSource(file, key=key), origin)


def _glob_root(pattern: str) -> str:
    """The fixed folder before a glob's first wildcard (keys are relative to it)."""
    cut = min(i for i in (pattern.find(c) for c in "*?[") if i >= 0)
    return pattern[: cut].rsplit("/", 1)[0] if "/" in pattern[:cut] else "."


def _expand(item: str | Path) -> list[tuple[str, str]]:
    """``(file, key)`` of a local folder or glob input; a WfvaeError if it does not exist or holds no video."""
    text = os.path.expanduser(str(item))
    if os.path.isdir(text):
        root = _normalise(text)
        files = [(_normalise(f), _rel_key(_normalise(f), root)) for f in _walk(Path(text))]
        if not files:
            raise WfvaeError(
                f"folder {item} contains no video files ({', '.join(sorted(VIDEO_EXTENSIONS))}); check the input"
            )
        return files
    if not _is_glob(text):
        raise WfvaeError(
            f"input {item} does not exist; check the path (quote glob patterns so the shell keeps them)"
        )
    root = _normalise(_glob_root(text))
    matches = sorted(glob.glob(text, recursive=True))
    found = [m for m in matches if os.path.isfile(m) and _wanted(m)]
    for folder in (m for m in matches if os.path.isdir(m)):
        found.extend(_walk(Path(folder)))
    if not found:
        raise WfvaeError(f"pattern {item!r} matches no video files; check the input")
    return [(_normalise(f), _rel_key(_normalise(f), root)) for f in found]


def _add_local(item: str, out: _Collector, columns: Columns) -> None:
    path = Path(os.path.expanduser(item))
    if path.is_file() and path.suffix.lower() in MANIFEST_EXTENSIONS:
        if _add_manifest(str(path), out, columns) == 0:
            raise WfvaeError(f"{item}: the manifest lists no videos; add one path per line (or a 'path' column)")
    elif path.is_file():
        _add_files([(_normalise(path), path.name)], out, item)
    else:
        _add_files(_expand(item), out, item)


def _add_remote(item: str, out: _Collector, columns: Columns, options: dict[str, Any] | None) -> None:
    """A URL input: one object (video, manifest, shard), a prefix (listed recursively) or a glob."""
    from wfvae_cli.io import remote

    url = parse_url(item, what="input")
    if url.scheme == "file":
        _add_local(url.fs_path, out, columns)
        return
    fs, path = filesystem(url, remote.storage_options() if options is None else options)

    def as_url(p: str) -> str:
        return p if url.scheme in ("http", "https") else f"{url.scheme}://{p}"

    def listing(p: str) -> list[str]:
        files = fs.find(p)
        return [f for f in sorted(files) if _wanted(f) and not any(part.startswith(".") for part in f.split("/")[1:])]

    try:
        if _is_glob(url.path):
            matches = sorted(fs.glob(path))
            found: list[str] = []
            for m in matches:
                if _wanted(m) and fs.isfile(m):
                    found.append(m)
                elif fs.isdir(m):
                    found.extend(listing(m))
            if not found:
                raise WfvaeError(f"pattern {item!r} matches no video files; check the input")
            root = as_url(_glob_root(path))
            _add_files([(as_url(f), _rel_key(as_url(f), root)) for f in found], out, item)
            return
        info = fs.info(path)
    except WfvaeError:
        raise
    except Exception as exc:
        raise describe_error(exc, item) from None
    if info.get("type") == "directory":
        try:
            files = listing(path)
        except Exception as exc:
            raise describe_error(exc, item) from None
        if not files:
            raise WfvaeError(f"prefix {item} contains no video files or shards; check the URL")
        root = url.url.rstrip("/")
        _add_files([(as_url(f), _rel_key(as_url(f), root)) for f in files], out, item)
    elif _ext(url.path) in MANIFEST_EXTENSIONS:
        if _add_manifest(url.url, out, columns) == 0:
            raise WfvaeError(f"{item}: the manifest lists no videos; add one path per line (or a 'path' column)")
    else:
        _add_files([(url.url, posixpath.basename(url.path))], out, item)


def discover_videos(
    inputs: Sequence[str | Path] | str | Path,
    *,
    columns: Columns | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Discovery:
    """Expand URLs, folders, globs, files, manifests and shards into sorted, de-duplicated :class:`VideoSource` s.

    Rules in the module docstring. ``storage_options`` are passed to the URL inputs' file systems (default:
    the process's :func:`wfvae_cli.io.remote.storage_options`). Raises :class:`WfvaeError` for an input that
    does not exist or yields nothing, for a manifest that cannot be parsed at all (no path column, unreadable,
    not UTF-8), and for two sources with one key.
    """
    _real_dir.cache_clear()  # folders may have been re-linked since the last call
    from wfvae_cli.io.webdataset import expand_braces

    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    if not inputs:
        raise WfvaeError(
            "no input given: pass video files, folders, glob patterns, URLs, shards or manifests "
            "(.txt/.csv/.jsonl/.parquet)"
        )
    columns = columns or Columns()
    out = _Collector()
    for item in inputs:
        for text in expand_braces(str(item)) if isinstance(item, str) else [str(item)]:
            if is_url(text):
                _add_remote(text, out, columns, storage_options)
            else:
                _add_local(text, out, columns)
    return out.result()
