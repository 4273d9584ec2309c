"""Resize/crop to model input, value scaling, and aspect-ratio buckets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wfvae_cli.errors import WfvaeError
from wfvae_cli.io.transform import (
    ASPECT_RATIOS,
    ResizeSpec,
    auto_buckets,
    choose_bucket,
    resize_crop,
    resized_size,
    to_model_input,
)


def ramp(t: int, h: int, w: int) -> np.ndarray:
    """Frames whose value is the column index (all channels, all rows): a crop shows up as an offset."""
    return np.broadcast_to(np.arange(w, dtype=np.uint8)[None, None, :, None], (t, h, w, 3)).copy()


def test_center_crop_matches_a_hand_computed_case() -> None:
    # 16x32 → 8x8: scale max(8/16, 8/32) = 0.5 → 8x16, crop columns 4..11. Halving with the antialiased
    # (triangle) filter maps a linear ramp to 2j + 0.5 away from the edges, so the kept columns read 8.5 … 22.5,
    # rounded half up to uint8 (resize version 2 resizes in uint8): 9 … 23.
    x = to_model_input(ramp(2, 16, 32), (8, 8))
    assert x.shape == (3, 2, 8, 8) and x.dtype == torch.float32
    expected = torch.floor(2 * torch.arange(4, 12, dtype=torch.float32) + 0.5 + 0.5) / 127.5 - 1
    torch.testing.assert_close(x, expected.expand(3, 2, 8, 8), rtol=0, atol=1e-5)


def test_crop_none_distorts_instead_of_cutting() -> None:
    # 16x32 → 8x8 without crop: columns shrink by 4 → 4j + 1.5 (interior columns 1..6), rounded to uint8
    x = to_model_input(ramp(1, 16, 32), (8, 8), crop="none")
    expected = torch.floor(4 * torch.arange(1, 7, dtype=torch.float32) + 1.5 + 0.5) / 127.5 - 1
    torch.testing.assert_close(x[0, 0, 3, 1:7], expected, rtol=0, atol=1e-5)


def test_value_range_and_channel_order() -> None:
    frames = np.zeros((3, 24, 40, 3), np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 255, 0, 51
    x = to_model_input(frames, (16, 16))
    assert x.shape == (3, 3, 16, 16)
    torch.testing.assert_close(x[0], torch.full_like(x[0], 1.0))
    torch.testing.assert_close(x[1], torch.full_like(x[1], -1.0))
    torch.testing.assert_close(x[2], torch.full_like(x[2], 51 / 127.5 - 1))
    noisy = to_model_input(
        np.random.default_rng(0).integers(0, 256, (2, 50, 70, 3), dtype=np.uint8), (24, 32)
    )
    assert noisy.min() >= -1 and noisy.max() <= 1


def test_time_axis_is_not_mixed() -> None:
    frames = np.stack([np.full((32, 48, 3), v, np.uint8) for v in (0, 100, 200)])
    x = to_model_input(frames, (16, 16))
    torch.testing.assert_close(x[:, :, 5, 5], torch.tensor([0.0, 100.0, 200.0]).div(127.5).sub(1).expand(3, 3))


def test_size_is_kept_when_no_target_and_torch_input_is_accepted() -> None:
    frames = torch.from_numpy(ramp(1, 16, 24))
    assert to_model_input(frames).shape == (3, 1, 16, 24)
    with pytest.raises(WfvaeError, match="multiple of 8"):
        to_model_input(ramp(1, 20, 24))


@pytest.mark.parametrize(
    ("source", "target", "crop", "expected"),
    [
        ((1080, 1920), (256, 256), "center", (256, 455)),
        ((1920, 1080), (256, 256), "center", (455, 256)),
        ((1080, 1920), (192, 344), "center", (194, 344)),  # width is the limiting side here
        ((256, 256), (256, 256), "center", (256, 256)),
        ((97, 175), (64, 64), "center", (64, 115)),
        ((1080, 1920), (256, 256), "none", (256, 256)),
    ],
)
def test_resized_size(source, target, crop, expected) -> None:
    assert resized_size(*source, target, crop) == expected


def test_large_frames_resize_and_crop_to_target() -> None:
    frames = np.random.default_rng(1).integers(0, 256, (2, 1080, 1920, 3), dtype=np.uint8)
    out = resize_crop(frames, (256, 256))
    assert out.shape == (2, 3, 256, 256) and out.dtype == torch.float32


@pytest.mark.parametrize("size", [(250, 256), (256, 0), (4, 8), (256.0, 256)])
def test_target_sizes_must_be_multiples_of_8(size) -> None:
    with pytest.raises(WfvaeError, match="must be a positive multiple of 8"):
        resize_crop(ramp(1, 16, 16), size)
    with pytest.raises(WfvaeError, match="multiple of 8"):
        ResizeSpec(*size)


def test_resize_spec_rejects_unknown_crop() -> None:
    assert ResizeSpec(256, 320).size == (256, 320)
    with pytest.raises(WfvaeError, match="--crop 'left' is unknown"):
        ResizeSpec(256, 256, crop="left")  # type: ignore[arg-type]


def test_auto_buckets_have_the_area_and_ratios_asked_for() -> None:
    for res in (256, 512, 720):
        buckets = auto_buckets(res)
        assert buckets[0] == (res, res) and len(buckets) == len(ASPECT_RATIOS)
        for (h, w), (a, b) in zip(buckets, ASPECT_RATIOS, strict=True):
            assert h % 8 == 0 and w % 8 == 0
            assert abs(h * w / res**2 - 1) < 0.05
            assert abs(math.log((w / h) / (a / b))) < 0.03
    assert auto_buckets(256) == [(256, 256), (224, 296), (296, 224), (192, 344), (344, 192)]
    with pytest.raises(WfvaeError, match="multiple of 8"):
        auto_buckets(250)


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (1920, 1080, (192, 344)),
        (1080, 1920, (344, 192)),
        (640, 480, (224, 296)),
        (500, 500, (256, 256)),
        (2560, 1080, (192, 344)),
        (175, 97, (192, 344)),
    ],
)
def test_choose_bucket_by_nearest_log_aspect(width: int, height: int, expected) -> None:
    assert choose_bucket(width, height, auto_buckets(256)) == expected


def test_choose_bucket_ties_go_to_the_larger_area_whatever_the_order() -> None:
    # a 2:1 video is exactly as far (log 2) from 1:1 as from 4:1
    buckets = [(64, 64), (64, 256)]
    assert choose_bucket(200, 100, buckets) == (64, 256)
    assert choose_bucket(200, 100, buckets[::-1]) == (64, 256)
    assert choose_bucket(300, 300, [(256, 256), (512, 512)]) == (512, 512)
    with pytest.raises(WfvaeError, match="no buckets"):
        choose_bucket(10, 10, [])
