"""WF-VAE building blocks, with the official module and parameter names.

Every block takes a (B, C, T, H, W) tensor and an optional :class:`CausalCache`. The "2D" blocks of
the official code run per frame; here they keep their 2D ``nn.Conv2d`` parameters (so checkpoints
load) but are applied to the 5D tensor as a 3D convolution with a temporal kernel of 1, which is
the same computation without the (B, C, T, H, W) -> (B*T, C, H, W) permute-and-copy round trip.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from wfvae_cli.model.cache import CausalCache, causal_parts, empty_frames, frame_range, frames
from wfvae_cli.model.fastconv import direct, winograd

#: how 3x3 convolutions are computed in float32 CPU inference: "auto" (Winograd F(4x4,3x3), F(2x2,3x3) on tiny frames, when the
#: compiled kernels are available and measured faster here, else direct), "direct" (the framework's
#: convolution, the official code's algorithm) or "winograd" (Winograd, an error if the kernels cannot
#: be built). Set per model with ``WFVAE.set_conv_algorithm``; training and other devices/dtypes always
#: run direct.
CONV_ALGORITHMS = ("auto", "direct", "winograd")


def _use_winograd(conv: nn.Conv2d | nn.Conv3d, x: torch.Tensor, frames_in: int) -> bool:
    """Whether this call of a 3x3 conv runs by Winograd (see ``CONV_ALGORITHMS``): stride 1, zero
    padding 1, float32 on the CPU, no gradients (the kernels have no backward), compiled kernels."""
    algorithm = getattr(conv, "algorithm", "auto")
    if algorithm == "direct" or conv.kernel_size[-2:] != (3, 3) or frames_in == 0:
        return False
    if any(s != 1 for s in conv.stride) or tuple(conv.padding[-2:]) != (1, 1) or conv.groups != 1:
        return False
    if any(d != 1 for d in conv.dilation) or (torch.is_grad_enabled() and conv.weight.requires_grad):
        return False
    if x.device.type != "cpu" or x.dtype != torch.float32 or torch.compiler.is_compiling():
        return False  # (a compiled graph keeps the framework's convolution: the kernels are opaque to it)
    if algorithm == "auto":
        return winograd.worthwhile()
    if not winograd.available():
        raise RuntimeError(
            "conv algorithm 'winograd' needs the compiled kernels, which could not be built here (no C "
            "compiler: set CC, see docs/performance.md); use 'auto' or 'direct'"
        )
    return True


#: the activation held for a slab of frames inside a block (conv1's output in a resnet block, the
#: padded input window of a strided conv); a temporal block takes at least MIN_SLAB_FRAMES frames where
#: the video has them, so that a causal conv re-reads its two held frames for every few new ones
SLAB_ACTIVATION_BYTES = 8 * 2**20
MIN_SLAB_FRAMES = 4
#: on the direct path a slab may be as large as 1/DIRECT_SLAB_WEIGHT_SHARE of the block's filters (each
#: slab reorders them again; a reorder is a pass over the filters, small beside the conv's work)
DIRECT_SLAB_WEIGHT_SHARE = 8


def slab_frame_count(x: torch.Tensor, channels: int, at_least_bytes: int = 0, min_frames: int = 1) -> int:
    """Frames per slab for an activation like ``x`` with ``channels`` channels: SLAB_ACTIVATION_BYTES,
    or ``at_least_bytes`` if more (a resnet block passes half its conv weights' size: every slab
    transforms the filters again, which should stay small beside the slab's work)."""
    frame_bytes = channels * x.shape[3] * x.shape[4] * x.element_size() * x.shape[0]
    budget = max(SLAB_ACTIVATION_BYTES, at_least_bytes)
    return max(min_frames, budget // max(1, frame_bytes))


def frame_slabs(n: int, per_slab: int) -> list[tuple[int, int]]:
    """[f0, f1) ranges covering n frames in equal slabs of at most ``per_slab``."""
    if n == 0:
        return []
    count = -(-n // per_slab)
    size = -(-n // count)
    return [(f0, min(n, f0 + size)) for f0 in range(0, n, size)]


def swish(x: torch.Tensor) -> torch.Tensor:
    """SiLU of a freshly computed activation (a norm's output, used nowhere else).

    In inference it overwrites ``x`` instead of allocating: one activation-sized buffer less at the
    memory peak of every resnet block. With autograd on, SiLU's backward needs its input, so not then.
    """
    return F.silu(x, inplace=not torch.is_grad_enabled())


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last memory order (a no-op when it already is): the layout every conv here
    runs fastest in, on oneDNN and in the Winograd path alike."""
    return x.contiguous(memory_format=torch.channels_last_3d)


def _norm_swish(parts: list[torch.Tensor], norm: LayerNormChannels | None) -> list[torch.Tensor]:
    """What a conv with a fused norm sees on the framework path: ``swish(norm(part))`` of each part."""
    return parts if norm is None else [swish(norm(p)) for p in parts]


def _params(norm: LayerNormChannels | None) -> winograd.Norm | None:
    """What a fused convolution needs to apply ``norm`` (and SiLU) itself."""
    return None if norm is None else norm.params()


def _add_into(y: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """``out += y`` (the residual of a fused block), or ``y`` alone."""
    return y if out is None else out.add_(y)


def _frame_conv(
    x: torch.Tensor, conv: nn.Conv2d, norm: LayerNormChannels | None = None, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Apply a 2D conv to every frame of a 5D tensor: ``out + conv(swish(norm(x)))``, the norm and
    ``out`` optional.

    Channels-last, the (B, C, T, H, W) tensor *is* a batch of B*T channels-last images, so the frames
    go through ``conv2d`` as a view, without the official (b c t h w -> (b t) c h w) copy.
    """
    if frames(x) == 0:
        stride = conv.stride if isinstance(conv.stride, tuple) else (conv.stride, conv.stride)
        pad = conv.padding if isinstance(conv.padding, tuple) else (conv.padding, conv.padding)
        kh, kw = conv.kernel_size
        h = (x.shape[3] + 2 * pad[0] - kh) // stride[0] + 1
        w = (x.shape[4] + 2 * pad[1] - kw) // stride[1] + 1
        return empty_frames(x, conv.out_channels, h, w)
    if _use_winograd(conv, x, frames(x)):
        return winograd.conv3x3([x], conv.weight, conv.bias, norm=None if norm is None else norm.params(), out=out)
    if direct.applies(x):
        return direct.conv([x], conv.weight, conv.bias, conv.stride, conv.padding, norm=_params(norm), out=out)
    (x,) = _norm_swish([x], norm)
    b, c, t, h, w = x.shape
    images = channels_last(x).permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    y = F.conv2d(images, conv.weight, conv.bias, conv.stride, conv.padding)
    return _add_into(y.view(b, t, *y.shape[1:]).permute(0, 2, 1, 3, 4), out)


class Conv2d(nn.Conv2d):
    """The official per-frame ``Conv2d`` (keys ``<name>.weight``/``.bias``)."""

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        cache: CausalCache | None = None,
        norm: LayerNormChannels | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``out + conv(swish(norm(x)))`` per frame; ``norm`` and ``out`` optional (see :func:`_frame_conv`)."""
        return _frame_conv(x, self, norm, out)


class CausalConv3d(nn.Module):
    """3D conv, causal in time: replicate frame 0 ``kt-1`` times in front; zero padding in space.

    Keys ``<name>.conv.weight``/``.conv.bias``. With a cache, the unconsumed tail frames carry over
    between chunks (see :func:`causal_parts`).
    """

    def __init__(
        self,
        chan_in: int,
        chan_out: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        padding: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        k = (kernel_size,) * 3 if isinstance(kernel_size, int) else tuple(kernel_size)
        s = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
        self.kernel_t, self.stride_t = k[0], s[0]
        self.conv = nn.Conv3d(chan_in, chan_out, k, stride=s, padding=(0, padding, padding), bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        cache: CausalCache | None = None,
        norm: LayerNormChannels | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``out + conv(swish(norm(x)))``, the norm and ``out`` optional.

        The cache always holds raw input frames (the norm is per position, so normalising before or
        after the temporal padding is the same), whichever algorithm a chunk runs with.
        """
        c = self.conv
        parts = causal_parts(self, x, cache, self.kernel_t, self.stride_t)
        if parts is None:
            h = (x.shape[3] + 2 * c.padding[1] - c.kernel_size[1]) // c.stride[1] + 1
            w = (x.shape[4] + 2 * c.padding[2] - c.kernel_size[2]) // c.stride[2] + 1
            return empty_frames(x, c.out_channels, h, w)
        if _use_winograd(c, x, sum(frames(p) for p in parts)):  # reads the parts: no padded copy
            return winograd.conv3x3(parts, c.weight, c.bias, norm=_params(norm), out=out)
        if direct.applies(x):  # the padded (normalised) window built slab by slab, filters in blocks
            return direct.conv(parts, c.weight, c.bias, c.stride, c.padding, norm=_params(norm), out=out)
        parts = _norm_swish(parts, norm)
        return _add_into(c(channels_last(parts[0] if len(parts) == 1 else torch.cat(parts, dim=2))), out)


class LayerNormChannels(nn.Module):
    """LayerNorm over channels only (each (b, t, h, w) position separately), eps 1e-6.

    Keys ``<name>.norm.weight``/``.norm.bias``. Runs ``F.layer_norm`` on the channels-last view of
    the activation: free when the activation is already channels-last in memory (the Winograd
    convolutions produce it so), one copy otherwise; the result is channels-last either way, so the
    official permute -> LayerNorm -> permute-back copy is never made.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps, elementwise_affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() == 0:
            return x
        last = (0, *range(2, x.dim()), 1)
        back = (0, x.dim() - 1, *range(1, x.dim() - 1))
        y = F.layer_norm(x.permute(last).contiguous(), (x.shape[1],), self.norm.weight, self.norm.bias, self.norm.eps)
        return y.permute(back)

    def params(self) -> winograd.Norm:
        """(weight, bias, eps): what a fused convolution needs to apply this norm (and SiLU) itself."""
        return self.norm.weight.detach(), self.norm.bias.detach(), self.norm.eps


def normalize(channels: int, norm_type: str) -> nn.Module:
    """The official ``Normalize``: our channel LayerNorm, or ``nn.GroupNorm(32)`` used directly."""
    if norm_type == "layernorm":
        return LayerNormChannels(channels)
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class _ResnetBlock(nn.Module):
    """norm1 -> swish -> conv1 -> norm2 -> swish -> dropout -> conv2, plus the input (or its 1x1 shortcut).

    With channel LayerNorm each norm and swish is fused into the conv after it (applied slab by slab
    inside a Winograd convolution, so the normalised activation never exists whole) and conv2 adds its
    result into the residual; in inference, when the caller allows it (``reuse_input``: the input is a
    temporary of the caller's), the residual is the input itself, overwritten. Inference runs the
    block over slabs of frames (:meth:`_forward_slabs`), so at its peak a block holds its input, one
    slab of conv1's output and the convolutions' bounded scratch.
    """

    #: :class:`Sequential` may let this block overwrite its input
    can_reuse_input = True

    def __init__(
        self, in_channels: int, out_channels: int, dropout: float, norm_type: str, conv: Callable[..., nn.Module]
    ) -> None:
        super().__init__()  # registration order = the official state-dict key order
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = normalize(in_channels, norm_type)
        self.conv1 = conv(in_channels, out_channels, 3, padding=1)
        self.norm2 = normalize(out_channels, norm_type)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = conv(in_channels, out_channels, 1)

    def _fused(self) -> bool:
        return isinstance(self.norm1, LayerNormChannels) and not (self.training and self.dropout.p > 0)

    def _residual(self, x: torch.Tensor, cache: CausalCache | None, reuse_input: bool) -> torch.Tensor:
        """The tensor conv2 adds into: a fresh shortcut, the input itself, or a copy of the input; in
        inference always with dense channels-last frames (what the fused convolutions write into)."""
        if self.in_channels != self.out_channels:
            r = self._shortcut(x, cache)
            return r if torch.is_grad_enabled() else winograd.dense_frames(r)
        if reuse_input and not torch.is_grad_enabled() and winograd.dense_frames(x) is x:
            return x
        return x.clone(memory_format=torch.channels_last_3d)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None, reuse_input: bool = False) -> torch.Tensor:
        if self._fused() and not torch.is_grad_enabled():
            return self._forward_slabs(x, cache, reuse_input)
        if self._fused():  # autograd: the same fusion, without in-place accumulation into saved tensors
            h = self._conv(self.conv1, x, cache, self.norm1)
            return self._conv(self.conv2, h, cache, self.norm2) + self._residual(x, cache, False)
        # group norm (whole-video statistics) or dropout in training: the plain sequence, one
        # statement per step so that each intermediate is released as soon as the next exists
        h = swish(self.norm1(x))
        h = self._conv(self.conv1, h, cache)
        h = swish(self.norm2(h))
        h = self._conv(self.conv2, self.dropout(h), cache)
        if self.in_channels != self.out_channels:
            x = self._shortcut(x, cache)
        return h.add_(x)  # h is the conv's fresh output (add's backward needs neither operand)

    def _forward_slabs(self, x: torch.Tensor, cache: CausalCache | None, reuse_input: bool) -> torch.Tensor:
        """Inference, a few frames at a time: conv1's output exists for one slab of frames only.

        The slabs go through the block as chunks of a Causal-Cache stream (the caller's stream, or a
        private one for direct inference), so the result is exactly the whole-video one.
        """
        residual = self._residual(x, cache, reuse_input)
        stream = CausalCache() if cache is None else cache
        weight_bytes = max(getattr(c, "conv", c).weight.numel() for c in (self.conv1, self.conv2)) * x.element_size()
        temporal = isinstance(self.conv1, CausalConv3d)
        conv1 = getattr(self.conv1, "conv", self.conv1)
        if _use_winograd(conv1, x, frames(x)):  # each slab transforms the filters again: large slabs
            per_slab = slab_frame_count(x, self.out_channels, weight_bytes // 2, MIN_SLAB_FRAMES if temporal else 1)
        else:  # a slab only costs the direct conv a filter reorder (and re-reading kt - 1 frames): small slabs
            per_slab = slab_frame_count(x, self.out_channels, weight_bytes // DIRECT_SLAB_WEIGHT_SHARE, 1)
        for f0, f1 in frame_slabs(frames(x), per_slab):
            h = self._conv(self.conv1, x[:, :, f0:f1], stream, self.norm1)
            self._conv(self.conv2, h, stream, self.norm2, out=residual[:, :, f0:f1])
            del h
        return residual


class ResnetBlock3D(_ResnetBlock):
    """The causal 3D resnet block (3x3x3 convs, 1x1x1 shortcut)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0, norm_type: str = "layernorm") -> None:
        super().__init__(in_channels, out_channels, dropout, norm_type, CausalConv3d)

    @staticmethod
    def _conv(conv: CausalConv3d, x: torch.Tensor, cache: CausalCache | None, norm=None, out=None) -> torch.Tensor:
        return conv(x, cache, norm, out)

    def _shortcut(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        return self.nin_shortcut(x, cache)


class ResnetBlock2D(_ResnetBlock):
    """The per-frame resnet block of the encoder's first level (plain ``nn.Conv2d`` 3x3 convs)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0, norm_type: str = "layernorm") -> None:
        super().__init__(in_channels, out_channels, dropout, norm_type, nn.Conv2d)

    @staticmethod
    def _conv(conv: nn.Conv2d, x: torch.Tensor, cache: CausalCache | None, norm=None, out=None) -> torch.Tensor:
        return _frame_conv(x, conv, norm, out)

    def _shortcut(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        return _frame_conv(x, self.nin_shortcut)


class AttnBlock3DFix(nn.Module):
    """Single-head self-attention within each frame (no temporal mixing), residual.

    q/k/v/proj_out are 1x1x1 convs in the checkpoint; they are applied as one fused linear map on a
    channels-last view, which avoids four separate conv calls and the permutes around the attention.
    """

    def __init__(self, channels: int, norm_type: str = "layernorm") -> None:
        super().__init__()
        self.norm = normalize(channels, norm_type)
        self.q = CausalConv3d(channels, channels, 1)
        self.k = CausalConv3d(channels, channels, 1)
        self.v = CausalConv3d(channels, channels, 1)
        self.proj_out = CausalConv3d(channels, channels, 1)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        b, c, t, h, w = x.shape
        if t == 0:
            return x
        hs = self.norm(x).permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)
        weight = torch.cat([self.q.conv.weight, self.k.conv.weight, self.v.conv.weight]).flatten(1)
        bias = torch.cat([self.q.conv.bias, self.k.conv.bias, self.v.conv.bias])
        q, k, v = F.linear(hs, weight, bias).chunk(3, dim=-1)
        out = F.scaled_dot_product_attention(q, k, v)
        out = F.linear(out, self.proj_out.conv.weight.flatten(1), self.proj_out.conv.bias)
        return x + out.view(b, t, h, w, c).permute(0, 4, 1, 2, 3)


def _in_slabs(n: int, per_slab: int, compute: Callable[[int, int], torch.Tensor]) -> torch.Tensor:
    """``compute(f0, f1)`` for output frames [f0, f1) of each slab, assembled into one tensor (n >= 1)
    without holding more than one slab's intermediates: the strided convs pad a copy of their input,
    which this keeps to one slab of frames."""
    slabs = frame_slabs(n, per_slab)
    first = compute(*slabs[0])
    if len(slabs) == 1:
        return first
    b, c, _, h, w = first.shape
    out = first.new_empty((b, n, h, w, c)).permute(0, 4, 1, 2, 3)  # channels-last, like the convs' output
    out[:, :, : slabs[0][1]] = first
    del first
    for f0, f1 in slabs[1:]:
        out[:, :, f0:f1] = compute(f0, f1)
    return out


class Downsample(nn.Module):
    """Per-frame spatial /2: zero-pad right and bottom by 1, 3x3 conv with stride 2 (key ``conv.weight``)."""

    def __init__(self, in_channels: int, out_channels: int, **_: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        if frames(x) == 0:
            return empty_frames(x, self.conv.out_channels, x.shape[3] // 2, x.shape[4] // 2)
        if direct.applies(x):  # the zero-padded input built one slab at a time
            return direct.conv([x], self.conv.weight, self.conv.bias, self.conv.stride, self.conv.padding, pad_hw=(1, 1))
        return _in_slabs(
            frames(x),
            slab_frame_count(x, x.shape[1]),
            lambda f0, f1: _frame_conv(F.pad(x[:, :, f0:f1], (0, 1, 0, 1)), self.conv),
        )


class Spatial2xTime2x3DDownsample(nn.Module):
    """Space and time /2: zero-pad right/bottom by 1, causal 3x3x3 conv with stride 2 (key ``conv.conv.weight``)."""

    def __init__(self, in_channels: int, out_channels: int, **_: object) -> None:
        super().__init__()
        self.conv = CausalConv3d(in_channels, out_channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        conv = self.conv  # its causal padding and cache, with the padded window built one slab at a time
        kt, st = conv.kernel_t, conv.stride_t
        parts = causal_parts(conv, x, cache, kt, st)
        if parts is None:
            return empty_frames(x, conv.conv.out_channels, x.shape[3] // 2, x.shape[4] // 2)
        if direct.applies(x):
            c = conv.conv
            return direct.conv(parts, c.weight, c.bias, c.stride, c.padding, pad_hw=(1, 1))
        n_out = (sum(frames(p) for p in parts) - kt) // st + 1

        def window(j0: int, j1: int) -> torch.Tensor:
            picked = frame_range(parts, st * j0, st * (j1 - 1) + kt)
            return conv.conv(channels_last(F.pad(torch.cat(picked, dim=2), (0, 1, 0, 1))))

        return _in_slabs(n_out, max(1, slab_frame_count(x, x.shape[1], min_frames=MIN_SLAB_FRAMES) // st), window)


class Upsample(nn.Module):
    """Per-frame spatial x2: nearest interpolation, then a 3x3 conv (key ``conv.weight``)."""

    def __init__(self, in_channels: int, out_channels: int, **_: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        if frames(x) == 0:
            return empty_frames(x, self.conv.out_channels, 2 * x.shape[3], 2 * x.shape[4])
        if direct.applies(x) and not _use_winograd(self.conv, x, frames(x)):
            # the 4x larger interpolated input exists one slab of frames at a time (per-frame ops)
            return _in_slabs(
                frames(x),
                slab_frame_count(x, 4 * x.shape[1]),
                lambda f0, f1: _frame_conv(F.interpolate(x[:, :, f0:f1], scale_factor=(1, 2, 2), mode="nearest"), self.conv),
            )
        return _frame_conv(F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest"), self.conv)


def _interpolate_time(seq: torch.Tensor, prev: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
    """Temporal x2 linear interpolation (align_corners=False) of ``seq`` given its neighbours.

    Output frame 2i is 0.25*r[i-1] + 0.75*r[i] and 2i+1 is 0.75*r[i] + 0.25*r[i+1], which is what
    ``F.interpolate(mode="trilinear", scale_factor=(2,1,1))`` computes, with the out-of-range
    neighbours given explicitly: at the ends of a video they are the edge frames themselves (clamping).
    """
    left = torch.cat([prev, seq[:, :, :-1]], dim=2)
    right = torch.cat([seq[:, :, 1:], nxt], dim=2)
    even = 0.25 * left + 0.75 * seq
    odd = 0.75 * seq + 0.25 * right
    return torch.stack([even, odd], dim=3).flatten(2, 3)


class Spatial2xTime2x3DUpsample(nn.Module):
    """Space and time x2: frame 0 is upsampled in space only; frames 1.. are interpolated x2 in time
    (``t_interpolation``) then x2 in space (bilinear), giving 2T-1 frames; then a causal 3x3x3 conv.

    Linear temporal interpolation needs the next frame, so while streaming the last frame received
    is held back until the next chunk (or the end of the stream) arrives. ``depth`` is accepted for
    config compatibility; the explicit look-ahead makes it unnecessary here.
    """

    def __init__(self, in_channels: int, out_channels: int, t_interpolation: str = "nearest", depth: int = 0) -> None:
        super().__init__()
        self.t_interpolation = t_interpolation
        self.depth = depth
        self.conv = CausalConv3d(in_channels, out_channels, 3, padding=1)

    def _time_upsample(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        """Frames of the temporally upsampled (still low-resolution) sequence that can be emitted now."""
        final = cache is None or cache.final
        started, held, prev = (False, None, None) if cache is None else cache.get(self, (False, None, None))
        parts: list[torch.Tensor] = []
        if not started and frames(x) > 0:
            parts.append(x[:, :, :1])
            x, started = x[:, :, 1:], True
        seq = x if held is None else torch.cat([held, x], dim=2)
        if frames(seq) > 0:
            if self.t_interpolation == "nearest":
                parts.append(seq.repeat_interleave(2, dim=2))
                held = prev = None
            else:
                first_prev = seq[:, :, :1] if prev is None else prev
                if final:
                    parts.append(_interpolate_time(seq, first_prev, seq[:, :, -1:]))
                    held = prev = None
                else:
                    ready = seq[:, :, :-1]
                    if frames(ready) > 0:
                        parts.append(_interpolate_time(ready, first_prev, seq[:, :, -1:]))
                        prev = ready[:, :, -1:].clone()
                    else:
                        prev = first_prev.clone() if prev is None else prev
                    held = seq[:, :, -1:].clone()
        if cache is not None:
            cache[self] = (started, held, prev)
        if not parts:
            return x[:, :, :0]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        low = self._time_upsample(x, cache)
        if frames(low) == 0:
            up = empty_frames(x, x.shape[1], 2 * x.shape[3], 2 * x.shape[4])
        else:
            up = F.interpolate(low, scale_factor=(1, 2, 2), mode="trilinear", align_corners=False)
        return self.conv(up, cache)


def norm_swish_conv(
    conv: CausalConv3d | Conv2d, norm: nn.Module, x: torch.Tensor, cache: CausalCache | None = None
) -> torch.Tensor:
    """``conv(swish(norm(x)))``, the output head of encoder and decoder: fused for channel LayerNorm."""
    if isinstance(norm, LayerNormChannels):
        return conv(x, cache, norm)
    return conv(swish(norm(x)), cache)


class Sequential(nn.Sequential):
    """``nn.Sequential`` that threads the Causal Cache through its children.

    Every child after the first receives a temporary that nothing else holds (the previous child's
    output), so the children that can (``can_reuse_input``) may overwrite it; the first child may too
    when the caller says its input is such a temporary (``reuse_input``). A list input is *handed
    over*: its tensors are concatenated along channels and the list emptied, so that this stage holds
    the only reference and frees its input as soon as the first child has read it (a tensor argument
    stays alive in the caller, and in the module call machinery, until the whole stage returns).
    """

    def forward(  # type: ignore[override]
        self, x: torch.Tensor | list[torch.Tensor], cache: CausalCache | None = None, reuse_input: bool = False
    ) -> torch.Tensor:
        if isinstance(x, list):
            inputs, x = x, x[0] if len(x) == 1 else torch.cat(x, dim=1)
            reuse_input = reuse_input or len(inputs) > 1  # a concatenation is ours
            inputs.clear()
        for i, module in enumerate(self):
            if getattr(module, "can_reuse_input", False):
                x = module(x, cache, reuse_input=reuse_input or i > 0)
            else:
                x = module(x, cache)
        return x
