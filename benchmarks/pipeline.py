"""End-to-end encode pipeline vs pure model time on the same clips (the model must never wait on I/O).

    python benchmarks/pipeline.py --model wfvae-s --res 256 --frames 33 --clips 4

Measured in one run, side by side: (1) pure model time: the clips are decoded and transformed up front,
then encoded one after another; (2) `encode_dataset` on the same files (decode threads, model, writer
thread, store). Reports the ratio of (2)'s wall time to (1), per-stage times and the model busy fraction.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from wfvae_cli import load_model
from wfvae_cli.io import make_sample_clips, probe, read_frames, to_model_input
from wfvae_cli.model.loading import is_weightless_preset  # speed/plumbing: a preset may be random
from wfvae_cli.pipeline import EncodeOptions, encode_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="wfvae-s")
    ap.add_argument("--res", type=int, default=256)
    ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "videos"
        paths = make_sample_clips(src, n=args.clips, frames=args.frames, size=(args.res, args.res))
        model = load_model(args.model, random_weights=is_weightless_preset(args.model))
        size = (args.res, args.res)
        clips = [to_model_input(read_frames(p, np.arange(probe(p).num_frames)), size)[None] for p in paths]

        def pure_model() -> float:
            with torch.inference_mode():
                t0 = time.perf_counter()
                for clip in clips:
                    model.encode(clip)
                return time.perf_counter() - t0

        with torch.inference_mode():
            model.encode(clips[0][:, :, :5])  # warm-up
        pure_before = pure_model()
        opts = EncodeOptions(inputs=(str(src),), out=Path(tmp) / "s.zarr", model=args.model, frames=args.frames,
                             size=(args.res, args.res), workers=args.workers)
        t0 = time.perf_counter()
        summary = encode_dataset(opts)
        e2e_total = time.perf_counter() - t0
        wall = summary.times["wall_s"]
        pure_after = pure_model()  # measured again after, so machine drift hits both sides
    pure = (pure_before + pure_after) / 2
    report = {
        "model": args.model, "res": args.res, "frames": args.frames, "clips": args.clips, "threads": args.threads,
        "pure_model_s": round(pure, 2), "pure_model_runs_s": [round(pure_before, 2), round(pure_after, 2)],
        "pipeline_wall_s": wall, "pipeline_total_s_incl_load_plan": round(e2e_total, 2),
        "ratio_pipeline_over_pure": round(wall / pure, 3), "stages": summary.times,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
