"""Our WF-VAE vs the official implementation, side by side: speed, activation memory, agreement.

Same weights, same inputs, same process, same threads; the implementations alternate on every repeat
so that machine noise hits both alike. Reports median seconds, the speed-up ratio, the max abs
difference of the outputs, optionally our Causal-Cache path, and (``--memory``) the activation memory
of each in a fresh subprocess: peak RSS minus RSS after loading, and the peak of bytes malloc'd by
the process above the start (``--malloc-peak``: exact, not subject to the C allocator's retention).

The baseline is either the official code itself, from a local checkout of PKU-YuanGroup/WF-VAE
(``--official PATH``; it needs ``pip install diffusers einops``; nothing of it is part of this
project), or ``official_style.py``, our re-implementation of its computation pattern (default):

    python benchmarks/speed_vs_official.py --model wfvae-l --case encode:17x128 --case decode:17x128 \\
        --official ~/src/WF-VAE --repeat 3 --chunk-frames 16 --memory
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
from wfvae_cli.bench.machine import machine_info
from wfvae_cli.model.fastconv import products
from wfvae_cli.model.loading import is_weightless_preset  # speed/precision only: random init is fine


def cpu_row() -> dict:
    """What every result row records: which CPU (model, vendor) and which conv backend ran."""
    vendor = ""
    try:
        with open("/proc/cpuinfo") as fh:
            vendor = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("vendor_id")), "")
    except OSError:
        pass
    verdict = products.verdict()
    return {"cpu_model": machine_info("cpu")["cpu_model"], "cpu_vendor": vendor,
            "conv_backend": verdict["backend"] or "direct", "conv_backend_source": verdict["source"]}


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


def official_model(model, checkout: str):
    """The official ``WFVAEModel`` from a checkout, with our model's config and weights (strict load)."""
    sys.path.insert(0, str(Path(checkout).expanduser()))
    from causalvideovae.model.vae.modeling_wfvae import WFVAEModel

    official = WFVAEModel.from_config(model.config.to_dict())
    official.load_state_dict(model.state_dict(), strict=True)
    official.disable_tiling()
    return official.eval()


def _runner(impl: str, model, mode: str, chunk: int | None, checkout: str | None):
    z = model.config.latent_dim
    if impl == "official" and checkout:
        off = official_model(model, checkout)
        return (lambda x: off.encode(x).latent_dist.mean) if mode == "encode" else (lambda v: off.decode(v).sample)
    if impl == "official":
        pattern = OfficialStyle(model)
        return (lambda x: pattern.encode(x)[:, :z]) if mode == "encode" else pattern.decode
    if mode == "encode":
        return lambda x: model.encode(x, chunk_frames=chunk).mean
    return lambda v: model.decode(v, chunk_frames=chunk)


