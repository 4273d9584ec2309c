"""Decoding with a deadline: a pool of persistent decode subprocesses.

Why a process: FFmpeg can spin forever on a pathological file, and a Python thread stuck in C code cannot be
interrupted or killed; a process can. It also turns a decoder segfault into a per-file error instead of
taking the whole encode job down. Why persistent: spawning a process per video would cost far more than the
decode itself (the child imports the package), so a worker serves job after job and is only killed and
replaced when a deadline passes or it dies. Workers are pooled per concurrent caller: each thread borrows an
idle worker (or starts one) for one call, so N decode threads use N worker processes, in parallel.

Transport: a Unix socket pair, each message a pickled header (small tuples, never frames). Frames are
copied once into a memfd whose descriptor is passed over the socket (Linux; the parent maps it: no pixel
goes through the socket), elsewhere sent as raw bytes received straight into a preallocated numpy array.
The child is started with ``python -c`` rather than ``multiprocessing`` so that it never re-imports
the caller's ``__main__`` (scripts without an ``if __name__ == "__main__"`` guard keep working). POSIX only.

Test hook: if the environment variable ``WFVAE_IO_DEBUG_HANG`` holds a glob and a file's base name matches
it, the worker sleeps instead of decoding it, so tests can exercise the timeout without a real broken file.
"""

from __future__ import annotations

import atexit
import contextlib
import mmap
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from wfvae_cli import faults, storage
from wfvae_cli.errors import WfvaeError
from wfvae_cli.io import _backends, remote
from wfvae_cli.io._backends import VideoInfo
from wfvae_cli.io.errors import VideoDecodeError
from wfvae_cli.io.transform import ResizeSpec

STARTUP_TIMEOUT = 120.0  # seconds for a fresh worker to import the package (slow disks, loaded machines)
_FRAME = struct.Struct("<QQ")  # header length, payload length
# `python -c` rather than `-m`: runpy would import this module twice (once via the package's __init__).
# SIGINT is ignored first: a Ctrl-C while the child is still importing must not print its traceback
_CHILD_CODE = (
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "import sys; from wfvae_cli.io._worker import main; main(sys.argv[1:])"
)


# ----------------------------------------------------------------------------------------------- transport
def _send(sock: socket.socket, header: tuple, payload: np.ndarray | None = None) -> None:
    head = pickle.dumps(header, protocol=pickle.HIGHEST_PROTOCOL)
    body = memoryview(np.ascontiguousarray(payload)).cast("B") if payload is not None else b""
    sock.sendall(_FRAME.pack(len(head), len(body)) + head)
    if len(body):
        sock.sendall(body)


def _recv_exact(sock: socket.socket, buf: memoryview) -> None:
    got = 0
    while got < len(buf):
        n = sock.recv_into(buf[got:])
        if n == 0:
            raise EOFError("decode worker connection closed")
        got += n


#: Frames travel in a memfd (Linux): the child copies them once into an anonymous shared file and passes
#: its descriptor, the parent maps it — no byte goes through the socket. Streaming 26 MB per clip through
#: a ~200 KB socket buffer costs the child ~100 wake-ups and two kernel copies: measured ~70 ms of extra
#: CPU per 33x512² clip on 2 shared cores (38 % of the decode itself). Elsewhere: the socket, as before.
_MEMFD = hasattr(os, "memfd_create") and hasattr(socket, "send_fds")


def _send_frames(sock: socket.socket, job: int, frames: np.ndarray) -> None:
    """Send decoded frames: through a memfd when the platform has one, else as the message payload."""
    if not _MEMFD or frames.nbytes == 0:
        _send(sock, ("frames", job, frames.shape), frames)
        return
    fd = os.memfd_create("wfvae-frames", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, frames.nbytes)
        with mmap.mmap(fd, frames.nbytes) as mm:
            np.frombuffer(mm, np.uint8).reshape(frames.shape)[...] = frames  # the one copy
        _send(sock, ("frames_fd", job, frames.shape))
        socket.send_fds(sock, [b"F"], [fd])
    finally:
        os.close(fd)


