"""The transformed-domain products of the Winograd convolution, two ways, chosen by measurement.

For each of the P positions q of a transformed tile (16 for F(2x2, 3x3), 36 for F(4x4, 3x3)), the products are ``M[q] = sum_k V[q, frames + k]
@ U[k, q]^T``: (tiles x C_in) @ (C_in x C_out) matrix products, one per temporal tap k. They are
almost all of a Winograd layer's work, so they must run at the machine's peak, and which library gets
there depends on the CPU: ``bmm`` (PyTorch's batched matrix product: MKL's sgemm on x86) reaches ~90 %
of the peak on Intel CPUs, while MKL has historically taken a slow code path on other vendors' CPUs,
where ``conv`` (the products as 1x1 convolutions over a grid of tiles: oneDNN, which the official
code's own convolutions use) is the safe choice. :func:`backend` times both once per machine on a
few representative whole layers (time and peak memory) and keeps the faster, or none if none
beats the direct convolution there by a margin without needing more memory (:func:`decide`;
``WFVAE_WINOGRAD_PRODUCTS=bmm|conv|onednn|direct`` pins it).

Both give a :class:`Planes`: where the P products of a step are, for the output transform.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cache

import torch
import torch.nn.functional as F

from wfvae_cli.model.fastconv import native


@dataclass
class Planes:
    """The products of one step, position q at ``pointers[q]``, laid out [frame][tile][out channel]."""

    pointers: torch.Tensor  # (P,) int64 addresses
    keep: object  # the tensors the pointers point into


def plane_pointers(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.tensor([t.data_ptr() for t in tensors], dtype=torch.int64)


class Bmm:
    """Products as batched matrix products into one buffer; supports accumulating taps one at a time."""

    #: can add one input frame's products into given outputs (the products ring of ``winograd``)
    accumulates = True
    #: writes into the products buffer given to it (the others return tensors of their own)
    uses_buffer = True

    def __init__(self, u: torch.Tensor, m_buf: torch.Tensor) -> None:
        self.u_t = u.transpose(2, 3)  # (kt, P, C_in, co): the right-hand sides
        self.co = u.shape[2]
        self.m_buf = m_buf

    def window(self, v: torch.Tensor, frames: int) -> Planes:
        """Products of output frames [0, frames) of the window ``v`` (P, frames + kt - 1, rows, C_in)."""
        kt, (p, _, rows, c) = self.u_t.shape[0], v.shape
        m = self.m_buf[: p * frames * rows * self.co].view(p, frames * rows, self.co)
        for k in range(kt):
            vk = v[:, k : k + frames].reshape(p, frames * rows, c)
            torch.bmm(vk, self.u_t[k], out=m) if k == 0 else m.baddbmm_(vk, self.u_t[k])
        return Planes(plane_pointers(list(m)), m)

    def add_tap(self, v: torch.Tensor, k: int, m: torch.Tensor) -> None:
        """``m (=|+=) v @ U[k]^T`` for one input frame ``v`` (P, rows, C_in): tap 0 starts ``m``."""
        torch.bmm(v, self.u_t[k], out=m) if k == 0 else m.baddbmm_(v, self.u_t[k])


class Conv:
    """Products as oneDNN convolutions with a (kt, 1, 1) kernel over a grid of tiles, per position."""

    accumulates = False
    uses_buffer = False

    def __init__(self, u: torch.Tensor, m_buf: torch.Tensor | None = None) -> None:
        self.kt = u.shape[0]
        # per position, the (co, C_in, kt, 1, 1) kernel; oneDNN reorders it into its own layout anyway
        self.kernels = [u[:, q].permute(1, 2, 0)[..., None, None] for q in range(u.shape[1])]

    def window(self, v: torch.Tensor, frames: int) -> Planes:
        """As :meth:`Bmm.window`; each position's products are a new tensor."""
        slots, rows, c = frames + self.kt - 1, v.shape[2], v.shape[3]
        gh, gw = (rows // 16, 16) if rows % 16 == 0 else (rows, 1)  # oneDNN is slow on thin grids
        outs = []
        for q, kernel in enumerate(self.kernels):
            grid = v[q, :slots].view(1, slots, gh, gw, c).permute(0, 4, 1, 2, 3)  # channels-last input
            y = F.conv3d(grid, kernel)
            outs.append(y.contiguous(memory_format=torch.channels_last_3d))  # a no-op: oneDNN keeps the layout
        return Planes(plane_pointers(outs), outs)


def _onednn_linear():
    """oneDNN's matrix product as PyTorch exposes it (the op behind inductor's CPU linear), or None on
    builds without oneDNN."""
    ops = getattr(torch.ops, "mkldnn", None)
    try:
        op = ops._linear_pointwise  # type: ignore[union-attr]
        return op.default, op.binary
    except (AttributeError, RuntimeError):
        return None


class Linear:
    """Products as oneDNN matrix products (``x @ W^T`` with W = U[k, q], (co, C_in): the linear layout).

    On AMD EPYC (Zen 4/5) MKL's sgemm, which ``torch.bmm`` runs, reaches about half of what oneDNN's
    matmul does on the same shapes (measured: ~220 vs ~450 GFLOP/s on 2 cores), because MKL dispatches
    by CPU vendor; oneDNN dispatches by instruction set. Each position's products are a new tensor; the
    taps after the first are added by oneDNN's fused "add" post-op (no separate pass)."""

    accumulates = False
    uses_buffer = False

    def __init__(self, u: torch.Tensor, m_buf: torch.Tensor | None = None) -> None:
        ops = _onednn_linear()
        if ops is None:
            raise RuntimeError("this PyTorch build has no oneDNN matmul (torch.ops.mkldnn._linear_pointwise)")
        self.linear, self.linear_add = ops
        self.kt, self.u = u.shape[0], u

    def window(self, v: torch.Tensor, frames: int) -> Planes:
        """As :meth:`Bmm.window`; each position's products are a new (frames * rows, co) tensor."""
        rows, c = v.shape[2], v.shape[3]
        outs = []
        for q in range(self.u.shape[1]):
            y = self.linear(v[q, :frames].reshape(frames * rows, c), self.u[0, q], None, "none", [], "")
            for k in range(1, self.kt):
                y = self.linear_add(v[q, k : k + frames].reshape(frames * rows, c), y, self.u[k, q], None, "add")
            outs.append(y)
        return Planes(plane_pointers(outs), outs)


#: the backends by name; each is made with the transformed filters ``u`` (kt, P, co, C_in) of a block
#: of output channels and the products buffer (which :class:`Conv` and :class:`Linear` do not need)
BACKENDS: dict[str, type[Bmm] | type[Conv] | type[Linear]] = {"bmm": Bmm, "conv": Conv}
if _onednn_linear() is not None:
    BACKENDS["onednn"] = Linear


#: the transforms around the products cost about this fraction of the products' time (measured on
#: WF-VAE layers): Winograd is used only where the products plus that beat the direct convolution
TRANSFORM_SHARE = 0.3


@cache
def backend() -> str | None:
    """The faster backend on this machine, or the override; None when none makes a Winograd layer
    faster than the framework's direct convolution (then "auto" convolutions run direct: never slower
    than the official code). See :func:`verdict`."""
    return verdict()["backend"]


def verdict() -> dict:
    """The backend decision with its figures: ``backend``, ``source`` ("pinned" by
    ``WFVAE_WINOGRAD_PRODUCTS=bmm|conv|onednn|direct``, "cached", "measured" or "uncached" when the cache
    directory is unwritable), ``seconds`` and ``peak_bytes`` per candidate and ``threads`` (``wfvae info
    --json`` shows it; :func:`decide` has the rule).

    Measured once per machine and remembered next to the compiled kernels (keyed by CPU and torch
    version, under a file lock), so that every process on a machine computes the same numbers: the
    backends round differently, and a dataset's latents must not depend on which process, or which
    run after a resume, encoded them. Pin the variable for identical latents across a fleet. The
    measurement runs in a fresh interpreter (:func:`_measure_fresh`).
    """
    forced = os.environ.get("WFVAE_WINOGRAD_PRODUCTS", "")
    if forced in (*BACKENDS, "direct"):
        return {"backend": None if forced == "direct" else forced, "source": "pinned"}
    from wfvae_cli.model.fastconv.winograd import TILE_ENV

    # a pinned tiling calibrates differently: its own verdict (the default tiling keeps the plain name)
    tile = os.environ.get(TILE_ENV, "")
    suffix = f"-tile{tile}" if tile in ("2", "4") else ""
    path = native.cache_dir() / f"winograd-products-v5-{native.machine_key()}{suffix}.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a process measuring now: wait for its verdict
            if path.exists():
                return {**json.loads(path.read_text()), "source": "cached", "path": str(path)}
            found = _measure_fresh()
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(found))
            os.replace(tmp, path)
            return {**found, "source": "measured", "path": str(path)}
    except (OSError, ValueError, KeyError):  # an unwritable or damaged cache: decide for this process
        return {**_measure_fresh(), "source": "uncached"}


