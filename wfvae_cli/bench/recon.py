"""Reconstruction quality of a WF-VAE on real videos: ``wfvae bench recon`` as a library call.

Input handling is exactly the encode pipeline's (:mod:`wfvae_cli.io`: discovery, probe, clip planning in
``head`` mode with one clip per video, decode, resize + centre crop), so the numbers describe what the
model does to the clips it would encode. Each clip goes through encode → posterior **mode** → decode
(deterministic, so that direct and chunked runs can be compared frame by frame), the output is clamped
to [-1, 1], and the metrics of :mod:`wfvae_cli.metrics` are applied with the official conventions (see
docs/metrics.md). A metric whose network weights are absent is reported unavailable with the metrics
module's how-to; the others still run. A video that cannot be read is a per-clip failure, not fatal.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from wfvae_cli.bench.machine import machine_info, now_iso
from wfvae_cli.bench.recon_results import ClipFailure, ClipOutcome, ReconReport, ReconSettings
from wfvae_cli.bench.results import ModelInfo
from wfvae_cli.bench.runtime import inference_context, prepare_input, prepare_model
from wfvae_cli.bench.settings import resolve_device
from wfvae_cli.dtypes import torch_dtype
from wfvae_cli.errors import WfvaeError
from wfvae_cli.io import (
    Clip,
    ClipPlanError,
    ClipSpec,
    ResizeSpec,
    VideoDecodeError,
    VideoSource,
    discover_videos,
    plan_clips,
    probe,
    read_frames,
    to_model_input,
    write_video,
)
from wfvae_cli.metrics import FVDMetric, I3DFeatureExtractor, LPIPSMetric, MetricUnavailable, psnr, ssim
from wfvae_cli.metrics.baseline import pool_baseline
from wfvae_cli.model import WFVAE, load_model

#: ``progress(done, total, label)`` before each video and once at the end
Progress = Callable[[int, int, str], None]
FeatureExtractor = Callable[[torch.Tensor], np.ndarray]


@dataclass
class MetricSet:
    """The metric networks of one evaluation, and the metrics that could not be set up (with why)."""

    names: tuple[str, ...]
    lpips: LPIPSMetric | None = None
    extractor: FeatureExtractor | None = None
    fvd: FVDMetric | None = None
    fvd_chunked: FVDMetric | None = None
    unavailable: dict[str, str] = field(default_factory=dict)

    def per_clip(self, real: torch.Tensor, recon: torch.Tensor) -> dict[str, float]:
        """PSNR/SSIM on [0, 1], LPIPS on [-1, 1]; ``real``/``recon`` are (1, 3, T, H, W) in [-1, 1]."""
        out: dict[str, float] = {}
        real01, recon01 = (real + 1) / 2, (recon + 1) / 2
        if "psnr" in self.names:
            out["psnr"] = float(psnr(real01, recon01).mean())
        if "ssim" in self.names:
            out["ssim"] = float(ssim(real01, recon01).mean())
        if self.lpips is not None:
            out["lpips"] = float(self.lpips(real, recon).mean())
        return out


def build_metrics(
    settings: ReconSettings,
    device: str,
    lpips: LPIPSMetric | None = None,
    extractor: FeatureExtractor | None = None,
) -> MetricSet:
    """Set up the requested metrics; ``lpips``/``extractor`` replace the real networks (tests, custom I3D)."""
    names = settings.metrics
    unavailable: dict[str, str] = {}
    if "lpips" in names and lpips is None:
        try:
            lpips = LPIPSMetric(settings.lpips_weights, device)
        except MetricUnavailable as exc:
            unavailable["lpips"] = str(exc)
    if "fvd" in names and extractor is None:
        try:
            extractor = I3DFeatureExtractor(settings.i3d, device)
        except MetricUnavailable as exc:
            unavailable["fvd"] = str(exc)
    use_fvd = "fvd" in names and extractor is not None
    return MetricSet(
        names=names,
        lpips=lpips if "lpips" in names else None,
        extractor=extractor if use_fvd else None,
        fvd=FVDMetric(extractor) if use_fvd else None,  # type: ignore[arg-type]
        fvd_chunked=FVDMetric(extractor) if use_fvd and settings.compare_chunked else None,  # type: ignore[arg-type]
        unavailable=unavailable,
    )


def load_clip(
    source: VideoSource, spec: ClipSpec, resize: ResizeSpec, timeout: float | None
) -> tuple[Clip, torch.Tensor]:
    """The head clip of ``source`` as model input ``(1, 3, T, H, W)`` in [-1, 1] (the encode pipeline's path)."""
    info = probe(source.path, timeout=timeout)
    clip = plan_clips(info, spec, source.start, source.end)[0]
    frames = read_frames(source.path, clip.indices, timeout=timeout)
    return clip, to_model_input(frames, resize.size, resize.crop)[None]


def reconstruct(
    model: WFVAE, x: torch.Tensor, chunk_frames: int | None, device: str, dtype: torch.dtype
) -> torch.Tensor:
    """encode → posterior mode → decode, unclamped, as float32 on the CPU."""
    with inference_context(device, dtype):
        latent = model.encode(prepare_input(x, device, dtype, False), chunk_frames=chunk_frames).mode()
        return model.decode(latent, chunk_frames=chunk_frames).float().cpu()


def _to_uint8(video: torch.Tensor) -> np.ndarray:
    """(1, 3, T, H, W) in [-1, 1] → uint8 (T, H, W, 3), the inverse of ``to_model_input``'s scaling."""
    return ((video[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()


class ReconRunner:
    """Evaluates clips one by one and accumulates the report (one clip in memory at a time)."""

    def __init__(
        self, settings: ReconSettings, model: WFVAE, metrics: MetricSet, report: ReconReport, device: str
    ) -> None:
        self.settings = settings
        self.model = model
        self.metrics = metrics
        self.report = report
        self.device = device
        self.dtype = torch_dtype(settings.dtype)
        self.spec = ClipSpec(frames=settings.frames, mode="head", time_compression=model.config.temporal_factor)
        self.resize = ResizeSpec(settings.height, settings.width)
        self.save_dir = Path(settings.save_videos) if settings.save_videos else None
        if self.save_dir is not None:
            self.save_dir.mkdir(parents=True, exist_ok=True)

    def evaluate(self, index: int, source: VideoSource) -> None:
        s = self.settings
        try:
            clip, x = load_clip(source, self.spec, self.resize, s.decode_timeout)
        except (VideoDecodeError, ClipPlanError) as exc:
            stage = "plan" if isinstance(exc, ClipPlanError) else "decode"
            self.report.failures.append(ClipFailure(source.path, stage, str(exc)))
            return
        start = time.perf_counter()
        raw = reconstruct(self.model, x, s.chunk_frames, self.device, self.dtype)
        seconds = time.perf_counter() - start
        recon = raw.clamp(-1, 1)
        metrics = self.metrics.per_clip(x, recon)
        real_feats = None
        if self.metrics.fvd is not None and self.metrics.extractor is not None:
            real_feats = self.metrics.extractor((x + 1) / 2)
            self.metrics.fvd.update_features(real_feats, self.metrics.extractor((recon + 1) / 2))
        chunked_metrics = max_diff = None
        if s.compare_chunked:
            raw_c = reconstruct(self.model, x, s.compare_chunked, self.device, self.dtype)
            max_diff = float((raw_c - raw).abs().max())
            recon_c = raw_c.clamp(-1, 1)
            chunked_metrics = self.metrics.per_clip(x, recon_c)
            if self.metrics.fvd_chunked is not None and self.metrics.extractor is not None:
                self.metrics.fvd_chunked.update_features(real_feats, self.metrics.extractor((recon_c + 1) / 2))  # type: ignore[arg-type]
        baseline = None
        if s.baseline == "pool":
            cfg = self.model.config
            pooled = pool_baseline(x, cfg.temporal_factor, cfg.spatial_factor, "trilinear").clamp(-1, 1)
            baseline = self.metrics.per_clip(x, pooled)
        saved = None
        if self.save_dir is not None:
            target = self.save_dir / f"{index:04d}_{Path(source.path).stem}_recon.mp4"
            saved = str(write_video(target, _to_uint8(recon), clip.fps))
        self.report.clips.append(
            ClipOutcome(source.path, clip.start_frame, clip.end_frame, clip.fps, metrics, chunked_metrics, max_diff,
                        seconds, saved, baseline)
        )

    def finish(self) -> None:
        """Clip means, the set-level FVDs, and the worst direct-vs-chunked difference."""
        r = self.report
        r.unavailable.update(self.metrics.unavailable)
        r.summary = _means([c.metrics for c in r.clips])
        if self.settings.baseline is not None:
            r.baseline_summary = _means([c.baseline_metrics or {} for c in r.clips])
        if self.settings.compare_chunked:
            r.chunked_summary = _means([c.chunked_metrics or {} for c in r.clips])
            diffs = [c.max_abs_diff for c in r.clips if c.max_abs_diff is not None]
            r.max_abs_diff = max(diffs) if diffs else None
        fvds = ((self.metrics.fvd, r.summary, "fvd"), (self.metrics.fvd_chunked, r.chunked_summary, "chunked_fvd"))
        for fvd, summary, attr in fvds:
            if fvd is None or summary is None:
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the small-set warning becomes a note below
                    result = fvd.compute()
            except WfvaeError as exc:
                r.unavailable["fvd"] = str(exc)
                continue
            summary["fvd"] = result.fvd
            setattr(r, attr, {"fvd": result.fvd, "n_clips": result.n_clips, "reliable": result.reliable,
                              "mean_term": result.mean_term, "trace_term": result.trace_term,
                              "regularized": result.regularized, "detector_sha256": result.detector_sha256})
        if r.fvd and not r.fvd["reliable"]:
            r.notes.append(
                f"FVD on {r.fvd['n_clips']} clips is biased upward and noisy: compare only at equal clip counts"
            )
        if self.metrics.lpips is not None and getattr(self.metrics.lpips, "random", False):
            r.notes.append("LPIPS uses a RANDOM AlexNet trunk (test hook): not a perceptual score")


def _means(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = dict.fromkeys(k for row in rows for k in row)
    return {k: float(np.mean([row[k] for row in rows if k in row])) for k in keys}


def run_recon(
    settings: ReconSettings,
    *,
    model: WFVAE | None = None,
    lpips: LPIPSMetric | None = None,
    extractor: FeatureExtractor | None = None,
    progress: Progress | None = None,
) -> ReconReport:
    """Evaluate ``settings.model`` on the inputs; ``model``/``lpips``/``extractor`` override loading (tests)."""
    device = resolve_device(settings.device)
    found = discover_videos(list(settings.inputs))
    sources = found.sources[: settings.limit] if settings.limit else found.sources
    model = model if model is not None else load_model(settings.model, random_weights=settings.random_weights)
    cfg = model.config
    info = ModelInfo(settings.model, model.source, model.num_params(), cfg.temporal_factor, cfg.latent_dim)
    model = prepare_model(model, device, torch_dtype(settings.dtype))
    report = ReconReport(machine_info(device), settings, info, created=now_iso())
    report.failures.extend(ClipFailure(s.path, "discover", s.reason) for s in found.skipped)
    runner = ReconRunner(settings, model, build_metrics(settings, device, lpips, extractor), report, device)
    for i, source in enumerate(sources):
        if progress:
            progress(i, len(sources), Path(source.path).name)
        runner.evaluate(i, source)
    if progress:
        progress(len(sources), len(sources), "done")
    runner.finish()
    return report