def memory_child(spec: str, impl: str, mode: str, frames: int, res: int, checkout: str | None, malloc: bool) -> dict:
    import gc

    torch.set_num_threads(2)
    model = load_model(spec, random_weights=is_weightless_preset(spec))
    x = _inputs(model, mode, frames, res)
    run = _runner(impl, model, mode, None, checkout)
    if impl == "official" and checkout:
        del model  # only the official copy of the weights stays, as when the official code runs alone
    counter = None
    if malloc:
        import ctypes

        counter = ctypes.CDLL(None)  # the LD_PRELOADed counter (see --malloc-peak)
        counter.mtrack_live.restype = counter.mtrack_peak.restype = ctypes.c_long
    gc.collect()
    base = _rss_mb()
    _reset_peak()
    if counter is not None:
        live0 = counter.mtrack_live()
        counter.mtrack_reset()
    with torch.no_grad():
        run(x)
    row = {"after_load_mb": round(base, 1), "peak_mb": round(_peak_mb(), 1)}
    row["activation_mb"] = round(row["peak_mb"] - base, 1)
    if counter is not None:
        row["malloc_peak_mb"] = round((counter.mtrack_peak() - live0) / 2**20, 1)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="wfvae-l")
    ap.add_argument("--case", action="append", default=[], help="encode:FRAMESxRES or decode:FRAMESxRES")
    ap.add_argument("--official", metavar="PATH", help="a checkout of PKU-YuanGroup/WF-VAE: the baseline itself")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk-frames", type=int, default=None, help="also time our Causal-Cache path")
    ap.add_argument("--memory", action="store_true", help="measure activation memory in fresh subprocesses")
    ap.add_argument("--memory-runs", type=int, default=1, help="fresh subprocesses per implementation (median)")
    ap.add_argument("--malloc-peak", metavar="SO", help="LD_PRELOAD malloc counter (benchmarks/malloc_peak.c)")
    ap.add_argument("--no-timing", action="store_true", help="memory only")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        impl, mode, frames, res = args.child
        row = memory_child(args.model, impl, mode, int(frames), int(res), args.official, bool(args.malloc_peak))
        print(json.dumps(row))
        return
    torch.set_num_threads(args.threads)
    model = load_model(args.model, random_weights=is_weightless_preset(args.model))
    pattern = "official computation pattern (official_style.py)"
    baseline = f"official code ({args.official})" if args.official else pattern
    for case in args.case or ["encode:17x128", "decode:17x128"]:
        mode, size = case.split(":")
        frames, res = (int(v) for v in size.split("x"))
        row = {"case": case, "model": args.model, "baseline": baseline, "threads": args.threads, **cpu_row(),
               "load_avg": [round(v, 2) for v in __import__("os").getloadavg()]}
        if not args.no_timing:
            _time_case(row, model, mode, frames, res, args)
        if args.memory:
            _memory_case(row, mode, frames, res, args)
        print(json.dumps(row), flush=True)


def _time_case(row: dict, model, mode: str, frames: int, res: int, args) -> None:
    x = _inputs(model, mode, frames, res)
    impls = {name: _runner(name, model, mode, None, args.official) for name in ("official", "ours")}
    if args.chunk_frames:
        impls["ours_chunked"] = _runner("ours", model, mode, args.chunk_frames, args.official)
    times: dict[str, list[float]] = {k: [] for k in impls}
    with torch.no_grad():
        outs = {k: f(x) for k, f in impls.items()}  # warm-up, and the parity check
        row["max_abs_diff"] = max((outs[k] - outs["official"]).abs().max().item() for k in impls)
        del outs
        for _ in range(args.repeat):
            for name, f in impls.items():
                t0 = time.perf_counter()
                f(x)
                times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        row[f"{name}_s"] = [round(t, 3) for t in ts]
        row[f"{name}_median_s"] = round(statistics.median(ts), 3)
    row["speedup"] = round(row["official_median_s"] / row["ours_median_s"], 3)
    if args.chunk_frames:
        row["chunked_over_direct"] = round(row["ours_chunked_median_s"] / row["ours_median_s"], 3)


def _memory_case(row: dict, mode: str, frames: int, res: int, args) -> None:
    env = None
    if args.malloc_peak:
        import os

        env = dict(os.environ, LD_PRELOAD=str(Path(args.malloc_peak).resolve()))
    for impl in ("official", "ours"):
        runs = []
        for _ in range(args.memory_runs):
            cmd = [sys.executable, __file__, "--model", args.model, "--child", impl, mode, str(frames), str(res)]
            cmd += ["--official", args.official] if args.official else []
            cmd += ["--malloc-peak", args.malloc_peak] if args.malloc_peak else []
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
        row[f"{impl}_memory"] = runs
        for key in ("activation_mb", "malloc_peak_mb"):
            if key in runs[0]:
                row[f"{impl}_{key}"] = statistics.median(r[key] for r in runs)
    row["activation_ratio"] = round(row["ours_activation_mb"] / row["official_activation_mb"], 3)
    if "ours_malloc_peak_mb" in row:
        row["malloc_peak_ratio"] = round(row["ours_malloc_peak_mb"] / row["official_malloc_peak_mb"], 3)


if __name__ == "__main__":
    main()
