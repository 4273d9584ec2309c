"""The transformed-domain products of the Winograd convolution, two ways, chosen by measurement.

For each of the 16 positions q of a transformed tile, the products are ``M[q] = sum_k V[q, frames + k]
@ U[k, q]^T``: (tiles x C_in) @ (C_in x C_out) matrix products, one per temporal tap k. They are
almost all of a Winograd layer's work, so they must run at the machine's peak, and which library gets
there depends on the CPU: ``bmm`` (PyTorch's batched matrix product: MKL's sgemm on x86) reaches ~90 %
of the peak on Intel CPUs, while MKL has historically taken a slow code path on other vendors' CPUs,
where ``conv`` (the products as 1x1 convolutions over a grid of tiles: oneDNN, which the official
code's own convolutions use) is the safe choice. :func:`backend` times both once per machine on a
representative layer and keeps the faster, or none if even the faster would not beat the direct
convolution there (``WFVAE_WINOGRAD_PRODUCTS=bmm|conv|direct`` overrides).

Both give a :class:`Planes`: where the 16 products of a step are, for the output transform.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from functools import cache

import torch
import torch.nn.functional as F

from wfvae_cli.model.fastconv import native


@dataclass
class Planes:
    """The products of one step, position q at ``pointers[q]``, laid out [frame][tile][out channel]."""

    pointers: torch.Tensor  # (16,) int64 addresses
    keep: object  # the tensors the pointers point into


def plane_pointers(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.tensor([t.data_ptr() for t in tensors], dtype=torch.int64)


class Bmm:
    """Products as batched matrix products into one buffer; supports accumulating taps one at a time."""

    #: can add one input frame's products into given outputs (the products ring of ``winograd``)
    accumulates = True

    def __init__(self, u: torch.Tensor, m_buf: torch.Tensor) -> None:
        self.u_t = u.transpose(2, 3)  # (kt, 16, C_in, co): the right-hand sides
        self.co = u.shape[2]
        self.m_buf = m_buf

    def window(self, v: torch.Tensor, frames: int) -> Planes:
        """Products of output frames [0, frames) of the window ``v`` (16, frames + kt - 1, rows, C_in)."""
        kt, rows, c = self.u_t.shape[0], v.shape[2], v.shape[3]
        m = self.m_buf[: 16 * frames * rows * self.co].view(16, frames * rows, self.co)
        for k in range(kt):
            vk = v[:, k : k + frames].reshape(16, frames * rows, c)
            torch.bmm(vk, self.u_t[k], out=m) if k == 0 else m.baddbmm_(vk, self.u_t[k])
        return Planes(plane_pointers(list(m)), m)

    def add_tap(self, v: torch.Tensor, k: int, m: torch.Tensor) -> None:
        """``m (=|+=) v @ U[k]^T`` for one input frame ``v`` (16, rows, C_in): tap 0 starts ``m``."""
        torch.bmm(v, self.u_t[k], out=m) if k == 0 else m.baddbmm_(v, self.u_t[k])


class Conv:
    """Products as oneDNN convolutions with a (kt, 1, 1) kernel over a grid of tiles, per position."""

    accumulates = False

    def __init__(self, u: torch.Tensor, m_buf: torch.Tensor | None = None) -> None:
        self.kt = u.shape[0]
        # per position, the (co, C_in, kt, 1, 1) kernel; oneDNN reorders it into its own layout anyway
        self.kernels = [u[:, q].permute(1, 2, 0)[..., None, None] for q in range(16)]

    def window(self, v: torch.Tensor, frames: int) -> Planes:
        """As :meth:`Bmm.window`; each position's products are a new tensor."""
        slots, rows, c = frames + self.kt - 1, v.shape[2], v.shape[3]
        gh, gw = (rows // 16, 16) if rows % 16 == 0 else (rows, 1)  # oneDNN is slow on thin grids
        outs = []
        for q in range(16):
            grid = v[q, :slots].view(1, slots, gh, gw, c).permute(0, 4, 1, 2, 3)  # channels-last input
            y = F.conv3d(grid, self.kernels[q])
            outs.append(y.contiguous(memory_format=torch.channels_last_3d))  # a no-op: oneDNN keeps the layout
        return Planes(plane_pointers(outs), outs)


#: the backends by name; each is made with the transformed filters ``u`` (kt, 16, co, C_in) of a block
#: of output channels and the products buffer (which :class:`Conv` does not need)
BACKENDS: dict[str, type[Bmm] | type[Conv]] = {"bmm": Bmm, "conv": Conv}


#: the transforms around the products cost about this fraction of the products' time (measured on
#: WF-VAE layers): Winograd is used only where the products plus that beat the direct convolution
TRANSFORM_SHARE = 0.3


@cache
def backend() -> str | None:
    """The faster backend on this machine, or the override; None when neither makes a Winograd layer
    faster than the framework's direct convolution (then "auto" convolutions run direct: never slower
    than the official code).

    Measured once per machine (~0.15 s) and remembered next to the compiled kernels (keyed by CPU and
    torch version, under a file lock), so that every process on a machine computes the same numbers:
    the two backends round differently, and a dataset's latents must not depend on which process, or
    which run after a resume, encoded them.
    """
    forced = os.environ.get("WFVAE_WINOGRAD_PRODUCTS", "")
    if forced in (*BACKENDS, "direct"):
        return None if forced == "direct" else forced
    path = native.cache_dir() / f"winograd-products-{native.machine_key()}.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a process measuring now: wait for its verdict
            if path.exists():
                return json.loads(path.read_text())["backend"]
            verdict = _measure()
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(verdict))
            os.replace(tmp, path)
            return verdict["backend"]
    except (OSError, ValueError, KeyError):  # an unwritable or damaged cache: decide for this process
        return _measure()["backend"]


def _measure() -> dict:
    times = {name: _time_products(name) for name in BACKENDS}
    direct = _time_direct()
    best = min(times, key=times.__getitem__)
    chosen = best if times[best] * (1 + TRANSFORM_SHARE) < direct else None
    return {"backend": chosen, "seconds": {**times, "direct": direct}, "threads": torch.get_num_threads()}


#: the calibration layer: a causal 3x3x3 conv, 192 -> 192 channels, 2 frames of 32x32 (16x16 tiles)
_C, _KT, _FRAMES, _SIDE = 192, 3, 2, 32


def _best_of(fn, repeats: int = 2) -> float:
    best = float("inf")
    with torch.inference_mode():
        fn()  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
    return best


def _time_products(name: str) -> float:
    gen = torch.Generator().manual_seed(0)
    rows = (_SIDE // 2) ** 2
    v = torch.randn(16, _FRAMES + _KT - 1, rows, _C, generator=gen)
    u = torch.randn(_KT, 16, _C, _C, generator=gen)
    block = BACKENDS[name](u, torch.empty(16 * _FRAMES * rows * _C))
    return _best_of(lambda: block.window(v, _FRAMES))


def _time_direct() -> float:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, _C, _FRAMES + _KT - 1, _SIDE, _SIDE, generator=gen).contiguous(memory_format=torch.channels_last_3d)
    w = torch.randn(_C, _C, _KT, 3, 3, generator=gen)
    return _best_of(lambda: F.conv3d(x, w, padding=(0, 1, 1)))
