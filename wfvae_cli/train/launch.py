"""Launchers: run a recipe in this process (alone or as one torchrun rank), or on a Ray cluster.

``wfvae train`` is a thin layer over these. Under ``torchrun --nproc-per-node N`` every process calls
:func:`train_here` and joins the process group from torchrun's environment; :func:`train_on_ray` hands the
same per-process loop to Ray Train's ``TorchTrainer`` (Ray is optional and imported only there), which
creates the process group itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from wfvae_cli.errors import WfvaeError
from wfvae_cli.train import distributed
from wfvae_cli.train.recipe import Recipe
from wfvae_cli.train.trainer import TrainProgressFn, TrainResult, train


def train_here(
    recipe: Recipe, *, resume: Path | bool | None = None, progress: TrainProgressFn | None = None
) -> TrainResult | None:
    """Train in this process (joining torchrun's process group if there is one); the result on rank 0 only."""
    ctx = distributed.setup(recipe.device)
    try:
        result = train(recipe, resume=resume, progress=progress, ctx=ctx)
    finally:
        distributed.cleanup()
    return result if ctx.is_main else None


def _ray_worker(config: dict[str, Any]) -> None:
    """Ray Train's per-worker loop: Ray has created the process group; the trainer joins it."""
    os.chdir(config["cwd"])  # relative recipe paths mean the driver's working directory
    import ray.train
    import ray.train.torch
    import torch.distributed as dist

    from wfvae_cli.train.recipe import load_recipe

    recipe = load_recipe(config["recipe"], config["overrides"])
    # Ray pins one device per worker (CUDA_VISIBLE_DEVICES); ask it rather than guessing from LOCAL_RANK
    ctx = distributed.DistContext(
        dist.get_rank(), dist.get_world_size(), ray.train.get_context().get_local_rank(), ray.train.torch.get_device()
    )
    train(recipe, resume=config["resume"], ctx=ctx)


def train_on_ray(
    recipe: str | Path,
    overrides: list[str],
    *,
    resume: Path | bool | None = None,
    workers: int = 1,
    use_gpu: bool | None = None,
) -> None:
    """Train ``recipe`` (a path: every worker reads it, with ``overrides``) on ``workers`` Ray Train workers.

    ``use_gpu=None`` gives each worker a GPU when this machine has CUDA. Progress goes to each run's
    ``metrics.jsonl`` and the workers' logs; this returns when the run is over.
    """
    from wfvae_cli.extras import require

    if workers < 1:
        raise WfvaeError(f"--train-workers {workers} must be >= 1")
    ScalingConfig = require("ray.train", "--ray (Ray Train)").ScalingConfig
    TorchTrainer = require("ray.train.torch", "--ray (Ray Train)").TorchTrainer
    import torch

    gpu = torch.cuda.is_available() if use_gpu is None else use_gpu
    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config={
            "cwd": os.getcwd(),
            "recipe": str(Path(recipe).resolve()),
            "overrides": list(overrides),
            "resume": str(resume) if isinstance(resume, Path) else resume,
        },
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpu),
    )
    trainer.fit()
