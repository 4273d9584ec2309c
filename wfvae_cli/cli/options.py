"""Option parsing shared by several commands (one place for each rule)."""

from __future__ import annotations

import json
from typing import Any

import torch
import typer
from rich.console import Console

from wfvae_cli.dtypes import torch_dtype
from wfvae_cli.errors import WfvaeError

console = Console()
err_console = Console(stderr=True)



def parse_resolution(res: str) -> tuple[int, int]:
    """``256`` -> (256, 256); ``320x512`` -> (320, 512) as (height, width); multiples of 8."""
    try:
        parts = [int(v) for v in res.lower().split("x")]
    except ValueError as exc:
        raise WfvaeError(f"--res {res!r}: expected N or HxW, e.g. 256 or 320x512") from exc
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or any(v <= 0 or v % 8 for v in parts):
        raise WfvaeError(f"--res {res!r}: height and width must be positive multiples of 8")
    return parts[0], parts[1]


def parse_dtype(name: str) -> torch.dtype:
    return torch_dtype(name, "--dtype")


def print_json(data: Any) -> None:
    """Machine-readable output on stdout, nothing else."""
    typer.echo(json.dumps(data, indent=2, default=str))


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
