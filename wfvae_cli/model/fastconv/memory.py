"""Peak bytes a computation allocates through PyTorch's CPU allocator, measured in-process.

Peak RSS is a poor measure of what an implementation needs (glibc keeps freed memory resident, and
where the holes fall differs from run to run). PyTorch's profiler records every allocation and free of
its CPU allocator, which serves both tensors and oneDNN's buffers (its weight reorders and scratch,
registered with PyTorch's allocator), so the running sum of those events, in order, gives the exact
peak of bytes held above the start: the same number on every run of the same code path. Not counted:
memory that bypasses PyTorch's allocator (MKL's sgemm packing buffers, the Winograd kernels' small
per-thread scratch). Used by the backend verdict (:mod:`products`) and the memory tests.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import TypeVar

from torch.profiler import ProfilerActivity, profile

T = TypeVar("T")


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """The profiler's C++ side logs its start and stop (and a GPU probe) on file descriptor 2: not for
    the user of a one-time calibration."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_allocated(fn: Callable[[], T]) -> tuple[T, int]:
    """``(fn(), peak)``: the peak bytes held from PyTorch's CPU allocator during ``fn`` above what was
    held before it (tensors alive before the call do not count; the result does, while it is built)."""
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    events = sorted(
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
    )
    held = peak = 0
    for _, nbytes in events:
        held += nbytes
        peak = max(peak, held)
    return result, peak
