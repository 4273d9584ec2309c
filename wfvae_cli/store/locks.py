"""Exclusive ownership of a shard, across threads and processes of one machine.

Zarr loses writes silently when two writers touch different chunks of one shard, so ownership is not a
convention but a lock: an advisory ``flock`` on ``<bucket>/status/.locks/<shard>.lock``. The kernel drops
the lock when the owner dies (even by SIGKILL), so a crashed writer never blocks a resume. ``flock``
conflicts between separate ``open()`` calls of one process too, so threads are covered as well; a small
in-process registry only turns a same-thread re-acquisition (a guaranteed deadlock) into an error.

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
_holders: dict[str, int] = {}  # lock path -> ident of the thread holding it in this process
_POLL_SECONDS = 0.02


class ShardLock:
    """An exclusive lock on one shard; ``acquire`` raises :class:`ShardOwnershipError` when it cannot own it."""

    def __init__(self, path: Path, description: str) -> None:
        self.path = path
        self.description = description
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait: float | None = 0.0) -> None:
        """Own the shard. ``wait``: seconds to wait for the current owner; ``None`` waits forever."""
        key = str(self.path)
        with _registry_lock:
            if _holders.get(key) == threading.get_ident():
                raise ShardOwnershipError(
                    f"{self.description} is already owned by an open writer in this thread; write through that writer"
                )
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
        if self._fd is None:
            return
        with _registry_lock:
            _holders.pop(str(self.path), None)
        os.close(self._fd)
        self._fd = None
