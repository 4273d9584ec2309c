"""The posterior of WF-VAE: a diagonal Gaussian over the latent."""

from __future__ import annotations

import torch


class DiagonalGaussian:
    """N(mean, exp(logvar)) per latent element; ``moments`` is the encoder output (B, 2Z, T, H, W).

    The first Z channels are the mean and the last Z the log-variance, clamped to [-30, 20] as in the
    official code (so that ``exp`` cannot overflow in float16/bfloat16).
    """

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor) -> None:
        self.mean = mean
        self.logvar = torch.clamp(logvar, -30.0, 20.0)

    @classmethod
    def from_moments(cls, moments: torch.Tensor) -> DiagonalGaussian:
        mean, logvar = torch.chunk(moments, 2, dim=1)
        return cls(mean, logvar)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    @property
    def var(self) -> torch.Tensor:
        return torch.exp(self.logvar)

    @property
    def shape(self) -> torch.Size:
        return self.mean.shape

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean + std * eps; pass a seeded ``generator`` for a reproducible draw."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self, other: DiagonalGaussian | None = None) -> torch.Tensor:
        """KL divergence per sample (summed over C, T, H, W) to N(0, I), or to ``other``."""
        dims = tuple(range(1, self.mean.dim()))
        if other is None:
            return 0.5 * torch.sum(self.mean.pow(2) + self.var - 1.0 - self.logvar, dim=dims)
        return 0.5 * torch.sum(
            (self.mean - other.mean).pow(2) / other.var + self.var / other.var - 1.0 - self.logvar + other.logvar,
            dim=dims,
        )

    @staticmethod
    def cat(parts: list[DiagonalGaussian]) -> DiagonalGaussian:
        """Concatenate posteriors along time (the chunks of one stream)."""
        return DiagonalGaussian(torch.cat([p.mean for p in parts], dim=2), torch.cat([p.logvar for p in parts], dim=2))

    def __repr__(self) -> str:
        return f"DiagonalGaussian(shape={tuple(self.mean.shape)}, dtype={self.mean.dtype})"
