"""Held-out evaluation during training, and the trivial pooling baseline it is compared with.

Metrics use :mod:`wfvae_cli.metrics` with the official conventions (PSNR/SSIM per frame on [0, 1], LPIPS-
Alex on [-1, 1]); reconstructions decode the posterior *mode*, as the official ``recon_video.py`` does.

The baseline (:func:`wfvae_cli.metrics.baseline.pool_baseline`, trilinear) answers "is the VAE learning
anything a resampler could not do?": it keeps, per 4×8×8 block (frame 0 alone, then groups of 4 frames, the
VAE's causal layout), the mean colour, i.e. 3 numbers where a latent_dim-Z VAE keeps Z, and upsamples back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from wfvae_cli.metrics import LPIPSMetric, psnr, ssim
from wfvae_cli.metrics.baseline import pool_baseline

__all__ = ["Evaluator", "pool_baseline", "side_by_side"]


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    return ((x.float().clamp(-1, 1) + 1) / 2).double()


def side_by_side(video: torch.Tensor, recon: torch.Tensor) -> np.ndarray:
    """uint8 ``(T, H, 2W, 3)``: input | reconstruction, for the eval mp4s."""
    both = torch.cat([video, recon], dim=-1)  # (3, T, H, 2W)
    return (_to_unit(both) * 255).round().to(torch.uint8).permute(1, 2, 3, 0).contiguous().numpy()


class Evaluator:
    """Runs a model (or the baseline) over a fixed held-out set; the clips are rendered/decoded once."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int = 1,
        lpips: LPIPSMetric | None = None,
        save_videos: int = 0,
        out_dir: Path | None = None,
        fps: float = 16,
    ) -> None:
        self.clips = [dataset[i] for i in range(len(dataset))]  # type: ignore[arg-type]
        self.batch_size = batch_size
        self.lpips = lpips
        self.save_videos = save_videos if out_dir is not None else 0
        self.out_dir = out_dir
        self.fps = fps
        self._baseline: dict[str, float] | None = None

    def __len__(self) -> int:
        return len(self.clips)

    def batches(self):
        """``(index of the first clip, stacked clips)`` in ``batch_size`` groups, always in the same order."""
        for i in range(0, len(self.clips), self.batch_size):
            yield i, torch.stack(self.clips[i : i + self.batch_size])

    def score_into(self, video: torch.Tensor, recon: torch.Tensor, sums: dict[str, float]) -> None:
        """Add the per-clip PSNR/SSIM(/LPIPS) sums of a batch (model range [-1, 1], clamped) to ``sums``."""
        sums["psnr"] += float(psnr(_to_unit(video), _to_unit(recon)).sum())
        sums["ssim"] += float(ssim(_to_unit(video), _to_unit(recon)).sum())
        if self.lpips is not None:
            sums["lpips"] += float(self.lpips(video.float().clamp(-1, 1), recon.float().clamp(-1, 1)).sum())

    @torch.no_grad()
    def run(
        self,
        model: torch.nn.Module,
        device: torch.device,
        autocast_dtype: torch.dtype | None = None,
        tag: str = "eval",
        step: int | None = None,
    ) -> dict[str, float]:
        """Mean PSNR/SSIM(/LPIPS) of ``model`` over the set; writes the first ``save_videos`` as mp4."""
        from wfvae_cli.io import write_video

        was_training = model.training
        model.eval()
        sums = {"psnr": 0.0, "ssim": 0.0, **({"lpips": 0.0} if self.lpips is not None else {})}
        saved = 0
        for first, batch in self.batches():
            video = batch.to(device)
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                recon = model.decode(model.encode(video).mode())  # type: ignore[operator]
            recon = recon.float().cpu()
            video = video.cpu()
            self.score_into(video, recon, sums)
            for j in range(video.shape[0]):
                if saved < self.save_videos and self.out_dir is not None:
                    folder = self.out_dir / (f"step_{step:07d}" if step is not None else "final")
                    folder.mkdir(parents=True, exist_ok=True)
                    write_video(folder / f"{tag}_{first + j:03d}.mp4", side_by_side(video[j], recon[j]), self.fps)
                    saved += 1
        model.train(was_training)
        return {k: v / max(1, len(self.clips)) for k, v in sums.items()}

    def baseline(self, t_factor: int = 4) -> dict[str, float]:
        """The pooling baseline's metrics on the same clips (computed once, then cached)."""
        if self._baseline is None:
            sums = {"psnr": 0.0, "ssim": 0.0, **({"lpips": 0.0} if self.lpips is not None else {})}
            for _, batch in self.batches():
                self.score_into(batch, pool_baseline(batch, t_factor, mode="trilinear"), sums)
            self._baseline = {k: v / max(1, len(self.clips)) for k, v in sums.items()}
        return self._baseline
