"""wfvae: WF-VAE (Wavelet-Flow VAE, arXiv 2411.17459) toolkit.

Public API::

    from wfvae_cli import load_model
    model = load_model("wfvae-s")                 # preset, random init (seeded)
    post = model.encode(video)                    # (B,3,T,H,W) in [-1,1] -> DiagonalGaussian
    recon = model.decode(post.mode())

The model (and torch) are imported on first use, so light sub-packages (io workers, store writers)
start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from wfvae_cli.model import WFVAE, DiagonalGaussian, WFVAEConfig, load_model

__all__ = ["WFVAE", "DiagonalGaussian", "WFVAEConfig", "__version__", "load_model"]


def __getattr__(name: str) -> Any:
    if name in ("WFVAE", "DiagonalGaussian", "WFVAEConfig", "load_model"):
        from wfvae_cli import model

        return getattr(model, name)
    raise AttributeError(f"module 'wfvae_cli' has no attribute {name!r}")
