"""Peak memory of Causal-Cache streaming vs video length (issue: memory bounded by the chunk).

Each configuration runs in a fresh subprocess, so one cannot pollute the other's peak RSS. Frames are
generated chunk by chunk (as a video reader would deliver them), pushed through a stream session,
and only the (small) outputs are kept. Reports peak RSS minus the RSS after the model was loaded.

    python benchmarks/stream_memory.py --model wfvae-s --res 128 --frames 33,257 --chunk 16
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def child(model_spec: str, res: int, frames: int, chunk: int, mode: str) -> dict:
    import torch

    from wfvae_cli import load_model
    from wfvae_cli.model.loading import is_weightless_preset  # speed/precision only: random init is fine

    torch.set_num_threads(2)
    model = load_model(model_spec, random_weights=is_weightless_preset(model_spec))
    base = _rss_mb()
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    with torch.inference_mode():
        if mode == "encode":
            with model.stream_encoder(chunk_frames=chunk) as enc:
                done = 0
                while done < frames:
                    n = min(chunk, frames - done)
                    enc.push(torch.rand(1, 3, n, res, res, generator=gen) * 2 - 1)
                    done += n
                enc.flush()
        else:
            z = model.config.latent_dim
            t = (frames - 1) // model.config.temporal_factor + 1
            step = max(1, chunk // model.config.temporal_factor)
            with model.stream_decoder(chunk_frames=chunk) as dec:
                done = 0
                while done < t:
                    n = min(step, t - done)
                    dec.push(torch.randn(1, z, n, res // 8, res // 8, generator=gen))
                    done += n
                dec.flush()
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "frames": frames, "chunk": chunk, "res": res, "after_load_mb": round(base, 1),
            "peak_mb": round(peak, 1), "activation_mb": round(peak - base, 1), "seconds": round(elapsed, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="wfvae-s")
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--frames", default="33,257")
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--modes", default="encode,decode")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.model, args.res, int(args.frames), args.chunk, args.modes)))
        return
    rows = []
    for mode in args.modes.split(","):
        for frames in [int(f) for f in args.frames.split(",")]:
            cmd = [sys.executable, __file__, "--child", "--model", args.model, "--res", str(args.res),
                   "--frames", str(frames), "--chunk", str(args.chunk), "--modes", mode]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    for mode in args.modes.split(","):
        sel = [r for r in rows if r["mode"] == mode]
        if len(sel) >= 2:
            ratio = sel[-1]["activation_mb"] / max(sel[0]["activation_mb"], 1e-9)
            print(f"{mode}: activation memory {sel[-1]['frames']} frames / {sel[0]['frames']} frames = {ratio:.3f}x "
                  f"(peak RSS ratio {sel[-1]['peak_mb'] / sel[0]['peak_mb']:.3f}x)")


if __name__ == "__main__":
    main()
