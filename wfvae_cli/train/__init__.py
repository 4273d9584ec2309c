"""Training WF-VAE: recipes, the trainer (all stages), losses, data, checkpoints.

Library use::

    from wfvae_cli.train import load_recipe, train
    recipe = load_recipe("recipes/tiny-cpu.toml", ["schedule.steps=100"])
    result = train(recipe)                       # TrainResult(step, output_dir, checkpoint, ...)

The CLI is ``wfvae train RECIPE [key=value ...]``; see docs/training.md.
"""

from wfvae_cli.train.checkpoint import export_checkpoint, latest_checkpoint, load_checkpoint
from wfvae_cli.train.losses import NLayerDiscriminator3D, discriminator_loss, generator_loss, wavelet_loss
from wfvae_cli.train.recipe import (
    Recipe,
    RecipeError,
    dump_recipe,
    load_recipe,
    recipe_from_dict,
    recipe_to_dict,
)
from wfvae_cli.train.trainer import Trainer, TrainResult, train

__all__ = [
    "NLayerDiscriminator3D",
    "Recipe",
    "RecipeError",
    "TrainResult",
    "Trainer",
    "discriminator_loss",
    "dump_recipe",
    "export_checkpoint",
    "generator_loss",
    "latest_checkpoint",
    "load_checkpoint",
    "load_recipe",
    "recipe_from_dict",
    "recipe_to_dict",
    "train",
    "wavelet_loss",
]
