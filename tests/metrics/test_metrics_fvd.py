"""FVD: Fréchet distance math, StyleGAN-V preprocessing, and the extractor/accumulation plumbing.

The real I3D cannot be downloaded here, so a tiny TorchScript module with the detector's call signature
(``detector(x, rescale=..., resize=..., return_features=...) -> (B, 400)``) stands in for it. It refuses
any other keyword values and any input that is not 224×224 in [-1, 1], so the plumbing is checked too.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from wfvae_cli.errors import WfvaeError
from wfvae_cli.metrics import (
    MIN_RELIABLE_CLIPS,
    FVDMetric,
    I3DFeatureExtractor,
    MetricUnavailable,
    MetricWeightsError,
    feature_stats,
    frechet_distance,
    frechet_terms,
    i3d_preprocess,
)
from wfvae_cli.metrics.weights import sha256_file


class _FakeI3D(torch.nn.Module):
    def __init__(self, dim: int = 400, out_rows: int = 0) -> None:
        super().__init__()
        self.register_buffer(
            "proj", torch.randn(3 * 2 * 4 * 4, dim, generator=torch.Generator().manual_seed(0))
        )
        self.out_rows = out_rows  # > 0: a broken detector returning a fixed number of rows

    def forward(
        self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
    ) -> torch.Tensor:
        if rescale or resize or not return_features:
            raise RuntimeError("call with rescale=False, resize=False, return_features=True")
        if x.shape[1] != 3 or x.shape[3] != 224 or x.shape[4] != 224:
            raise RuntimeError("expected (B, 3, T, 224, 224)")
        if bool(x.min() < -1.0) or bool(x.max() > 1.0):
            raise RuntimeError("expected values in [-1, 1]")
        feats = torch.tanh(F.adaptive_avg_pool3d(x, [2, 4, 4]).flatten(1) @ self.proj)
        if self.out_rows > 0:
            return feats[: self.out_rows]
        return feats


def _script(module: torch.nn.Module) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", FutureWarning
        )  # torch 2.14 deprecates TorchScript; the detector is one
        return torch.jit.script(module)


@pytest.fixture(scope="module")
def fake_i3d(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("i3d") / "i3d_torchscript.pt"
    _script(_FakeI3D()).save(str(path))
    return str(path)


@pytest.fixture(scope="module")
def fake_i3d_16(tmp_path_factory) -> str:
    """16-d features: with a handful of clips a 400-d covariance has ~395 zero eigenvalues, on which
    scipy's sqrtm can take seconds; the set-level logic does not depend on the dimension."""
    path = tmp_path_factory.mktemp("i3d16") / "i3d_torchscript.pt"
    _script(_FakeI3D(dim=16)).save(str(path))
    return str(path)


def _psd(d: int, rng: np.random.Generator) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _videos(b: int, seed: int, shape=(3, 4, 32, 40)) -> torch.Tensor:
    return torch.rand((b, *shape), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------ Fréchet distance
def test_identical_gaussians_are_at_distance_zero():
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=12), _psd(12, rng)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_one_dimensional_closed_form():
    # (μ1−μ2)² + σ1² + σ2² − 2·σ1σ2 with variances 4 and 9: 4 + 4 + 9 − 12 = 5
    assert frechet_distance(1.0, 4.0, 3.0, 9.0) == pytest.approx(5.0, abs=1e-12)


def test_diagonal_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 3.0, size=6), rng.uniform(0.1, 3.0, size=6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    terms = frechet_terms(mu1, np.diag(s1), mu2, np.diag(s2))
    assert terms.distance == pytest.approx(expected, rel=1e-12)
    assert terms.mean_term == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-12)
    assert not terms.regularized


def test_agrees_with_direct_scipy_computation_on_features():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(60, 16))
    fake = 0.8 * real + rng.normal(size=(60, 16)) + 0.3
    mu_f, mu_r = fake.mean(axis=0), real.mean(axis=0)
    s_f, s_r = np.cov(fake, rowvar=False), np.cov(real, rowvar=False)
    direct = np.real(np.square(mu_f - mu_r).sum() + np.trace(s_f + s_r - 2 * scipy.linalg.sqrtm(s_f @ s_r)))
    assert frechet_distance(*feature_stats(fake), *feature_stats(real)) == pytest.approx(direct, rel=1e-10)


def test_rank_deficient_covariances_fewer_clips_than_dims():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(8, 40))
    fake = real + 0.5 * rng.normal(size=(8, 40))
    terms = frechet_terms(*feature_stats(fake), *feature_stats(real))
    assert math.isfinite(terms.distance) and terms.distance > 0


