"""Haar wavelet transforms of WF-VAE, as single grouped (transposed) convolutions.

The official code runs eight 1-channel convolutions (3D) or four (2D) on a (B*C, 1, ...) view and
concatenates the results. Kernel = stride = 2, so each output is a fixed linear combination of one
2x2x2 (or 2x2) block; one grouped convolution over all channels computes the same sums in one call.
The filters keep their official names and storage: parameters (frozen) in the 3D analysis transform,
buffers elsewhere, so checkpoints load with ``strict=True``.

Channel order is subband-major (``f * C + c``) and the 3D constant is the official 0.3536, not
1/(2*sqrt(2)) (the difference is visible at the 1e-4 level).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wfvae_cli.model.cache import CausalCache, causal_window, empty_frames, frames
from wfvae_cli.model.layers import CausalConv3d

HAAR3D_NAMES = ("h", "g", "hh", "gh", "h_v", "g_v", "hh_v", "gh_v")
HAAR2D_NAMES = ("aa", "ad", "da", "dd")
HAAR3D_CONSTANT = 0.3536  # official value (float32(0.3536)), not 1/(2*sqrt(2))


def haar3d_filters() -> torch.Tensor:
    """(8, 2, 2, 2) float32 filters in the official subband order.

    Subband f has temporal band f>>2, height band (f>>1)&1, width band f&1 (0 = low, 1 = high);
    a high band is "first minus second".
    """
    d = torch.arange(2)
    f = torch.arange(8)
    sign = lambda band, idx: 1 - 2 * (band.view(-1, 1) * idx.view(1, -1))  # noqa: E731
    st, sh, sw = sign(f >> 2, d), sign((f >> 1) & 1, d), sign(f & 1, d)
    signs = st[:, :, None, None] * sh[:, None, :, None] * sw[:, None, None, :]
    return signs * HAAR3D_CONSTANT  # int tensor * python float -> float32, as the official code does


def haar2d_filters() -> torch.Tensor:
    """(4, 2, 2) filters [LL, high-H, high-W, HH] with values +-1/2."""
    return torch.tensor(
        [[[1, 1], [1, 1]], [[1, 1], [-1, -1]], [[1, -1], [1, -1]], [[1, -1], [-1, 1]]], dtype=torch.float32
    ) * 0.5


def _to_subband_major(y: torch.Tensor, channels: int, bands: int) -> torch.Tensor:
    """(B, C*bands, ...) in channel-major order (grouped conv output) -> subband-major (B, bands*C, ...)."""
    b = y.shape[0]
    return y.view(b, channels, bands, *y.shape[2:]).transpose(1, 2).reshape(b, bands * channels, *y.shape[2:])


def _to_channel_major(x: torch.Tensor, bands: int) -> torch.Tensor:
    """Subband-major (B, bands*C, ...) -> channel-major (B, C*bands, ...), the grouped conv's input order."""
    b, n = x.shape[:2]
    c = n // bands
    return x.view(b, bands, c, *x.shape[2:]).transpose(1, 2).reshape(b, n, *x.shape[2:])


