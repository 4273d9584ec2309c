"""A model's facts as plain data: what ``wfvae info MODEL`` shows (and ``--json`` prints)."""

from __future__ import annotations

from typing import Any

from wfvae_cli.model.autoencoder import WFVAE


def model_summary(model: WFVAE, frames: int = 33, height: int = 256, width: int = 256) -> dict[str, Any]:
    """Config, parameter counts, fingerprint, compression and the latent shape for one input size."""
    cfg = model.config
    latent = cfg.latent_shape(frames, height, width)
    pixels = 3 * frames * height * width
    counts = model.num_params()
    return {
        "source": model.source,
        "fingerprint": model.fingerprint(),
        "params": counts,
        "params_M": {k: round(v / 1e6, 3) for k, v in counts.items()},
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "compression": {
            "temporal": cfg.temporal_factor,
            "spatial": cfg.spatial_factor,
            "latent_channels": cfg.latent_dim,
            "ratio": round(pixels / (latent[0] * latent[1] * latent[2] * latent[3]), 2),
        },
        "input": {"frames": frames, "height": height, "width": width},
        "latent_shape": list(latent),
        "config": cfg.to_dict(),
    }
