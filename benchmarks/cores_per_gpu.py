"""How many CPU cores keep one GPU busy: ``wfvae bench pipeline`` per source resolution and codec.

    python benchmarks/cores_per_gpu.py /tmp/cpg --sizes 720x1280 1080x1920 --codecs h264 hevc vp9 av1 \\
        --seconds 8 --copies 4 --model-time 0.05 --out benchmarks/results/cores-per-gpu-amd.jsonl

For every (size, codec) it writes ``copies`` web-like long-GOP files (benchmarks/make_web_video.py; kept in
the work folder and reused by later runs), runs the real encode pipeline on them with a stand-in model of
``--model-time`` s/clip (WF-VAE-L 33×512² on an H100 is ~0.05 s), and reads off the CPU seconds per clip the
decoders and everything else spent. Cores per GPU = CPU s per clip / model-time: CPU time, unlike wall
time, barely moves when other jobs share the machine, so the table holds on a busy box; the wall-clock
rate and the bare-decoder limit are recorded too, with the load average, for reading them in context.
Each row records the CPU (bench.machine) — run it on each machine kind you deploy to.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from make_web_video import CODECS, make_web_video

from wfvae_cli.bench.pipeline import run_pipeline_bench
from wfvae_cli.pipeline import EncodeOptions


def sources(work: Path, height: int, width: int, codec: str, seconds: float, copies: int) -> Path:
    """A folder of ``copies`` identical files (distinct paths): one encode, enough clips for a steady rate."""
    folder = work / f"{height}p_{codec}_{seconds:g}s"
    ext = CODECS[codec][1]
    first = folder / f"v0.{ext}"
    if not first.exists():
        folder.mkdir(parents=True, exist_ok=True)
        make_web_video(folder / f"tmp.{ext}", height, width, seconds, codec=codec).rename(first)
    for i in range(1, copies):
        if not (folder / f"v{i}.{ext}").exists():
            shutil.copyfile(first, folder / f"v{i}.{ext}")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path, help="folder for the generated sources (reused) and throwaway stores")
    ap.add_argument("--sizes", nargs="+", default=["720x1280", "1080x1920"], help="source HxW each")
    ap.add_argument("--codecs", nargs="+", default=["h264"], choices=sorted(CODECS))
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--model-time", type=float, default=0.05)
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--clips-per-video", type=int, default=8, help="uniform clips per file (bench pipeline's default)")
    ap.add_argument("--model", default="wfvae-l", help="only its latent shape is used")
    ap.add_argument("--out", type=Path, help="append one JSON row per case")
    args = ap.parse_args()

    rows = []
    for size in args.sizes:
        h, w = (int(v) for v in size.lower().split("x"))
        for codec in args.codecs:
            folder = sources(args.work, h, w, codec, args.seconds, args.copies)
            store = args.work / "bench.zarr"
            shutil.rmtree(store, ignore_errors=True)
            opts = EncodeOptions(inputs=(str(folder),), out=store, model=args.model, frames=args.frames,
                                 size=(args.resolution, args.resolution), clip_mode="uniform",
                                 clips_per_video=args.clips_per_video, device="cpu")
            report = run_pipeline_bench(opts, args.model_time).to_dict()
            row = {"case": f"{h}p {codec}", "source": f"{w}x{h}", "codec": codec, **report}
            rows.append(row)
            if args.out:
                with args.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
            c = row["cpu_s_per_clip"] or {}
            print(f"{row['case']}: {row['clips']} clips · decode {1000 * c.get('decode', 0):.0f} ms CPU/clip · "
                  f"other {1000 * c.get('other', 0):.0f} ms · cores/GPU {row['cores_per_accelerator']} "
                  f"(bare {row['raw_cores_per_accelerator']}) · {row['clips_per_s']} clips/s vs bare "
                  f"{row['raw_decode_clips_per_s']} · load {row['load']['loadavg_before'][0]}", flush=True)

    print(f"\n| source | codec | decode CPU ms/clip | other CPU ms/clip | cores per GPU at {args.model_time} s/clip "
          "| bare decoder: ms/clip, cores |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        c = row["cpu_s_per_clip"] or {}
        print(f"| {row['source']} | {row['codec']} | {1000 * c.get('decode', 0):.0f} | {1000 * c.get('other', 0):.0f} "
              f"| {row['cores_per_accelerator']} | {1000 * (row['raw_decode_cpu_s_per_clip'] or 0):.0f}, "
              f"{row['raw_cores_per_accelerator']} |")
    print(f"\nmachine: {rows[0]['machine'].get('cpu_model')} · model-time {args.model_time} s · "
          f"{args.frames}×{args.resolution}² clips")


if __name__ == "__main__":
    main()