#: a Winograd backend is chosen only when its whole-layer time beats the direct convolution's by this
#: fraction: near a tie the direct (official) algorithm wins, so that reruns do not flip the verdict;
#: among the backends that qualify, those within this fraction of the fastest are a tie, broken by memory
MARGIN = 0.10
#: a Winograd backend whose calibration peak exceeds this multiple of the direct driver's is never chosen
#: (measured on AMD: bmm 1.44x, onednn 1.46x, conv 1.56x of direct's 22.6 MB)
MEMORY_CAP = 2.0
#: the calibration layers, realistic WF-VAE layers run whole through the drivers that the model uses
#: (the Winograd driver with each products backend, and the bounded-memory direct driver):
#: (temporal kernel, channels, output frames, side) — a level-1 per-frame 3x3 conv, a level-2 and a
#: mid-block causal 3x3x3 conv (the mix of a wfvae-s/l encoder, where level 1 has the most pixels and
#: the mid blocks the largest filters)
CALIBRATION = ((1, 128, 2, 64), (3, 256, 3, 32), (3, 512, 3, 16))
REPEATS = 5
#: a candidate whose warm-up (first calls, including one-time set-up) took this many times direct's is
#: not timed further: the calibration stays short where a backend is pathologically slow
WARMUP_HOPELESS = 4


