"""Winograd F(4x4, 3x3) and F(2x2, 3x3) convolutions for WF-VAE's 3x3 (and causal 3x3x3) convolutions on the CPU.

Almost all of WF-VAE's inference time on a CPU is spent in 3x3 spatial convolutions (with a temporal
kernel of 3 or 1), which oneDNN already runs at the machine's peak rate, so the only way to be much
faster is to do fewer multiplications. Winograd's minimal filtering algorithm F(m x m, 3x3) computes each
m x m output tile from an (m+2) x (m+2) input tile with (m+2)^2 multiplications per (input, output)
channel pair instead of 9 m^2: F(2x2, 3x3) 16 instead of 36 (2.25x fewer), F(4x4, 3x3) 36 instead of
144 (4x fewer):

    Y = A^T [ (G g G^T) * (B^T d B) ] A        (per tile, summed over input channels and temporal taps)

For each of the P = (m+2)^2 positions of a transformed tile, the sum over input channels is a matrix product
(tiles x C_in) @ (C_in x C_out), and the temporal taps of a causal conv are the same product on the
tiles of the frames k steps back, accumulated: batched GEMMs at the machine's peak (MKL, or oneDNN where
that is faster: :mod:`wfvae_cli.model.fastconv.products`). F(2x2, 3x3)'s transforms only add, subtract
and halve, so its result stays within a few ulps of the direct convolution (in float32 closer to a
float64 reference than oneDNN's direct algorithm is); F(4x4, 3x3)'s multiply by 1/6, 1/24, 4, 8 and are
a few ulps less exact, still within ~1e-5 of float64 on WF-VAE layers. Which one a layer uses depends on
its frame size only (:func:`tiling`: the fewer products, so in practice F(4x4) from 4x4 frames up), never
on how many frames a call has, so Causal Cache chunks compute exactly what a whole-video call does. The
transforms are compiled C kernels (:mod:`wfvae_cli.model.fastconv.native`), one pass over memory each.

Memory stays bounded: the transformed filters are made for a block of output channels at a time
(``FILTER_BYTES``; each weight is read once, each output written once), and the input is transformed
in slabs of frames, or bands of tile rows within a frame, whose transforms and products fit in
``SLAB_BYTES`` (a temporal conv keeps the transforms of the frames it still needs in a window, or, when
that does not fit, the products of the frames still being summed: :func:`plan_layer`). Two
fusions remove whole activations from a resnet block: ``norm`` (its channel LayerNorm and SiLU) is
applied inside the input transform to the rows being read, so the normalised input never exists, and
``out`` accumulates the result into an existing tensor (the residual) instead of a new one.
Inference only: the kernels have no backward.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch.profiler import record_function

from wfvae_cli.model.fastconv import native, products

#: budget for one slab's transformed input and products (besides the layer's input, output and
#: transformed filters): large enough for efficient products, small enough to stay near the caches;
#: layers with a larger input may use SLAB_SHARE of its size
SLAB_BYTES = 16 * 2**20
SLAB_SHARE = 1.0
#: budget for the transformed filters made at once (P/9 of the weights of that many output channels),
#: or FILTER_SHARE of the layer's input size if more: fewer blocks of output channels, each of which
#: transforms the input again when the layer takes several slabs
FILTER_BYTES = 16 * 2**20
FILTER_SHARE = 1.0
#: ``norm`` argument of :func:`conv3x3`: (weight, bias, eps) of a LayerNorm over channels
Norm = tuple[torch.Tensor, torch.Tensor, float]


@dataclass(frozen=True)
class Tiling:
    """F(m x m, 3x3): output tiles of ``m`` x ``m`` pixels, ``positions`` = (m+2)^2 products per tile,
    computed by the kernels named ``<prefix>filter_transform`` etc."""

    m: int
    prefix: str

    @property
    def positions(self) -> int:
        return (self.m + 2) ** 2

    def tiles(self, pixels: int) -> int:
        return -(-pixels // self.m)

    def kernel(self, lib, name: str):
        return getattr(lib, self.prefix + name)


TILINGS = {2: Tiling(2, "wf_"), 4: Tiling(4, "wf4_")}
#: ``WFVAE_WINOGRAD_TILE=2|4`` pins the tiling of every layer (which one is a rounding difference only)
TILE_ENV = "WFVAE_WINOGRAD_TILE"


def tiling(h: int, w: int) -> Tiling:
    """The tiling with fewer products for an h x w frame (F(2x2) on a tie: it is the more exact).

    Products are almost all of a layer's work and scale with tiles x positions; F(4x4)'s extra filter
    transform (36 instead of 16 values per filter) is small beside them on every WF-VAE layer. Only
    the frame size decides, so every chunk of a streamed video uses the same algorithm."""
    pinned = os.environ.get(TILE_ENV, "")
    if pinned in ("2", "4"):
        return TILINGS[int(pinned)]
    work = {m: t.tiles(h) * t.tiles(w) * t.positions for m, t in TILINGS.items()}
    return TILINGS[4] if work[4] < work[2] else TILINGS[2]


def available() -> bool:
    """Whether the compiled kernels can run here (see :func:`wfvae_cli.model.fastconv.native.library`)."""
    return native.library() is not None


def worthwhile() -> bool:
    """Whether Winograd beats the direct convolution on this machine (see :func:`products.backend`)."""
    return available() and products.backend() is not None


def channel_block(c_out: int, c_in: int, kt: int, budget: int, positions: int = 16) -> int:
    """Output channels whose transformed filters fit in ``budget`` bytes (blocks of equal size)."""
    per_channel = kt * positions * c_in * 4
    fit = max(1, budget // per_channel)
    return -(-c_out // -(-c_out // fit))


@dataclass(frozen=True)
class Plan:
    """How a layer's frames go through the transforms and products (see :func:`plan_layer`).

    ``window``: ``frames`` output frames per step, the transforms of their ``frames + kt - 1`` input
    frames held at once (the last kt - 1 carried to the next step), one product per tap over all of
    them. ``accumulate`` (temporal convs whose window would not fit): one input frame transformed at a
    time, its products added into the kt output frames it contributes to, held in a ring. Either way
    a frame may be cut into bands of ``band`` tile rows.
    """

    mode: str
    frames: int
    band: int
    positions: int = 16

    def buffers(self, kt: int, tile_cols: int, c_in: int, c_out: int) -> tuple[int, int]:
        """Elements of (transformed input, products) this plan holds."""
        row = self.positions * self.band * tile_cols
        if self.mode == "window":
            return row * (self.frames + kt - 1) * c_in, row * self.frames * c_out
        return row * c_in, row * kt * c_out


def plan_layer(
    frames_out: int, kt: int, tile_rows: int, tile_cols: int, c_in: int, c_out: int, budget: int, accumulate: bool = True,
    positions: int = 16,
) -> Plan:
    """The plan with the largest products whose buffers fit in ``budget`` bytes.

    Whole frames as long as they fit (several per step if possible); steps are equal-sized, so no
    small remainder runs a poor product. A temporal conv prefers holding products over holding input
    transforms when it can only take one frame per step (with blocks of output channels the products
    are the smaller of the two), if the products backend can ``accumulate`` taps.
    """
    row_bytes = positions * tile_cols * 4  # per (frame, tile row), times channels
    frame_bytes = tile_rows * row_bytes
    n = (budget // frame_bytes - (kt - 1) * c_in) // (c_in + c_out)
    if n >= (2 if kt > 1 and frames_out > 1 and accumulate else 1):
        n = min(n, frames_out)
        return Plan("window", -(-frames_out // -(-frames_out // n)), tile_rows, positions)
    mode = "accumulate" if kt > 1 and accumulate else "window"
    per_row = row_bytes * ((c_in + kt * c_out) if mode == "accumulate" else (kt * c_in + c_out))
    band = min(tile_rows, max(1, budget // per_row))
    return Plan(mode, 1, -(-tile_rows // -(-tile_rows // band)), positions)


def dense_frames(x: torch.Tensor) -> torch.Tensor:
    """``x`` (B, C, t, H, W) with every frame a contiguous (H, W, C) block (channels-last), copied only if not.

    Frames may be anywhere: a stride of 0 between frames (the expanded causal padding) is fine."""
    c, w = x.shape[1], x.shape[4]
    if x.stride(1) == 1 and x.stride(4) == c and x.stride(3) == w * c:
        return x
    return x.contiguous(memory_format=torch.channels_last_3d)


def new_output(ref: torch.Tensor, channels: int, frames: int) -> torch.Tensor:
    """An uninitialised channels-last (B, channels, frames, H, W) tensor like ``ref``."""
    b, _, _, h, w = ref.shape
    return ref.new_empty((b, frames, h, w, channels)).permute(0, 4, 1, 2, 3)


def _frame_pointers(parts: list[torch.Tensor], batch: int, offset: int = 0) -> torch.Tensor:
    """Addresses of every frame of ``parts`` (batch element ``batch``), plus ``offset`` elements."""
    ptrs = [
        p.data_ptr() + p.element_size() * (batch * p.stride(0) + f * p.stride(2) + offset)
        for p in parts
        for f in range(p.shape[2])
    ]
    return torch.tensor(ptrs, dtype=torch.int64)


def conv3x3(
    parts: list[torch.Tensor],
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    norm: Norm | None = None,
    out: torch.Tensor | None = None,
    backend_name: str | None = None,
    tile: int | None = None,
) -> torch.Tensor:
    """Causal-in-time, zero-padded-in-space 3x3 convolution (temporal kernel kt, stride 1) by Winograd.

    ``parts`` are consecutive frame ranges of the (already causally padded) float32 CPU input, each
    (B, C, t, H, W), best channels-last; passing the padding frames as a separate expanded part avoids a
    padded copy. ``weight`` is the conv's (Cout, Cin, kt, 3, 3) or (Cout, Cin, 3, 3) tensor. With
    ``norm`` the convolution reads ``silu(layer_norm(x))`` instead of ``x``. With ``out`` (B, Cout, T,
    H, W), whose frames must be dense (:func:`dense_frames`), the result is added into it (a residual)
    and it is returned; otherwise the result is a new channels-last tensor. T = sum(t) - kt + 1.
    ``backend_name`` picks the products backend (default: the machine's verdict), ``tile`` the output
    tile side, 2 or 4 (default: :func:`tiling`).
    """
    lib = native.library()
    if lib is None:
        raise RuntimeError("the Winograd kernels are not available (see wfvae_cli.model.fastconv.native)")
    kt = weight.shape[2] if weight.dim() == 5 else 1
    parts = [dense_frames(p) for p in parts if p.shape[2]]
    b, c, _, h, w = parts[0].shape
    t = sum(p.shape[2] for p in parts) - kt + 1
    c_out = weight.shape[0]
    if out is None:
        out, accumulate = new_output(parts[0], c_out, t), 0
    elif dense_frames(out) is not out:
        raise ValueError("conv3x3: out must have dense channels-last frames")
    else:
        accumulate = 1
    weight = weight.detach().contiguous()
    tl = TILINGS[tile] if tile else tiling(h, w)
    p = tl.positions
    nh, nw = tl.tiles(h), tl.tiles(w)
    input_bytes = b * c * (t + kt - 1) * h * w * 4
    cb = channel_block(c_out, c, kt, max(FILTER_BYTES, int(FILTER_SHARE * input_bytes)), p)
    budget = max(SLAB_BYTES, int(SLAB_SHARE * input_bytes))
    backend = products.BACKENDS[backend_name or products.backend() or "bmm"]  # (forced where it does not pay: still exact)
    plan = plan_layer(t, kt, nh, nw, c, cb, budget, accumulate=backend.accumulates, positions=p)
    v_size, m_size = plan.buffers(kt, nw, c, cb)
    v_buf = parts[0].new_empty(v_size)
    m_buf = parts[0].new_empty(m_size if backend.uses_buffer else 0)  # the others return their own
    u_buf = parts[0].new_empty(kt * p * cb * c)
    norm_args = (None, None, 0.0) if norm is None else (norm[0].data_ptr(), norm[1].data_ptr(), norm[2])
    # the whole layer in one window: transform the input once, for every block of output channels
    transform_once = b == 1 and plan.frames >= t and plan.band >= nh
    for o0 in range(0, c_out, cb):
        co = min(cb, c_out - o0)
        u = u_buf[: kt * p * co * c].view(kt, p, co, c)
        with record_function("winograd::filter_transform"):
            tl.kernel(lib, "filter_transform")(weight[o0 : o0 + co].data_ptr(), co, c, kt, u.data_ptr())
        block = backend(u, m_buf)
        bias_ptr = None if bias is None else bias[o0:].data_ptr()
        for bi in range(b):
            src = _frame_pointers(parts, bi)
            dst = _frame_pointers([out], bi, offset=o0 * out.stride(1))
            for t0 in range(0, nh, plan.band):
                nb = min(plan.band, nh - t0)
                step = _Band(lib, tl, src, dst, (h, w, c, co, out.stride(4)), (t0, nb), norm_args, bias_ptr, accumulate,
                             skip_transforms=transform_once and o0 > 0)
                if plan.mode == "window":
                    _window_steps(step, plan.frames, t, kt, v_buf, block)
                else:
                    _accumulate_steps(step, t, kt, v_buf, m_buf, block)
    native.release_gemm_buffers()
    return out


def _window_steps(step: _Band, n: int, t: int, kt: int, v_buf: torch.Tensor, block: products.Bmm | products.Conv | products.Linear) -> None:
    """Output frames n at a time; the window holds the transforms of input frames f0 .. f0 + n + kt - 2."""
    p = step.tiling.positions
    v = v_buf[: p * (n + kt - 1) * step.rows * step.c].view(p, n + kt - 1, step.rows, step.c)
    for f0 in range(0, t, n):
        nf = min(n, t - f0)
        if f0 == 0:
            step.transform(0, nf + kt - 1, v[:, 0])
        else:
            v[:, : kt - 1].copy_(v[:, n : n + kt - 1])  # the input frames this step shares with the last
            step.transform(f0 + kt - 1, nf, v[:, kt - 1])
        step.emit(f0, nf, block.window(v, nf))


def _accumulate_steps(step: _Band, t: int, kt: int, v_buf: torch.Tensor, m_buf: torch.Tensor, block: products.Bmm) -> None:
    """One input frame at a time: input frame j (causally padded numbering) adds its products with tap k
    into output frame j - k, held in ring slot (j - k) % kt; output frame j - kt + 1 is then complete."""
    p = step.tiling.positions
    v = v_buf[: p * step.rows * step.c].view(p, step.rows, step.c)
    ring = m_buf[: kt * p * step.rows * step.co].view(kt, p, step.rows, step.co)
    for j in range(t + kt - 1):
        step.transform(j, 1, v)
        for k in range(kt):
            if 0 <= j - k < t:
                block.add_tap(v, k, ring[(j - k) % kt])
        if j >= kt - 1:
            done = ring[(j - kt + 1) % kt]
            step.emit(j - kt + 1, 1, products.Planes(products.plane_pointers(list(done)), done))


class _Band:
    """The kernel calls for one band of tile rows (of one batch element and block of output channels)."""

    def __init__(self, lib, tiling_: Tiling, src, dst, sizes, band, norm_args, bias_ptr, accumulate: int,
                 skip_transforms: bool) -> None:
        self.tiling, self.src, self.dst = tiling_, src, dst
        self.input_transform = tiling_.kernel(lib, "input_transform")
        self.output_transform = tiling_.kernel(lib, "output_transform")
        self.h, self.w, self.c, self.co, self.out_stride = sizes
        self.t0, self.nb = band
        self.nw = tiling_.tiles(self.w)
        self.rows = self.nb * self.nw  # tiles per frame in this band: the products' rows per frame
        self.norm_args, self.bias_ptr, self.accumulate = norm_args, bias_ptr, accumulate
        self.skip_transforms = skip_transforms

    def transform(self, f_in: int, count: int, v: torch.Tensor) -> None:
        """Input frames [f_in, f_in + count) into ``v`` (P positions x count frames from ``v``'s start;
        ``v.stride(0)`` apart)."""
        if self.skip_transforms:  # already there, from the first block of channels
            return
        with record_function("winograd::input_transform"):
            self.input_transform(
                self.src[f_in:].data_ptr(), count, self.h, self.w, self.c, self.t0, self.t0 + self.nb,
                *self.norm_args, v.data_ptr(), v.stride(0),
            )

    def emit(self, f0: int, count: int, planes: products.Planes) -> None:
        """Output frames [f0, f0 + count) from their products."""
        with record_function("winograd::output_transform"):
            self.output_transform(
                planes.pointers.data_ptr(), count, self.nb, self.nw, self.co, self.dst[f0:].data_ptr(), self.h,
                self.w, self.out_stride, self.t0, self.bias_ptr, self.accumulate,
            )
