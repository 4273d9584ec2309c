"""Facts about the machine a benchmark ran on, stored in every report.

A timing without its machine is not a result: the same model is 10x apart between a laptop CPU and a
GPU, and threads, torch version and CPU model explain most surprises when two reports disagree.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from typing import Any

import torch

import wfvae_cli


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_total() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def machine_info(device: str) -> dict[str, Any]:
    """Versions, CPU, threads, memory and the device's name (``torch.cuda.get_device_name`` on CUDA)."""
    is_cuda = device.startswith("cuda")
    cpu = _cpu_model()
    info: dict[str, Any] = {
        "wfvae_cli": wfvae_cli.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "memory_total_bytes": _memory_total(),
        "device": device,
        "device_name": torch.cuda.get_device_name(torch.device(device)) if is_cuda else cpu,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if is_cuda else None,
    }
    if is_cuda:
        props = torch.cuda.get_device_properties(torch.device(device))
        info["device_memory_bytes"] = props.total_memory
    return info


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
