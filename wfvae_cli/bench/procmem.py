"""Process memory on Linux: current and peak RSS, resetting the peak, returning freed heap to the OS.

Why these and not ``resource.getrusage().ru_maxrss``: that is the peak over the whole process life, so
a transient during model loading (a checkpoint held twice while it is copied into the model) would be
reported as the inference peak. Writing ``5`` to ``/proc/self/clear_refs`` resets the kernel's peak
(``VmHWM``) to the current RSS (Linux >= 4.0), which scopes the peak to one phase. ``malloc_trim(0)``
hands glibc's free heap pages back first, so the phase baseline is not inflated by memory an earlier
phase freed but glibc kept.

Every function degrades to ``None``/``False`` where ``/proc`` or glibc is missing (macOS): the report then
says the memory is unknown rather than inventing a number.

Library or hand-rolled (docs/bench.md): the *current* RSS comes from psutil, which is as fast as reading
``/proc/<pid>/statm`` (5.3 vs 5.5 µs per call, measured) and works on every OS. The peak (``VmHWM``), its
reset (``clear_refs``), ``malloc_trim`` and ``PR_SET_PDEATHSIG`` have no psutil equivalent and stay here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import signal
from typing import Any

from wfvae_cli.extras import require


def _status_kib(field: str, pid: int | str = "self") -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_bytes(pid: int | str = "self") -> int | None:
    """Current resident set size of ``pid`` (psutil: every OS, as cheap as one ``/proc`` read, ~5 µs)."""
    psutil = require("psutil", "process memory (wfvae bench)")
    try:
        return int(_process(os.getpid() if pid == "self" else int(pid)).memory_info().rss)
    except (psutil.Error, OSError, ValueError):
        return None


@functools.lru_cache(maxsize=16)
def _process(pid: int) -> Any:  # a psutil.Process (psutil is imported lazily)
    """One ``psutil.Process`` per pid: building one costs more than the read (the isolate loop polls a child)."""
    return require("psutil").Process(pid)


def peak_rss_bytes() -> int | None:
    """This process's peak RSS since start or since the last :func:`reset_peak_rss` (``VmHWM``)."""
    kib = _status_kib("VmHWM")
    return None if kib is None else kib * 1024


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS; False if the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return lib if lib is not None and hasattr(lib, "malloc_trim") else None


def trim_heap() -> None:
    """Return free malloc memory to the OS (glibc ``malloc_trim(0)``); a no-op elsewhere."""
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``).

    A measurement child can run for minutes; if the benchmark is terminated (SIGTERM skips the parent's
    cleanup), an orphaned child would keep burning the CPU that other work needs. The parent-pid check
    closes the race where the parent died before the request was made.
    """
    lib = _libc()
    if lib is not None and hasattr(lib, "prctl"):
        lib.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)