def test_feature_stats_is_mean_and_unbiased_covariance():
    rng = np.random.default_rng(4)
    f = rng.normal(size=(9, 3))
    mu, sigma = feature_stats(torch.from_numpy(f).float())
    np.testing.assert_allclose(mu, f.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(sigma, (f - f.mean(0)).T @ (f - f.mean(0)) / 8, atol=1e-6)
    assert feature_stats(f[:, :1])[1].shape == (1, 1)
    with pytest.raises(ValueError, match="at least 2"):
        feature_stats(f[:1])


def test_non_finite_sqrtm_is_retried_with_eps(monkeypatch):
    calls = []
    real_sqrtm = scipy.linalg.sqrtm

    def flaky(a):
        calls.append(a.copy())
        return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

    monkeypatch.setattr(scipy.linalg, "sqrtm", flaky)
    s = np.diag([1.0, 4.0])
    with pytest.warns(RuntimeWarning, match="near-singular"):
        value = frechet_distance(np.zeros(2), s, np.zeros(2), s, eps=1e-6)
    assert len(calls) == 2
    np.testing.assert_allclose(calls[1], (s + 1e-6 * np.eye(2)) @ (s + 1e-6 * np.eye(2)))
    assert value == pytest.approx(0.0, abs=1e-5)


def test_large_imaginary_component_is_an_error():
    # a "covariance" with a negative eigenvalue: sqrtm is exact but clearly complex
    with pytest.raises(WfvaeError, match="imaginary"):
        frechet_distance(np.zeros(2), np.diag([-1.0, 1.0]), np.ones(2), np.eye(2))


def test_sqrtm_that_fails_twice_is_an_error(monkeypatch):
    monkeypatch.setattr(scipy.linalg, "sqrtm", lambda a: np.full_like(a, np.inf))
    with pytest.raises(WfvaeError, match="degenerate"):
        frechet_distance(np.zeros(2), np.eye(2), np.ones(2), np.eye(2))


def test_frechet_shape_mismatch():
    with pytest.raises(ValueError, match="covariances"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


# ------------------------------------------------------------------------------------- preprocessing
def _official_preprocess_single(video: torch.Tensor, resolution: int = 224) -> torch.Tensor:
    """The StyleGAN-V ``preprocess_single`` of the official code, one (C, T, H, W) video at a time."""
    h, w = video.shape[-2:]
    scale = resolution / min(h, w)
    target = (resolution, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), resolution)
    video = F.interpolate(video, size=target, mode="bilinear", align_corners=False)
    h, w = video.shape[-2:]
    w0, h0 = (w - resolution) // 2, (h - resolution) // 2
    video = video[:, :, h0 : h0 + resolution, w0 : w0 + resolution]
    return ((video - 0.5) * 2).contiguous()


@pytest.mark.parametrize("hw", [(32, 45), (50, 30), (224, 224)])
def test_preprocess_matches_official_per_video_code(hw):
    videos = _videos(2, seed=5, shape=(3, 3, *hw))
    ours = i3d_preprocess(videos)
    assert ours.shape == (2, 3, 3, 224, 224)
    ref = torch.stack([_official_preprocess_single(v) for v in videos])
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    assert ours.min() >= -1 and ours.max() <= 1
    if hw == (224, 224):
        torch.testing.assert_close(ours, (videos - 0.5) * 2)


# --------------------------------------------------------------------------- extractor and the metric
def test_extractor_plumbing_and_batch_size_independence(fake_i3d):
    videos = _videos(5, seed=6)
    one = I3DFeatureExtractor(fake_i3d, batch_size=1)
    many = I3DFeatureExtractor(fake_i3d, batch_size=4)
    f1, f4 = one(videos), many(videos)
    assert f1.shape == (5, 400) and f1.dtype == np.float64
    np.testing.assert_allclose(f1, f4, rtol=0, atol=1e-6)
    assert one.sha256 == sha256_file(fake_i3d)
    with pytest.raises(ValueError, match="RGB clips"):
        one(videos[:, :1])


def test_fvd_is_set_level_and_independent_of_update_batching(fake_i3d_16):
    extractor = I3DFeatureExtractor(fake_i3d_16)
    real = _videos(6, seed=7)
    recon = (real + 0.1 * torch.randn(real.shape, generator=torch.Generator().manual_seed(8))).clamp(0, 1)

    whole = FVDMetric(extractor)
    whole.update(real, recon)
    split = FVDMetric(extractor)
    for i, j in ((0, 1), (1, 3), (3, 6)):  # batches of 1, 2 and 3 clips
        split.update(real[i:j], recon[i:j])
    assert whole.n_clips == split.n_clips == 6
    np.testing.assert_allclose(whole.real_features, split.real_features, rtol=0, atol=1e-6)

    with pytest.warns(UserWarning, match=f"< {MIN_RELIABLE_CLIPS}"):
        a = whole.compute()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        b = split.compute()
    assert a.fvd == pytest.approx(b.fvd, rel=1e-6)
    assert a.n_clips == 6 and a.feature_dim == 16 and not a.reliable and "6 clips" in a.note
    assert a.fvd == pytest.approx(a.mean_term + a.trace_term)
    assert a.detector_sha256 == extractor.sha256
    # one distance over the whole set: the same as the direct computation on all features
    direct = frechet_distance(*feature_stats(whole.recon_features), *feature_stats(whole.real_features))
    assert a.fvd == pytest.approx(direct, rel=1e-10)


def test_identical_sets_give_zero_fvd():
    metric = FVDMetric()  # features only
    f = np.random.default_rng(9).normal(size=(20, 7))
    metric.update_features(f, f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert metric.compute().fvd == pytest.approx(0.0, abs=1e-8)


def test_official_batched_protocol():
    rng = np.random.default_rng(10)
    real, recon = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    metric = FVDMetric()
    metric.update_features(real[:4], recon[:4])
    metric.update_features(torch.from_numpy(real[4:]), torch.from_numpy(recon[4:]))
    # batch_size 1 (the official eval.sh): mean squared feature distance of each pair, no covariance
    assert metric.compute_batched(1) == pytest.approx(np.mean(np.sum((real - recon) ** 2, axis=1)))
    # one batch holding everything is the set-level FVD
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert metric.compute_batched(7) == pytest.approx(metric.compute().fvd)
    # batches of 3: [0:3], [3:6], [6:7] (the last one mean-only), averaged without weights
    expected = np.mean(
        [
            frechet_distance(*feature_stats(recon[0:3]), *feature_stats(real[0:3])),
            frechet_distance(*feature_stats(recon[3:6]), *feature_stats(real[3:6])),
            float(np.sum((recon[6] - real[6]) ** 2)),
        ]
    )
    assert metric.compute_batched(3) == pytest.approx(expected)


def test_too_few_clips_and_bad_updates():
    metric = FVDMetric()
    with pytest.raises(WfvaeError, match="at least 2 clips"):
        metric.compute()
    metric.update_features(np.zeros((1, 4)), np.ones((1, 4)))
    with pytest.raises(WfvaeError, match="got 1"):
        metric.compute()
    with pytest.raises(ValueError, match="differ in shape"):
        metric.update_features(np.zeros((2, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="dimension changed"):
        metric.update_features(np.zeros((2, 5)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="paired"):
        metric.update(torch.zeros(2, 3, 2, 8, 8), torch.zeros(1, 3, 2, 8, 8))
    metric.reset()
    assert metric.n_clips == 0
    with pytest.raises(ValueError, match="no feature extractor"):
        metric.update(torch.zeros(1, 3, 2, 8, 8), torch.zeros(1, 3, 2, 8, 8))


# ----------------------------------------------------------------------------------- weight handling
def test_missing_detector_raises_metric_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(MetricUnavailable) as info:
        I3DFeatureExtractor()
    msg = str(info.value)
    assert (
        "\n" not in msg
        and "i3d_torchscript.pt" in msg
        and str(tmp_path / "th" / "hub" / "checkpoints") in msg
    )
    with pytest.raises(MetricUnavailable, match="not found"):
        I3DFeatureExtractor(tmp_path / "missing.pt")


def test_detector_found_in_torch_home(tmp_path, monkeypatch, fake_i3d):
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "i3d_torchscript.pt").write_bytes(Path(fake_i3d).read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    extractor = I3DFeatureExtractor()
    assert extractor.path == ckpt / "i3d_torchscript.pt"
    I3DFeatureExtractor(fake_i3d, expected_sha256=extractor.sha256[:12].upper())  # a matching pin loads


def test_wrong_detector_files_are_errors(tmp_path, fake_i3d):
    with pytest.raises(MetricWeightsError, match="sha256"):
        I3DFeatureExtractor(fake_i3d, expected_sha256="00000000")
    junk = tmp_path / "i3d_torchscript.pt"
    junk.write_bytes(b"not torchscript")
    with pytest.raises(MetricWeightsError, match="not a TorchScript file"):
        I3DFeatureExtractor(tmp_path)
    broken = tmp_path / "broken.pt"
    _script(_FakeI3D(out_rows=1)).save(str(broken))
    with pytest.raises(MetricWeightsError, match="not \\(clips, features\\)"):
        I3DFeatureExtractor(broken)(_videos(2, seed=11))
