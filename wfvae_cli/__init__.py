"""wfvae: WF-VAE (Wavelet-Flow VAE, arXiv 2411.17459) toolkit.

Public API::

    from wfvae_cli import load_model
    model = load_model("wfvae-s")                 # preset, random init (seeded)
    post = model.encode(video)                    # (B,3,T,H,W) in [-1,1] -> DiagonalGaussian
    recon = model.decode(post.mode())
"""

from __future__ import annotations

__version__ = "0.1.0"

from wfvae_cli.model import DiagonalGaussian, WFVAE, WFVAEConfig, load_model  # noqa: E402

__all__ = ["WFVAE", "DiagonalGaussian", "WFVAEConfig", "__version__", "load_model"]
