"""One GPU readiness check, one JSON (driven by benchmarks/gpu_check.sh; see docs/performance.md).

Steps (each recorded, an exception is a result: ``{"error": ...}``): CUDA fp32 vs CPU parity on the golden
fixture; bf16/fp16 error (autocast on CUDA); Causal Cache chunked == direct on the device; encode and
decode throughput and peak device memory, ours beside the official code (``--official PATH``); the
effect of channels-last and of ``torch.compile``; the encode pipeline itself on generated sample clips
(``encode_pipeline``: what ``wfvae encode --device cuda`` runs, through the library): clips/s, the model's
busy fraction and the stage times, whether the host staging buffer is pinned and the batch landed on the
device, and the store's latents against the same run on the CPU. ``--dry-run``: every step on the CPU at
tiny size (wfvae-tiny), so the script is proven before a GPU is at hand.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
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


def _encode_pipeline(work: Path, spec: str, device: str, clips: int, big: tuple[int, int]) -> dict:
    """The real encode pipeline (decode workers, batching, staging, model, store) on ``device``."""
    import numpy as np

    from wfvae_cli.io import make_sample_clips
    from wfvae_cli.pipeline import EncodeOptions, encode_dataset
    from wfvae_cli.pipeline.stages import LatentEncoder, LoadedClip
    from wfvae_cli.store import open_store

    random = is_weightless_preset(spec)
    frames, res = big
    make_sample_clips(work / "big", n=clips, frames=frames, size=(res, res))
    opts = EncodeOptions(inputs=(str(work / "big"),), out=work / "big.zarr", model=spec, frames=frames,
                         size=(res, res), device=device, random_weights=random)
    t0 = time.perf_counter()
    summary = encode_dataset(opts)
    wall = time.perf_counter() - t0
    times = dict(summary.times)
    run_s = times.get("wall_s") or wall
    out: dict = {"clips": summary.done, "failed": summary.failed, "wall_s_incl_model_load": round(wall, 2),
                 "clips_per_s": round(summary.done / run_s, 3) if run_s > 0 else None,
                 "model_busy_fraction": times.pop("model_busy_fraction", None), "stage_s": times}

    # the staging path of model_input on this device: a pinned uint8 buffer for CUDA, the batch on the device
    enc = LatentEncoder(load_model(spec, random_weights=random), opts)
    frames_u8 = torch.zeros(frames, res, res, 3, dtype=torch.uint8)
    batch = enc.model_input([LoadedClip(task=None, frames=frames_u8)])  # type: ignore[arg-type]
    out["staging"] = {"host_buffer_pinned": bool(enc._host is not None and enc._host.is_pinned()),
                      "batch_device": str(batch.device), "batch_dtype": str(batch.dtype).replace("torch.", "")}

    # the same small clips encoded on the device and on the CPU: the stores must agree
    make_sample_clips(work / "small", n=2, frames=9, size=(64, 64))
    stores = {}
    for where in dict.fromkeys([device, "cpu"]):
        path = work / f"small-{where.replace(':', '_')}.zarr"
        encode_dataset(EncodeOptions(inputs=(str(work / "small"),), out=path, model=spec, frames=9, size=(64, 64),
                                     device=where, random_weights=random, seed=0))
        stores[where] = open_store(path)
    a, b = stores[device], stores["cpu"]
    out["store_vs_cpu_max_abs"] = max(float(np.abs(np.asarray(a[i]["mean"]) - np.asarray(b[i]["mean"])).max())
                                      for i in range(len(b)))
    return out


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
        # the dry run captures the graph (dynamo + AOT tracing: what our model code decides) without
        # inductor's CPU C++ code generation, which is not the GPU's Triton path anyway and took ~30 s
        backend = "aot_eager" if args.dry_run else "inductor"
        enc = torch.compile(m.encoder, backend=backend)
        with torch.inference_mode():
            ref = m.encoder(x)[0]
            got = enc(x)[0]
        return {"backend": backend, "encode": _timed(lambda: enc(x)[0], device, repeat),
                "max_abs_vs_eager": _maxdiff(got, ref)}

    def encode_pipeline() -> dict:
        # 16 clips of 33x512² keep the GPU run well inside the time budget; the CPU reference runs the
        # same pipeline on 2 small clips only (a CPU would need minutes per 512² clip of wfvae-l).
        clips, big = (3, (9, 32)) if args.dry_run else (16, (33, 512))
        work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
        try:
            return _encode_pipeline(work, spec, device, clips, big)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    for name, fn in (("parity_vs_cpu_golden", parity), ("precision", precision), ("chunked_vs_direct", chunked),
                     ("throughput", throughput), ("channels_last", channels_last), ("torch_compile", compiled),
                     ("encode_pipeline", encode_pipeline)):
        step(results, name, fn)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(args.out)


if __name__ == "__main__":
    main()
