"""LPIPS: plumbing with a random trunk, offline weight discovery, hash verification, trunk loading.

No test here downloads anything or needs the real AlexNet weights: the trunk-loading test saves a random
torchvision AlexNet under the canonical file name and patches the expected hash prefix to that file's.
"""

from __future__ import annotations

import inspect
import itertools
import os
from pathlib import Path

import lpips
import pytest
import torch
import torchvision

from wfvae_cli.errors import WfvaeError
from wfvae_cli.metrics import LPIPSMetric, MetricUnavailable, MetricWeightsError, perceptual
from wfvae_cli.metrics.weights import sha256_file


@pytest.fixture(scope="module")
def metric() -> LPIPSMetric:
    return LPIPSMetric.random_trunk(seed=0)


@pytest.fixture
def empty_caches(tmp_path, monkeypatch) -> Path:
    """Point every cache location at empty temporary directories."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def _clips(shape=(2, 3, 3, 64, 64), seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1


# ------------------------------------------------------------------------------------------ plumbing
def test_identical_inputs_give_zero(metric):
    x = _clips()
    out = metric(x, x)
    assert out.shape == (2,) and out.dtype == torch.float64
    assert torch.equal(out, torch.zeros(2, dtype=torch.float64))


def test_monotonic_in_noise_level(metric):
    x = _clips((1, 3, 4, 64, 64), seed=1)
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(x.shape, generator=g)
    values = [metric(x, (x + s * noise).clamp(-1, 1)).item() for s in (0.02, 0.05, 0.1, 0.2, 0.4)]
    assert all(a < b for a, b in itertools.pairwise(values)), values
    assert values[0] > 0


def test_per_clip_is_mean_of_frames_and_layouts_agree(metric):
    x = _clips((2, 3, 3, 48, 48), seed=3)
    y = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4))).clamp(-1, 1)
    frames = metric.per_frame(x, y)
    assert frames.shape == (2, 3)
    torch.testing.assert_close(metric(x, y), frames.mean(dim=1))
    images = metric(x.transpose(1, 2).reshape(6, 3, 48, 48), y.transpose(1, 2).reshape(6, 3, 48, 48))
    torch.testing.assert_close(images, frames.reshape(-1), rtol=1e-5, atol=1e-7)
    # chunking over frames is a memory knob only
    small = LPIPSMetric.random_trunk(seed=0, chunk_frames=2)
    torch.testing.assert_close(small.per_frame(x, y), frames, rtol=1e-5, atol=1e-7)


def test_official_convention_spatial_map_mean(metric):
    """The value is the mean of the spatial map of ``LPIPS(net='alex', version='0.1', spatial=True)``."""
    x = _clips((1, 3, 2, 64, 64), seed=5)
    y = _clips((1, 3, 2, 64, 64), seed=6)
    frames_x, frames_y = x[0].transpose(0, 1), y[0].transpose(0, 1)
    with torch.no_grad():
        ref = metric.net(frames_x, frames_y)
    assert ref.shape == (2, 1, 64, 64)
    torch.testing.assert_close(metric.per_frame(x, y)[0], ref.mean(dim=(1, 2, 3)).double())


def test_random_trunk_is_seeded_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = LPIPSMetric.random_trunk(seed=7), LPIPSMetric.random_trunk(seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.net.net.slice1[0].weight, b.net.net.slice1[0].weight)
    assert a.random and "RANDOM" in repr(a)


def test_shape_errors(metric):
    with pytest.raises(ValueError, match="same shape"):
        metric(_clips((1, 3, 2, 32, 32)), _clips((1, 3, 3, 32, 32)))
    with pytest.raises(ValueError, match="3-channel"):
        metric(torch.zeros(1, 1, 2, 32, 32), torch.zeros(1, 1, 2, 32, 32))


# ----------------------------------------------------------------------------------- weight handling
def test_missing_weights_raise_metric_unavailable_with_howto(empty_caches):
    with pytest.raises(MetricUnavailable) as info:
        LPIPSMetric()
    msg = str(info.value)
    assert isinstance(info.value, WfvaeError)
    assert "\n" not in msg
    assert "alexnet-owt-7be5be79.pth" in msg and "download.pytorch.org" in msg
    assert str(empty_caches / "torch_home" / "hub" / "checkpoints") in msg


def test_missing_explicit_path_raises_metric_unavailable(tmp_path):
    with pytest.raises(MetricUnavailable, match="not found"):
        LPIPSMetric(tmp_path / "nowhere.pth")


def test_wrong_hash_is_an_error_not_unavailable(empty_caches):
    ckpt = empty_caches / "torch_home" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / perceptual.ALEXNET_FILE).write_bytes(b"not the alexnet weights")
    with pytest.raises(MetricWeightsError, match="sha256") as info:
        LPIPSMetric()
    assert not isinstance(info.value, MetricUnavailable)  # a caller skipping unavailable metrics still fails
    assert "\n" not in str(info.value) and "delete it" in str(info.value)


def test_trunk_is_loaded_from_a_verified_torchvision_file(empty_caches, monkeypatch):
    """Save a (random) torchvision AlexNet under the canonical name, patch the expected hash prefix to
    that file's, and check every trunk tensor lands in the right LPIPS slice and the heads are lpips'."""
    torch.manual_seed(11)
    state = torchvision.models.alexnet(weights=None).state_dict()
    ckpt = empty_caches / "home" / ".cache" / "torch" / "hub" / "checkpoints"  # found via ~ as well
    ckpt.mkdir(parents=True)
    path = ckpt / perceptual.ALEXNET_FILE
    torch.save(state, path)
    monkeypatch.setattr(perceptual, "ALEXNET_SHA256_PREFIX", sha256_file(path)[:8])

    loaded = LPIPSMetric()
    assert loaded.weights_path == path and not loaded.random
    trunk = loaded.net.net.state_dict()
    for key, value in trunk.items():
        index, kind = key.split(".")[1:]
        assert torch.equal(value, state[f"features.{index}.{kind}"]), key
    heads = torch.load(
        os.path.join(os.path.dirname(inspect.getfile(lpips.LPIPS)), "weights", "v0.1", "alex.pth"),
        map_location="cpu",
        weights_only=True,
    )
    for key, value in heads.items():
        assert torch.equal(loaded.net.state_dict()[key], value), key
    # an explicit directory works too, and the result is a real forward pass
    again = LPIPSMetric(ckpt)
    x = _clips((1, 3, 1, 32, 32))
    assert again(x, x).item() == 0.0


def test_state_dict_without_alexnet_tensors_is_rejected(tmp_path, monkeypatch):
    path = tmp_path / perceptual.ALEXNET_FILE
    torch.save({"features.0.weight": torch.zeros(2, 2)}, path)
    monkeypatch.setattr(perceptual, "ALEXNET_SHA256_PREFIX", sha256_file(path)[:8])
    with pytest.raises(MetricWeightsError, match=r"features\.0\.weight"):
        LPIPSMetric(path)
