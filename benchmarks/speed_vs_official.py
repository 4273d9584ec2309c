"""Our WF-VAE vs the official computation pattern (benchmarks/official_style.py), side by side.

Same weights, same inputs, same process, same threads; the two implementations alternate on every
repeat so that machine noise hits both alike. Reports median seconds and the speed-up ratio, and
(with --memory) peak-RSS activation memory of each in a fresh subprocess (peak minus after-load).

    python benchmarks/speed_vs_official.py --model wfvae-l --case encode:17x128 --case decode:17x128
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from official_style import OfficialStyle

from wfvae_cli import load_model


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _reset_peak() -> None:
    """Reset the kernel's peak-RSS counter (VmHWM), so the peak excludes model construction."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _inputs(model, mode: str, frames: int, res: int):
    gen = torch.Generator().manual_seed(0)
    if mode == "encode":
        return torch.rand(1, 3, frames, res, res, generator=gen) * 2 - 1
    t = (frames - 1) // model.config.temporal_factor + 1
    return torch.randn(1, model.config.latent_dim, t, res // 8, res // 8, generator=gen)


def _runner(impl: str, model, mode: str, chunk: int | None):
    if impl == "official":
        off = OfficialStyle(model)
        z = model.config.latent_dim
        return (lambda x: off.encode(x)[:, :z]) if mode == "encode" else off.decode
    if mode == "encode":
        return lambda x: model.encode(x, chunk_frames=chunk).mean
    return lambda z: model.decode(z, chunk_frames=chunk)


def memory_child(spec: str, impl: str, mode: str, frames: int, res: int, chunk: int | None) -> dict:
    torch.set_num_threads(2)
    model = load_model(spec)
    x = _inputs(model, mode, frames, res)
    run = _runner(impl, model, mode, chunk)
    import gc

    gc.collect()
    base = _rss_mb()
    _reset_peak()
    with torch.inference_mode():
        run(x)
    peak = _peak_mb()
    return {"after_load_mb": round(base, 1), "peak_mb": round(peak, 1), "activation_mb": round(peak - base, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="wfvae-l")
    ap.add_argument("--case", action="append", default=[], help="encode:FRAMESxRES or decode:FRAMESxRES")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk-frames", type=int, default=None, help="also time our Causal-Cache path")
    ap.add_argument("--memory", action="store_true", help="measure activation memory in fresh subprocesses")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        impl, mode, frames, res, chunk = args.child
        print(json.dumps(memory_child(args.model, impl, mode, int(frames), int(res), int(chunk) or None)))
        return
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    rows = []
    for case in args.case or ["encode:17x128", "decode:17x128"]:
        mode, size = case.split(":")
        frames, res = (int(v) for v in size.split("x"))
        x = _inputs(model, mode, frames, res)
        impls = {"official": _runner("official", model, mode, None), "ours": _runner("ours", model, mode, None)}
        if args.chunk_frames:
            impls["ours_chunked"] = _runner("ours", model, mode, args.chunk_frames)
        times: dict[str, list[float]] = {k: [] for k in impls}
        with torch.inference_mode():
            outs = {k: f(x) for k, f in impls.items()}  # warm-up, and the parity check
            diff = max((outs[k] - outs["official"]).abs().max().item() for k in impls)
            for _ in range(args.repeat):
                for name, f in impls.items():
                    t0 = time.perf_counter()
                    f(x)
                    times[name].append(time.perf_counter() - t0)
        row = {"case": case, "model": args.model, "max_abs_diff": diff}
        for name, ts in times.items():
            row[f"{name}_median_s"] = round(statistics.median(ts), 3)
        row["speedup"] = round(row["official_median_s"] / row["ours_median_s"], 3)
        if args.chunk_frames:
            row["chunked_over_direct"] = round(row["ours_chunked_median_s"] / row["ours_median_s"], 3)
        if args.memory:
            for impl in ("official", "ours"):
                out = subprocess.run([sys.executable, __file__, "--model", args.model, "--child", impl, mode, str(frames),
                                      str(res), "0"], check=True, capture_output=True, text=True).stdout
                row[f"{impl}_memory"] = json.loads(out.strip().splitlines()[-1])
            row["activation_ratio"] = round(row["ours_memory"]["activation_mb"] / row["official_memory"]["activation_mb"], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
