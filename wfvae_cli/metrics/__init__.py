"""Reconstruction metrics with the official WF-VAE evaluation conventions (see ``docs/metrics.md``).

Pure functions on tensors; the only I/O is the explicit loading of the LPIPS and FVD networks from
local files (nothing is ever downloaded).

* :func:`psnr`, :func:`ssim`: per clip (mean over frames), inputs in [0, 1]; ``*_per_frame`` variants.
* :class:`LPIPSMetric`: LPIPS-Alex v0.1 per clip, inputs in [-1, 1]; ``LPIPSMetric.random_trunk()`` is
  for plumbing tests only.
* :class:`FVDMetric` + :class:`I3DFeatureExtractor`: set-level FVD (accumulate all clips, one distance),
  inputs in [0, 1]; :func:`frechet_distance` / :func:`feature_stats` are the underlying math.
* :class:`MetricUnavailable`: a weight file is missing (skippable); :class:`MetricWeightsError`: a weight
  file is present but wrong (never skip).
"""

from wfvae_cli.metrics.fvd import (
    MIN_RELIABLE_CLIPS,
    FrechetTerms,
    FVDMetric,
    FVDResult,
    I3DFeatureExtractor,
    feature_stats,
    frechet_distance,
    frechet_terms,
    i3d_preprocess,
)
from wfvae_cli.metrics.perceptual import LPIPSMetric
from wfvae_cli.metrics.pixel import PSNR_CAP, psnr, psnr_per_frame, ssim, ssim_per_frame
from wfvae_cli.metrics.weights import MetricUnavailable, MetricWeightsError, weight_search_dirs

__all__ = [
    "MIN_RELIABLE_CLIPS",
    "PSNR_CAP",
    "FVDMetric",
    "FVDResult",
    "FrechetTerms",
    "I3DFeatureExtractor",
    "LPIPSMetric",
    "MetricUnavailable",
    "MetricWeightsError",
    "feature_stats",
    "frechet_distance",
    "frechet_terms",
    "i3d_preprocess",
    "psnr",
    "psnr_per_frame",
    "ssim",
    "ssim_per_frame",
    "weight_search_dirs",
]
