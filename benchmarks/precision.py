"""Numerical error of the reduced-precision and alternative-algorithm paths, against float32 direct.

On the golden fixture (the official small model and input, tests/fixtures/golden) by default, or any
model spec with a random input. Reports max and mean |delta| of the posterior mean and of the decoded
video (decoded from the fp32 posterior mean), for:

* ``winograd`` - float32, every eligible conv through Winograd (F(4x4,3x3) from 4x4 frames up, else
  F(2x2,3x3): what "auto" uses)
* ``bf16`` / ``fp16`` - CPU: model and input cast; CUDA: float32 model under autocast

    python benchmarks/precision.py                      # golden fixture, CPU
    python benchmarks/precision.py --model wfvae-s --res 64 --frames 9 --device cuda:0
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from wfvae_cli import load_model
from wfvae_cli.bench.runtime import inference_context, prepare_input, prepare_model
from wfvae_cli.dtypes import torch_dtype
from wfvae_cli.errors import one_line
from wfvae_cli.model.loading import is_weightless_preset  # speed/precision only: random init is fine

sys.path.insert(0, str(Path(__file__).parent))
from speed_vs_official import cpu_row

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "golden"
DTYPES = {name: torch_dtype(name) for name in ("bf16", "fp16")}


def _stats(a: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    d = (a.float().cpu() - ref).abs()
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean()), "ref_max_abs": float(ref.abs().max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(GOLDEN))
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    if Path(args.model) == GOLDEN:
        video = load_file(str(GOLDEN / "input.safetensors"))["video"]
    else:
        video = torch.rand(1, 3, args.frames, args.res, args.res) * 2 - 1

    ref_model = (
        load_model(args.model, random_weights=is_weightless_preset(args.model)).set_conv_algorithm("direct").eval()
    )
    with torch.inference_mode():
        ref_mean = ref_model.encode(video).mean
        ref_video = ref_model.decode(ref_mean)
    rows = []
    variants = [("winograd", torch.float32, "winograd"), *((n, d, "auto") for n, d in DTYPES.items())]
    for name, dtype, algorithm in variants:
        row: dict = {"variant": name, "device": args.device, "model": args.model, **cpu_row()}
        try:
            model = prepare_model(
                load_model(args.model, random_weights=is_weightless_preset(args.model)).set_conv_algorithm(algorithm),
                args.device,
                dtype,
            )
            with inference_context(args.device, dtype):
                mean = model.encode(prepare_input(video, args.device, dtype, False)).mean
                decoded = model.decode(prepare_input(ref_mean, args.device, dtype, False))
            row["posterior_mean"] = _stats(mean, ref_mean)
            row["decoded"] = _stats(decoded, ref_video)
        except Exception as exc:  # an unsupported dtype on this device is a result, not a crash
            row["error"] = one_line(exc)
        rows.append(row)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
