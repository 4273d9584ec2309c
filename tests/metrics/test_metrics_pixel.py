"""PSNR and SSIM: hand-computed cases, the official conventions, and agreement with scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from wfvae_cli.metrics import PSNR_CAP, pixel, psnr, psnr_per_frame, ssim, ssim_per_frame
from wfvae_cli.metrics.pixel import gaussian_window


def _pair(shape, noise=0.1, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=dtype)
    y = (x + noise * torch.randn(shape, generator=g, dtype=dtype)).clamp(0, 1)
    return x, y


# ------------------------------------------------------------------------------------------------ PSNR
def test_psnr_hand_computed_frame():
    x = torch.zeros(1, 3, 1, 4, 4, dtype=torch.float64)
    y = torch.full_like(x, 0.1)  # mse = 0.01 → 20·log10(1/0.1) = 20 dB
    assert psnr_per_frame(x, y).shape == (1, 1)
    assert psnr(x, y).item() == pytest.approx(20.0, abs=1e-12)
    assert psnr(x, y, data_range=2.0).item() == pytest.approx(20.0 + 20 * math.log10(2.0), abs=1e-12)


def test_psnr_is_mean_of_frame_psnrs_not_psnr_of_clip_mse():
    x = torch.zeros(1, 1, 2, 4, 4, dtype=torch.float64)
    y = x.clone()
    y[:, :, 0] = 0.1  # frame 0: 20 dB
    y[:, :, 1] = 0.01  # frame 1: 40 dB
    frames = psnr_per_frame(x, y)
    assert frames[0].tolist() == pytest.approx([20.0, 40.0])
    assert psnr(x, y).item() == pytest.approx(30.0)
    clip_mse = 0.5 * (0.1**2 + 0.01**2)
    assert psnr(x, y).item() != pytest.approx(-10 * math.log10(clip_mse))  # the per-video convention differs


def test_psnr_identical_frames_give_the_cap():
    x, _ = _pair((2, 3, 3, 8, 8))
    y = x.clone()
    y[1, :, 2] += 0.05  # one non-identical frame
    frames = psnr_per_frame(x, y)
    assert torch.isfinite(frames).all()
    assert (frames[0] == PSNR_CAP).all()
    assert frames[1, :2].tolist() == [PSNR_CAP, PSNR_CAP]
    assert frames[1, 2] < PSNR_CAP
    assert psnr(x, x).tolist() == [PSNR_CAP, PSNR_CAP]


def test_psnr_matches_per_frame_numpy_reference_and_layouts():
    x, y = _pair((2, 3, 5, 6, 7))
    xn, yn = x.numpy(), y.numpy()
    ref = np.array(
        [
            [20 * math.log10(1 / math.sqrt(np.mean((xn[b, :, t] - yn[b, :, t]) ** 2))) for t in range(5)]
            for b in range(2)
        ]
    )
    np.testing.assert_allclose(psnr_per_frame(x, y).numpy(), ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(psnr(x, y).numpy(), ref.mean(axis=1), rtol=0, atol=1e-10)
    # (N, C, H, W) images: each image is its own one-frame clip
    imgs_x, imgs_y = x.transpose(1, 2).reshape(10, 3, 6, 7), y.transpose(1, 2).reshape(10, 3, 6, 7)
    np.testing.assert_allclose(psnr(imgs_x, imgs_y).numpy(), ref.reshape(-1), rtol=0, atol=1e-10)
    # float32 input is computed in float64
    assert psnr(x.float(), y.float()).dtype == torch.float64


def test_psnr_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(1, 3, 2, 4, 4), torch.zeros(1, 3, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        psnr(torch.zeros(3, 4, 4), torch.zeros(3, 4, 4))


# ------------------------------------------------------------------------------------------------ SSIM
def test_gaussian_window_is_opencv_kernel():
    g = gaussian_window()
    i = np.arange(11) - 5
    ref = np.exp(-(i**2) / (2 * 1.5**2))
    np.testing.assert_allclose(g.numpy(), ref / ref.sum(), rtol=0, atol=1e-15)


def test_ssim_identical_is_one():
    x, _ = _pair((2, 3, 3, 16, 20))
    torch.testing.assert_close(ssim(x, x), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-12)


def test_ssim_constant_images_closed_form():
    # constant frames: μ = the constants, σ = 0 → SSIM = (2ab + C1) / (a² + b² + C1), per channel
    a = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    b = torch.tensor([0.4, 0.5, 0.3], dtype=torch.float64)
    x = a.view(1, 3, 1, 1, 1).expand(1, 3, 2, 12, 13)
    y = b.view(1, 3, 1, 1, 1).expand(1, 3, 2, 12, 13)
    c1 = 0.01**2
    per_channel = (2 * a * b + c1) / (a * a + b * b + c1)
    expected = per_channel.mean().item()  # channels averaged
    torch.testing.assert_close(ssim_per_frame(x, y), torch.full((1, 2), expected, dtype=torch.float64))
    # with data_range 255 the constants scale with L
    c1 = (0.01 * 255) ** 2
    a255, b255 = a * 255, b * 255
    expected255 = ((2 * a255 * b255 + c1) / (a255**2 + b255**2 + c1)).mean().item()
    assert ssim(x * 255, y * 255, data_range=255.0).item() == pytest.approx(expected255, abs=1e-12)


@pytest.mark.parametrize("shape", [(2, 3, 4, 24, 31), (3, 3, 11, 11)])
def test_ssim_matches_skimage_gaussian(shape):
    """skimage filters with reflect padding, then crops (win_size-1)//2 = 5 px before averaging: that crop
    keeps exactly the positions where the window never touches the padding, i.e. our "valid" filtering."""
    x, y = _pair(shape, noise=0.15, seed=1)
    frames_x = x.transpose(1, 2).reshape(-1, 3, *shape[-2:]) if x.dim() == 5 else x
    frames_y = y.transpose(1, 2).reshape(-1, 3, *shape[-2:]) if y.dim() == 5 else y
    ref = np.array(
        [
            structural_similarity(
                fx.numpy(),
                fy.numpy(),
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
                channel_axis=0,
            )
            for fx, fy in zip(frames_x, frames_y, strict=True)
        ]
    )
    ours = ssim_per_frame(x, y).reshape(-1).numpy()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
    if x.dim() == 5:
        np.testing.assert_allclose(
            ssim(x, y).numpy(), ref.reshape(shape[0], shape[2]).mean(axis=1), atol=1e-12
        )


def _official_ssim_channel(a: np.ndarray, b: np.ndarray, crop: bool = True) -> float:
    """A replica of the official ``cal_ssim.ssim``: cv2.filter2D (BORDER_REFLECT_101 = scipy "mirror")
    with the 11×11 window, then the [5:-5, 5:-5] crop."""
    from scipy.ndimage import correlate

    g = gaussian_window().numpy()
    window = np.outer(g, g)

    def filt(z):
        out = correlate(z, window, mode="mirror")
        return out[5:-5, 5:-5] if crop else out

    c1, c2 = 0.01**2, 0.03**2
    mu1, mu2 = filt(a), filt(b)
    s1, s2, s12 = filt(a * a) - mu1**2, filt(b * b) - mu2**2, filt(a * b) - mu1 * mu2
    return float((((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s1 + s2 + c2))).mean())


def test_ssim_matches_official_replica_and_the_crop_matters():
    x, y = _pair((1, 3, 20, 23), noise=0.2, seed=2)
    official = np.mean([_official_ssim_channel(x[0, c].numpy(), y[0, c].numpy()) for c in range(3)])
    uncropped = np.mean(
        [_official_ssim_channel(x[0, c].numpy(), y[0, c].numpy(), crop=False) for c in range(3)]
    )
    assert ssim(x, y).item() == pytest.approx(official, abs=1e-12)
    assert abs(official - uncropped) > 1e-4  # a padded ("same") SSIM is a different number


def test_ssim_batch_is_independent_of_grouping_and_float32_input(monkeypatch):
    x, y = _pair((3, 3, 2, 16, 16), seed=3)
    whole = ssim_per_frame(x, y)
    parts = torch.cat([ssim_per_frame(x[i : i + 1], y[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(whole, parts, rtol=0, atol=1e-14)
    monkeypatch.setattr(pixel, "SSIM_CHUNK_ELEMENTS", 5 * 3 * 16 * 16 * 2)  # memory groups of 2 frames
    torch.testing.assert_close(ssim_per_frame(x, y), whole, rtol=0, atol=1e-14)
    monkeypatch.undo()
    assert ssim(x.float(), y.float()).dtype == torch.float64
    torch.testing.assert_close(ssim(x.float(), y.float()), ssim(x.float().double(), y.float().double()))


def test_ssim_rejects_small_frames():
    with pytest.raises(ValueError, match="at least 11"):
        ssim(torch.zeros(1, 3, 10, 32), torch.zeros(1, 3, 10, 32))
