"""Exclusive ownership of a shard, across threads and processes of one machine.

Zarr loses writes silently when two writers touch different chunks of one shard, so ownership is not a
convention but a lock: an advisory ``flock`` on ``<bucket>/status/.locks/<shard>.lock``. The kernel drops
the lock when the owner dies (even by SIGKILL), so a crashed writer never blocks a resume. ``flock``
conflicts between separate ``open()`` calls of one process too, so threads are covered as well; a small
in-process registry only turns a same-thread re-acquisition (a guaranteed deadlock) into an error.

Object storage has no ``flock``. There a lock is in-process only (``path=None``): threads of one process
are serialised on a per-shard mutex, and across processes and machines ownership rests on the job-level
writer lease (one writing job per store, wfvae_cli/store/lease.py) plus the coordinator handing each shard
to one worker at a time (docs/store-format.md, "Object storage").

Limits: advisory locks do not reach across machines on network file systems; there the pipeline's
disjoint shard assignment is the only guard. On platforms without ``fcntl`` only the in-process
registry applies.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

from wfvae_cli.store.errors import ShardOwnershipError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_registry_lock = threading.Lock()
_holders: dict[str, int] = {}  # lock key -> ident of the thread holding it in this process
_mutexes: dict[str, threading.Lock] = {}  # lock key -> in-process mutex (locks without a file: object storage)
_POLL_SECONDS = 0.02


class ShardLock:
    """An exclusive lock on one shard; ``acquire`` raises :class:`ShardOwnershipError` when it cannot own it.

    ``path``: the lock file (local stores); ``None`` for an in-process lock named by ``key`` (object storage).
    """

    def __init__(self, path: Path | None, description: str, key: str | None = None) -> None:
        self.path = path
        self.description = description
        self.key = str(path) if path is not None else (key or description)
        self._fd: int | None = None
        self._mutex: threading.Lock | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None or self._mutex is not None

    def acquire(self, wait: float | None = 0.0) -> None:
        """Own the shard. ``wait``: seconds to wait for the current owner; ``None`` waits forever."""
        key = self.key
        with _registry_lock:
            if _holders.get(key) == threading.get_ident():
                raise ShardOwnershipError(
                    f"{self.description} is already owned by an open writer in this thread; write through that writer"
                )
            mutex = _mutexes.setdefault(key, threading.Lock()) if self.path is None else None
        if mutex is not None:
            if not mutex.acquire(timeout=-1 if wait is None else max(wait, 0.0)):
                raise ShardOwnershipError(
                    f"{self.description} is owned by another writer in this process; "
                    "give each writer its own shards, or wait for the owner to finish"
                )
            with _registry_lock:
                _holders[key] = threading.get_ident()
            self._mutex = mutex
            return
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._lock_fd(fd, wait)
        except BaseException:
            os.close(fd)
            raise
        with _registry_lock:
            _holders[key] = threading.get_ident()
        self._fd = fd

    def _lock_fd(self, fd: int, wait: float | None) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            return
        if wait is None:
            fcntl.flock(fd, fcntl.LOCK_EX)  # releases the GIL while blocked
            return
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ShardOwnershipError(
                        f"{self.description} is owned by another writer (lock {self.path}); "
                        "give each writer its own shards, or wait for the owner to finish"
                    ) from None
                time.sleep(_POLL_SECONDS)

    def __del__(self) -> None:
        # A writer dropped without close() must not keep its shard (or the registry entry) forever.
        with contextlib.suppress(Exception):  # interpreter shutdown may have torn down globals
            self.release()

    def release(self) -> None:
        """Give up ownership (idempotent). Closing the descriptor drops the flock."""
        if self._mutex is not None:
            with _registry_lock:
                _holders.pop(self.key, None)
            mutex, self._mutex = self._mutex, None
            mutex.release()
            return
        if self._fd is None:
            return
        with _registry_lock:
            _holders.pop(self.key, None)
        os.close(self._fd)
        self._fd = None
