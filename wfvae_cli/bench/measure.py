"""Measure one configuration in the current process: load, warm up, time the repeats, record the peak.

This is what a CPU child runs (:mod:`wfvae_cli.bench._child`) and what CUDA runs in-process. Progress is
reported through ``emit`` as small JSON-able events, written by the child as soon as they happen, so
that when the kernel kills the child mid-phase the parent still has every phase that finished and knows
which one was running.

Debug hook (tests, and checking a deployment's OOM handling): ``WFVAE_BENCH_DEBUG_OOM=kind:glob[,...]``
makes a phase whose ``<cell label>/<phase>`` (e.g. ``wfvae-s@33x256x256/direct/decode``; ``/load`` for
model loading) matches ``glob`` fail as if out of memory: ``raise`` raises ``MemoryError``, ``kill``
SIGKILLs the process like the OOM killer would (isolated children only; in-process it raises).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import torch

from wfvae_cli import faults
from wfvae_cli.bench import procmem
from wfvae_cli.bench.results import CellResult, MemoryStats, PhaseResult, Timing
from wfvae_cli.bench.runtime import (
    inference_context,
    is_oom,
    prepare_input,
    prepare_model,
    synchronize,
)
from wfvae_cli.bench.settings import BenchSettings, Cell, Phase
from wfvae_cli.errors import one_line
from wfvae_cli.model import WFVAE, load_model
from wfvae_cli.model.loading import is_weightless_preset

Emit = Callable[[dict[str, Any]], None]


class MemoryProbe:
    """Phase-scoped peak memory: the CUDA allocator's counters, or the process RSS (see :mod:`procmem`).

    ``start`` records the baseline (model and input in memory, freed heap returned to the OS); ``rearm``
    after the warm-up restarts the peak so that it covers the timed repeats only; ``stop`` reads it.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.baseline: int | None = None
        self.scoped = True

    def start(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
            return
        procmem.trim_heap()
        self.scoped = procmem.reset_peak_rss()
        self.baseline = procmem.rss_bytes()

    def rearm(self) -> None:
        """Restart the peak after the warm-up, keeping the after-load baseline: first-call costs (torch.compile,
        oneDNN primitive creation, cuDNN autotuning) are transient and not what the steady state needs."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            procmem.trim_heap()
            self.scoped = procmem.reset_peak_rss() and self.scoped

    def stop(self) -> MemoryStats | None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return MemoryStats("cuda", torch.cuda.max_memory_allocated(self.device), self.baseline or 0)
        peak = procmem.peak_rss_bytes()
        if peak is None or self.baseline is None:
            return None
        return MemoryStats("rss", peak, self.baseline, phase_scoped=self.scoped)


def _compile_error(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor")) or "compile" in str(exc).lower()


class CellRunner:
    """Runs the phases of one :class:`Cell` on an already prepared model."""

    def __init__(self, model: WFVAE, cell: Cell, settings: BenchSettings, allow_kill: bool) -> None:
        self.model = model
        self.cell = cell
        self.settings = settings
        self.device = torch.device(settings.device)
        self.allow_kill = allow_kill
        cfg = model.config
        self.latent_shape = (settings.batch_size, *cfg.latent_shape(cell.frames, cell.height, cell.width))

    def _input(self, phase: Phase) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.settings.seed)
        s, c = self.settings, self.cell
        if phase == "encode":
            x = torch.rand((s.batch_size, 3, c.frames, c.height, c.width), generator=gen) * 2 - 1
        else:  # decode speed does not depend on the latent's values: a seeded normal latent of the right shape
            x = torch.randn(self.latent_shape, generator=gen)
        return prepare_input(x, self.device, s.torch_dtype, s.channels_last)

    def _call(self, phase: Phase, x: torch.Tensor) -> object:
        chunk = self.cell.chunk_frames
        if phase == "encode":
            return self.model.encode(x, chunk_frames=chunk)
        return self.model.decode(x, chunk_frames=chunk)

    def run(self, phase: Phase) -> PhaseResult:
        s = self.settings
        probe = MemoryProbe(self.device)
        x: torch.Tensor | None = None
        out: object = None
        try:
            x = self._input(phase)
            probe.start()
            faults.bench_oom(f"{self.cell.label}/{phase}", self.allow_kill)
            times: list[float] = []
            with inference_context(self.device, s.torch_dtype):
                for i in range(s.warmup + s.repeat):
                    out = None  # free the previous output first: two alive at once would inflate the peak
                    if i == s.warmup and i > 0:
                        probe.rearm()
                    synchronize(self.device)
                    start = time.perf_counter()
                    out = self._call(phase, x)
                    synchronize(self.device)
                    if i >= s.warmup:
                        times.append(time.perf_counter() - start)
            out = None
            memory = probe.stop()
            return PhaseResult(phase, "ok", Timing(tuple(times)), memory, s.batch_size, self.cell.frames)
        except Exception as exc:
            out = x = None  # drop the tensors before building the result (an OOM leaves little room)
            if is_oom(exc):
                return PhaseResult(phase, "oom", clips=s.batch_size, frames=self.cell.frames, error=one_line(exc))
            message = one_line(exc)
            if s.compile and _compile_error(exc):
                message = f"torch.compile failed: {message}"
            return PhaseResult(phase, "error", clips=s.batch_size, frames=self.cell.frames, error=message)
        finally:
            del out, x
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()


def load_for_bench(cell: Cell, settings: BenchSettings, allow_kill: bool = False) -> WFVAE:
    """Load, move, cast and optionally compile the model of ``cell``.

    ``torch.compile`` wraps the encoder and decoder modules, not the ``WFVAE`` wrapper, whose Python
    control flow (length checks, Causal-Cache sessions) would only cause graph breaks. Compilation is lazy:
    failures surface in the first (warm-up) call and are reported in that phase.
    """
    faults.bench_oom(f"{cell.label}/load", allow_kill)
    # speed and memory do not depend on the weights' values: an architecture preset is profiled randomly initialised
    model = load_model(cell.model, random_weights=is_weightless_preset(cell.model))
    model = model.set_conv_algorithm(settings.conv_algorithm)
    model = prepare_model(model, settings.device, settings.torch_dtype, settings.channels_last)
    if settings.compile:
        model.encoder = torch.compile(model.encoder)  # type: ignore[assignment]
        model.decoder = torch.compile(model.decoder)  # type: ignore[assignment]
    return model


def measure_cell(
    cell: Cell,
    settings: BenchSettings,
    phases: tuple[Phase, ...] | None = None,
    *,
    emit: Emit | None = None,
    isolated: bool = False,
) -> CellResult:
    """Measure ``phases`` (default: the settings' mode) of ``cell`` in this process.

    Failures are results, not exceptions: an allocation failure is ``"oom"``, anything else ``"error"``
    with a one-line reason, so that one configuration cannot end the run.
    """
    phases = phases or settings.phases
    emit = emit or (lambda event: None)
    device = torch.device(settings.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # input shapes are fixed within a cell: let cuDNN pick kernels
        if device.index is not None:
            torch.cuda.set_device(device)
    try:
        model = load_for_bench(cell, settings, allow_kill=isolated)
    except Exception as exc:
        status = "oom" if is_oom(exc) else "error"
        reason = f"loading the model failed: {one_line(exc)}"
        failed = tuple(
            PhaseResult(p, status, clips=settings.batch_size, frames=cell.frames, error=reason) for p in phases
        )
        for result in failed:
            emit({"event": "phase", "result": result.to_dict()})
        return CellResult(cell, failed, settings.batch_size, isolated=isolated, error=reason)
    runner = CellRunner(model, cell, settings, allow_kill=isolated)
    emit({"event": "loaded", "latent_shape": list(runner.latent_shape)})
    results = []
    for phase in phases:
        emit({"event": "start", "phase": phase})
        result = runner.run(phase)
        emit({"event": "phase", "result": result.to_dict()})
        results.append(result)
    return CellResult(cell, tuple(results), settings.batch_size, runner.latent_shape, isolated=isolated)
