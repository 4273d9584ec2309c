"""Where the time goes: torch-profiler self time of one encode or decode, grouped by kind of op.

Runs the official code (``--official PATH``, a checkout) or its computation pattern
(benchmarks/official_style.py), and ours with the direct and the auto (Winograd) conv algorithm, on
the same weights and input, one warm-up call each, then one profiled call, and prints a table (and
--json rows) of milliseconds per category:

    python benchmarks/profile_breakdown.py --model wfvae-l --case encode:17x128 --case decode:17x128

Categories are by op name. In our Winograd path the transformed-domain products are "matmul" (batched
GEMMs) or "conv" (the oneDNN backend), and the compiled input / output / filter transforms (with the
fused LayerNorm and SiLU) are "transforms".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from speed_vs_official import _inputs as inputs
from speed_vs_official import _runner, cpu_row

from wfvae_cli import load_model
from wfvae_cli.model.loading import is_weightless_preset  # speed/precision only: random init is fine

CATEGORIES = {
    "transforms": ("winograd::",),
    "conv": ("convolution", "conv3d", "conv2d", "slow_conv"),
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear"),
    "attention": ("scaled_dot_product", "flash_attention"),
    "norm": ("layer_norm", "var_mean", "group_norm", "rsqrt", "addcmul"),
    "activation": ("silu", "sigmoid"),
    "interpolation": ("upsample", "interpolate"),
    "copies": ("copy_", "aten::cat", "constant_pad", "aten::pad", "clone", "contiguous", "repeat", "fill_", "zero_"),
    "elementwise": ("aten::add", "aten::sub", "aten::mul", "aten::div", "aten::neg"),
}


def categorize(name: str) -> str:
    for category, keys in CATEGORIES.items():
        if any(k in name for k in keys):
            return category
    return "other"


def breakdown(fn, x) -> dict[str, float]:
    with torch.inference_mode():
        fn(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn(x)
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        key = categorize(event.key)
        totals[key] = totals.get(key, 0.0) + event.self_cpu_time_total / 1000
    totals["total"] = sum(totals.values())
    return {k: round(v, 1) for k, v in totals.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="wfvae-l")
    ap.add_argument("--case", action="append", default=[], help="encode:FRAMESxRES or decode:FRAMESxRES")
    ap.add_argument("--official", metavar="PATH",
                    help="a checkout of PKU-YuanGroup/WF-VAE (default: official_style.py)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model, random_weights=is_weightless_preset(args.model))
    for case in args.case or ["encode:17x128", "decode:17x128"]:
        mode, size = case.split(":")
        frames, res = (int(v) for v in size.split("x"))
        x = inputs(model, mode, frames, res)  # the same inputs as speed_vs_official.py
        baseline = "official" if args.official else "official-style"
        runs = {baseline: _runner("official", model, mode, None, args.official),
                "ours": _runner("ours", model, mode, None, None)}
        rows = {}
        for name, fn in runs.items():
            if name == "ours":
                for algorithm in ("direct", "auto"):
                    model.set_conv_algorithm(algorithm)
                    rows[f"ours ({algorithm})"] = breakdown(fn, x)
            else:
                rows[name] = breakdown(fn, x)
        if args.json:
            for name, row in rows.items():
                print(json.dumps({"model": args.model, "case": case, "impl": name, "ms": row, **cpu_row()}))
            continue
        cats = [*CATEGORIES, "other", "total"]
        print(f"\n{args.model} {case} (self CPU ms, {args.threads} threads)")
        print(f"{'':18}" + "".join(f"{c:>14}" for c in cats))
        for name, row in rows.items():
            print(f"{name:18}" + "".join(f"{row.get(c, 0.0):14.1f}" for c in cats))


if __name__ == "__main__":
    main()
