"""The store-level writer lease: one writing job per store, on local disk and on object storage alike.

Why a lease and not ``flock``: a second ``wfvae encode`` (above all one with ``--overwrite``) must be refused
while another job writes the store, and the refusal must hold where there is no POSIX file system (S3, GCS,
Azure, S3-compatible servers) and across machines. Every object store these users have offers two atomic
primitives, and this module needs nothing else:

* **create-only put** (S3 ``If-None-Match: *``, GCS ``ifGenerationMatch=0``, Azure ``If-None-Match: *``;
  locally ``O_CREAT | O_EXCL``): exactly one of two racing takers creates the lease;
* **compare-and-swap put** (S3 ``If-Match: <etag>``, GCS ``ifGenerationMatch``; locally a read-compare-rename
  under an ``flock`` on a guard file, the sha256 of the content as the etag): heartbeats and takeovers of stale
  leases, so that two takers of one stale lease cannot both win.

The lease is a small JSON object next to the store (``<store>.lease.json``: outside the store, so that
``--overwrite`` can delete the store while holding it). It names its holder (host, pid, start time), carries a
heartbeat time, a time-to-live and a **generation** number that every takeover increments (the fencing token).

Recovery of a dead holder: the lease is stale when its heartbeat is older than its TTL, or at once when the
holder ran on this host and its pid no longer exists. A stale lease is taken over by compare-and-swap.

A holder that lost its lease (a heartbeat's compare-and-swap failed: someone took it over after our heartbeat
stalled beyond the TTL) must stop before marking anything: :meth:`WriterLease.check` raises, and the shard
writers call it before every status write (the commit record), so a fenced-off writer never commits a row.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from wfvae_cli.store.errors import StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_TTL",
    "LeaseBlob",
    "LeaseFence",
    "LeaseHeldError",
    "LeaseLostError",
    "LocalBlob",
    "ObjectBlob",
    "WriterLease",
    "lease_blob",
]

#: seconds without a heartbeat after which a lease counts as abandoned (heartbeats every TTL/4)
DEFAULT_TTL = 60.0


class LeaseHeldError(StoreError):
    """Another live process holds the store's writer lease."""


class LeaseLostError(StoreError):
    """This process's lease was taken over (its heartbeat stalled); it must stop writing."""


class _Conflict(Exception):
    """A create-only or compare-and-swap put lost its race."""


class LeaseBlob(Protocol):
    """The two atomic primitives the lease needs, on one key. ``version`` is opaque (an etag, a counter)."""

    def read(self) -> tuple[bytes, str] | None: ...
    def create(self, data: bytes) -> str: ...  # raises _Conflict when the key exists
    def swap(self, data: bytes, version: str) -> str: ...  # raises _Conflict when the version changed
    def delete(self) -> None: ...


class LocalBlob:
    """A lease file on a local (or POSIX network) file system."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._guard = path.with_name(path.name + ".guard")

    @contextlib.contextmanager
    def _guarded(self):  # serialises read-compare-rename between processes of a host
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._guard, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # drops the flock

    @staticmethod
    def _version(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()  # like an etag: any change of the content is a new version

    def read(self) -> tuple[bytes, str] | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return data, self._version(data)

    def create(self, data: bytes) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise _Conflict from None
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return self._version(data)

    def swap(self, data: bytes, version: str) -> str:
        with self._guarded():
            current = self.read()
            if current is None or current[1] != version:
                raise _Conflict
            tmp = self.path.with_name(f"{self.path.name}.{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, self.path)
        return self._version(data)

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with contextlib.suppress(FileNotFoundError):
            self._guard.unlink()


class ObjectBlob:
    """A lease object on S3 / GCS / Azure through obstore's conditional puts (etags as versions)."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        from obstore.store import from_url

        from wfvae_cli.storage import obstore_options

        parent, _, self.key = url.rpartition("/")
        self.url = url
        self.storage_options = dict(storage_options or {})
        self._store = from_url(parent, **obstore_options(url.split("://", 1)[0].lower(), storage_options))

    @contextlib.contextmanager
    def _errors(self):  # any other client error (credentials, endpoint, bucket): one line naming the store
        from wfvae_cli.storage import describe_error

        try:
            yield
        except (_Conflict, FileNotFoundError, StoreError):
            raise
        except Exception as exc:
            raise describe_error(exc, self.url.removesuffix(".lease.json"), what="store") from exc

    def read(self) -> tuple[bytes, str] | None:
        import obstore

        with self._errors():
            try:
                result = obstore.get(self._store, self.key)
            except FileNotFoundError:
                return None
            return bytes(result.bytes()), str(result.meta["e_tag"])

    def create(self, data: bytes) -> str:
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        with self._errors():
            try:
                return str(obstore.put(self._store, self.key, data, mode="create")["e_tag"])
            except (AlreadyExistsError, PreconditionError):
                raise _Conflict from None

    def swap(self, data: bytes, version: str) -> str:
        import obstore
        from obstore.exceptions import PreconditionError

        with self._errors():
            try:
                return str(obstore.put(self._store, self.key, data, mode={"e_tag": version})["e_tag"])
            except (PreconditionError, FileNotFoundError):
                raise _Conflict from None

    def delete(self) -> None:
        import obstore

        with self._errors(), contextlib.suppress(FileNotFoundError):
            obstore.delete(self._store, self.key)