def decide(seconds: dict[str, float | None], peaks: dict[str, int] | None = None) -> str | None:
    """The verdict from whole-layer ``seconds`` (None: not timed, hopeless) and peak allocated bytes
    ``peaks`` per candidate ("direct" and backend names).

    Time decides, memory breaks ties: a backend qualifies if it beats direct by MARGIN (near a tie the
    official algorithm wins, so reruns do not flip); among those that qualify, the ones within MARGIN of
    the fastest are a tie, which the smaller peak breaks (then the time). A backend needing more than
    MEMORY_CAP times direct's peak never qualifies. Memory is not a hard rule against direct because the
    bounded-memory direct driver is so lean that a rule "no hungrier than direct" excluded ``bmm`` on AMD
    although the whole model ran decode 1.8x faster with it, still at ~0.5x the official code's memory
    (docs/performance.md). None (direct) when nothing qualifies.
    """
    peaks = peaks or {}
    limit = peaks.get("direct")
    qualify = {
        k: v
        for k, v in seconds.items()
        if k != "direct" and v is not None and v < (1 - MARGIN) * seconds["direct"]
        and (limit is None or peaks.get(k, 0) <= MEMORY_CAP * limit)
    }
    if not qualify:
        return None
    fastest = min(qualify.values())
    ties = [k for k, v in qualify.items() if v <= (1 + MARGIN) * fastest]
    return min(ties, key=lambda k: (peaks.get(k, 0), qualify[k]))


