"""Child process of an isolated CPU measurement: ``python -m wfvae_cli.bench._child TASK.json EVENTS.jsonl PARENT_PID``.

Started fresh for every configuration so that its peak RSS belongs to that configuration alone (see
:mod:`wfvae_cli.bench.isolate`). Events are appended to ``EVENTS.jsonl`` and flushed one by one, so
they survive the process being killed. The child dies with its parent (``PR_SET_PDEATHSIG``), so
terminating a benchmark never leaves a measurement running. Imports stay minimal (no Rich, no
matplotlib): every child pays for them, and they would be part of the measured RSS.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from wfvae_cli.bench import procmem
from wfvae_cli.bench.measure import measure_cell
from wfvae_cli.bench.settings import BenchSettings, Cell


def main(argv: list[str]) -> int:
    task_path, events_path, parent_pid = argv
    procmem.die_with_parent(int(parent_pid))
    task = json.loads(Path(task_path).read_text())
    settings = BenchSettings.from_dict(task["settings"])
    cell = Cell.from_dict(task["cell"])
    if settings.threads:
        torch.set_num_threads(settings.threads)
    with open(events_path, "a", encoding="utf-8") as fh:

        def emit(event: dict) -> None:
            fh.write(json.dumps(event) + "\n")
            fh.flush()

        measure_cell(cell, settings, tuple(task["phases"]), emit=emit, isolated=True)
        emit({"event": "done"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