class HaarWaveletTransform3D(nn.Module):
    """3D Haar analysis: (B, C, T, H, W) -> (B, 8C, (T+1)/2, H/2, W/2), causal in time (frame 0 doubled)."""

    def __init__(self) -> None:
        super().__init__()
        for name in HAAR3D_NAMES:
            conv = CausalConv3d(1, 1, 2, stride=2, padding=0, bias=False)
            conv.conv.weight.requires_grad_(False)
            setattr(self, f"{name}_conv", conv)
        self.reset_constants()

    @torch.no_grad()
    def reset_constants(self) -> None:
        for name, filt in zip(HAAR3D_NAMES, haar3d_filters(), strict=True):
            getattr(self, f"{name}_conv").conv.weight.copy_(filt.view(1, 1, 2, 2, 2))

    def filters(self) -> torch.Tensor:
        return torch.cat([getattr(self, f"{n}_conv").conv.weight for n in HAAR3D_NAMES])  # (8,1,2,2,2)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        c = x.shape[1]
        window = causal_window(self, x, cache, 2, 2)
        if window is None:
            return empty_frames(x, 8 * c, x.shape[3] // 2, x.shape[4] // 2)
        weight = self.filters().to(x.dtype).repeat(c, 1, 1, 1, 1)
        return _to_subband_major(F.conv3d(window, weight, stride=2, groups=c), c, 8)


class HaarWaveletTransform2D(nn.Module):
    """Per-frame 2D Haar analysis: (B, C, T, H, W) -> (B, 4C, T, H/2, W/2)."""

    def __init__(self) -> None:
        super().__init__()
        for name, filt in zip(HAAR2D_NAMES, haar2d_filters(), strict=True):
            self.register_buffer(name, filt.view(1, 1, 2, 2).clone())

    def reset_constants(self) -> None:
        with torch.no_grad():
            for name, filt in zip(HAAR2D_NAMES, haar2d_filters(), strict=True):
                getattr(self, name).copy_(filt.view(1, 1, 2, 2))

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        c = x.shape[1]
        if frames(x) == 0:
            return empty_frames(x, 4 * c, x.shape[3] // 2, x.shape[4] // 2)
        weight = torch.cat([getattr(self, n) for n in HAAR2D_NAMES]).to(x.dtype).unsqueeze(2).repeat(c, 1, 1, 1, 1)
        return _to_subband_major(F.conv3d(x, weight, stride=(1, 2, 2), groups=c), c, 4)


class InverseHaarWaveletTransform3D(nn.Module):
    """3D Haar synthesis: (B, 8C, T, H, W) -> (B, C, 2T-1, 2H, 2W); the first output frame (the
    causal duplicate of frame 0) is dropped once per stream."""

    def __init__(self) -> None:
        super().__init__()
        for name, filt in zip(HAAR3D_NAMES, haar3d_filters(), strict=True):
            self.register_buffer(name, filt.view(1, 1, 2, 2, 2).clone())

    def reset_constants(self) -> None:
        with torch.no_grad():
            for name, filt in zip(HAAR3D_NAMES, haar3d_filters(), strict=True):
                getattr(self, name).copy_(filt.view(1, 1, 2, 2, 2))

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        c = x.shape[1] // 8
        if frames(x) == 0:
            return empty_frames(x, c, 2 * x.shape[3], 2 * x.shape[4])
        weight = torch.cat([getattr(self, n) for n in HAAR3D_NAMES]).to(x.dtype).repeat(c, 1, 1, 1, 1)
        y = F.conv_transpose3d(_to_channel_major(x, 8), weight, stride=2, groups=c)
        first = cache is None or not cache.get(self, False)
        if cache is not None:
            cache[self] = True
        return y[:, :, 1:] if first else y


class InverseHaarWaveletTransform2D(nn.Module):
    """Per-frame 2D Haar synthesis: (B, 4C, T, H, W) -> (B, C, T, 2H, 2W) (exact inverse)."""

    def __init__(self) -> None:
        super().__init__()
        for name, filt in zip(HAAR2D_NAMES, haar2d_filters(), strict=True):
            self.register_buffer(name, filt.view(1, 1, 2, 2).clone())

    reset_constants = HaarWaveletTransform2D.reset_constants

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        c = x.shape[1] // 4
        if frames(x) == 0:
            return empty_frames(x, c, 2 * x.shape[3], 2 * x.shape[4])
        weight = torch.cat([getattr(self, n) for n in HAAR2D_NAMES]).to(x.dtype).unsqueeze(2).repeat(c, 1, 1, 1, 1)
        return F.conv_transpose3d(_to_channel_major(x, 4), weight, stride=(1, 2, 2), groups=c)