def _recv_fd_frames(sock: socket.socket, shape: tuple[int, ...]) -> np.ndarray:
    """The parent's side of :func:`_send_frames`: map the passed memfd as (writable) uint8 frames."""
    data, fds, _, _ = socket.recv_fds(sock, 1, 1)
    if not data:
        raise EOFError("decode worker connection closed")
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise EOFError("decode worker sent frames without their descriptor")
    try:
        size = int(np.prod(shape))
        mm = mmap.mmap(fds[0], size)  # shared with the child until it unmaps: it never touches it again
    finally:
        os.close(fds[0])
    return np.frombuffer(mm, np.uint8).reshape(shape)  # the array keeps the mapping alive


def _recv(sock: socket.socket) -> tuple[tuple, bytearray | np.ndarray | None]:
    """Read one message; the payload (if any) comes back as a bytearray the caller reinterprets, or, for
    frames passed in a memfd, already as the uint8 array."""
    sizes = bytearray(_FRAME.size)
    _recv_exact(sock, memoryview(sizes))
    head_len, body_len = _FRAME.unpack(sizes)
    head = bytearray(head_len)
    _recv_exact(sock, memoryview(head))
    msg = pickle.loads(head)
    if msg[0] == "frames_fd":
        return ("frames", *msg[1:]), _recv_fd_frames(sock, msg[2])
    body = None
    if body_len:
        body = bytearray(body_len)
        _recv_exact(sock, memoryview(body))
    return msg, body


# --------------------------------------------------------------------------------------------------- child
def _portable(err: BaseException) -> BaseException:
    """User errors cross the process boundary as themselves; anything else as a RuntimeError with the trace."""
    if isinstance(err, WfvaeError):
        return err
    trace = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return RuntimeError(f"decode worker failed unexpectedly: {type(err).__name__}: {err}\n{trace}")


