"""Exponential moving average of the VAE weights (the paper's EMA, decay 0.999).

Why a separate shadow in float32: the averaged weights are what gets exported and evaluated (they are
smoother than the raw weights, which a GAN keeps perturbing), and a ``decay`` of 0.999 adds 0.1 % of the
difference per step, which bf16 could not even represent. The update is one fused ``_foreach_lerp_``
over all tensors: ``shadow += (1 - decay) · (param - shadow)``, i.e. ``shadow = decay·shadow +
(1-decay)·param``, after every generator step (the official schedule).

Only trainable parameters are averaged (as officially), but :meth:`full_state_dict` overlays them on the
model's complete state dict, so an exported EMA model also has the frozen Haar constants, the buffers and
a frozen encoder (the official EMA dict lacks those and relies on non-strict loading).
"""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Shadow copies of ``model``'s trainable parameters, keyed by parameter name."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        self.shadow = {n: params[n].detach().clone().float() for n in self.names}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        torch._foreach_lerp_(
            [self.shadow[n] for n in self.names],
            [params[n].detach().float() for n in self.names],
            1.0 - self.decay,
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = [n for n in self.names if n not in state]
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} parameter(s), first: {missing[0]}")
        with torch.no_grad():
            for n in self.names:
                self.shadow[n].copy_(state[n])

    def full_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """``model.state_dict()`` with the averaged parameters in place of the raw ones (CPU copies)."""
        out = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        for n in self.names:
            out[n] = self.shadow[n].detach().to("cpu", out[n].dtype, copy=True)
        return out

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into ``model`` (an evaluation copy with the same parameter names)."""
        params = dict(model.named_parameters())
        for n in self.names:
            params[n].copy_(self.shadow[n])
