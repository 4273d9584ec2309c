"""FVD: Fréchet distance between I3D features of real and reconstructed clips (StyleGAN-V detector).

Conventions (the official ``cal_fvd.py`` with ``--fvd_method styleganv``):

* detector: the TorchScript I3D ``i3d_torchscript.pt`` of StyleGAN-V / universome's fvd-comparison,
  called as ``detector(x, rescale=False, resize=False, return_features=True)`` → 400-d pre-softmax
  features per clip;
* preprocessing per clip ``(C, T, H, W)`` in [0, 1]: bilinear resize (``align_corners=False``, no
  antialias) of the shorter side to 224, the longer side to ``ceil(side·scale)``; center crop 224×224;
  ``(x - 0.5)·2`` to [-1, 1]; all T frames, no temporal resampling;
* statistics: mean and unbiased covariance (``np.cov(rowvar=False)``); distance
  ``‖μ1−μ2‖² + tr(Σ1 + Σ2 − 2·sqrtm(Σ1Σ2))`` with the real part of ``scipy.linalg.sqrtm``.

Unlike the official script, which computes an FVD per dataloader batch and averages the batch values
(with ``batch_size 1`` that is only the mean term), :class:`FVDMetric` accumulates the features of the
whole set and computes **one** distance at the end: the standard, batch-size-independent FVD.
:meth:`FVDMetric.compute_batched` reproduces the official per-batch protocol for comparison.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from wfvae_cli.errors import WfvaeError
from wfvae_cli.metrics.weights import MetricWeightsError, find_weight_file, sha256_file

I3D_FILE = "i3d_torchscript.pt"
I3D_URL = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt"
I3D_SHA256: str | None = None
"""No published sha256 of the StyleGAN-V detector could be found; the digest of the file actually used
is recorded instead (:attr:`I3DFeatureExtractor.sha256`, :attr:`FVDResult.detector_sha256`)."""

I3D_RESOLUTION = 224
I3D_BATCH = 10
"""Clips per detector call in the official code (memory only: the features do not depend on it)."""

MIN_RELIABLE_CLIPS = 256
"""Below this many clips a 400×400 covariance is rank-deficient and FVD is biased upward and noisy."""

_METRIC = "FVD"
_SQRTM_RESIDUAL_TOL = 1e-3
_IMAG_TOL = 1e-3


# ------------------------------------------------------------------------------------ Fréchet distance
def feature_stats(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` of ``(N, D)`` features, in float64.

    ``np.cov(rowvar=False)`` (divides by N − 1) as in StyleGAN-V / the official code; needs N ≥ 2.
    """
    f = (
        features.detach().cpu().double().numpy()
        if isinstance(features, torch.Tensor)
        else np.asarray(features, np.float64)
    )
    if f.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {f.shape}")
    if f.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 feature vectors, got {f.shape[0]}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


@dataclass(frozen=True)
class FrechetTerms:
    """The two parts of a Fréchet distance, and whether ``eps·I`` had to be added to the covariances."""

    mean_term: float
    trace_term: float
    regularized: bool

    @property
    def distance(self) -> float:
        return self.mean_term + self.trace_term


