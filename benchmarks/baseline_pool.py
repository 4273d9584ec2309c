"""Is the VAE better than resampling? A model vs. average-pool + upsample baselines on held-out clips.

    python benchmarks/baseline_pool.py --model wfvae-tiny --clips 32 --frames 9 --res 64
    python benchmarks/baseline_pool.py --model DIR --videos data/eval/ --frames 17 --res 256 --json out.json

Baselines keep, per block, the mean colour and upsample it back (frame 0 is its own temporal group, the
VAE's causal layout):

* ``pool 4x8x8`` -- the VAE's spatio-temporal compression, 3 numbers per 4x8x8 block (a latent_dim-Z VAE
  keeps Z), upsampled trilinearly (the bar of issue #18; also bilinear-and-hold and nearest, for reference);
* ``pool 1x8x8`` -- no temporal pooling: 12 numbers per 4x8x8 block, i.e. more numbers than an 8-channel
  latent; a deliberately generous baseline.

Clips default to camera paths over held-out photos (``china``, ``flower``, ``grace_hopper``: never seen by
either training stage of ``wfvae-tiny``); ``--photos chelsea retina --seed 0`` gives stage I's own held-out
set. For the issue #18 validation (scene clips, per-frame PSNR) see ``benchmarks/tiny_validation.py``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from wfvae_cli.metrics import LPIPSMetric, MetricUnavailable
from wfvae_cli.metrics.baseline import pool_baseline
from wfvae_cli.model import load_model
from wfvae_cli.model.loading import is_weightless_preset  # speed/plumbing: a preset may be random
from wfvae_cli.train.data import SyntheticClips, VideoClips
from wfvae_cli.train.evaluate import Evaluator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="wfvae-tiny", help="load_model spec (preset, dir, checkpoint)")
    ap.add_argument("--videos", nargs="*", default=None, help="held-out videos/folders instead of rendered clips")
    ap.add_argument("--photos", nargs="*", default=["china", "flower", "grace_hopper"],
                    help="photos for rendered clips")
    ap.add_argument("--clips", type=int, default=32)
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0, help="the recipe seed (tiny-cpu: 0) picks the camera paths")
    ap.add_argument("--json", default=None, help="write the results here too")
    args = ap.parse_args()

    size = (args.res, args.res)
    if args.videos:
        data = VideoClips(args.videos, args.frames, size, args.seed, train=False, clips=args.clips)
    else:
        data = SyntheticClips(args.photos, args.frames, size, args.seed, train=False, clips=args.clips)
    try:
        lpips = LPIPSMetric()
    except MetricUnavailable as exc:
        print(f"LPIPS skipped: {exc}")
        lpips = None
    ev = Evaluator(data, batch_size=4, lpips=lpips)
    model = load_model(args.model, random_weights=is_weightless_preset(args.model))
    t = model.config.temporal_factor
    z = model.config.latent_dim
    start = time.perf_counter()
    results = {f"{args.model} (latent {z}ch, {z} numbers per {t}x8x8 block)": ev.run(model, torch.device("cpu"))}
    elapsed = time.perf_counter() - start

    def score(fn) -> dict[str, float]:
        sums: dict[str, float] = {}
        for _, batch in ev.batches():
            part: dict[str, float] = {"psnr": 0.0, "ssim": 0.0, **({"lpips": 0.0} if lpips else {})}
            ev.score_into(batch, fn(batch), part)
            for k, v in part.items():
                sums[k] = sums.get(k, 0.0) + v
        return {k: v / len(ev) for k, v in sums.items()}

    results[f"pool {t}x8x8 + trilinear (3 numbers per block)"] = score(lambda v: pool_baseline(v, t, 8, "trilinear"))
    results[f"pool {t}x8x8 + bilinear, held (3 per block)"] = score(lambda v: pool_baseline(v, t, 8, "bilinear"))
    results[f"pool {t}x8x8 + nearest (3 numbers per block)"] = score(lambda v: pool_baseline(v, t, 8, "nearest"))
    results[f"pool 1x8x8 + bilinear ({3 * t} numbers per block)"] = score(lambda v: pool_baseline(v, 1, 8, "bilinear"))

    print(f"{len(ev)} held-out clips, {args.frames} frames at {args.res}x{args.res} (model: {elapsed:.1f} s)")
    print(f"{'method':58s} {'PSNR':>7s} {'SSIM':>7s}" + (f" {'LPIPS':>7s}" if lpips else ""))
    for name, m in results.items():
        line = f"{name:58s} {m['psnr']:7.2f} {m['ssim']:7.4f}"
        if lpips:
            line += f" {m['lpips']:7.4f}"
        print(line)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"clips": len(ev), "frames": args.frames, "res": args.res, "results": results}, fh, indent=2)


if __name__ == "__main__":
    main()
