"""What a profiling run measures: run-wide :class:`BenchSettings` and one configuration, :class:`Cell`.

Both are plain, JSON-serialisable dataclasses because a cell is shipped to a fresh child process (CPU
memory isolation) as JSON, and because the report echoes the settings so that a number can always be
traced back to how it was measured. Everything the user can get wrong is checked here, before any model
is loaded, and raised as a one-line :class:`~wfvae_cli.errors.WfvaeError`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch

from wfvae_cli.dtypes import check_dtype, torch_dtype
from wfvae_cli.errors import WfvaeError
from wfvae_cli.model.layers import CONV_ALGORITHMS

Mode = Literal["encode", "decode", "both"]
Phase = Literal["encode", "decode"]
Inference = Literal["direct", "chunked"]

MODES: tuple[str, ...] = ("encode", "decode", "both")


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when available else ``cpu``; ``cuda``/``cuda:N`` must exist on this machine.

    Checked up front (:func:`wfvae_cli.devices.check_device`, the one device check) so that a CPU-only
    machine says so in one line instead of failing deep inside torch.
    """
    from wfvae_cli.devices import check_device

    return check_device(name, allow_auto=True)


@dataclass(frozen=True)
class BenchSettings:
    """Options shared by every configuration of a run (see ``docs/bench.md`` for their effect).

    ``device`` is already resolved (:func:`resolve_device`). ``isolate`` runs each CPU configuration in a
    fresh subprocess (the only way to get a clean peak RSS); on CUDA the allocator statistics are exact
    per process, so configurations run in-process. ``threads`` is torch's intra-op thread count (None:
    torch's default), pinned in the children so that they match the parent.
    """

    device: str = "cpu"
    dtype: str = "fp32"
    batch_size: int = 1
    warmup: int = 2
    repeat: int = 5
    mode: Mode = "both"
    chunk_frames: int | None = None
    compile: bool = False
    channels_last: bool = False
    conv_algorithm: str = "auto"
    isolate: bool = True
    max_rss_gb: float | None = None
    threads: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_dtype(self.dtype, "--precision")
        if self.mode not in MODES:
            raise WfvaeError(f"--mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.batch_size < 1:
            raise WfvaeError(f"--batch-size {self.batch_size}: must be >= 1")
        if self.warmup < 0:
            raise WfvaeError(f"--warmup {self.warmup}: must be >= 0")
        if self.repeat < 1:
            raise WfvaeError(f"--repeat {self.repeat}: must be >= 1 (the timed runs)")
        if self.chunk_frames is not None and self.chunk_frames < 1:
            raise WfvaeError(f"--chunk-frames {self.chunk_frames}: must be >= 1 (or omit it for direct only)")
        if self.conv_algorithm not in CONV_ALGORITHMS:
            raise WfvaeError(f"--conv-algorithm {self.conv_algorithm!r}: choose one of {', '.join(CONV_ALGORITHMS)}")
        if self.compile and self.warmup < 1:
            raise WfvaeError("--compile needs --warmup >= 1: the first call compiles and must not be timed")
        if self.max_rss_gb is not None and not self.max_rss_gb > 0:
            raise WfvaeError(f"--max-rss-gb {self.max_rss_gb}: must be > 0 (GiB)")
        if self.threads is not None and self.threads < 1:
            raise WfvaeError(f"--threads {self.threads}: must be >= 1")

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch_dtype(self.dtype)

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def phases(self) -> tuple[Phase, ...]:
        return ("encode", "decode") if self.mode == "both" else (self.mode,)  # type: ignore[return-value]

    @property
    def subprocess_per_cell(self) -> bool:
        """CPU peak RSS is only meaningful in a fresh process; CUDA uses the allocator's own counters."""
        return self.isolate and not self.is_cuda

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchSettings:
        return cls(**data)


@dataclass(frozen=True)
class Cell:
    """One configuration: a model at one input size, direct or Causal-Cache chunked."""

    model: str
    frames: int
    height: int
    width: int
    chunk_frames: int | None = None

    @property
    def inference(self) -> Inference:
        return "direct" if self.chunk_frames is None else "chunked"

    @property
    def label(self) -> str:
        """``wfvae-s@33x256x256/direct``: what progress lines show and debug hooks match against."""
        how = "direct" if self.chunk_frames is None else f"chunk{self.chunk_frames}"
        return f"{self.model}@{self.frames}x{self.height}x{self.width}/{how}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        return cls(**data)


def plan_cells(
    models: list[str], sizes: list[tuple[int, int]], frames: list[int], chunk_frames: int | None
) -> list[Cell]:
    """The grid in report order: model, then size, then frames, direct before chunked (side by side)."""
    if not models or not sizes or not frames:
        raise WfvaeError("nothing to measure: give at least one --model, --res and --frames")
    variants: list[int | None] = [None] if chunk_frames is None else [None, chunk_frames]
    return [
        Cell(model, t, h, w, chunk)
        for model in models
        for (h, w) in sizes
        for t in frames
        for chunk in variants
    ]
