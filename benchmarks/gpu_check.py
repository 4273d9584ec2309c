"""One GPU readiness check, one JSON (driven by benchmarks/gpu_check.sh; see docs/performance.md).

Steps (each recorded, an exception is a result: ``{"error": ...}``): CUDA fp32 vs CPU parity on the golden
fixture; bf16/fp16 error (autocast on CUDA); Causal Cache chunked == direct on the device; encode and
decode throughput and peak device memory, ours beside the official code (``--official PATH``); the
effect of channels-last and of ``torch.compile``. ``--dry-run``: every step on the CPU at tiny size
(wfvae-tiny), so the script is proven before a GPU is at hand. Not included yet: ``wfvae encode
--device cuda`` on the sample clips.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from speed_vs_official import cpu_row, official_model

from wfvae_cli import load_model
from wfvae_cli.bench.machine import machine_info
from wfvae_cli.bench.runtime import inference_context, prepare_input, prepare_model, synchronize
from wfvae_cli.errors import one_line
from wfvae_cli.model.loading import is_weightless_preset  # speed/plumbing: a preset may be random

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "golden"


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float().cpu() - b.float().cpu()).abs().max())


def _peak_reset(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.startswith("cuda") else None


def _timed(fn, device: str, repeat: int) -> dict:
    with torch.inference_mode():
        fn()
        synchronize(device)
        _peak_reset(device)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times.append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(times), 4), "peak_mb": _peak_mb(device)}


def step(results: dict, name: str, fn) -> None:
    t0 = time.perf_counter()
    try:
        results[name] = fn()
    except Exception as exc:  # one failing step must not lose the others
        results[name] = {"error": one_line(exc)}
    results[name]["wall_s"] = round(time.perf_counter() - t0, 2)
    print(f"{name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", metavar="PATH", help="a checkout of PKU-YuanGroup/WF-VAE for the side-by-side")
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: prove the script without a GPU")
    args = ap.parse_args()
    device = "cpu" if args.dry_run else "cuda"
    spec, frames, res, repeat = ("wfvae-tiny", 9, 32, 1) if args.dry_run else ("wfvae-l", 33, 512, 3)
    results: dict = {"dry_run": args.dry_run, "device": device, "model": spec, "size": f"{frames}x{res}",
                     "machine": machine_info(device), **cpu_row()}
    video = load_file(str(GOLDEN / "input.safetensors"))["video"]
    expected = load_file(str(GOLDEN / "expected.safetensors"))

    def parity() -> dict:
        model = prepare_model(load_model(GOLDEN), device, torch.float32)
        with torch.inference_mode():
            mean = model.encode(video.to(device)).mean
            dec = model.decode(expected["posterior_mean"].to(device))
        return {"posterior_mean_max_abs": _maxdiff(mean, expected["posterior_mean"]),
                "decoded_max_abs": _maxdiff(dec, expected["decoded_from_mean"])}

    def precision() -> dict:
        out = {}
        for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            model = prepare_model(load_model(GOLDEN), device, dtype)
            with inference_context(device, dtype):
                mean = model.encode(prepare_input(video, device, dtype, False)).mean
            out[name] = {"posterior_mean_max_abs": _maxdiff(mean, expected["posterior_mean"])}
        return out

    def chunked() -> dict:
        model = prepare_model(load_model(GOLDEN), device, torch.float32)
        z = expected["posterior_mean"].to(device)
        with torch.inference_mode():
            direct, pieces = model.decode(z), model.decode(z, chunk_frames=4)
            enc_d, enc_c = model.encode(video.to(device)).mean, model.encode(video.to(device), chunk_frames=4).mean
        return {"decode_max_abs": _maxdiff(pieces, direct), "encode_max_abs": _maxdiff(enc_c, enc_d)}

    model = prepare_model(load_model(spec, random_weights=is_weightless_preset(spec)), device, torch.float32)
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(1, 3, frames, res, res, generator=gen) * 2 - 1).to(device)
    t = (frames - 1) // model.config.temporal_factor + 1
    z = torch.randn(1, model.config.latent_dim, t, res // 8, res // 8, generator=gen).to(device)

    def throughput() -> dict:
        out = {"ours": {"encode": _timed(lambda: model.encode(x).mean, device, repeat),
                        "decode": _timed(lambda: model.decode(z), device, repeat)}}
        if args.official:
            off = official_model(model.cpu(), args.official).to(device)
            model.to(device)
            out["official"] = {"encode": _timed(lambda: off.encode(x).latent_dist.mean, device, repeat),
                               "decode": _timed(lambda: off.decode(z).sample, device, repeat)}
            for mode in ("encode", "decode"):
                out[f"{mode}_speedup"] = round(out["official"][mode]["median_s"] / out["ours"][mode]["median_s"], 3)
        return out

    def channels_last() -> dict:
        cl = prepare_model(
            load_model(spec, random_weights=is_weightless_preset(spec)), device, torch.float32, channels_last=True
        )
        xc = prepare_input(x, device, torch.float32, True)
        return {"encode": _timed(lambda: cl.encode(xc).mean, device, repeat)}

    def compiled() -> dict:
        m = prepare_model(load_model(spec, random_weights=is_weightless_preset(spec)), device, torch.float32)
        enc = torch.compile(m.encoder)
        with torch.inference_mode():
            ref = m.encoder(x)[0]
            got = enc(x)[0]
        return {"encode": _timed(lambda: enc(x)[0], device, repeat), "max_abs_vs_eager": _maxdiff(got, ref)}

    for name, fn in (("parity_vs_cpu_golden", parity), ("precision", precision), ("chunked_vs_direct", chunked),
                     ("throughput", throughput), ("channels_last", channels_last), ("torch_compile", compiled)):
        step(results, name, fn)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(args.out)


if __name__ == "__main__":
    main()
