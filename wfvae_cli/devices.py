"""``--device`` names: one check for every command and library entry point.

Why up front: a bad name (``gpu``, ``bogus``) or a device this machine lacks (``cuda`` without CUDA) must be
one line and exit 2 *before* a model is built or a store is created, not a torch RuntimeError (exit 3)
after minutes of planning. torch is imported only for the names that need it, so ``cpu`` costs nothing.
"""

from __future__ import annotations

import re

from wfvae_cli.errors import WfvaeError

_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


def check_device(device: str, option: str = "--device", allow_auto: bool = False) -> str:
    """Validate ``--device`` before anything is created (no model, no store): exit 2 with the fix.

    Accepted: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` (and ``auto`` = cuda if available, else cpu, where allowed);
    returns the normalised name. CUDA and MPS are checked against this machine, so ``--device cuda`` on a
    CPU-only host fails here, in one line,
    instead of as a torch RuntimeError after the model was built.
    """
    name = device.strip().lower()
    if allow_auto and name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    choices = "cpu, cuda, cuda:N, mps" + (" or auto" if allow_auto else "")
    if not _DEVICE.match(name):
        raise WfvaeError(f"{option} {device!r}: unknown device; use {choices}")
    if name == "cpu":
        return name
    import torch

    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise WfvaeError(f"{option} {device}: CUDA is not available on this machine (torch {torch.__version__}); "
                             "use --device cpu")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise WfvaeError(f"{option} {device}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                             f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    elif name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise WfvaeError(f"{option} {device}: MPS is not available on this machine; use --device cpu")
    return name
