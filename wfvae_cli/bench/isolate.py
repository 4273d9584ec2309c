"""Run one configuration in a fresh child process and watch its memory (CPU peak RSS isolation).

Why a child per configuration: a process's RSS never cleanly returns to where it was (allocator
caches, oneDNN primitive caches, lazily loaded kernels), so measuring configuration B after A in the same
process would charge B for A's leftovers. The child reports through an append-only events file
(:mod:`wfvae_cli.bench._child`).

Why monitoring instead of ``RLIMIT_AS`` for ``--max-rss-gb``: an address-space limit counts virtual
memory, and torch/glibc/oneDNN reserve far more address space than they touch, so a limit low enough to
matter breaks harmless reservations long before RSS is in danger. The parent instead polls the child's
RSS (``/proc/<pid>/statm``, every ``poll_s``) and SIGKILLs it above the limit; the phase is then "oom".
A spike shorter than the poll interval can slip past the check; the limit is a safety net for the
machine, not a precise allocator limit.

A child that dies mid-phase loses only that phase: the phases it reported are kept, the dying phase is
marked (SIGKILL from outside, returncode -9, is taken as the kernel OOM killer), and the remaining phases
run in a new child.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wfvae_cli
from wfvae_cli.bench import procmem
from wfvae_cli.bench.results import CellResult, PhaseResult, Status
from wfvae_cli.bench.settings import BenchSettings, Cell, Phase

GIB = 1024**3
_PACKAGE_ROOT = str(Path(wfvae_cli.__file__).resolve().parent.parent)


@dataclass(frozen=True)
class ChildOutcome:
    """What one child run left behind: its events, how it ended, and the tail of its output."""

    events: tuple[dict[str, Any], ...]
    returncode: int
    killed_over_limit: bool
    output_tail: str
    seconds: float


def _child_env() -> dict[str, str]:
    """The parent's environment, plus the package on ``PYTHONPATH`` (a source checkout need not be installed)."""
    env = dict(os.environ)
    paths = [_PACKAGE_ROOT, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def _read_events(path: Path) -> tuple[dict[str, Any], ...]:
    if not path.exists():
        return ()
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by the kill
            break
    return tuple(events)


def _tail(path: Path, lines: int = 1) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])[:300]


def run_child(cell: Cell, settings: BenchSettings, phases: tuple[Phase, ...], poll_s: float = 0.05) -> ChildOutcome:
    """Start the child for ``phases`` of ``cell``, enforce ``settings.max_rss_gb``, wait for it to end."""
    limit = int(settings.max_rss_gb * GIB) if settings.max_rss_gb else None
    with tempfile.TemporaryDirectory(prefix="wfvae-bench-") as tmp:
        task, events, log = Path(tmp, "task.json"), Path(tmp, "events.jsonl"), Path(tmp, "output.log")
        task.write_text(json.dumps({"cell": cell.to_dict(), "settings": settings.to_dict(), "phases": list(phases)}))
        start = time.perf_counter()
        killed = False
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "wfvae_cli.bench._child", str(task), str(events), str(os.getpid())],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_child_env(),
            )
        try:
            while True:
                try:
                    proc.wait(timeout=poll_s)
                    break
                except subprocess.TimeoutExpired:
                    pass
                rss = procmem.rss_bytes(proc.pid)
                if limit is not None and rss is not None and rss > limit:
                    proc.kill()
                    killed = True
                    proc.wait()
                    break
        finally:
            if proc.poll() is None:  # interrupted (Ctrl-C): never leave a child behind
                proc.kill()
                proc.wait()
        return ChildOutcome(_read_events(events), proc.returncode, killed, _tail(log), time.perf_counter() - start)


def _death(outcome: ChildOutcome, settings: BenchSettings) -> tuple[Status, str]:
    """Why the child ended early, as a cell status and a one-line reason."""
    rc = outcome.returncode
    if outcome.killed_over_limit:
        return "oom", f"RSS went above --max-rss-gb {settings.max_rss_gb:g}; the child was killed"
    if rc == -signal.SIGKILL:
        return "oom", "child killed by SIGKILL: most likely the kernel OOM killer (check `dmesg`)"
    if rc < 0:
        return "error", f"child died from signal {signal.Signals(-rc).name}: {outcome.output_tail}"
    if rc != 0:
        return "error", f"child exited with code {rc}: {outcome.output_tail}"
    return "error", f"child exited without reporting this phase: {outcome.output_tail}"


def measure_isolated(cell: Cell, settings: BenchSettings, poll_s: float = 0.05) -> CellResult:
    """Measure ``cell`` in fresh children; a phase lost to a dying child does not cost the others."""
    wanted = settings.phases
    results: dict[str, PhaseResult] = {}
    latent: tuple[int, ...] | None = None
    remaining = list(wanted)
    while remaining:
        outcome = run_child(cell, settings, tuple(remaining), poll_s)
        started: str | None = None
        for event in outcome.events:
            if event["event"] == "loaded":
                latent = tuple(event["latent_shape"])
            elif event["event"] == "start":
                started = event["phase"]
            elif event["event"] == "phase":
                result = PhaseResult.from_dict(event["result"])
                results[result.phase] = result
        remaining = [p for p in remaining if p not in results]
        if not remaining:
            break
        status, reason = _death(outcome, settings)
        if started is None or started in results:  # died while starting up or loading: no phase can run
            for phase in remaining:
                results[phase] = PhaseResult(phase, status, clips=settings.batch_size, frames=cell.frames,
                                             error=f"{reason} (before {phase} started)")
            break
        results[started] = PhaseResult(started, status, clips=settings.batch_size, frames=cell.frames, error=reason)  # type: ignore[arg-type]
        remaining = [p for p in remaining if p not in results]
    phases = tuple(results[p] for p in wanted)
    return CellResult(cell, phases, settings.batch_size, latent, isolated=True)