def frechet_terms(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> FrechetTerms:
    """:func:`frechet_distance`, split into ``‖μ1−μ2‖²`` and the covariance (trace) term."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            "expected means (D,) and covariances (D, D) of one D, "
            f"got {mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}"
        )
    diff = mu1 - mu2
    mean_term = float(diff @ diff)

    product = sigma1 @ sigma2
    covmean = _sqrtm(product)
    regularized = not _sqrtm_ok(covmean, product)
    if regularized:
        # near-singular product: the usual FID fix, shift both covariances by eps·I and retry
        offset = eps * np.eye(d)
        product = (sigma1 + offset) @ (sigma2 + offset)
        covmean = _sqrtm(product)
        if not _sqrtm_ok(covmean, product):
            raise WfvaeError(
                f"{_METRIC}: sqrtm(Σ1·Σ2) failed even with {eps:g}·I added; the feature covariances are "
                "degenerate (constant or duplicated features?): use more, and more varied, clips"
            )
    if np.iscomplexobj(covmean):
        # Σ1Σ2 has real non-negative eigenvalues; an imaginary part is round-off, unless it is large
        imag = float(np.abs(np.diagonal(covmean).imag).max())
        scale = max(1.0, float(np.abs(np.diagonal(covmean).real).max()))
        if imag > _IMAG_TOL * scale:
            raise WfvaeError(
                f"{_METRIC}: sqrtm(Σ1·Σ2) has an imaginary component of {imag:.3g} (diagonal scale {scale:.3g}); "
                "the covariances are ill-conditioned: use more clips"
            )
        covmean = covmean.real
    trace_term = float(np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    return FrechetTerms(mean_term, trace_term, regularized)


def _sqrtm(product: np.ndarray) -> np.ndarray:
    """``scipy.linalg.sqrtm`` without its "singular matrix" warning: the root is validated by the caller."""
    from wfvae_cli.extras import require

    scipy_linalg = require("scipy.linalg", "rFVD")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy_linalg.LinAlgWarning)
        return scipy_linalg.sqrtm(product)


def _sqrtm_ok(root: np.ndarray, product: np.ndarray) -> bool:
    """Finite, and actually a square root (relative Frobenius residual below a loose tolerance)."""
    if not np.isfinite(root).all():
        return False
    norm = np.linalg.norm(product)
    return bool(norm == 0 or np.linalg.norm(root @ root - product) <= _SQRTM_RESIDUAL_TOL * norm)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance between N(μ1, Σ1) and N(μ2, Σ2): ``‖μ1−μ2‖² + tr(Σ1 + Σ2 − 2·sqrtm(Σ1Σ2))``.

    ``scipy.linalg.sqrtm`` as in the official code, with the pytorch-fid safeguards: when the root is
    not finite or not a root (near-singular product), ``eps·I`` is added to both covariances and the
    root retried (a :class:`RuntimeWarning` says so); the real part is kept, and a large imaginary
    component raises a :class:`~wfvae_cli.errors.WfvaeError`.
    """
    terms = frechet_terms(mu1, sigma1, mu2, sigma2, eps)
    if terms.regularized:
        warnings.warn(
            f"{_METRIC}: Σ1·Σ2 is near-singular; added {eps:g}·I to both covariances",
            RuntimeWarning,
            stacklevel=2,
        )
    return terms.distance


# ------------------------------------------------------------------------------------- I3D features
def i3d_preprocess(videos: torch.Tensor, resolution: int = I3D_RESOLUTION) -> torch.Tensor:
    """StyleGAN-V preprocessing of ``(B, C, T, H, W)`` clips in [0, 1] → ``(B, C, T, 224, 224)`` in [-1, 1].

    Shorter side to ``resolution`` (bilinear, ``align_corners=False``, no antialias; the longer side to
    ``ceil(side·scale)``), center crop, ``(x − 0.5)·2``. All frames of all clips in one interpolate call.
    """
    if videos.dim() != 5:
        raise ValueError(f"expected (B, C, T, H, W) clips, got shape {tuple(videos.shape)}")
    b, c, t, h, w = videos.shape
    scale = resolution / min(h, w)
    size = (resolution, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), resolution)
    frames = videos.float().transpose(1, 2).reshape(b * t, c, h, w)
    frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
    top, left = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    frames = frames[:, :, top : top + resolution, left : left + resolution]
    frames = (frames - 0.5) * 2
    return frames.reshape(b, t, c, resolution, resolution).transpose(1, 2).contiguous()


