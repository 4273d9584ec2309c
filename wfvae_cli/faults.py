"""Fault injection for tests and drills, in one place.

Every hook is an environment variable, read when the hook is reached (never at import), so a test can
set it with ``monkeypatch.setenv`` after the package is imported, and a subprocess or Ray worker that
inherits the variable behaves the same. Unset (the default) every hook is a no-op costing one dict look-up.

=============================== ==========================================================================
variable                        effect
=============================== ==========================================================================
``WFVAE_DEBUG_ENCODE_DELAY``    seconds to sleep before each model batch (a tiny model becomes slow
                                enough to be killed part-way through a run)
``WFVAE_IO_DEBUG_HANG``         a file-name glob: decode workers hang on matching files (decode timeouts)
``WFVAE_BENCH_DEBUG_OOM``       ``raise:GLOB`` / ``kill:GLOB`` (comma-separated): a benchmark phase whose
                                ``CELL/PHASE`` matches,
                                e.g. ``kill:*@5x32x32/direct/encode``, raises ``MemoryError`` / is SIGKILLed
``WFVAE_RAY_DEBUG_CRASH_ONCE``  a path: the first Ray model worker to encode one sample of a multi-row
                                shard creates the file and exits, once per job (a worker killed mid-shard)
``WFVAE_RAY_DEBUG_CRASH_ON``    ``bucket/row``: any Ray model worker about to encode that row exits, every
                                time (a clip that kills the process, as a driver bug or an OOM kill would)
``WFVAE_DEBUG_KILL_STREAM``     ``N``: SIGKILL this process right after its N-th ``--clip-mode full``
                                checkpoint is written (a kill -9 at an exact point of a long video);
                                ``N+`` kills just *before* the N-th is written (work since the last one lost)
=============================== ==========================================================================
"""

from __future__ import annotations

import fnmatch
import os
import signal
import time
from collections.abc import Iterable, Mapping

ENCODE_DELAY = "WFVAE_DEBUG_ENCODE_DELAY"
DECODE_HANG = "WFVAE_IO_DEBUG_HANG"
BENCH_OOM = "WFVAE_BENCH_DEBUG_OOM"
RAY_CRASH_ONCE = "WFVAE_RAY_DEBUG_CRASH_ONCE"
RAY_CRASH_ON = "WFVAE_RAY_DEBUG_CRASH_ON"
KILL_STREAM = "WFVAE_DEBUG_KILL_STREAM"
ALL: tuple[str, ...] = (ENCODE_DELAY, DECODE_HANG, BENCH_OOM, RAY_CRASH_ONCE, RAY_CRASH_ON, KILL_STREAM)
_stream_checkpoints = 0


def snapshot() -> dict[str, str]:
    """The hooks set in this process, to hand to processes that do not inherit its environment.

    A Ray cluster joined before a test set a variable starts its workers with the old environment, so
    the coordinator passes this to its workers, which :func:`adopt` it.
    """
    return {k: os.environ[k] for k in ALL if os.environ.get(k)}


def adopt(hooks: Mapping[str, str]) -> None:
    """Set ``hooks`` (from :func:`snapshot`) in this process; only fault variables are accepted."""
    for key, value in hooks.items():
        if key not in ALL:
            raise ValueError(f"{key} is not a fault-injection variable (one of {', '.join(ALL)})")
        os.environ[key] = value


def encode_delay() -> None:
    """Sleep ``WFVAE_DEBUG_ENCODE_DELAY`` seconds (before a model batch)."""
    delay = float(os.environ.get(ENCODE_DELAY) or 0)
    if delay > 0:
        time.sleep(delay)


def decode_hangs(path: str) -> bool:
    """True if decoding ``path`` should hang (its file name matches ``WFVAE_IO_DEBUG_HANG``)."""
    pattern = os.environ.get(DECODE_HANG)
    return bool(pattern) and fnmatch.fnmatch(os.path.basename(path), pattern)  # type: ignore[arg-type]


def bench_oom(where: str, allow_kill: bool) -> None:
    """Simulate running out of memory at benchmark phase ``where`` (see ``WFVAE_BENCH_DEBUG_OOM``).

    ``kill`` SIGKILLs this process only when ``allow_kill`` (an isolated child); otherwise it raises too.
    """
    for item in os.environ.get(BENCH_OOM, "").split(","):
        kind, sep, pattern = item.strip().partition(":")
        if not sep or not fnmatch.fnmatchcase(where, pattern):
            continue
        if kind == "kill" and allow_kill:
            os.kill(os.getpid(), signal.SIGKILL)
        if kind in ("raise", "kill"):
            raise MemoryError(f"simulated out-of-memory ({BENCH_OOM})")


def ray_crash_on(rows: Iterable[str]) -> None:
    """Exit this process if one of ``rows`` (``bucket/row``) is ``WFVAE_RAY_DEBUG_CRASH_ON``."""
    target = os.environ.get(RAY_CRASH_ON)
    if target and target in set(rows):
        os._exit(1)


def ray_crash_once(done: int, total: int) -> None:
    """Exit this process once per job (marker file ``WFVAE_RAY_DEBUG_CRASH_ONCE``), mid-shard.

    Fires after the first sample of a shard of two or more rows: one sample is buffered, none written.
    """
    marker = os.environ.get(RAY_CRASH_ONCE)
    if not marker or done != 1 or total < 2:
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os._exit(1)


def stream_checkpoint(before: bool) -> None:
    """SIGKILL this process at its N-th stream checkpoint (``WFVAE_DEBUG_KILL_STREAM``; see the table)."""
    global _stream_checkpoints
    spec = os.environ.get(KILL_STREAM)
    if not spec:
        return
    n, early = int(spec.rstrip("+")), spec.endswith("+")
    if before:
        _stream_checkpoints += 1
        if early and _stream_checkpoints == n:
            os.kill(os.getpid(), signal.SIGKILL)
    elif not early and _stream_checkpoints == n:
        os.kill(os.getpid(), signal.SIGKILL)
