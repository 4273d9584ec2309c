"""``--device`` names: one check and one ``auto`` rule for every command and library entry point.

``auto`` (the default of every command: encode, bench, bench pipeline/recon, demo, train recipes) means
``cuda`` when torch sees a CUDA device, else ``cpu`` — never MPS implicitly (some ops WF-VAE uses are slow or
missing there; ask for ``mps`` explicitly). :func:`auto_device` is that rule, :func:`check_device` validates
a name and resolves ``auto`` with it; nothing else in the package decides what ``auto`` means.

Why up front: a bad name (``gpu``, ``bogus``) or a device this machine lacks (``cuda`` without CUDA) must be
one line and exit 2 *before* a model is built or a store is created, not a torch RuntimeError (exit 3)
after minutes of planning. torch is imported only for the names that need it, so ``cpu`` costs nothing.
"""

from __future__ import annotations

import re

from wfvae_cli.errors import WfvaeError

_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


DEFAULT_DEVICE = "auto"


def auto_device(local_rank: int | None = None) -> str:
    """What ``auto`` resolves to here: ``cuda`` (``cuda:local_rank`` when given) if CUDA is available, else ``cpu``."""
    import torch

    if torch.cuda.is_available():
        return "cuda" if local_rank is None else f"cuda:{local_rank}"
    return "cpu"


def check_device(device: str, option: str = "--device", allow_auto: bool = True) -> str:
    """Validate ``--device`` before anything is created (no model, no store): exit 2 with the fix.

    Accepted: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` (and ``auto`` = cuda if available, else cpu, where allowed);
    returns the normalised name. CUDA and MPS are checked against this machine, so ``--device cuda`` on a
    CPU-only host fails here, in one line,
    instead of as a torch RuntimeError after the model was built.
    """
    name = device.strip().lower()
    if allow_auto and name == "auto":
        return auto_device()
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
