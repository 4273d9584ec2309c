"""The framework's direct convolution (oneDNN on x86 CPUs), driven so that its memory stays bounded.

On machines where no Winograd products backend beats the direct convolution (the per-machine verdict
of :mod:`wfvae_cli.model.fastconv.products`), WF-VAE's convolutions run here, and the memory savings
must not hinge on the Winograd path. Called naively, a direct convolution of WF-VAE's shapes needs
more activation memory than the layer's input and output:

* **Weight reorders.** oneDNN reorders the filters into its blocked layout on every call, and PyTorch
  first copies them channels-last when the input is channels-last: two filter-sized temporaries. A
  mid-block 768 -> 768 causal 3x3x3 conv (64 MB of weights) briefly holds 128 MB, which set the whole
  wfvae-l encode's peak at 17x128^2. Here the filters go through the conv a block of output channels at
  a time (``WEIGHT_BLOCK_BYTES`` each), so those temporaries are one block's.
* **Padded, normalised copies.** A causal conv sees ``kt - 1`` copies of frame 0 in front (and the
  strided downsamplers a zero row and column); the resnet blocks' LayerNorm + SiLU come before it.
  Done as separate ops that is a normalised tensor, then a concatenated/padded copy of it. Here the
  input window is built once, in slabs of frames (``WINDOW_BYTES``): the norm and SiLU are computed a
  few frames at a time and written straight into the padded window buffer, and the padding frames
  are filled from frame 0's normalised copy.
* **Residuals.** With ``out`` each block's (slab's) result is added into the given tensor (a resnet
  block's residual) instead of a new output tensor, and such temporaries stay under ``TEMP_BYTES``.

Every output element is still one oneDNN convolution sum (slabs and channel blocks only split the
output), so the result equals the whole-layer call to float32 rounding of the same algorithm, and a
Causal-Cache stream gives the same numbers as the direct (whole-video) path. Inference only (no
autograd through the in-place writes): the callers use it for CPU inference and keep the plain ops
otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: weights of one block of output channels: the filter reorders a direct conv makes per call
WEIGHT_BLOCK_BYTES = 8 * 2**20
#: the (normalised, padded) input window of one slab of output frames, when it must be built
WINDOW_BYTES = 8 * 2**20
#: one block's output slab, when it is added or copied into a larger tensor
TEMP_BYTES = 8 * 2**20
#: frames normalised at once while filling a window (a temporary of this many frames)
NORM_FRAME_BYTES = 2 * 2**20

CL = torch.channels_last_3d
#: ``norm`` argument: (weight, bias, eps) of a LayerNorm over channels, followed by SiLU
Norm = tuple[torch.Tensor, torch.Tensor, float]


def applies(x: torch.Tensor) -> bool:
    """Whether a conv call on ``x`` runs through this driver: CPU inference, outside compiled graphs
    (training keeps the plain ops autograd needs; other devices have their own memory behaviour)."""
    return x.device.type == "cpu" and not torch.is_grad_enabled() and not torch.compiler.is_compiling()


def dense_frames(x: torch.Tensor) -> torch.Tensor:
    """``x`` (B, C, t, H, W) with channels-last frames, copied only if not: the layout oneDNN runs
    these convolutions fastest in, and the one every conv here returns."""
    c, w = x.shape[1], x.shape[4]
    if x.stride(1) == 1 and x.stride(4) == c and x.stride(3) == w * c:
        return x
    return x.contiguous(memory_format=CL)


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    """[a, b) ranges covering n in equal pieces of at most ``size`` (n >= 1)."""
    count = -(-n // max(1, size))
    step = -(-n // count)
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def channel_blocks(weight: torch.Tensor) -> list[tuple[int, int]]:
    """Output-channel blocks of ``weight`` with at most WEIGHT_BLOCK_BYTES each, multiples of 16
    channels where the layer has more than one block (oneDNN's vector width)."""
    c_out = weight.shape[0]
    per_channel = weight[0].numel() * weight.element_size()
    fit = WEIGHT_BLOCK_BYTES // max(1, per_channel)
    if fit >= c_out:
        return [(0, c_out)]
    fit = max(16, fit // 16 * 16)
    return _blocks(c_out, fit)


def _norm_into(dst: torch.Tensor, src: torch.Tensor, norm: Norm | None) -> None:
    """``dst = silu(layer_norm(src))`` over channels (or a copy without ``norm``), a few frames at a
    time, so that the only temporary is NORM_FRAME_BYTES of normalised frames."""
    if norm is None:
        dst.copy_(src)
        return
    weight, bias, eps = norm
    c = src.shape[1]
    frame_bytes = max(1, src[:, :, :1].numel() * src.element_size())
    for f0, f1 in _blocks(src.shape[2], max(1, NORM_FRAME_BYTES // frame_bytes)):
        part = src[:, :, f0:f1].permute(0, 2, 3, 4, 1)  # (B, t, H, W, C): a view when src is channels-last
        y = F.layer_norm(part, (c,), weight, bias, eps)
        dst[:, :, f0:f1].copy_(F.silu(y, inplace=True).permute(0, 4, 1, 2, 3))
        del y


def _window(
    parts: list[torch.Tensor], f0: int, f1: int, norm: Norm | None, pad_hw: tuple[int, int]
) -> torch.Tensor:
    """Input frames [f0, f1) of the concatenated ``parts``, normalised (``norm``) and zero-padded at the
    bottom/right by ``pad_hw``, as one channels-last tensor: a view of the input when nothing is to be
    done, else one new buffer filled in place."""
    picked, start = [], 0
    for part in parts:
        end = start + part.shape[2]
        lo, hi = max(f0, start), min(f1, end)
        if hi > lo:
            picked.append(part[:, :, lo - start : hi - start])
        start = end
    if norm is None and pad_hw == (0, 0) and len(picked) == 1 and picked[0].stride(2) != 0:
        return dense_frames(picked[0])
    b, c, _, h, w = picked[0].shape
    ph, pw = pad_hw
    buf = picked[0].new_empty((b, f1 - f0, h + ph, w + pw, c)).permute(0, 4, 1, 2, 3)
    if ph:
        buf[:, :, :, h:].zero_()
    if pw:
        buf[:, :, :, :h, w:].zero_()
    at = 0
    for p in picked:
        n = p.shape[2]
        dst = buf[:, :, at : at + n, :h, :w]
        if p.stride(2) == 0 and n > 1:  # the causal padding: frame 0 repeated, normalised once
            _norm_into(dst[:, :, :1], p[:, :, :1], norm)
            dst[:, :, 1:].copy_(dst[:, :, :1].expand(-1, -1, n - 1, -1, -1))
        else:
            _norm_into(dst, p, norm)
        at += n
    return buf


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding) -> torch.Tensor:
    """One framework convolution of a channels-last (B, C, t, H, W) window; a 2D ``weight`` is applied
    to every frame (the frames as a batch of channels-last images, a view when B == 1)."""
    if weight.dim() == 5:
        return F.conv3d(x, weight, bias, stride, padding)
    b, c, t, h, w = x.shape
    images = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    y = F.conv2d(images, weight, bias, stride, padding)
    return y.view(b, t, *y.shape[1:]).permute(0, 2, 1, 3, 4)


def conv(
    parts: list[torch.Tensor],
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    *,
    norm: Norm | None = None,
    out: torch.Tensor | None = None,
    pad_hw: tuple[int, int] = (0, 0),
) -> torch.Tensor:
    """``out + conv(silu(norm(cat(parts))))`` by the framework's convolution, in bounded memory.

    ``parts`` are consecutive frame ranges (B, C, t, H, W) of the (already causally padded) input, an
    expanded part (frame stride 0) standing for repeated frames; ``weight`` is (Cout, Cin, kt, kh, kw)
    (``stride``/``padding`` of a Conv3d) or (Cout, Cin, kh, kw) for a per-frame conv (those of a
    Conv2d). ``pad_hw`` zero-pads the input at the bottom/right first (the downsamplers). ``norm`` and
    ``out`` are optional; the result is channels-last (``out`` itself when given).
    """
    parts = [p for p in parts if p.shape[2]]
    kt, st = (weight.shape[2], stride[0]) if weight.dim() == 5 else (1, 1)
    n_in = sum(p.shape[2] for p in parts)
    n_out = (n_in - kt) // st + 1
    b, c, _, h, w = parts[0].shape
    sp_stride, sp_pad, kh, kw = stride[-2:], padding[-2:], weight.shape[-2], weight.shape[-1]
    ho = (h + pad_hw[0] + 2 * sp_pad[0] - kh) // sp_stride[0] + 1
    wo = (w + pad_hw[1] + 2 * sp_pad[1] - kw) // sp_stride[1] + 1
    c_out, item = weight.shape[0], parts[0].element_size()
    blocks = channel_blocks(weight)
    single_view = norm is None and pad_hw == (0, 0) and len(parts) == 1
    # output frames per slab: the window to build and the temporaries to add/copy bounded
    per_slab = n_out
    if not single_view:
        in_frame = b * c * (h + pad_hw[0]) * (w + pad_hw[1]) * item
        per_slab = min(per_slab, max(1, (WINDOW_BYTES // in_frame - kt) // st + 1))
    if out is not None or len(blocks) > 1:
        block_frame = b * (blocks[0][1] - blocks[0][0]) * ho * wo * item
        per_slab = min(per_slab, max(1, TEMP_BYTES // block_frame))
    slabs = _blocks(n_out, per_slab)
    whole = out is None and len(slabs) == 1 and len(blocks) == 1
    if out is None and not whole:
        out = parts[0].new_empty((b, n_out, ho, wo, c_out)).permute(0, 4, 1, 2, 3)
        accumulate = False
    else:
        accumulate = out is not None
    for j0, j1 in slabs:
        x = _window(parts, st * j0, st * (j1 - 1) + kt, norm, pad_hw)
        for o0, o1 in blocks:
            y = _conv(x, weight[o0:o1], None if bias is None else bias[o0:o1], stride, padding)
            if whole:
                return y
            target = out[:, o0:o1, j0:j1]
            target.add_(y) if accumulate else target.copy_(y)
            del y
        del x
    return out