def _calibration_runs(layer: tuple[int, int, int, int]) -> dict:
    """The candidates' whole-layer calls for one calibration layer (random input and filters, seeded)."""
    from wfvae_cli.model.fastconv import direct, winograd

    kt, c, n, side = layer
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, c, n, side, side, generator=gen).contiguous(memory_format=torch.channels_last_3d)
    w = torch.randn(c, c, kt, 3, 3, generator=gen) / (c * 9 * kt) ** 0.5
    parts = [x[:, :, :1].expand(-1, -1, kt - 1, -1, -1), x] if kt > 1 else [x]
    w_direct = w if kt > 1 else w[:, :, 0]  # a per-frame conv has 2D filters
    stride, padding = ((1, 1, 1), (0, 1, 1)) if kt > 1 else ((1, 1), (1, 1))
    runs = {"direct": lambda: direct.conv(parts, w_direct, None, stride, padding)}
    if native.library() is not None:
        for name in BACKENDS:
            runs[name] = lambda name=name: winograd.conv3x3(parts, w, backend_name=name)
    return runs


def _measure_fresh() -> dict:
    """:func:`_measure` in a new interpreter, or here if that cannot run.

    The peaks depend on what the measuring process ran before: a process that already ran oneDNN
    convolutions has grown its scratchpad, so the direct driver's peak came out 8.7 MB in ``wfvae info``
    (after a model's summary) against 22.6 MB in a fresh process on the same machine, which flipped the
    memory rule of :func:`decide`. A fresh interpreter measures the same figures whoever asks first."""
    code = "import json; from wfvae_cli.model.fastconv import products; print(json.dumps(products._measure()))"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return _measure()


def _measure() -> dict:
    """Per candidate: the median over REPEATS of the calibration layers' summed time, the candidates
    alternating on every repeat (machine noise hits all alike), and the largest peak of allocated
    bytes over the layers (:func:`memory.peak_allocated`, exact and the same on every run).

    Measured with one thread per usable core (then restored), whatever the calling process set: the
    verdict is per machine, so it must not depend on which process happened to measure it."""
    from wfvae_cli.model.fastconv.memory import peak_allocated

    threads = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(cores)
    try:
        layers = [_calibration_runs(layer) for layer in CALIBRATION]
        names = list(layers[0])
        times: dict[str, list[float]] = {k: [] for k in names}
        peaks = dict.fromkeys(names, 0)
        warm = dict.fromkeys(names, 0.0)
        with torch.inference_mode():
            for runs in layers:
                for name, fn in runs.items():
                    t0 = time.perf_counter()
                    fn()  # warm-up (oneDNN primitives, MKL's buffers), then the exact peak
                    warm[name] += time.perf_counter() - t0
                    peaks[name] = max(peaks[name], peak_allocated(fn)[1])
            # a candidate whose warm-up took several times direct's is hopeless: not timed (time "inf")
            hopeless = [k for k in names if k != "direct" and warm[k] > WARMUP_HOPELESS * warm["direct"]]
            for name in hopeless:
                times[name].append(float("inf"))
            names = [k for k in names if k not in hopeless]
            for repeat in range(REPEATS):
                for name in names:
                    t0 = time.perf_counter()
                    for runs in layers:
                        runs[name]()
                    times[name].append(time.perf_counter() - t0)
                if repeat == 0:  # a candidate at twice direct's time cannot qualify: not timed further
                    names = [k for k in names if k == "direct" or times[k][0] < 2 * times["direct"][0]]
    finally:
        torch.set_num_threads(threads)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}  # (inf: not timed, never chosen)
    return {"backend": decide(med, peaks), "seconds": {k: round(v, 5) if v < float("inf") else None for k, v in med.items()},
            "peak_bytes": peaks, "margin": MARGIN, "repeats": REPEATS,
            "layers": [f"{'causal 3x3x3' if kt > 1 else '3x3 per frame'} {c}->{c}, {n}x{s}x{s}"
                       for kt, c, n, s in CALIBRATION],
            "threads": cores}
