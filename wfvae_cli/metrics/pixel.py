"""PSNR and SSIM with the conventions of the official WF-VAE evaluation (``causalvideovae/eval``).

Both are computed **per frame** and averaged over the frames of a clip, so a clip's value is the mean of
its frame values; callers average the returned per-clip values over the dataset. With clips of equal
length this equals the official "mean over all frames of all batches". All arithmetic is float64 (the
official SSIM works in float64, and float32 PSNR loses digits on near-identical frames).

Inputs are ``(B, C, T, H, W)`` clips or ``(N, C, H, W)`` images in ``[0, data_range]`` (``[0, 1]`` by
default, the official range: map model output with ``(x + 1) / 2`` and clamp first). Results are
float64 tensors on the input's device.
"""

from __future__ import annotations

import torch

from wfvae_cli.metrics._frames import paired_frames

PSNR_CAP = 100.0
"""PSNR of identical frames (mse = 0 gives +inf); the official code returns 100 for them."""

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_CHUNK_ELEMENTS = 1 << 24
"""Frames are filtered in groups of about this many float64 moment values (~134 MB) to bound memory."""


# ------------------------------------------------------------------------------------------------ PSNR
def psnr_per_frame(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR of every frame: ``(B, T)`` for clips, ``(N,)`` for images.

    Official convention: the MSE is taken over ``(C, H, W)`` of one frame, then
    ``20·log10(data_range / sqrt(mse))``. Identical frames (mse = 0 → inf) score :data:`PSNR_CAP`
    (100 dB); the cap is applied to every frame, which also matches the ``mse < 1e-10 → 100`` variant of
    the same code (both mean "PSNR above 100 dB is reported as 100").
    """
    fx, fy, layout = paired_frames(x, y)
    mse = (fx.double() - fy.double()).square().flatten(1).mean(dim=1)
    value = 20.0 * torch.log10(data_range / torch.sqrt(mse))
    return layout.fold(value.clamp(max=PSNR_CAP))


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR per clip, ``(B,)`` (or per image, ``(N,)``): the mean of the per-frame PSNRs.

    This is "PSNR averaged per frame", not the PSNR of the clip-level MSE: one bad frame lowers the
    clip's value by its share of the frames instead of dominating it. Average the result over clips.
    """
    per_frame = psnr_per_frame(x, y, data_range)
    return per_frame.mean(dim=1) if per_frame.dim() == 2 else per_frame


# ------------------------------------------------------------------------------------------------ SSIM
def gaussian_window(
    size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, device: torch.device | None = None
) -> torch.Tensor:
    """The normalised 1-D Gaussian (float64) of OpenCV ``getGaussianKernel(size, sigma)``.

    The official 11×11 window is the outer product of this vector with itself, so filtering with it
    is separable: a vertical then a horizontal pass give the same result as the 2-D window.
    """
    coords = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(z: torch.Tensor, taps: list[float]) -> torch.Tensor:
    """Separable "valid" correlation of the last two dims with ``taps`` (vertical, then horizontal).

    Written as a weighted sum of shifted views (11 fused multiply-adds per pass) rather than
    ``conv2d``: for float64 on the CPU it is ~5× faster and needs no unfold buffer, only the outputs.
    """
    k = len(taps)
    h = z.shape[-2] - k + 1
    rows = z[..., 0:h, :] * taps[0]
    for i in range(1, k):
        rows.add_(z[..., i : i + h, :], alpha=taps[i])
    w = z.shape[-1] - k + 1
    out = rows[..., 0:w] * taps[0]
    for i in range(1, k):
        out.add_(rows[..., i : i + w], alpha=taps[i])
    return out


def _ssim_frames(a: torch.Tensor, b: torch.Tensor, data_range: float) -> torch.Tensor:
    """SSIM of ``(N, C, H, W)`` float64 frames → ``(N,)``, all frames and channels at once."""
    taps = gaussian_window().tolist()
    # the five local moments, filtered together
    stats = _filter_valid(torch.stack([a, b, a * a, b * b, a * b]), taps)
    mu_a, mu_b, e_aa, e_bb, e_ab = stats.unbind(0)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_ab = mu_a * mu_b
    mu_aa = mu_a.square_()
    mu_bb = mu_b.square_()
    numerator = (2 * mu_ab + c1) * (2 * (e_ab - mu_ab) + c2)
    denominator = (mu_aa + mu_bb + c1) * ((e_aa - mu_aa) + (e_bb - mu_bb) + c2)
    return (numerator / denominator).mean(dim=(-2, -1)).mean(dim=1)


def ssim_per_frame(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM of every frame, ``(B, T)`` for clips or ``(N,)`` for images.

    Official convention (``cal_ssim.py``, the classic Wang et al. formulation):

    * each frame and each channel separately (no colour conversion), in float64;
    * 11×11 Gaussian window, σ = 1.5, normalised to sum 1;
    * "valid" filtering: only positions where the whole window lies inside the image, i.e. the
      official ``filter2D(...)[5:-5, 5:-5]`` crop; no padding ever enters the result;
    * C1 = (0.01·L)², C2 = (0.03·L)² with L = ``data_range``; population (biased) variances;
    * the SSIM map is averaged over space, then over channels.

    Frames must be at least 11×11. All frames and channels are filtered together, in groups of
    frames of about :data:`SSIM_CHUNK_ELEMENTS` values (memory only: a float64 moment stack is 40× the
    size of the float32 input).
    """
    fx, fy, layout = paired_frames(x, y)
    n, c, h, w = fx.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}×{SSIM_WINDOW}, got {h}×{w}")
    step = max(1, SSIM_CHUNK_ELEMENTS // (5 * c * h * w))
    per_frame = torch.cat(
        [
            _ssim_frames(fx[i : i + step].double(), fy[i : i + step].double(), data_range)
            for i in range(0, n, step)
        ]
    )
    return layout.fold(per_frame)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM per clip, ``(B,)`` (or per image, ``(N,)``): the mean of :func:`ssim_per_frame` over frames."""
    per_frame = ssim_per_frame(x, y, data_range)
    return per_frame.mean(dim=1) if per_frame.dim() == 2 else per_frame
