"""Scene clips for training (wfvae_cli.train.synthetic) and the pooling baseline (wfvae_cli.metrics.baseline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wfvae_cli.errors import WfvaeError
from wfvae_cli.metrics.baseline import pool_baseline, temporal_weights
from wfvae_cli.train.data import SyntheticClips
from wfvae_cli.train.recipe import load_recipe
from wfvae_cli.train.synthetic import codec_roundtrip, load_photo, render_scene, validation_clips


def test_scene_clips_are_a_pure_function_of_the_slot():
    ds = SyntheticClips(["coffee", "cat", "brick"], 9, (32, 48), seed=3, style="scenes")
    a, b, c = ds[5], ds[5], ds[6]
    assert a.shape == (3, 9, 32, 48) and a.dtype == torch.float32
    assert float(a.min()) >= -1.0 and float(a.max()) <= 1.0
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)


def test_scene_has_motion_occlusion_and_native_texture():
    rng = np.random.default_rng(0)
    clip = render_scene(rng, ["coffee", "astronaut"], 9, (64, 64), background="coffee", scale=1.0, objects=3,
                        cartoon=False, noise=0.0, crf=0, speed=1.5)
    assert clip.shape == (9, 64, 64, 3) and clip.dtype == np.uint8
    diff = np.abs(clip[-1].astype(int) - clip[0].astype(int)).mean()
    assert diff > 3  # things move
    # native resolution: neighbouring pixels differ like the photo's own (not a blurred downscale)
    photo = load_photo("coffee").permute(1, 2, 0).numpy()
    grad_photo = np.abs(np.diff(photo, axis=1)).mean()
    grad_clip = np.abs(np.diff(clip.astype(float), axis=2)).mean()
    assert grad_clip > 0.4 * grad_photo


def test_low_key_darkens_some_clips_and_at_zero_changes_nothing():
    kw = dict(background="coffee", scale=1.0, objects=1, cartoon=False, noise=0.0, crf=0)
    plain = render_scene(np.random.default_rng([7, 1]), ["coffee", "cat"], 5, (32, 32), **kw)
    zero = render_scene(np.random.default_rng([7, 1]), ["coffee", "cat"], 5, (32, 32), low_key=0.0, **kw)
    np.testing.assert_array_equal(plain, zero)  # recipes without low_key render the clips they always did
    dark = render_scene(np.random.default_rng([7, 1]), ["coffee", "cat"], 5, (32, 32), low_key=1.0, **kw)
    assert dark.mean() < 0.65 * plain.mean()
    ds = SyntheticClips(["coffee", "cat"], 5, (32, 32), seed=0, style="scenes", low_key=0.5)
    means = [float(ds[i].mean()) for i in range(12)]
    assert min(means) < -0.6 < max(means)  # a mix of dark and normal clips


def test_fast_adds_a_large_quick_object_and_at_zero_changes_nothing():
    kw = dict(background="coffee", scale=1.0, objects=0, cartoon=False, noise=0.0, crf=0, speed=0.0)
    plain = render_scene(np.random.default_rng([3, 2]), ["coffee", "cat"], 9, (64, 64), **kw)
    zero = render_scene(np.random.default_rng([3, 2]), ["coffee", "cat"], 9, (64, 64), fast=0.0, **kw)
    np.testing.assert_array_equal(plain, zero)
    gains = []
    for seed in range(6):
        args = (["coffee", "cat"], 9, (64, 64))
        slow = render_scene(np.random.default_rng([3, seed]), *args, **kw)
        quick = render_scene(np.random.default_rng([3, seed]), *args, fast=1.0, **kw)
        step = [np.abs(np.diff(c.astype(int), axis=0)).mean() for c in (slow, quick)]
        gains.append(step[1] - step[0])
    assert max(gains) > 5  # frame-to-frame change: something large crossed the frame fast


def test_still_shots_are_crossed_early_then_still_and_at_zero_change_nothing():
    kw = dict(background="coffee", scale=1.0, cartoon=False, noise=0.0, crf=0)
    args = (["coffee", "cat"], 17, (64, 64))
    plain = render_scene(np.random.default_rng([5, 1]), *args, fast=0.3, **kw)
    zero = render_scene(np.random.default_rng([5, 1]), *args, fast=0.3, still=0.0, **kw)
    np.testing.assert_array_equal(plain, zero)  # older recipes render the clips they always did
    for seed in range(4):
        clip = render_scene(np.random.default_rng([5, seed]), *args, still=1.0, **kw).astype(int)
        steps = np.abs(np.diff(clip, axis=0)).mean(axis=(1, 2, 3))
        assert steps[:6].max() > 5  # a large object crossed early, fast
        assert steps[-4:].max() == 0  # then nothing moves: a fixed camera, no objects, constant exposure


def test_low_key_is_checked_in_the_recipe(tmp_path):
    bad = tmp_path / "r.toml"
    parent = Path("recipes/wfvae-tiny.toml").resolve()
    bad.write_text(f'extends = "{parent}"\n[data.synthetic]\nlow_key = 1.5\n')
    with pytest.raises(WfvaeError, match=r"low_key.*probability"):
        load_recipe(bad)
    recipe = load_recipe("recipes/wfvae-tiny-stage3.toml")
    assert recipe.data.synthetic is not None and recipe.data.synthetic.low_key > 0 and recipe.data.synthetic.fast > 0
    bad.write_text(f'extends = "{parent}"\n[data.synthetic]\nstyle = "camera"\nfast = 0.2\n')
    with pytest.raises(WfvaeError, match="scenes"):
        load_recipe(bad)


def test_real_footage_folder_is_checked(tmp_path):
    from wfvae_cli.train.real_footage import find_real_footage

    (tmp_path / "bikes.mp4").write_bytes(b"")
    with pytest.raises(WfvaeError, match=r"carphone_pristine\.mp4.*pip download"):
        find_real_footage(tmp_path)


def test_codec_roundtrip_adds_artefacts_but_keeps_the_picture():
    rng = np.random.default_rng(1)
    clip = render_scene(rng, ["astronaut"], 9, (64, 64), crf=0, noise=0.0)
    out = codec_roundtrip(clip, crf=35)
    assert out.shape == clip.shape and out.dtype == np.uint8
    err = np.abs(out.astype(int) - clip.astype(int)).mean()
    assert 0.1 < err < 20


def test_validation_clips_cover_the_issue_kinds():
    clips = validation_clips(frames=9, seeds=(0,))
    assert len(clips) == 7 and len({label for label, _ in clips}) == 7
    assert {c.shape[1:3] for _, c in clips} == {(64, 64), (128, 128)}


def test_unknown_photo_and_style_are_clear_errors():
    with pytest.raises(WfvaeError, match="unknown photo 'nope'"):
        load_photo("nope")
    with pytest.raises(WfvaeError, match="style"):
        SyntheticClips(["cat"], 9, (32, 32), seed=0, style="wobbly")


def test_shipped_recipe_parses_with_the_scenes_style():
    recipe = load_recipe("recipes/wfvae-tiny.toml")
    assert recipe.data.synthetic is not None and recipe.data.synthetic.style == "scenes"
    assert not set(recipe.data.synthetic.photos) & set(recipe.data.synthetic.eval_photos)


def test_pool_trilinear_is_exact_on_constant_blocks_and_linear_between_group_centres():
    w = temporal_weights(9, 4)
    torch.testing.assert_close(w.sum(1), torch.ones(9, dtype=torch.float64))
    # frame 0 exact; group centres at 2.5 and 6.5; frames 1, 2 held on group 1 (before its centre
    # only frame 0 lies to the left: interpolate between t=0 and t=2.5)
    torch.testing.assert_close(w[0], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(w[8], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(w[4], torch.tensor([0.0, 0.625, 0.375], dtype=torch.float64))
    video = torch.full((1, 3, 9, 16, 16), 0.25)
    torch.testing.assert_close(pool_baseline(video, mode="trilinear"), video)
    ramp = torch.arange(9.0).view(1, 1, 9, 1, 1).expand(1, 3, 9, 16, 16)
    out = pool_baseline(ramp, mode="trilinear")
    torch.testing.assert_close(out[:, :, 3:7], ramp[:, :, 3:7])  # linear motion is recovered between centres
    with pytest.raises(ValueError, match="mode"):
        pool_baseline(video, mode="cubic")
