"""The cheapest possible "VAE": causal average pooling at the VAE's compression, upsampled back.

Why it exists: a VAE that cannot beat resampling at the same spatio-temporal compression has learned
nothing worth its compute, and on real footage that happens (issue #18). ``wfvae bench recon --baseline
pool`` and the training evaluator report it beside the model so the margin is visible on the user's data.

Layout: frame 0 is its own temporal group, then groups of ``t_factor`` frames (the WF-VAE causal layout,
``T = 1 + t_factor·k``); each group × ``s_factor``² block keeps its mean colour: 3 numbers per 4×8×8
block where a Z-channel latent keeps Z. Upsampling back:

* ``trilinear`` (default, the issue's bar): bilinear in space, and linear in time between the groups'
  centres (frame 0 at t = 0, group i ≥ 1 at the mean of its frames, held flat before the first and after
  the last centre). Interpolating at the centres, rather than ``F.interpolate(size=T)`` over the ``1 + k``
  samples, keeps frame 0 exact in time and is the stronger baseline of the two;
* ``bilinear``: bilinear in space, each group's value held over its frames;
* ``nearest``: block-constant in space and time (the literal "mean per block").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["POOL_MODES", "pool_baseline", "temporal_weights"]

POOL_MODES: tuple[str, ...] = ("trilinear", "bilinear", "nearest")


def temporal_weights(frames: int, t_factor: int) -> torch.Tensor:
    """``(frames, 1 + k)`` float64 weights: frame t as a linear mix of the group centres (rows sum to 1)."""
    k = (frames - 1) // t_factor
    centres = torch.tensor([0.0] + [t_factor * i - (t_factor - 1) / 2 for i in range(1, k + 1)], dtype=torch.float64)
    t = torch.arange(frames, dtype=torch.float64)
    w = torch.zeros(frames, k + 1, dtype=torch.float64)
    if k == 0:
        w[:, 0] = 1.0
        return w
    idx = torch.searchsorted(centres, t, right=True).clamp(1, k)  # right neighbour
    left, right = centres[idx - 1], centres[idx]
    a = ((t - left) / (right - left)).clamp(0.0, 1.0)
    w[torch.arange(frames), idx - 1] = 1.0 - a
    w[torch.arange(frames), idx] += a
    return w


def pool_baseline(
    video: torch.Tensor, t_factor: int = 4, s_factor: int = 8, mode: str = "bilinear"
) -> torch.Tensor:
    """Average-pool ``(B, C, 1 + t_factor·k, H, W)`` causally by (t_factor, s_factor, s_factor), upsample back.

    ``mode``: ``trilinear``, ``bilinear`` or ``nearest`` (see the module docstring). Same shape and dtype out.
    """
    if mode not in POOL_MODES:
        raise ValueError(f"pool_baseline mode {mode!r}: use one of {', '.join(POOL_MODES)}")
    b, c, t, h, w = video.shape
    if (t - 1) % t_factor or h % s_factor or w % s_factor:
        raise ValueError(
            f"pool_baseline needs T = {t_factor}k+1 and H, W multiples of {s_factor}, got {tuple(video.shape)}"
        )
    first = video[:, :, :1]
    rest = video[:, :, 1:].reshape(b, c, (t - 1) // t_factor, t_factor, h, w).mean(dim=3)
    groups = torch.cat([first, rest], dim=2)  # (B, C, 1 + k, H, W)
    frames = groups.transpose(1, 2).flatten(0, 1)
    small = F.avg_pool2d(frames, s_factor)
    kwargs = {"align_corners": False} if mode != "nearest" else {}
    spatial = "nearest" if mode == "nearest" else "bilinear"
    big = F.interpolate(small, scale_factor=s_factor, mode=spatial, **kwargs)
    big = big.reshape(b, -1, c, h, w).transpose(1, 2)  # (B, C, 1 + k, H, W)
    if mode == "trilinear":
        weights = temporal_weights(t, t_factor).to(device=video.device, dtype=big.dtype)
        return torch.einsum("tg,bcghw->bcthw", weights, big)
    repeats = torch.tensor([1] + [t_factor] * ((t - 1) // t_factor), device=video.device)
    return big.repeat_interleave(repeats, dim=2)
