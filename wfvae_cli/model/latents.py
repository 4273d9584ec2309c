"""Latent normalisation: the per-channel ``scale``/``shift`` a diffusion model trains on.

Convention (Open-Sora Plan's, and ``scripts/vae_var_test.py`` of the official repo):
``normalized = (z - shift) * scale`` after encoding and ``z = normalized / scale + shift`` before
decoding, per latent channel. The model itself never uses these numbers.

The released WF-VAE-L-16Chn config carries 4-entry placeholder lists for a 16-channel latent, which
would not even broadcast. We never broadcast silently: a list must have one entry per channel, or a
single entry (a scalar). Uniform placeholder lists of the wrong length are accepted only when asked
for (``on_mismatch="uniform"``), and are then used as the scalar they represent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from wfvae_cli.errors import WfvaeError


@dataclass(frozen=True)
class LatentNormalizer:
    """Per-channel (or scalar) affine normalisation of latents."""

    scale: tuple[float, ...]
    shift: tuple[float, ...]

    @classmethod
    def create(
        cls,
        scale: Sequence[float],
        shift: Sequence[float],
        channels: int,
        on_mismatch: Literal["error", "uniform"] = "error",
        source: str = "config",
    ) -> LatentNormalizer:
        """Validate ``scale``/``shift`` for a ``channels``-channel latent (see the module docstring)."""
        fixed = []
        for name, values in (("scale", list(scale)), ("shift", list(shift))):
            if len(values) in (1, channels):
                fixed.append(tuple(float(v) for v in values))
                continue
            if on_mismatch == "uniform" and len(set(values)) == 1:
                fixed.append((float(values[0]),))
                continue
            raise WfvaeError(
                f"{source}: {name} has {len(values)} entries for a {channels}-channel latent; give one value per "
                f"channel or a single value (the released WF-VAE-L config has 4-entry placeholders: compute "
                f"real statistics, or accept them as a uniform scalar with on_mismatch='uniform')"
            )
        if any(v == 0 for v in fixed[0]):
            raise WfvaeError(f"{source}: scale contains 0, which cannot be inverted")
        return cls(scale=fixed[0], shift=fixed[1])

    @classmethod
    def from_config(cls, config, on_mismatch: Literal["error", "uniform"] = "error") -> LatentNormalizer:
        return cls.create(config.scale, config.shift, config.latent_dim, on_mismatch)

    def _view(self, values: tuple[float, ...], z: torch.Tensor) -> torch.Tensor:
        t = torch.tensor(values, dtype=z.dtype, device=z.device)
        if len(values) > 1 and z.shape[1] != len(values):
            raise WfvaeError(f"latent has {z.shape[1]} channels but scale/shift have {len(values)} entries")
        return t.view(1, -1, *([1] * (z.dim() - 2))) if len(values) > 1 else t

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """``(z - shift) * scale``: what a diffusion model is trained on."""
        return (z - self._view(self.shift, z)) * self._view(self.scale, z)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """``z / scale + shift``: back to what the decoder expects."""
        return z / self._view(self.scale, z) + self._view(self.shift, z)
