"""Reading inputs that are not plain local files: URLs and members of webdataset tar shards.

One entry point, :func:`open_input`, is what the decoders use: for a local path it yields the path itself
(decoders keep their fastest path), for anything else a seekable binary file object that reads **byte
ranges** on demand (fsspec file objects, with a read-ahead cache), so a clip at the start of a long remote
video costs a few requests, not a download, and nothing is spooled to disk. The file object's ``str()`` is the
source string, so the decoders' error messages name the URL (or shard and member) as the user wrote it.

Source strings (what discovery puts in :attr:`VideoSource.path` and the store records as ``source``):

* a local path: ``/data/clips/a.mp4``;
* a URL of any fsspec scheme: ``s3://bucket/clips/a.mp4``, ``gs://…``, ``az://…``, ``https://…``;
* a member of an uncompressed tar shard, by byte range: ``SHARD#MEMBER@OFFSET+SIZE``, e.g.
  ``s3://bucket/shards/data-000003.tar#000000042.mp4@1536+204800``. The offset is the member's data offset in
  the tar (read from its header when the shard was indexed), so reading it is one ranged read of the shard.

Storage options (``--storage-options JSON``: credentials, endpoint, anything the scheme's fsspec file system
accepts) are a per-process setting, like the ``AWS_*`` environment variables they complement:
:func:`set_storage_options` sets them, the environment variable ``WFVAE_STORAGE_OPTIONS`` (JSON) seeds them in
a new process, and the decode worker subprocesses receive the parent's current options with their next job.

Transient errors (a dropped connection, a timeout, a 5xx, throttling) are retried with exponential backoff
(:data:`READ_ATTEMPTS` attempts per read, reopening the object at the same position); after that the read
raises :class:`RemoteReadError`, a :class:`VideoDecodeError`, so the sample fails alone with one line.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import os
import posixpath
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any, NamedTuple

from wfvae_cli.errors import WfvaeError
from wfvae_cli.io.errors import VideoDecodeError
from wfvae_cli.storage import StorageUrl, describe_error, filesystem, is_transient, is_url, parse_url

__all__ = [
    "READ_ATTEMPTS",
    "RemoteFile",
    "RemoteReadError",
    "TarMember",
    "input_identity",
    "is_local",
    "join",
    "member_source",
    "open_binary",
    "open_input",
    "parse_member",
    "set_storage_options",
    "storage_options",
]

OPTIONS_ENV = "WFVAE_STORAGE_OPTIONS"
#: test hook: ``GLOB:N`` makes the first N reads of every opened remote input whose base name matches GLOB
#: raise ConnectionResetError (exercises the retry path against a healthy server); never set it in production
FLAKY_ENV = "WFVAE_IO_DEBUG_FLAKY"
READ_ATTEMPTS = 4
BACKOFF_S = 0.25  # first retry delay; doubles each attempt (0.25, 0.5, 1 s)
#: fsspec read-ahead block: one ranged GET fetches this much past the read position. PyAV reads 32 KiB at
#: a time, so a smaller block would mean a request per read; a larger one wastes bytes on short clips.
BLOCK_SIZE = 4 * 2**20

_MEMBER_RE = re.compile(r"^(?P<shard>.+?\.tar)#(?P<name>.+)@(?P<offset>\d+)\+(?P<size>\d+)$", re.DOTALL)

_options: dict[str, Any] = {}
_options_lock = threading.Lock()


def _options_from_env() -> dict[str, Any]:
    text = os.environ.get(OPTIONS_ENV)
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise WfvaeError(f"{OPTIONS_ENV}: not valid JSON; set it to a JSON object or unset it") from None
    if not isinstance(value, dict):
        raise WfvaeError(f"{OPTIONS_ENV}: expected a JSON object, got {type(value).__name__}")
    return value


_options.update(_options_from_env())


def set_storage_options(options: dict[str, Any] | None) -> None:
    """Make ``options`` the storage options of every input this process (and its decode workers) opens."""
    global _options
    with _options_lock:
        _options = dict(options or {})


def storage_options() -> dict[str, Any]:
    """The current storage options (a copy)."""
    with _options_lock:
        return dict(_options)


class TarMember(NamedTuple):
    """Where a member's bytes are: the shard (local path or URL) and the data's byte range in it."""

    shard: str
    name: str
    offset: int
    size: int


def member_source(shard: str, name: str, offset: int, size: int) -> str:
    """The source string of a tar member (see the module docstring)."""
    return f"{shard}#{name}@{offset}+{size}"


def parse_member(source: str) -> TarMember | None:
    """The :class:`TarMember` a source string names, or ``None`` for a plain path or URL."""
    m = _MEMBER_RE.match(source)
    if m is None:
        return None
    return TarMember(m["shard"], m["name"], int(m["offset"]), int(m["size"]))


def is_local(source: str) -> bool:
    """True for a plain local path (what the decoders open themselves)."""
    return not is_url(source) and parse_member(source) is None


def join(base: str, relative: str) -> str:
    """``relative`` resolved against the folder ``base`` (a local folder or a URL prefix)."""
    if is_url(relative) or os.path.isabs(relative):
        return relative
    if is_url(base) and not base.startswith("file:"):
        url = parse_url(base)
        path = posixpath.normpath(posixpath.join("/" + url.path, relative)).lstrip("/")
        return str(StorageUrl(url.scheme, url.netloc, path))
    if is_url(base):
        base = parse_url(base).fs_path
    return os.path.normpath(os.path.join(base, relative))


class RemoteReadError(VideoDecodeError):
    """A remote read that kept failing after the retries (the network or the endpoint, not the file)."""


def _flaky_budget(label: str) -> int:
    spec = os.environ.get(FLAKY_ENV)
    if not spec:
        return 0
    pattern, _, count = spec.rpartition(":")
    return int(count or 0) if fnmatch.fnmatch(posixpath.basename(label.split("#", 1)[0]), pattern) else 0


class RemoteFile(io.RawIOBase):
    """A read-only, seekable view of bytes ``[start, start + size)`` of an object, with retried reads.

    ``opener`` returns a fresh binary file object positioned anywhere (it is seeked); it is called again to
    reopen after a transient error. ``label`` is what ``str()`` returns, so messages name the source.
    """

    def __init__(self, opener: Callable[[], IO[bytes]], start: int, size: int, label: str) -> None:
        super().__init__()
        self._opener = opener
        self._start = start
        self._size = size
        self._pos = 0
        self._label = label
        self._file: IO[bytes] | None = None
        self._flaky = _flaky_budget(label)
        self.attempts = 0  # reads that had to be retried (for tests and stats)

    def __str__(self) -> str:
        return self._label

    def __repr__(self) -> str:
        return f"RemoteFile({self._label!r})"

    @property
    def name(self) -> str:
        return self._label

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    @property
    def size(self) -> int:
        return self._size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _read_once(self, n: int) -> bytes:
        if self._flaky > 0:
            self._flaky -= 1
            raise ConnectionResetError(f"injected by {FLAKY_ENV}")
        if self._file is None:
            self._file = self._opener()
        self._file.seek(self._start + self._pos)
        return self._file.read(n)

    def read(self, n: int = -1) -> bytes:
        left = self._size - self._pos
        n = left if n is None or n < 0 else min(n, left)
        if n <= 0:
            return b""
        for attempt in range(READ_ATTEMPTS):
            try:
                data = self._read_once(n)
                break
            except Exception as exc:
                if not is_transient(exc) or attempt == READ_ATTEMPTS - 1:
                    how = f"after {attempt + 1} attempts " if attempt else ""
                    reason = " ".join(str(exc).split())[:200] or type(exc).__name__
                    transient = is_transient(exc)  # the network/endpoint kept failing: retried by a rerun
                    raise RemoteReadError(
                        f"{self._label}: reading failed {how}({type(exc).__name__}: {reason}); check the network "
                        "and endpoint, then " + ("rerun the same command: it retries this input (no flag needed)"
                                                 if transient else "rerun with --retry-failed"),
                        transient=transient,
                    ) from None
                self.attempts += 1
                self._close_file()
                time.sleep(BACKOFF_S * 2**attempt)
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)

    def _close_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
            self._file = None

    def close(self) -> None:
        self._close_file()
        super().close()


def _remote_object(url: str, options: dict[str, Any] | None, block_size: int) -> tuple[Callable[[], IO[bytes]], int]:
    """An opener of ``url`` and its size; a missing or unreachable object is a VideoDecodeError."""
    opts = storage_options() if options is None else options
    fs, path = filesystem(url, opts)
    try:  # opening reads the object's metadata (one HEAD): it gives the size, and the first read reuses it
        first: IO[bytes] | None = fs.open(path, "rb", block_size=block_size, cache_type="readahead")
    except IsADirectoryError:
        raise VideoDecodeError(
            f"{url}: is a folder (prefix), not a video; pass it as an input folder instead"
        ) from None
    except Exception as exc:
        if isinstance(exc, FileNotFoundError):
            raise VideoDecodeError(f"{url}: no such object; check the URL or remove it from the inputs") from None
        raise VideoDecodeError(str(describe_error(exc, url))) from None
    size = int(getattr(first, "size", 0) or 0)

    def opener() -> IO[bytes]:
        nonlocal first
        if first is not None:
            handle, first = first, None
            return handle
        return fs.open(path, "rb", block_size=block_size, cache_type="readahead")

    return opener, size


def open_binary(location: str, options: dict[str, Any] | None = None, *, block_size: int = BLOCK_SIZE) -> RemoteFile:
    """A :class:`RemoteFile` over a whole local file or URL (used for tar shards and manifests)."""
    if is_url(location) and not location.startswith("file:"):
        opener, size = _remote_object(location, options, block_size)
        return RemoteFile(opener, 0, size, location)
    path = parse_url(location).fs_path if is_url(location) else location
    try:
        size = os.path.getsize(path)
    except OSError as err:
        raise VideoDecodeError(f"{location}: cannot be opened ({err.strerror}); check the path") from None
    return RemoteFile(lambda: open(path, "rb"), 0, size, location)


@contextlib.contextmanager
def open_input(source: str, options: dict[str, Any] | None = None) -> Iterator[str | RemoteFile]:
    """The one way decoders open a source: a local path as is, anything else as a seekable file object.

    ``options`` default to the process's :func:`storage_options`. Raises :class:`VideoDecodeError` for an
    object that does not exist, is empty, or cannot be reached.
    """
    if is_local(source):
        yield source
        return
    member = parse_member(source)
    if member is not None:
        shard = open_binary(member.shard, options)
        if member.offset + member.size > shard.size:
            shard.close()
            raise VideoDecodeError(
                f"{source}: the shard is {shard.size} bytes, shorter than this member's range; the shard was "
                "truncated or rewritten after it was indexed (re-create the store)"
            )
        handle = RemoteFile(shard._opener, member.offset, member.size, source)
        shard.close()
    else:
        handle = open_binary(source, options)
    if handle.size == 0:
        handle.close()
        raise VideoDecodeError(f"{source}: is empty (0 bytes); the upload failed, upload it again")
    try:
        yield handle
    finally:
        handle.close()


def input_identity(source: str) -> str:
    """What must not change for a cached probe of ``source`` to stay valid: size and modification time.

    Local file: ``size=…,mtime_ns=…`` (one ``stat``). URL: the object's size and ETag (or, without one, its
    modification time) from one metadata request. Tar member: its shard's identity plus the member's byte range
    (the member is immutable while the shard is). ``""`` when it cannot be read: such an input is probed again.
    """
    member = parse_member(source)
    if member is not None:
        shard = input_identity(member.shard)
        return f"{shard},member={member.offset}+{member.size}" if shard else ""
    try:
        if not is_url(source):
            st = os.stat(source)
            return f"size={st.st_size},mtime_ns={st.st_mtime_ns}"
        fs, path = filesystem(source, storage_options())
        info = fs.info(path)
    except Exception:
        return ""
    tag = next((str(info[k]) for k in ("ETag", "etag", "md5Hash", "content_md5") if info.get(k)), "")
    if not tag:
        tag = next((str(info[k]) for k in ("LastModified", "last_modified", "mtime", "updated") if info.get(k)), "")
    return f"size={info.get('size', '')},tag={tag.strip(chr(34))}" if tag else ""
