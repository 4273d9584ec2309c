"""The one table of precision names: what users type (``fp32``/``bf16``/``fp16``) and what each means.

CLI options (``--dtype``, ``--store-dtype``, ``train export --dtype``), recipes (``precision``) and the
benchmark settings all resolve names here, so a name means the same everywhere and an error lists the
same choices. torch is imported only when a name is turned into a ``torch.dtype``: option parsing (and
``wfvae --help``) must not pay for importing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wfvae_cli.errors import WfvaeError

if TYPE_CHECKING:
    import torch

#: user-facing name -> numpy/torch attribute name
DTYPE_NAMES: dict[str, str] = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: the precisions a Zarr store can hold (bfloat16 has no Zarr/numpy type)
STORE_DTYPES: dict[str, str] = {k: DTYPE_NAMES[k] for k in ("fp16", "fp32")}


def check_dtype(name: str, option: str = "--precision", choices: dict[str, str] = DTYPE_NAMES, why: str = "") -> str:
    """``name`` if it is one of ``choices``, else a one-line error naming ``option`` and the choices."""
    if name not in choices:
        raise WfvaeError(f"{option} {name!r}: choose one of {', '.join(choices)}" + (f" ({why})" if why else ""))
    return name


def torch_dtype(name: str, option: str = "--precision") -> torch.dtype:
    """``"bf16"`` -> ``torch.bfloat16`` (an unknown name is a one-line error naming ``option``)."""
    import torch

    return getattr(torch, DTYPE_NAMES[check_dtype(name, option)])
