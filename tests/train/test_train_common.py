"""Shared helpers for the training tests (a tiny recipe), plus the pooling baseline and data determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wfvae_cli.train.data import SlotPlan, StepBatchSampler, SyntheticClips, VideoClips
from wfvae_cli.train.evaluate import pool_baseline
from wfvae_cli.train.recipe import Recipe, load_recipe

from ..conftest import tiny_config

TINY_RECIPE = """\
name = "test"
output_dir = "{out}"
seed = 0
[model]
config = "{cfg}"
[data]
frames = 9
resolution = 32
batch_size = 2
micro_batch_size = 1
workers = 0
eval_clips = 0
[data.synthetic]
photos = ["astronaut", "coffee", "cat"]
eval_photos = ["chelsea"]
epoch_clips = 16
[loss]
perceptual_weight = 0.0
disc_weight = 0.5
disc_start = 1
[loss.discriminator]
ndf = 8
n_layers = 2
[optim]
lr = 1e-3
warmup_steps = 2
[ema]
decay = 0.9
[schedule]
steps = 4
log_every = 1
eval_every = 100
checkpoint_every = 2
keep_checkpoints = 0
[eval]
save_videos = 0
lpips = "off"
"""


def write_tiny_recipe(tmp_path: Path, name: str = "run") -> Path:
    """A recipe for a width-8 WF-VAE (tests/conftest.py::tiny_config) on 9-frame 32x32 rendered clips."""
    cfg = tmp_path / "tiny_config.json"
    if not cfg.exists():
        tiny_config().to_json(cfg)
    path = tmp_path / f"{name}.toml"
    path.write_text(TINY_RECIPE.format(out=tmp_path / name, cfg=cfg))
    return path


def tiny_recipe(tmp_path: Path, *overrides: str, name: str = "run") -> Recipe:
    return load_recipe(write_tiny_recipe(tmp_path, name), list(overrides))


# ------------------------------------------------------------------------------------------------ baseline
def test_pool_baseline_is_exact_on_block_constant_video_and_keeps_shape():
    coarse = torch.randn(1, 3, 3, 2, 2)
    video = coarse.repeat_interleave(torch.tensor([1, 4, 4]), dim=2).repeat_interleave(8, 3).repeat_interleave(8, 4)
    out = pool_baseline(video, mode="nearest")
    assert out.shape == video.shape == (1, 3, 9, 16, 16)
    torch.testing.assert_close(out, video)
    # frame 0 is its own temporal group (causal, like the VAE's first latent frame)
    v = torch.zeros(1, 3, 5, 8, 8)
    v[:, :, 0] = 1.0
    assert pool_baseline(v)[:, :, 0].eq(1).all() and pool_baseline(v)[:, :, 1:].eq(0).all()
    with pytest.raises(ValueError, match="4k\\+1"):
        pool_baseline(torch.zeros(1, 3, 8, 8, 8))


# ------------------------------------------------------------------------------------------------ data
def test_slot_plan_covers_each_step_once_across_ranks_and_micro_batches():
    plans = [SlotPlan(batch_size=8, micro_batch_size=2, world_size=2, rank=r) for r in range(2)]
    assert plans[0].accum == 2
    step3 = sorted(s for p in plans for m in range(p.accum) for s in p.slots(3, m))
    assert step3 == list(range(24, 32))
    assert list(StepBatchSampler(plans[1], 1, 2)) == [[10, 11], [14, 15]]
    with pytest.raises(Exception, match="not divisible"):
        SlotPlan(batch_size=6, micro_batch_size=2, world_size=2)


def test_synthetic_clips_are_a_pure_function_of_the_slot():
    ds = SyntheticClips(["astronaut", "coffee"], 9, (32, 32), seed=0, epoch_clips=8)
    a, b = ds[5], ds[5]
    assert a.shape == (3, 9, 32, 32) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1
    torch.testing.assert_close(a, b)
    assert not torch.equal(ds[5], ds[6])
    held_out = SyntheticClips(["chelsea"], 9, (32, 32), seed=0, train=False, clips=3)
    assert len(held_out) == 3 and not torch.equal(held_out[0], held_out[1])


def test_video_clips_read_real_files_deterministically(tmp_path):
    from wfvae_cli.io import make_sample_clips

    make_sample_clips(tmp_path / "videos", n=2, frames=21, size=(40, 48))
    ds = VideoClips([str(tmp_path / "videos")], 9, (32, 32), seed=1, sample_rate=2)
    assert len(ds) == 2
    clip = ds[3]
    assert clip.shape == (3, 9, 32, 32)
    torch.testing.assert_close(clip, ds[3])
    rng = np.random.default_rng([1, 0, 3])
    idx = ds._indices(ds.entries[0], rng)
    assert len(idx) == 9 and np.all(np.diff(idx) >= 1) and idx[-1] < 21
