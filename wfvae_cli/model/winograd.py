"""Winograd F(2x2, 3x3) convolution for WF-VAE's 3x3 (and causal 3x3x3) convolutions on the CPU.

Almost all of WF-VAE's inference time on a CPU is spent in 3x3 spatial convolutions (with a temporal
kernel of 3 or 1), and oneDNN already runs those at the machine's peak rate, so the only way to be
much faster is to do fewer multiplications. Winograd's minimal filtering algorithm F(2x2, 3x3)
computes each 2x2 output tile from a 4x4 input tile with 16 multiplications per (input, output)
channel pair instead of 36 (2.25x fewer), at the cost of cheap linear transforms before and after:

    Y = A^T [ (G g G^T) * (B^T d B) ] A        (per tile, per channel pair, summed over input channels)

In the transformed domain the sum over input channels (and over the temporal taps) is, for each of the
16 tile positions separately, an ordinary convolution with a (kt, 1, 1) kernel over the tile grid, which
oneDNN runs at full speed. The transforms only add, subtract and halve, so the result stays within a
few ulps of the direct convolution (max |delta| ~1e-5 on activations of magnitude ~10, against ~3e-6
for oneDNN's own direct algorithm); F(4x4, 3x3) would save more but is ~10x less accurate.

Activations are channels-last (B, T, H, W, C) in memory here, which makes every transform a set of
contiguous elementwise operations. The 16 tile positions are processed one at a time (input
transform -> convolution -> accumulate into the output) over slabs of frames, and the zero padding is
applied by index ranges rather than by a padded copy, so a layer needs its output plus ~16 MB of
buffers, while each convolution stays large enough for oneDNN's fast kernel. Filters are transformed
on every call (one small matrix product per tile row, ~10 % of the layer at small sizes): a cached
copy would cost 1.8x the weights of every eligible layer. docs/performance.md has the measurements.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F

from wfvae_cli.model.cache import frame_range

#: frames x tiles x input channels of one transformed-domain convolution below which Winograd is
#: not used: oneDNN 3.x runs small (kt, 1, 1) convolutions with a ~3x slower kernel (measured on AVX-512)
MIN_GEMM_WORK = 300_000


@dataclass(frozen=True)
class WinogradTransform:
    """The three matrices of F(m, r): ``AT`` (m x a), ``G`` (a x r), ``BT`` (a x a), with a = m + r - 1."""

    m: int
    AT: tuple[tuple[float, ...], ...]
    G: tuple[tuple[float, ...], ...]
    BT: tuple[tuple[float, ...], ...]

    @property
    def a(self) -> int:
        return len(self.BT)

    @property
    def bias_position(self) -> int:
        """Flat tile position p whose value reaches every output of a tile with weight 1.

        The interpolation point 1 gives a column of ones in ``AT``; adding the bias there (and only
        there) adds it to all m x m outputs, so the bias costs nothing.
        """
        ones = [i for i in range(self.a) if all(row[i] == 1 for row in self.AT)]
        return ones[0] * self.a + ones[0]


def cook_toom(m: int, r: int, points: tuple[Fraction | int, ...]) -> WinogradTransform:
    """F(m, r) from m + r - 2 finite interpolation points (plus the point at infinity).

    ``AT`` and ``G`` follow from Lagrange interpolation; ``BT`` is then the unique matrix that makes
    the algorithm compute correlation exactly, found in exact rational arithmetic (so no table of
    magic numbers to trust: the construction checks itself).
    """
    a = m + r - 1
    pts = [Fraction(p) for p in points]
    if len(pts) != a - 1 or len(set(pts)) != len(pts):
        raise ValueError(f"F({m},{r}) needs {a - 1} distinct finite points, got {points}")
    at = [[p**i for p in pts] + [Fraction(int(i == m - 1))] for i in range(m)]
    g = []
    for j, p in enumerate(pts):
        denom = Fraction(1)
        for q in pts[:j] + pts[j + 1 :]:
            denom *= p - q
        g.append([p**k / denom for k in range(r)])
    g.append([Fraction(int(k == r - 1)) for k in range(r)])
    # BT[j][l]: sum_j AT[i][j] G[j][k] BT[j][l] == [l == i + k] for all i, k, l; the finite points
    # give a Vandermonde structure, so solve column by column with exact Gaussian elimination.
    bt = _solve_bt(at, g, m, r, a)
    flt = lambda rows: tuple(tuple(float(v) for v in row) for row in rows)  # noqa: E731
    return WinogradTransform(m=m, AT=flt(at), G=flt(g), BT=flt(bt))


def _solve_bt(at: list, g: list, m: int, r: int, a: int) -> list[list[Fraction]]:
    """Exact least-squares-free solve of the BT equations (they are consistent and determined)."""
    rows, rhs = [], []
    for i in range(m):
        for k in range(r):
            for col in range(a):
                rows.append([at[i][j] * g[j][k] for j in range(a)])
                rhs.append((col, Fraction(int(col == i + k))))
    bt = [[Fraction(0)] * a for _ in range(a)]
    for col in range(a):
        eqs = [(list(coef), val) for coef, (c, val) in zip(rows, rhs, strict=True) if c == col]
        solution = _gauss(eqs, a)
        for j in range(a):
            bt[j][col] = solution[j]
    return bt


def _gauss(eqs: list[tuple[list[Fraction], Fraction]], n: int) -> list[Fraction]:
    """Solve an over-determined but consistent rational system by elimination; verify every equation."""
    mat = [[*coef, val] for coef, val in eqs]
    pivots: list[int] = []
    row = 0
    for col in range(n):
        pivot = next((i for i in range(row, len(mat)) if mat[i][col] != 0), None)
        if pivot is None:
            continue
        mat[row], mat[pivot] = mat[pivot], mat[row]
        mat[row] = [v / mat[row][col] for v in mat[row]]
        for i in range(len(mat)):
            if i != row and mat[i][col] != 0:
                factor = mat[i][col]
                mat[i] = [a - factor * b for a, b in zip(mat[i], mat[row], strict=True)]
        pivots.append(col)
        row += 1
    x = [Fraction(0)] * n
    for i, col in enumerate(pivots):
        x[col] = mat[i][n]
    for coef, val in eqs:
        if sum(c * v for c, v in zip(coef, x, strict=True)) != val:
            raise ArithmeticError("Winograd construction failed: inconsistent system")
    return x


F2X3 = cook_toom(2, 3, (0, 1, -1))


def filter_taps(weight: torch.Tensor) -> torch.Tensor:
    """(Cout, Cin, [kt,] 3, 3) filters as a (Cout*Cin*kt, 9) view.

    The kernels stay in this (not channels-last) order: oneDNN reorders filters into its own blocked
    layout on every call anyway, and a permuted copy here would cost a filter-sized buffer (64 MB for
    a 768-channel 3x3x3 conv) for no measurable speed.
    """
    w = weight if weight.dim() == 5 else weight.unsqueeze(2)
    return w.reshape(-1, 9)


def transformed_filters(
    taps: torch.Tensor, shape: tuple[int, int, int], row: int, spec: WinogradTransform = F2X3
) -> list[torch.Tensor]:
    """G g G^T for tile positions (row, 0..a-1): a kernels (Cout, Cin, kt, 1, 1).

    ``taps`` from :func:`filter_taps`, ``shape`` = (Cout, Cin, kt). One matrix product per tile row;
    the entries of G are exact in binary (0, +-1/2, +-1), so this adds at most an ulp or two.
    """
    cout, cin, kt = shape
    g = torch.tensor(spec.G, dtype=taps.dtype, device=taps.device)
    u = torch.kron(g[row : row + 1], g) @ taps.T  # (a, Cout*Cin*kt)
    return [u[j].view(cout, cin, kt, 1, 1) for j in range(spec.a)]


def gemm_work(frames: int, height: int, width: int, channels: int, spec: WinogradTransform = F2X3) -> int:
    """Size of a layer's transformed-domain convolution (see MIN_GEMM_WORK)."""
    return frames * -(-height // spec.m) * -(-width // spec.m) * channels


def conv3x3(
    parts: list[torch.Tensor], weight: torch.Tensor, bias: torch.Tensor | None, spec: WinogradTransform = F2X3
) -> torch.Tensor:
    """Causal-in-time, zero-padded-in-space 3x3 convolution (temporal kernel kt) by Winograd.

    ``parts`` are consecutive frame ranges of the (already causally padded) input, each (B, C, t, H, W)
    in any memory layout (channels-last is fastest); passing the padding frames as a separate
    (expanded) part avoids a padded copy of the input. ``weight`` is the conv's own (Cout, Cin, kt, 3, 3)
    or (Cout, Cin, 3, 3) tensor. Returns (B, Cout, T, H, W), T = sum(t) - kt + 1, channels-last.
    """
    m, a = spec.m, spec.a
    kt = weight.shape[2] if weight.dim() == 5 else 1
    b, c, _, h, w = parts[0].shape
    tp = sum(p.shape[2] for p in parts)
    t, cout = tp - kt + 1, weight.shape[0]
    nh, nw = -(-h // m), -(-w // m)
    taps = filter_taps(weight)
    new = lambda *shape: torch.empty(shape, dtype=parts[0].dtype, device=parts[0].device)  # noqa: E731
    out = new(b, t, nh, m, nw, m, cout)
    slab = _slab_frames(t, kt, b * h * w * max(c, cout) * parts[0].element_size(), b * nh * nw * c)
    buffers: dict[int, tuple[torch.Tensor, ...]] = {}
    for i in range(a):
        kernels = transformed_filters(taps, (cout, c, kt), i, spec)
        # output row u is first written by the first tile row i with AT[u][i] != 0
        first = [all(spec.AT[u][k] == 0 for k in range(i)) for u in range(m)]
        for s0 in range(0, t, slab):
            n_out = min(slab, t - s0)
            n_in = n_out + kt - 1
            if n_out not in buffers:
                buffers[n_out] = (new(b, n_in, nh, w, c), new(b, n_in, nh, nw, c))
            rows, cols = buffers[n_out]
            f0 = 0
            for part in frame_range(parts, s0, s0 + n_in):  # rows: B^T along H for tile row i
                view = part.permute(0, 2, 3, 4, 1)  # (B, t, H, W, C)
                _axis_transform(view, spec.BT[i], m, 2, rows[:, f0 : f0 + view.shape[1]])
                f0 += view.shape[1]
            mixed: list[torch.Tensor | None] = [None] * m  # A^T along W of this tile row's products
            for j in range(a):
                _axis_transform(rows, spec.BT[j], m, 3, cols)  # columns: B^T along W
                x = cols.view(b, *_grid_shape(n_in, nh, nw, kt), c).permute(0, 4, 1, 2, 3)
                y = F.conv3d(x, kernels[j], bias if i * a + j == spec.bias_position else None)
                prod = y.permute(0, 2, 3, 4, 1).reshape(b, n_out, nh, nw, cout)
                owned = False
                for v in range(m):
                    coef = spec.AT[v][j]
                    if coef == 0:
                        continue
                    acc = mixed[v]
                    if acc is not None:
                        acc.add_(prod, alpha=coef)
                    elif coef == 1 and not owned:  # the fresh conv output becomes the accumulator
                        mixed[v], owned = prod, True
                    else:
                        mixed[v] = prod * coef
                del y, prod
            for u in range(m):  # A^T along H, into the output tile rows
                for v in range(m):
                    dst = out[:, s0 : s0 + n_out, :, u, :, v]
                    _accumulate(dst, mixed[v], spec.AT[u][i], started=not first[u])  # type: ignore[arg-type]
    y = out.view(b, t, nh * m, nw * m, cout)
    if nh * m != h or nw * m != w:
        y = y[:, :, :h, :w].contiguous()
    return y.permute(0, 4, 1, 2, 3)


#: budget for the transforms' buffers, which cover one slab of output frames at a time (about 1.5
#: frames' worth per frame)
SLAB_BYTES = 16 * 2**20


def _slab_frames(frames_out: int, kt: int, frame_bytes: int, frame_work: int) -> int:
    """Output frames per slab: buffers within SLAB_BYTES, but enough work per 1x1 convolution for the
    fast kernel (2 x MIN_GEMM_WORK, and 8 input frames with a temporal kernel), slabs balanced."""
    by_memory = SLAB_BYTES * 2 // max(1, 3 * frame_bytes)
    by_work = -(-2 * MIN_GEMM_WORK // max(1, frame_work)) - (kt - 1)
    per_slab = max(1, by_memory, by_work, 8 - (kt - 1) if kt > 1 else 1)
    n = -(-frames_out // per_slab)
    return -(-frames_out // n)


def _grid_shape(frames_in: int, nh: int, nw: int, kt: int) -> tuple[int, int, int]:
    """How a slab's tile grid is presented to the (kt, 1, 1) convolution, as (D, H, W).

    The grid has no spatial meaning there, and oneDNN picks its kernel by shape: thin or shallow grids
    get one that is ~3x slower. Measured on AVX-512 (oneDNN 3.x): a flat (1, N/16, 16) grid is fast
    for temporal kernel 1; with a temporal kernel the depth must stay the frames, and a 16-wide grid
    with at least 8 frames is fast.
    """
    n = nh * nw
    if kt == 1 and (frames_in * n) % 16 == 0:
        return 1, frames_in * n // 16, 16
    if n % 16 == 0 and n >= 64 and not (nh >= 8 and nw >= 16):
        return frames_in, n // 16, 16
    return frames_in, nh, nw


def _axis_transform(src: torch.Tensor, coeffs: tuple[float, ...], m: int, axis: int, out: torch.Tensor) -> None:
    """out[k] = sum_r coeffs[r] * src[m*k + r - 1] along ``axis``, with zeros outside ``src`` (the conv padding)."""
    n_in, n_out = src.shape[axis], out.shape[axis]
    terms = []
    for r, coef in enumerate(coeffs):
        if coef == 0:
            continue
        lo = max(0, -((r - 1) // m))  # first k with m*k + r - 1 >= 0
        hi = min(n_out, (n_in - r) // m + 1)  # one past the last k with m*k + r - 1 < n_in
        if hi > lo:
            start = m * lo + r - 1
            index = [slice(None)] * src.dim()
            index[axis] = slice(start, start + m * (hi - lo - 1) + 1, m)
            terms.append((hi - lo < n_out, lo, hi, coef, src[tuple(index)]))
    terms.sort(key=lambda term: term[0])  # full-range terms first: they initialise ``out``
    if not terms or terms[0][0]:
        out.zero_()
    if len(terms) >= 2 and not terms[1][0] and 1 in (terms[0][3], terms[1][3]):
        # two full-range terms, one with coefficient 1: a single add writes the first pass
        (_, _, _, c0, p0), (_, _, _, c1, p1) = terms[:2]
        torch.add(p0, p1, alpha=c1, out=out) if c0 == 1 else torch.add(p1, p0, alpha=c0, out=out)
        terms = terms[2:]
        initialised = True
    else:
        initialised = False
    for partial, lo, hi, coef, piece in terms:
        dst = out.narrow(axis, lo, hi - lo)
        if not initialised and not partial:
            torch.mul(piece, coef, out=dst) if coef != 1 else dst.copy_(piece)
        else:
            dst.add_(piece, alpha=coef)
        initialised = True


def _accumulate(dst: torch.Tensor, src: torch.Tensor, coef: float, started: bool) -> None:
    """dst (+)= coef * src; the first contribution initialises ``dst``."""
    if coef == 0:
        return
    if started:
        dst.add_(src, alpha=coef)
    elif coef == 1:
        dst.copy_(src)
    else:
        torch.mul(src, coef, out=dst)
