"""Latents in a store -> video files (the library side of `wfvae decode`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wfvae_cli.errors import WfvaeError
from wfvae_cli.io import read_frames, to_model_input, write_video
from wfvae_cli.model import WFVAE, LatentNormalizer, load_model
from wfvae_cli.pipeline.planning import parse_bucket_id
from wfvae_cli.store import LatentStore, open_store


@dataclass
class DecodedClip:
    index: int
    path: Path
    source: str
    frames: int


def model_for_store(store: LatentStore, spec: str | None) -> WFVAE:
    """The model recorded in the store (or ``spec``); its weights must be the ones that made the latents."""
    # a store made with random weights records it; its model is rebuilt the same way (same seed, same fingerprint)
    model = load_model(spec or store.meta.model, random_weights=spec is None and store.meta.random_weights)
    if model.fingerprint() != store.meta.weights_sha256:
        raise WfvaeError(
            f"{store.path}: latents were made by weights {store.meta.weights_sha256[:12]}…, but "
            f"{spec or store.meta.model} has {model.fingerprint()[:12]}…; pass the right checkpoint with --model"
        )
    return model


def _to_uint8(video: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3), clamped (the model output is not)."""
    frames = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return frames.permute(1, 2, 3, 0).contiguous().numpy()


@torch.inference_mode()
def decode_samples(
    store_path: str | Path,
    indices: list[int],
    out_dir: str | Path,
    model_spec: str | None = None,
    side_by_side: bool = False,
    chunk_frames: int | None = None,
    *,
    storage_options: dict | None = None,
) -> list[DecodedClip]:
    """Decode done samples ``indices`` (reader order) to ``out_dir/sample_{i}.mp4``.

    Stored samples are used as is; posteriors are decoded from their mean. With ``side_by_side`` the
    source clip, prepared exactly as for encoding, is placed left of the reconstruction.
    """
    store = open_store(store_path, storage_options=storage_options)  # a local path or a URL
    if not indices:
        raise WfvaeError("give at least one --index")
    bad = [i for i in indices if not 0 <= i < len(store)]
    if bad:
        raise WfvaeError(f"{store.path}: index {bad[0]} is out of range (the store has {len(store)} done samples)")
    model = model_for_store(store, model_spec)
    meta = store.meta
    channels = model.config.latent_dim
    norm = LatentNormalizer.create(meta.scale, meta.shift, channels, source=str(store.path)) if meta.scaled else None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for i in indices:
        sample = store[i]
        z = torch.from_numpy(np.asarray(sample["sample" if meta.kind == "sample" else "mean"], dtype=np.float32))[None]
        if norm is not None:
            z = norm.denormalize(z)
        video = model.decode(z, chunk_frames=chunk_frames)[0]
        frames = _to_uint8(video)
        if side_by_side:
            _, height, width = parse_bucket_id(sample["bucket"])
            src = read_frames(sample["source"], np.asarray(sample["frame_indices"]))
            source = _to_uint8(to_model_input(src, (height, width), meta.preprocessing.get("crop", "center")))
            frames = np.concatenate([source, frames], axis=2)
        path = write_video(out_dir / f"sample_{i:06d}.mp4", frames, fps=float(sample.get("fps") or 16))
        results.append(DecodedClip(i, path, sample["source"], frames.shape[0]))
    return results
