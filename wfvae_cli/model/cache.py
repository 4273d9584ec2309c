"""Causal Cache state: what every temporal layer must remember between chunks of one stream.

WF-VAE's temporal operators are causal convolutions (replicate-padded at the first frame), the
stride-2 temporal Haar/downsample convolutions, and, in the decoder, a temporal x2 interpolation that
looks one frame ahead. Streaming a video through the network chunk by chunk gives exactly the direct
result if each of those layers keeps the frames it has not consumed yet. This module holds that state
explicitly; it is owned by one streaming session (:mod:`wfvae_cli.model.streaming`) and passed down
the forward calls. Layers called with ``cache=None`` run the direct (whole-video) path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


class CausalCache:
    """Per-layer temporal state of one stream. Keys are the layer objects themselves.

    ``final`` is set by the session for the last call so that look-ahead layers (the temporal
    upsampler) emit the frames they were holding back, clamping at the end as the direct path does.
    """

    def __init__(self) -> None:
        self._state: dict[Any, Any] = {}
        self.final: bool = False

    def get(self, key: Any, default: Any = None) -> Any:
        return self._state.get(key, default)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._state[key] = value

    def __contains__(self, key: Any) -> bool:
        return key in self._state

    def clear(self) -> None:
        self._state.clear()
        self.final = False

    def state(self, names: Mapping[int, str]) -> dict[str, Any]:
        """The cached values keyed by layer name (``names``: ``id(module) -> qualified name``), every tensor a
        compact copy (a held frame is often a view of a whole chunk): what a stream checkpoint saves.

        Keys are ``"<module>"`` or ``"<module>|<tag>"`` for the ``(module, tag)`` keys of :func:`align`.
        """
        out = {}
        for key, value in self._state.items():
            module, tag = key if isinstance(key, tuple) else (key, None)
            name = names[id(module)] + ("" if tag is None else f"|{tag}")
            out[name] = _compact(value)
        return out

    def load_state(self, state: Mapping[str, Any], modules: Mapping[str, Any]) -> None:
        """Restore :meth:`state` (``modules``: qualified name -> module of the same model)."""
        self._state.clear()
        for name, value in state.items():
            module, sep, tag = name.partition("|")
            if module not in modules:
                raise KeyError(f"the cached state names layer {module!r}, which this model does not have")
            self._state[(modules[module], tag) if sep else modules[module]] = value

    def nbytes(self) -> int:
        """Bytes held by cached tensors (a stream's memory beyond the current chunk)."""
        total = 0
        for value in self._state.values():
            for t in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(t, torch.Tensor):
                    total += t.numel() * t.element_size()
        return total


def _compact(value: Any) -> Any:
    """``value`` with every tensor copied into storage of its own (tuples/lists kept; other values as they are)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_compact(v) for v in value)
    return value


def frames(x: torch.Tensor) -> int:
    """Number of frames of a (B, C, T, H, W) tensor."""
    return x.shape[2]


def empty_frames(x: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    """A (B, channels, 0, height, width) tensor like ``x``: what a layer emits when it must wait for more input."""
    return x.new_empty((x.shape[0], channels, 0, height, width))


def causal_parts(
    key: Any, x: torch.Tensor, cache: CausalCache | None, kernel_t: int, stride_t: int
) -> list[torch.Tensor] | None:
    """The temporally padded input a causal (kernel_t, stride_t) convolution should see for ``x``,
    as consecutive frame ranges (their concatenation is the window; consumers that can read ranges,
    like the Winograd convolution, never build it).

    Direct path: ``kernel_t - 1`` copies of frame 0 in front (the official causal replicate padding),
    as an expanded view. Streaming path: the frames left over from the previous chunk (the first
    chunk is padded as in the direct path), then ``x``; the frames not consumed by complete output
    windows are kept for the next chunk (a copy, so that the chunk's memory can be freed). Returns
    ``None`` when no output window is complete yet (the input was buffered).
    """
    if cache is None:
        pad = [x[:, :, :1].expand(-1, -1, kernel_t - 1, -1, -1)] if kernel_t > 1 else []
        return [*pad, x]
    held = cache.get(key)
    if held is None:
        if frames(x) == 0:
            return None
        parts = [x[:, :, :1].expand(-1, -1, kernel_t - 1, -1, -1), x] if kernel_t > 1 else [x]
    else:
        parts = [held, x]
    parts = [p for p in parts if frames(p)]
    n = sum(frames(p) for p in parts)
    n_out = (n - kernel_t) // stride_t + 1 if n >= kernel_t else 0
    rest = frame_range(parts, n_out * stride_t, n)  # unconsumed frames, kept as a copy of their own
    if not rest:
        cache[key] = x[:, :, :0]
    else:
        cache[key] = torch.cat(rest, dim=2) if len(rest) > 1 else rest[0].clone()
    if n_out == 0:
        return None
    return frame_range(parts, 0, (n_out - 1) * stride_t + kernel_t)


def causal_window(
    key: Any, x: torch.Tensor, cache: CausalCache | None, kernel_t: int, stride_t: int
) -> torch.Tensor | None:
    """:func:`causal_parts` concatenated into one tensor."""
    parts = causal_parts(key, x, cache, kernel_t, stride_t)
    if parts is None:
        return None
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)


def frame_range(parts: list[torch.Tensor], f0: int, f1: int) -> list[torch.Tensor]:
    """Frames [f0, f1) of the concatenation of ``parts`` (dim 2), as views of the parts."""
    picked, start = [], 0
    for part in parts:
        end = start + frames(part)
        lo, hi = max(f0, start), min(f1, end)
        if hi > lo:
            picked.append(part[:, :, lo - start : hi - start])
        start = end
    return picked


def align(
    key: Any, a: torch.Tensor, b: torch.Tensor, cache: CausalCache | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair up the frames of two streams that meet in an addition or concatenation.

    The decoder's energy-flow branches and its backbone reach the same point with different delays
    while streaming (the backbone's temporal upsampler waits for one frame of look-ahead). This keeps
    the surplus of the faster stream until the slower one catches up. On the direct path both streams
    are complete and must already agree.
    """
    if cache is None:
        if frames(a) != frames(b):
            raise RuntimeError(f"internal: stream lengths differ ({frames(a)} vs {frames(b)})")
        return a, b
    pa, pb = cache.get(key, (None, None))
    if pa is not None:
        a = torch.cat([pa, a], dim=2)
    if pb is not None:
        b = torch.cat([pb, b], dim=2)
    n = min(frames(a), frames(b))
    cache[key] = (a[:, :, n:].clone() if frames(a) > n else None, b[:, :, n:].clone() if frames(b) > n else None)
    return a[:, :, :n], b[:, :, :n]
