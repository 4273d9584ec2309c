"""Option parsing shared by several commands (one place for each rule).

Nothing here imports torch at module level: ``wfvae --help`` / ``--version`` import every command module,
and must stay fast (torch costs seconds).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import typer

from wfvae_cli.cli import console as _console
from wfvae_cli.cli.console import print_json as print_json
from wfvae_cli.devices import check_device as check_device
from wfvae_cli.dtypes import DTYPE_NAMES, STORE_DTYPES, check_dtype
from wfvae_cli.errors import WfvaeError

#: `--storage-options` of the commands that open a store (info, verify, decode)
STORE_OPTIONS_HELP = "JSON object of fsspec options for a store URL (s3://…); credentials otherwise come from the standard env/config files."

# compatibility names: the one pair of consoles lives in cli/console.py
console = _console.out
err_console = _console.err


def _choices(name: str, names: object, doc: str) -> type[Enum]:
    """A Typer choice enum over names from the one dtype table (:mod:`wfvae_cli.dtypes`)."""
    enum = Enum(name, {n: n for n in names}, type=str)  # type: ignore[arg-type,misc]
    enum.__doc__ = doc
    return enum


Precision = _choices("Precision", DTYPE_NAMES, "Compute precision (recipes: ``precision``); CUDA autocasts, the CPU "
                     "casts the model.")
StoreDtype = _choices("StoreDtype", STORE_DTYPES, "Stored floating-point type of latents.")
WeightsDtype = _choices("WeightsDtype", DTYPE_NAMES, "Stored precision of exported weights.")


def flag(default: bool | None, *names: str, **kwargs: Any) -> Any:
    """A boolean option shown as a flag (``--overwrite``), not as ``--overwrite <bool>``."""
    return typer.Option(default, *names, metavar="", **kwargs)



def parse_resolution(res: str, option: str = "--resolution") -> tuple[int, int]:
    """``256`` -> (256, 256); ``320x512`` -> (320, 512) as (height, width); multiples of 8."""
    try:
        parts = [int(v) for v in res.lower().split("x")]
    except ValueError as exc:
        raise WfvaeError(f"{option} {res!r}: expected N or HxW, e.g. 256 or 320x512") from exc
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or any(v <= 0 or v % 8 for v in parts):
        raise WfvaeError(f"{option} {res!r}: height and width must be positive multiples of 8")
    return parts[0], parts[1]


def parse_dtype(name: str | Enum, option: str = "--precision") -> str:
    """A compute precision name (``fp32``/``bf16``/``fp16``); the error names ``option``."""
    return check_dtype(name.value if isinstance(name, Enum) else name, option)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"


def split_list(values: list[str] | None) -> list[str]:
    """Repeated and/or comma-separated option values: ``--res 256,512 --res 768`` -> ["256", "512", "768"]."""
    return [item.strip() for value in values or [] for item in value.split(",") if item.strip()]


def parse_int_list(values: list[str] | None, option: str) -> list[int]:
    """``split_list`` of whole numbers; a bad item is a one-line error naming the option."""
    out = []
    for item in split_list(values):
        try:
            out.append(int(item))
        except ValueError as exc:
            raise WfvaeError(f"{option} {item!r}: expected a whole number (or a comma-separated list)") from exc
    return out
