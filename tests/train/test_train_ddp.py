"""Two DDP processes (gloo, CPU) stay identical, and equal one process accumulating the same batch."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from wfvae_cli.train import Trainer, load_recipe
from wfvae_cli.train import distributed as dist_utils

from .test_train_common import write_tiny_recipe

pytestmark = pytest.mark.integration  # a process group and training loops

# Adam with its usual eps turns any gradient into a step of about +-lr, so parameters whose true
# gradient is ~0 move by lr in a direction set by rounding noise, which differs between one process
# (2 threads) and two (1 thread each) on some CPUs. A large eps makes the step proportional to the
# gradient (lr * g / eps): then the comparison below checks the training arithmetic, not noise.
OVERRIDES = ["schedule.steps=3", "loss.disc_start=0", "schedule.checkpoint_every=3", "optim.eps=1.0"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _states(trainer: Trainer) -> dict[str, torch.Tensor]:
    out = {f"vae.{k}": v.detach().cpu().clone() for k, v in trainer.vae.state_dict().items()}
    out.update({f"disc.{k}": v.detach().cpu().clone() for k, v in trainer.disc.state_dict().items()})
    out.update({f"ema.{k}": v.cpu().clone() for k, v in trainer.ema.state_dict().items()})
    return out


def _worker(rank: int, world: int, port: int, recipe: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    ctx = dist_utils.setup("cpu")  # joins the group from the torchrun-style environment
    try:
        trainer = Trainer(load_recipe(recipe, OVERRIDES), ctx=ctx)
        trainer.fit()
        torch.save(_states(trainer), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist_utils.cleanup()


def test_two_gloo_replicas_stay_identical_and_match_accumulation(tmp_path):
    recipe = write_tiny_recipe(tmp_path, "ddp")  # global batch 2, micro-batch 1: 1 clip per rank
    mp.spawn(_worker, args=(2, _free_port(), str(recipe), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"replicas differ at {k}"
    assert not dist.is_initialized()

    # one process, same global batch through 2 accumulated micro-batches: the same training
    single = Trainer(load_recipe(write_tiny_recipe(tmp_path, "single"), OVERRIDES))
    single.fit()
    one = _states(single)
    for k in r0:
        if "running_" in k or "num_batches" in k:
            continue  # BatchNorm statistics: per device vs. last micro-batch, unused in training mode
        torch.testing.assert_close(one[k], r0[k], rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