def _serve(sock: socket.socket) -> None:
    """Child main loop: answer jobs until the parent says quit or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes us
    _send(sock, ("ready", os.getpid()))
    while True:
        try:
            msg, _ = _recv(sock)
        except (EOFError, OSError):
            return
        kind = msg[0]
        if kind == "quit":
            return
        if kind in ("more", "stop"):
            continue  # flow control left over from a stream that already ended
        if kind == "config":  # the parent's storage options and cloud environment, sent when they change
            remote.set_storage_options(msg[1])
            storage.adopt_storage_env(msg[2], replace=True)
            continue
        job, path, hang = msg[1], msg[2], msg[3]
        try:
            if hang:
                time.sleep(1e6)
            if kind == "probe":
                _send(sock, ("result", job, _backends.probe(path)))
            elif kind == "read":
                frames = _backends.read_local(path, *msg[4:])
                _send_frames(sock, job, frames)
            elif kind == "iter":
                _stream(sock, job, _backends.iter_local(path, *msg[4:]))
            else:
                raise RuntimeError(f"unknown job kind {kind!r}")
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception as err:
            _send(sock, ("error", job, _portable(err)))


def _stream(sock: socket.socket, job: int, chunks: Iterator[np.ndarray]) -> None:
    """Send chunks one credit at a time, so the child runs at most one chunk ahead of the consumer."""
    try:
        for frames in chunks:
            while True:
                cmd, _ = _recv(sock)
                if cmd[0] in ("more", "stop") and cmd[1] == job:
                    break
            if cmd[0] == "stop":
                break
            _send_frames(sock, job, frames)
    finally:
        chunks.close()  # type: ignore[attr-defined]  # release the decoder now, not at garbage collection
    _send(sock, ("end", job))


def main(argv: list[str]) -> None:
    """Child entry point: ``argv[0]`` is the inherited socket's file descriptor.

    One torch thread: a decode worker is one core's worth of work (FFmpeg runs single-threaded in it too);
    the parallelism is the number of workers. With torch's default team, the uint8 resize's OpenMP threads
    spin against the other workers for the same cores (measured: ~45 % more CPU per clip on 2 cores).
    """
    import torch

    torch.set_num_threads(1)
    with socket.socket(fileno=int(argv[0])) as sock:
        _serve(sock)


# -------------------------------------------------------------------------------------------------- parent
class DecodeWorker:
    """One decode subprocess and the parent's end of its socket. Not thread-safe: borrow it from the pool."""

    def __init__(self) -> None:
        parent, child = socket.socketpair()
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])  # importable from any working directory
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD_CODE, str(child.fileno())],
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
            env=env,
        )
        child.close()
        self.pid = self._proc.pid
        _all.add(self)
        self._sock = parent
        self._job = 0
        self._config: tuple[dict, dict[str, str]] | None = None  # (storage options, cloud env) last sent
        try:
            ready, _, _ = select.select([parent], [], [], STARTUP_TIMEOUT)
            msg = _recv(parent)[0] if ready else ("no answer",)
        except (EOFError, OSError):
            msg = ("exited",)
        if msg[0] != "ready":
            self.kill()
            raise RuntimeError(
                f"the decode worker did not start ({msg[0]}, exit code {self._proc.returncode}); "
                "check that `python -c 'import wfvae_cli.io'` works in this environment"
            )

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None and self._sock.fileno() != -1

    def kill(self) -> None:
        """Kill the child now (a stuck decoder never returns); the pool replaces it on the next call."""
        with contextlib.suppress(OSError):
            self._proc.kill()
        self._proc.wait()
        self._sock.close()

    def close(self) -> None:
        """Ask the child to quit, and kill it if it does not within a second."""
        if self.alive:
            with contextlib.suppress(OSError):
                _send(self._sock, ("quit",))
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=1.0)
        self.kill()

    # ---- one message with a deadline
    def _await(self, path: str, deadline: float, timeout: float) -> tuple[tuple, bytearray | None]:
        """One message within the deadline. On timeout or death the child is killed; an interrupted wait
        (Ctrl-C) kills it too, since it would otherwise go back to the pool still busy."""
        try:
            ready, _, _ = select.select([self._sock], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                self.kill()
                raise VideoDecodeError(
                    f"{path}: decoding timed out after {timeout:g} s (a loaded machine or slow storage, or a "
                    f"file that hangs FFmpeg); transient: a plain rerun of the same command retries it (no flag "
                    f"needed); if it keeps timing out, rerun with a larger --decode-timeout (now {timeout:g})",
                    transient=True,
                )
            return _recv(self._sock)
        except (EOFError, OSError):
            self.kill()
            code = self._proc.returncode
            if code == -signal.SIGKILL:  # killed from outside (the OOM killer, an operator): not the file
                raise VideoDecodeError(
                    f"{path}: the decoder process was killed (SIGKILL, often out of memory); transient: a "
                    "plain rerun of the same command retries it (no flag needed)",
                    transient=True,
                ) from None
            raise VideoDecodeError(
                f"{path}: the decoder process died (exit code {code}); the file probably "
                "crashes FFmpeg: re-encode it or remove it from the inputs"
            ) from None
        except WfvaeError:
            raise
        except BaseException:
            self.kill()
            raise

    def _reply(self, path: str, job: int, deadline: float, timeout: float) -> tuple[tuple, bytearray | None]:
        """Next message for ``job`` (stale ones from an abandoned job are dropped); errors re-raised here."""
        while True:
            msg, body = self._await(path, deadline, timeout)
            if msg[1] != job:
                continue
            if msg[0] == "error":
                raise msg[2]
            return msg, body

    def _submit(self, kind: str, path: str, *args: object) -> int:
        self._job += 1
        hang = faults.decode_hangs(path)
        # The child opens URLs itself, with the parent's current options and cloud variables: a pooled worker may
        # have started before either was set (an endpoint exported by a test fixture or a notebook cell).
        config = (remote.storage_options(), storage.storage_env())
        if config != self._config:
            _send(self._sock, ("config", *config))
            self._config = config
        _send(self._sock, (kind, self._job, path, hang, *args))
        return self._job

    # ---- jobs
    def probe(self, path: str, timeout: float) -> VideoInfo:
        job = self._submit("probe", path)
        msg, _ = self._reply(path, job, time.monotonic() + timeout, timeout)
        return msg[2]

    def read(
        self, path: str, indices: np.ndarray, backend: str, threads: int, timeout: float,
        fit: ResizeSpec | None = None,
    ) -> np.ndarray:
        job = self._submit("read", path, indices, backend, threads, fit)
        msg, body = self._reply(path, job, time.monotonic() + timeout, timeout)
        return _as_frames(body, msg[2])

    def iter(
        self, path: str, indices: np.ndarray, chunk: int, backend: str, threads: int, timeout: float,
        fit: ResizeSpec | None = None,
    ) -> Iterator[np.ndarray]:
        """Stream chunks; ``timeout`` bounds the wait for each chunk, not the whole video."""
        job = self._submit("iter", path, indices, chunk, backend, threads, fit)
        settled = False  # True once the child is idle again (or dead): nothing left to drain
        try:
            _send(self._sock, ("more", job))
            while True:
                try:
                    msg, body = self._reply(path, job, time.monotonic() + timeout, timeout)
                except BaseException:
                    settled = True  # the child reported an error (now idle), or it was killed
                    raise
                if msg[0] == "end":
                    settled = True
                    return
                _send(self._sock, ("more", job))  # the child decodes the next chunk while ours is used
                yield _as_frames(body, msg[2])
        finally:
            if not settled:
                self._abandon(path, job, timeout)

    def _abandon(self, path: str, job: int, timeout: float) -> None:
        """The consumer stopped early: tell the child, then drain until it confirms (or kill it)."""
        try:
            _send(self._sock, ("stop", job))
            while self._reply(path, job, time.monotonic() + timeout, timeout)[0][0] != "end":
                pass
        except (WfvaeError, OSError):
            self.kill()


def _as_frames(body: bytearray | np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """View the received bytes as uint8 frames (writable, no copy); memfd frames arrive as arrays already."""
    if isinstance(body, np.ndarray):
        return body
    return np.frombuffer(body if body is not None else bytearray(), np.uint8).reshape(shape)


# ---------------------------------------------------------------------------------------------------- pool
_idle: list[DecodeWorker] = []
_idle_lock = threading.Lock()
_all: weakref.WeakSet[DecodeWorker] = weakref.WeakSet()  # every worker started here, idle or lent


def worker_pids() -> list[int]:
    """Process ids of this process's live decode workers (idle or busy): for CPU accounting (``bench pipeline``)."""
    return [w.pid for w in list(_all) if w.alive]


def _forget_pool_after_fork() -> None:
    """A forked child (a DataLoader worker, say) must not talk to its parent's workers: the sockets are
    shared, so two processes would interleave messages. It starts its own pool; the parent keeps its own."""
    global _idle_lock
    _idle.clear()
    _all.clear()
    _idle_lock = threading.Lock()  # the parent may have held it at fork time


os.register_at_fork(after_in_child=_forget_pool_after_fork)


@contextlib.contextmanager
def borrow() -> Iterator[DecodeWorker]:
    """Lend an idle worker (starting one if none is idle) and take it back if it survived the call."""
    with _idle_lock:
        worker = _idle.pop() if _idle else None
    if worker is None or not worker.alive:
        worker = DecodeWorker()
    try:
        yield worker
    finally:
        if worker.alive:
            with _idle_lock:
                _idle.append(worker)


def shutdown() -> None:
    """Stop every idle worker (registered at exit; also handy in tests)."""
    with _idle_lock:
        workers, _idle[:] = list(_idle), []
    for worker in workers:
        worker.close()


atexit.register(shutdown)
