"""Where a latent store lives: a local folder or a prefix on object storage, behind one small interface.

Everything the store layer does *around* zarr goes through :class:`StoreLocation`: the zarr store object for
the arrays, "is there a store / anything at all here", deleting a store (``--overwrite``), durability syncs,
the size on disk, and the writer lease next to the store. Local folders and URLs (``s3://``, ``gs://``,
``az://``, ``memory://``, ``file://``) take the same code path everywhere else, so the guarantees are argued
once (docs/store-format.md, "Object storage").

What differs, and why it is safe:

* **Arrays.** Local: ``zarr.storage.LocalStore`` (atomic file replace). URL: ``zarr.storage.FsspecStore`` over
  the same fsspec file system and ``--storage-options`` as the inputs (wfvae_cli/storage.py); every chunk or
  shard is one whole-object PUT, which object stores apply atomically (a reader sees the old or the new object,
  never a torn one).
* **Durability.** Local writes are fsynced before the status chunk (the commit record) is written. An object
  PUT is durable when it returns, so :meth:`sync` is a no-op there.
* **Shard ownership.** ``flock`` needs a POSIX file system; on object storage the job's writer lease plus the
  coordinator's disjoint shard assignment (and, inside one process, an in-process lock) take its place
  (wfvae_cli/store/locks.py).

A location is picklable (it keeps the target string and the storage options, never a client), so Ray workers
and DataLoader worker processes rebuild their own clients.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wfvae_cli.storage import StorageError, StorageUrl, describe_error, filesystem, is_url, parse_url, with_defaults
from wfvae_cli.store.errors import StoreError

if TYPE_CHECKING:
    import fsspec
    from zarr.abc.store import Store

    from wfvae_cli.store.lease import LeaseBlob

__all__ = ["ROOT_KEY", "StoreLocation", "as_location"]

#: the root group's metadata object: its presence is what makes a path "a zarr v3 store"
ROOT_KEY = "zarr.json"

#: fsspec settings the store uses unless the user's storage options say otherwise. s3fs's default
#: ``max_concurrency`` (> 1) makes every whole-object read start with a HEAD (to split big objects into
#: concurrent ranged GETs); store objects are small (one shard), so that HEAD would double the requests.
_STORE_DEFAULTS: dict[str, dict[str, Any]] = {"s3": {"max_concurrency": 1}, "s3a": {"max_concurrency": 1}}


class StoreLocation:
    """A store's place: ``StoreLocation("out.zarr")`` or ``StoreLocation("s3://bucket/x.zarr", options)``.

    ``str(location)`` is how messages name it (the path or the URL as given, normalised).
    """

    def __init__(self, target: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> None:
        self.storage_options: dict[str, Any] = dict(storage_options or {})
        self.url: StorageUrl | None = None
        self.path: Path | None = None
        text = os.fspath(target)
        if isinstance(target, str) and is_url(text):
            url = parse_url(text, what="store")
            if url.scheme == "file":
                self.path = Path("/" + url.path)
            else:
                if not url.path and url.scheme != "memory":
                    raise StorageError(f"store {text}: name a store below the bucket, e.g. {url.url}/latents.zarr")
                self.url = url
        else:
            self.path = Path(text)
        self._fs: fsspec.AbstractFileSystem | None = None
        self._fs_pid = 0

    # ------------------------------------------------------------------ identity
    @property
    def is_local(self) -> bool:
        return self.path is not None

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else self.url.url  # type: ignore[union-attr]

    def __repr__(self) -> str:
        return f"StoreLocation({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoreLocation) and str(self.absolute()) == str(other.absolute())

    def __hash__(self) -> int:
        return hash(str(self.absolute()))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fs": None}  # clients never cross a process boundary

    def absolute(self) -> Path | str:
        """The location as a process with another working directory (a Ray worker) must name it."""
        return self.path.absolute() if self.path is not None else self.url.url  # type: ignore[union-attr]

    def local_path(self, why: str) -> Path:
        """The local folder, or a one-line error saying that ``why`` needs one."""
        if self.path is None:
            raise StoreError(f"{self}: {why} needs a local store; this one is on object storage")
        return self.path

    def describe_error(self, exc: BaseException) -> StorageError:
        """One line naming the store and the fix for a storage client's exception."""
        return describe_error(exc, str(self), what="store")

    # ------------------------------------------------------------------ clients
    def _options(self) -> dict[str, Any]:
        assert self.url is not None
        return {**_STORE_DEFAULTS.get(self.url.scheme, {}), **with_defaults(self.url.scheme, self.storage_options)}

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The synchronous fsspec file system of a URL location (listing, deleting, sizes)."""
        if self._fs is None or self._fs_pid != os.getpid():  # a forked DataLoader worker builds its own
            assert self.url is not None
            self._fs, _ = filesystem(self.url, self._options())
            self._fs_pid = os.getpid()
        return self._fs

    def _fs_path(self, key: str = "") -> str:
        assert self.url is not None
        base = self.url.fs_path.rstrip("/")
        return f"{base}/{key}" if key else base

    def zarr_store(self, *, read_only: bool) -> Store:
        """The zarr store object for this location (a fresh one: zarr stores are cheap and not shared)."""
        import zarr

        if self.path is not None:
            return zarr.storage.LocalStore(self.path, read_only=read_only)
        from zarr.storage import FsspecStore

        try:
            return FsspecStore.from_url(self.url.url, storage_options=self._options(), read_only=read_only)  # type: ignore[union-attr]
        except (ImportError, ValueError, TypeError) as exc:
            filesystem(self.url, self._options())  # raises the one-line install / options error
            raise self.describe_error(exc) from exc

    def lease_blob(self) -> LeaseBlob:
        """The store's writer lease, kept next to it (``<store>.lease.json``; see wfvae_cli/store/lease.py)."""
        from wfvae_cli.store.lease import lease_blob

        return lease_blob(self.absolute() if self.path is not None else str(self), self.storage_options)

    # ------------------------------------------------------------------ queries
    def has_root(self) -> bool:
        """Whether the root metadata object (``zarr.json``) exists: one HEAD on object storage."""
        if self.path is not None:
            return (self.path / ROOT_KEY).is_file()
        try:  # a size-limited ranged GET: s3fs's exists() is a HEAD plus a listing when the key is absent
            self.fs.cat_file(self._fs_path(ROOT_KEY), start=0, end=1)
            return True
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise self.describe_error(exc) from exc

    def exists(self) -> bool:
        """Whether anything is at this location (a folder, a file, or at least one object under the prefix)."""
        if self.path is not None:
            return self.path.exists()
        return self._any_key()

    def is_dir_or_prefix(self) -> bool:
        """False only for a local path that is a file (object prefixes are never "files" here)."""
        return self.path is None or not self.path.exists() or self.path.is_dir()

    def is_empty(self) -> bool:
        """No file / object below this location (a missing location is empty)."""
        if self.path is not None:
            return not self.path.exists() or (self.path.is_dir() and not any(self.path.iterdir()))
        return not self._any_key()

    def _any_key(self) -> bool:
        """At least one object below ``prefix/``: one listing of the top level (a store's top level is small;
        a recursive listing would page through every object of a big store)."""
        try:
            return bool(self.fs.ls(self._fs_path() + "/", detail=False, refresh=True))
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise self.describe_error(exc) from exc

    def _keys(self, limit: int | None = None) -> list[str]:
        """Object paths strictly below the prefix (``prefix/``: never a sibling such as ``x.zarr2``)."""
        base = self._fs_path() + "/"
        try:
            found = self.fs.find(base, maxdepth=None, withdirs=False)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise self.describe_error(exc) from exc
        keys = [k for k in found if k.startswith(base)]
        return keys[:limit] if limit is not None else keys

    def nbytes(self) -> int:
        """Bytes stored below this location (what ``wfvae info`` shows as the size)."""
        if self.path is not None:
            return sum((Path(d) / f).stat().st_size for d, _, files in os.walk(self.path) for f in files)
        base = self._fs_path() + "/"
        try:
            sizes = self.fs.find(base, withdirs=False, detail=True)
        except FileNotFoundError:
            return 0
        return sum(int(v.get("size") or 0) for k, v in sizes.items() if k.startswith(base))

    def temp_files(self, suffix: str) -> list[str]:
        """Left-over temporary files of killed local writers (object PUTs leave none)."""
        if self.path is None:
            return []
        return [str(Path(d) / f) for d, _, files in os.walk(self.path) for f in files if f.endswith(suffix)]

    # ------------------------------------------------------------------ writes
    def sync(self, key: str) -> None:
        """Make the object ``key`` (relative to the store) durable before the commit record is written.

        Local: fsync the file and its directory (a no-op if absent: an all-fill chunk is never written).
        Object storage: a PUT is durable when it returns, nothing to do.
        """
        if self.path is None:
            return
        path = self.path / key
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def delete(self) -> None:
        """Delete everything at this location. Callers check first that it is a wfvae store (or empty) and
        hold the writer lease: this is ``--overwrite``, never a general "remove a prefix"."""
        if self.path is not None:
            if self.path.is_dir():
                shutil.rmtree(self.path)
            elif self.path.exists():
                raise StoreError(f"{self.path} is a file, not a store; refusing to delete it")
            return
        keys = self._keys()
        if not keys:
            return
        try:
            # root metadata last: the caller first marks the store half-created (store.py), so an interrupted
            # delete leaves a store the next encode replaces, never a prefix of orphan objects nobody may delete
            root = self._fs_path(ROOT_KEY)
            rest = [k for k in keys if k != root]
            for start in range(0, len(rest), 1000):  # one batch-delete request per 1000 keys (the S3 limit)
                self.fs.rm(rest[start : start + 1000])
            if root in keys:
                self.fs.rm(root)
        except Exception as exc:
            raise self.describe_error(exc) from exc
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(self._fs_path())


def as_location(target: str | os.PathLike[str] | StoreLocation, storage_options: dict[str, Any] | None = None
                ) -> StoreLocation:
    """``target`` as a :class:`StoreLocation` (a location passes through; its own options win)."""
    if isinstance(target, StoreLocation):
        return target
    return StoreLocation(target, storage_options)
