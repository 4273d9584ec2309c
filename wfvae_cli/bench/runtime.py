"""How a model is run for measurement: device, precision, memory format, synchronisation, OOM detection.

Shared by profiling and reconstruction so that "bf16" means the same thing in both:

* CUDA: the model stays float32 and runs under ``torch.autocast(dtype)`` (the standard mixed-precision
  recipe: norms and reductions keep float32 where autocast says so);
* CPU: the model and its input are cast to ``dtype`` (CPU autocast covers few ops and would mostly time
  dtype conversions). fp16 convolutions are slow or missing on many CPUs; such a failure is reported in
  the cell, not hidden.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from wfvae_cli.model import WFVAE

_OOM_TEXT = ("can't allocate memory", "not enough memory", "out of memory")


def is_oom(exc: BaseException) -> bool:
    """An allocation failure: Python's MemoryError, torch's OutOfMemoryError (CUDA), or the CPU allocator's
    ``RuntimeError: DefaultCPUAllocator: can't allocate memory`` (which is not a typed exception)."""
    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(t in str(exc).lower() for t in _OOM_TEXT)


def to_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """``channels_last_3d`` for 5D weights, ``channels_last`` for 4D ones (the per-frame 2D convs, viewed as
    5D with a temporal kernel of 1), leaving the rest: ``model.to(memory_format=...)`` refuses mixed ranks."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 5:
                p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
            elif p.dim() == 4:
                p.data = p.data.contiguous(memory_format=torch.channels_last)
    return model


def prepare_model(
    model: WFVAE, device: str | torch.device, dtype: torch.dtype, channels_last: bool = False
) -> WFVAE:
    """Move ``model`` to ``device``; cast it on CPU (see the module docstring); eval mode."""
    device = torch.device(device)
    model = model.to(device=device, dtype=dtype if device.type == "cpu" else None).eval()
    if channels_last:
        to_channels_last(model)
    return model


def input_dtype(device: str | torch.device, dtype: torch.dtype) -> torch.dtype:
    """Inputs are float32 under CUDA autocast (it casts per op) and ``dtype`` on CPU (the model is cast)."""
    return torch.float32 if torch.device(device).type == "cuda" else dtype


def prepare_input(x: torch.Tensor, device: str | torch.device, dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
    x = x.to(device=device, dtype=input_dtype(device, dtype))
    return x.contiguous(memory_format=torch.channels_last_3d) if channels_last else x


@contextlib.contextmanager
def inference_context(device: str | torch.device, dtype: torch.dtype) -> Iterator[None]:
    """``inference_mode`` plus, on CUDA with a half dtype, autocast."""
    device = torch.device(device)
    with torch.inference_mode():
        if device.type == "cuda" and dtype != torch.float32:
            with torch.autocast(device_type="cuda", dtype=dtype):
                yield
        else:
            yield


def synchronize(device: str | torch.device) -> None:
    """Wait for queued CUDA kernels: without it a timer measures only the kernel launches."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