def lease_blob(store: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> LeaseBlob:
    """The lease of the store at ``store`` (a local path or a URL), kept next to it as ``<store>.lease.json``."""
    from wfvae_cli.storage import is_url, parse_url

    if isinstance(store, str) and is_url(store):
        url = parse_url(store, what="--out")
        if url.scheme == "file":
            return LocalBlob(Path("/" + url.path + ".lease.json"))
        if not url.path:
            raise StoreError(f"--out {store}: name a store below the bucket, e.g. {url.url}/latents.zarr")
        return ObjectBlob(url.url.rstrip("/") + ".lease.json", storage_options)
    path = Path(store).absolute()
    return LocalBlob(path.with_name(path.name + ".lease.json"))


@dataclass(frozen=True)
class _State:
    token: str
    host: str
    pid: int
    started: str
    heartbeat: float
    ttl: float
    generation: int
    version: int

    @classmethod
    def parse(cls, data: bytes) -> _State | None:
        try:
            raw = json.loads(data)
            return cls(**{k: raw[k] for k in cls.__dataclass_fields__})
        except (ValueError, KeyError, TypeError):
            return None  # a torn or foreign lease file: treated as stale

    def to_bytes(self) -> bytes:
        body = {k: getattr(self, k) for k in self.__dataclass_fields__}
        body["heartbeat_utc"] = datetime.fromtimestamp(self.heartbeat, timezone.utc).isoformat(timespec="seconds")
        return json.dumps(body, indent=1).encode()

    def describe(self) -> str:
        age = time.time() - self.heartbeat
        return (f"pid {self.pid} on {self.host}, started {self.started}, last heartbeat {age:.0f} s ago "
                f"(lease generation {self.generation}, expires after {self.ttl:.0f} s without one)")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WriterLease:
    """Hold the writer lease of one store while a job writes it (a context manager; heartbeats in a thread).

    ``acquire`` raises :class:`LeaseHeldError` (one line naming the holder and the fix) when a live process
    holds the lease. ``generation`` is the fencing token of this holder.
    """

    def __init__(self, blob: LeaseBlob, *, what: str, ttl: float = DEFAULT_TTL) -> None:
        self.blob = blob
        self.what = what
        self.ttl = float(ttl)
        self.host = socket.gethostname()
        self.token = uuid.uuid4().hex
        self.generation = 0
        self._version: str | None = None
        self._state: _State | None = None
        self._last_beat = 0.0
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._io = threading.Lock()

    # ------------------------------------------------------------------ acquire / release
    def _new_state(self, generation: int, version: int) -> _State:
        return _State(self.token, self.host, os.getpid(), datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      time.time(), self.ttl, generation, version)

    def _stale(self, state: _State | None) -> bool:
        if state is None:
            return True
        if time.time() - state.heartbeat > state.ttl:
            return True
        return state.host == self.host and state.pid != os.getpid() and not _pid_alive(state.pid)

    def acquire(self) -> WriterLease:
        for _attempt in range(3):
            state = self._new_state(generation=1, version=1)
            try:
                self._version = self.blob.create(state.to_bytes())
                self._took(state)
                return self
            except _Conflict:
                pass
            current = self.blob.read()
            if current is None:
                continue  # released between our create and read: try to create again
            data, version = current
            held = _State.parse(data)
            if not self._stale(held):
                assert held is not None
                raise LeaseHeldError(
                    f"{self.what} is being written by another wfvae job ({held.describe()}); wait for it to "
                    "finish or stop it; a lease of a dead job is taken over automatically after its TTL"
                )
            generation = (held.generation if held else 0) + 1
            state = self._new_state(generation=generation, version=(held.version if held else 0) + 1)
            try:
                self._version = self.blob.swap(state.to_bytes(), version)
            except _Conflict:
                continue  # another taker won this round; look again
            self._took(state)
            return self
        raise LeaseHeldError(f"{self.what}: the writer lease is contended by other jobs; retry later")

    def _took(self, state: _State) -> None:
        self._state = state
        self.generation = state.generation
        self._last_beat = time.monotonic()
        self._thread = threading.Thread(target=self._beat_loop, name="wfvae-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop heartbeating and delete the lease if it is still ours (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._state is None or self._lost:
            return
        with self._io:
            current = self.blob.read()
            if current is not None and (held := _State.parse(current[0])) and held.token == self.token:
                self.blob.delete()
        self._state = None

    def __enter__(self) -> WriterLease:
        return self.acquire() if self._state is None else self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def fence(self) -> LeaseFence:
        """A :class:`LeaseFence` for workers in other processes (Ray) that commit under this lease."""
        if isinstance(self.blob, ObjectBlob):
            return LeaseFence(self.blob.url.removesuffix(".lease.json"), self.token, self.blob.storage_options)
        return LeaseFence(str(self.blob.path).removesuffix(".lease.json"), self.token)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ heartbeat / fencing
    def heartbeat(self) -> None:
        """Renew the lease now (compare-and-swap); marks it lost when someone else took it over."""
        with self._io:
            if self._state is None or self._lost:
                return
            state = self._state
            new = _State(state.token, state.host, state.pid, state.started, time.time(), state.ttl,
                         state.generation, state.version + 1)
            try:
                assert self._version is not None
                self._version = self.blob.swap(new.to_bytes(), self._version)
            except _Conflict:
                current = self.blob.read()
                other = _State.parse(current[0]) if current else None
                who = other.describe() if other else "nobody (the lease was deleted)"
                self._lost = f"{self.what}: this job lost its writer lease (now held by {who}); it stopped writing"
                return
            self._state = new
            self._last_beat = time.monotonic()

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                self.heartbeat()
            except Exception:  # a transient storage error: the next beat retries; check() fences on age
                continue

    def check(self) -> None:
        """Raise :class:`LeaseLostError` unless this job still holds the lease (call before every commit)."""
        if self._lost:
            raise LeaseLostError(self._lost)
        if self._state is None:
            raise LeaseLostError(f"{self.what}: the writer lease is not held; open the store through encode")
        if time.monotonic() - self._last_beat > self.ttl * 0.75:
            # Our heartbeats stalled: another job may consider the lease stale soon. Renew synchronously.
            self.heartbeat()
            if self._lost:
                raise LeaseLostError(self._lost)
            if time.monotonic() - self._last_beat > self.ttl * 0.75:
                raise LeaseLostError(f"{self.what}: the writer lease could not be renewed; stopped before writing")


class LeaseFence:
    """A read-only view of another process's lease, for workers that commit rows on a coordinator's behalf.

    Picklable (it keeps the store's location, not a client), so the coordinator hands it to Ray workers on
    other machines. :meth:`check` reads the lease (one small GET per shard commit) and raises
    :class:`LeaseLostError` when it no longer carries the coordinator's token: a worker of a job whose lease
    was taken over stops before marking anything.
    """

    def __init__(self, store: str, token: str, storage_options: dict[str, Any] | None = None) -> None:
        self.store, self.token, self.storage_options = store, token, storage_options
        self._blob: LeaseBlob | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"store": self.store, "token": self.token, "storage_options": self.storage_options, "_blob": None}

    def check(self) -> None:
        if self._blob is None:
            self._blob = lease_blob(self.store, self.storage_options)
        current = self._blob.read()
        held = _State.parse(current[0]) if current else None
        if held is None or held.token != self.token:
            who = held.describe() if held else "nobody (the lease was deleted)"
            raise LeaseLostError(
                f"{self.store}: the job that owns this worker lost its writer lease (now held by {who}); "
                "the worker stopped writing"
            )
