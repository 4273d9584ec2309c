"""Process-group plumbing for multi-device training: torchrun (DDP), Ray Train, or a single process.

Why so little: the trainer is the same code on 1 or N devices. It asks this module which rank it is, which
device to use, and to average the discriminator's gradients; the VAE itself is wrapped in
``DistributedDataParallel``. A process group that already exists (Ray Train creates one per worker, tests
create one with ``torch.multiprocessing``) is used as is; otherwise torchrun's ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK`` environment starts one (NCCL on CUDA, gloo on CPU).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from wfvae_cli.errors import WfvaeError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank`` of ``world_size``, and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto`` → ``cuda:local_rank`` when CUDA is usable, else CPU; explicit names are checked."""
    if preference == "auto":  # the package's one rule (wfvae_cli.devices), with this rank's GPU
        from wfvae_cli.devices import auto_device

        return torch.device(auto_device(local_rank))
    device = torch.device(preference)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise WfvaeError(
                f"device = {preference!r} but CUDA is not available here; use device = \"auto\" or \"cpu\""
            )
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def setup(preference: str = "auto") -> DistContext:
    """Join (or start, from torchrun's environment) the process group and pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_available() and dist.is_initialized():
        device = resolve_device(preference, local_rank)
        return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, device)
    if world > 1:
        device = resolve_device(preference, local_rank)
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
        return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, device)
    return DistContext(0, 1, 0, resolve_device(preference, 0))


def average_gradients(module: nn.Module, world_size: int) -> None:
    """All-reduce-average the gradients of ``module`` in one flat buffer (the discriminator's sync).

    Why not DDP for the discriminator: it runs twice per step (real and fake, each with its own BatchNorm
    statistics, as officially) and is used frozen inside the generator step; a manual reduction after the
    backward is simpler and exactly equivalent.
    """
    if world_size <= 1:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch._utils._flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat.div_(world_size)
    for g, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads), strict=True):
        g.copy_(synced)


def broadcast_state(module: nn.Module, src: int = 0) -> None:
    """Make every rank's parameters and buffers equal to rank ``src``'s (initial sync, BatchNorm stats)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group; the barrier first keeps a fast rank from tearing down under a slow one."""
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()