class I3DFeatureExtractor:
    """The StyleGAN-V TorchScript I3D, loaded from a local file (never downloaded).

    ``path`` is ``i3d_torchscript.pt`` or a directory holding it; ``None`` searches
    ``$TORCH_HOME/hub/checkpoints/`` and ``~/.cache/torch/hub/checkpoints/``. Missing →
    :class:`~wfvae_cli.metrics.MetricUnavailable`. ``expected_sha256`` (a full digest or a prefix)
    pins the file; without it any TorchScript file is accepted and its digest is recorded in
    :attr:`sha256`. ``batch_size`` clips go through the detector at once (memory only).

    Calling the extractor on ``(B, 3, T, H, W)`` clips in [0, 1] returns ``(B, 400)`` float64 features.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        device: str | torch.device = "cpu",
        *,
        batch_size: int = I3D_BATCH,
        expected_sha256: str | None = I3D_SHA256,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.path: Path = find_weight_file(I3D_FILE, path, metric=_METRIC, source=I3D_URL)
        self.sha256: str = sha256_file(self.path)
        if expected_sha256 is not None and not self.sha256.startswith(expected_sha256.lower()):
            raise MetricWeightsError(
                f"{_METRIC}: {self.path} has sha256 {self.sha256[:16]}…, expected {expected_sha256[:16]}…; "
                f"delete it and download {I3D_URL} again"
            )
        self.device = torch.device(device)
        try:
            with warnings.catch_warnings():
                # torch ≥ 2.9 deprecates TorchScript, but the StyleGAN-V detector only exists in that form
                warnings.simplefilter("ignore", FutureWarning)
                self.detector = torch.jit.load(str(self.path), map_location=self.device).eval()
        except Exception as exc:
            raise MetricWeightsError(
                f"{_METRIC}: {self.path} is not a TorchScript file ({type(exc).__name__}); expected the "
                f"StyleGAN-V detector from {I3D_URL}"
            ) from exc
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return f"I3DFeatureExtractor({self.path}, sha256={self.sha256[:12]}…, device={self.device})"

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor) -> np.ndarray:
        """``(B, 3, T, H, W)`` clips in [0, 1] → ``(B, D)`` float64 features (D = 400 for the real I3D)."""
        if videos.dim() != 5 or videos.shape[1] != 3:
            raise ValueError(f"expected (B, 3, T, H, W) RGB clips in [0, 1], got shape {tuple(videos.shape)}")
        feats = []
        for i in range(0, videos.shape[0], self.batch_size):
            batch = i3d_preprocess(videos[i : i + self.batch_size].to(self.device))
            out = self.detector(batch, rescale=False, resize=False, return_features=True)
            if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != batch.shape[0]:
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise MetricWeightsError(
                    f"{_METRIC}: {self.path} returned {shape} for {batch.shape[0]} clips, not (clips, features); "
                    f"expected the StyleGAN-V detector from {I3D_URL}"
                )
            feats.append(out.detach().cpu().double().numpy())
        return np.concatenate(feats, axis=0)


# ------------------------------------------------------------------------------------------- the metric
@dataclass(frozen=True)
class FVDResult:
    """A set-level FVD with what is needed to judge it.

    ``fvd = mean_term + trace_term``. ``reliable`` is False below :data:`MIN_RELIABLE_CLIPS` clips,
    where the covariance of 400-d features is rank-deficient: the value is then biased upward and noisy,
    and only comparable with FVDs computed on the same number of clips. ``regularized`` is True when
    ``eps·I`` had to be added to the covariances.
    """

    fvd: float
    n_clips: int
    feature_dim: int
    mean_term: float
    trace_term: float
    regularized: bool
    detector_sha256: str | None

    @property
    def reliable(self) -> bool:
        return self.n_clips >= MIN_RELIABLE_CLIPS

    @property
    def note(self) -> str:
        """A one-line caveat to print next to the value ("" when there is none)."""
        if self.reliable:
            return ""
        return (
            f"FVD on {self.n_clips} clips (< {MIN_RELIABLE_CLIPS}) is biased upward and noisy; "
            "compare only with FVDs computed on the same number of clips"
        )


class FVDMetric:
    """Set-level FVD between real and reconstructed clips: accumulate everything, one distance at the end.

    ``extractor`` maps ``(B, 3, T, H, W)`` clips in [0, 1] to ``(B, D)`` features (an
    :class:`I3DFeatureExtractor`); ``None`` for a metric fed only with precomputed features through
    :meth:`update_features`. :meth:`update` takes paired batches (same number of clips); features are
    kept in float64 on the CPU (400 numbers per clip), so the result depends neither on the batch size
    nor on the order of the batches.
    """

    def __init__(self, extractor: I3DFeatureExtractor | None = None) -> None:
        self.extractor = extractor
        self._real: list[np.ndarray] = []
        self._recon: list[np.ndarray] = []

    def reset(self) -> None:
        self._real.clear()
        self._recon.clear()

    def update(self, real: torch.Tensor, recon: torch.Tensor) -> None:
        """Add a batch of real clips and their reconstructions, both ``(B, 3, T, H, W)`` in [0, 1]."""
        if real.dim() != 5 or recon.dim() != 5 or real.shape[0] != recon.shape[0]:
            raise ValueError(
                f"expected paired (B, 3, T, H, W) batches, got {tuple(real.shape)} and {tuple(recon.shape)}"
            )
        if self.extractor is None:
            raise ValueError("this FVDMetric has no feature extractor; use update_features()")
        self.update_features(self.extractor(real), self.extractor(recon))

    def update_features(self, real: np.ndarray | torch.Tensor, recon: np.ndarray | torch.Tensor) -> None:
        """Add precomputed ``(B, D)`` features (e.g. cached real-set features)."""
        r, g = _as_features(real), _as_features(recon)
        if r.shape != g.shape:
            raise ValueError(f"real and reconstructed features differ in shape: {r.shape} vs {g.shape}")
        if self._real and r.shape[1] != self._real[0].shape[1]:
            raise ValueError(f"feature dimension changed from {self._real[0].shape[1]} to {r.shape[1]}")
        self._real.append(r)
        self._recon.append(g)

    @property
    def n_clips(self) -> int:
        return sum(f.shape[0] for f in self._real)

    @property
    def real_features(self) -> np.ndarray:
        """All real-clip features so far, ``(n_clips, D)`` in update order."""
        return _stack(self._real)

    @property
    def recon_features(self) -> np.ndarray:
        """All reconstruction features so far, ``(n_clips, D)``, row i paired with row i of :attr:`real_features`."""
        return _stack(self._recon)

    def compute(self, eps: float = 1e-6) -> FVDResult:
        """The FVD of the whole set. Needs ≥ 2 clips; warns below :data:`MIN_RELIABLE_CLIPS`."""
        n = self.n_clips
        if n < 2:
            raise WfvaeError(
                f"{_METRIC}: needs at least 2 clips for a covariance, got {n}; evaluate more clips"
            )
        real, recon = self.real_features, self.recon_features
        terms = frechet_terms(*feature_stats(recon), *feature_stats(real), eps=eps)
        result = FVDResult(
            fvd=terms.distance,
            n_clips=n,
            feature_dim=real.shape[1],
            mean_term=terms.mean_term,
            trace_term=terms.trace_term,
            regularized=terms.regularized,
            detector_sha256=getattr(self.extractor, "sha256", None),
        )
        if result.note:
            warnings.warn(result.note, UserWarning, stacklevel=2)
        return result

    def compute_batched(self, batch_size: int, eps: float = 1e-6) -> float:
        """The **official** per-batch protocol, for comparison with published numbers only.

        Consecutive groups of ``batch_size`` clips (in update order, the last group possibly smaller)
        each get their own Fréchet distance, and the group values are averaged. A group of one clip has
        no covariance and contributes only ``‖f_real − f_recon‖²``, so ``batch_size=1`` (the official
        ``eval.sh``) is the mean squared feature distance of each pair, with no covariance term at all.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = self.n_clips
        if n == 0:
            raise WfvaeError(f"{_METRIC}: no clips were evaluated")
        real, recon = self.real_features, self.recon_features
        values = []
        for i in range(0, n, batch_size):
            r, g = real[i : i + batch_size], recon[i : i + batch_size]
            if r.shape[0] == 1:
                values.append(float(np.square(g[0] - r[0]).sum()))
            else:
                values.append(frechet_terms(*feature_stats(g), *feature_stats(r), eps=eps).distance)
        return float(np.mean(values))


def _as_features(x: np.ndarray | torch.Tensor) -> np.ndarray:
    f = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be (B, D), got shape {f.shape}")
    return f


def _stack(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts, axis=0) if parts else np.zeros((0, 0))
