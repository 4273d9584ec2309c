"""`wfvae encode --ray` scaling on this machine: throughput with 1 and 2 model workers, and Ray's overhead.

    python benchmarks/ray_scaling.py                      # wfvae-s, 17 frames at 128², 8 clips
    python benchmarks/ray_scaling.py --clips 4 --res 64   # quicker

Each model worker reserves one CPU and runs one torch thread, so on a CPU-only machine workers scale by
count; decode tasks reserve no CPU (``--decode-cpus 0``: they share the cores, as local decode threads
do). Measured in one Ray session, in order:

1. start-up: ``ray.init`` (a fresh local cluster), then per job the time until the first model worker is
   ready (actor start + broadcast model fetched);
2. a warm-up job (2 clips) so that decode worker processes exist for both measured jobs alike;
3. the same clips with 1 and with 2 workers, shard size 1 (the unit of parallel work), batch 1.

Throughput (steady) = the sum over workers of clips / seconds since that worker was ready: the encode
rate once the workers run, start-up excluded (reported apart). Scaling efficiency = throughput(2) /
(2 x throughput(1)). Also reported: clips / whole Ray run (start-up included). A local single-process run
(one torch thread) is the reference for what Ray costs per clip. Results go to stdout and ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="wfvae-s")
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    import torch

    torch.set_num_threads(1)  # the local reference runs as one model worker does
    import ray

    from wfvae_cli.io import make_sample_clips
    from wfvae_cli.pipeline import EncodeOptions, encode_dataset

    with tempfile.TemporaryDirectory(prefix="wfvae-ray-bench-") as tmp:
        root = Path(tmp)
        make_sample_clips(root / "videos", n=args.clips, frames=args.frames, size=(args.res, args.res))
        make_sample_clips(root / "warm", n=2, frames=args.frames, size=(args.res, args.res), seed=1)

        def options(src: str, out: str, **kw: Any) -> EncodeOptions:
            return EncodeOptions(inputs=(str(root / src),), out=root / out, model=args.model, frames=args.frames,
                                 size=(args.res, args.res), shard_size=1, batch_size=1, **kw)

        t0 = time.perf_counter()
        local = encode_dataset(options("videos", "local.zarr", workers=2))
        local_wall = time.perf_counter() - t0
        local_rate = local.done / local.times["wall_s"]

        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="warning")
        init_s = time.perf_counter() - t0

        def ray_job(src: str, out: str, workers: int) -> dict[str, Any]:
            reports: list[Any] = []
            t0 = time.perf_counter()
            summary = encode_dataset(options(src, out, ray="auto", workers=workers, decode_cpus=0.0),
                                     progress=reports.append)
            job_s = time.perf_counter() - t0
            final = reports[-1]
            steady = sum(w.clips_per_s for w in final.workers)
            assert summary.ok and summary.done == (args.clips if src == "videos" else 2), summary.to_dict()
            return {
                "workers": workers,
                "clips": summary.done,
                "job_s": round(job_s, 2),  # encode_dataset call: model load, plan, store, run, finalize
                "run_wall_s": round(final.times.wall, 2),  # the Ray run: actors start ... last shard written
                "first_worker_ready_s": round(final.startup_s, 2),
                "last_worker_ready_s": round(max(w.ready_s or 0.0 for w in final.workers), 2),
                "clips_per_s": round(steady, 4),
                "clips_per_s_whole_run": round(summary.done / final.times.wall, 4),
                "per_worker_clips_per_s": [round(w.clips_per_s, 4) for w in final.workers],
                "model_busy_fraction": summary.times["model_busy_fraction"],
            }

        warm = ray_job("warm", "warm.zarr", 2)
        one = ray_job("videos", "ray1.zarr", 1)
        two = ray_job("videos", "ray2.zarr", 2)
        ray.shutdown()

    speedup = two["clips_per_s"] / one["clips_per_s"]
    report = {
        "machine": {"cpus": os.cpu_count()},
        "config": {"model": args.model, "frames": args.frames, "res": args.res, "clips": args.clips,
                   "torch_threads_per_worker": 1, "shard_size": 1, "batch_size": 1, "decode_cpus": 0},
        "local_1_thread": {"clips_per_s": round(local_rate, 4), "wall_s": round(local.times["wall_s"], 2),
                           "call_s": round(local_wall, 2)},
        "startup": {"ray_init_s": round(init_s, 2), "first_worker_ready_s_per_job": one["first_worker_ready_s"],
                    "warmup_job_s": warm["job_s"]},
        "ray_1_worker": one,
        "ray_2_workers": two,
        "speedup_2_vs_1": round(speedup, 3),
        "scaling_efficiency": round(speedup / 2, 3),
        "ray_1_worker_vs_local": round(one["clips_per_s"] / local_rate, 3),
    }
    print(f"{args.model} {args.frames}x{args.res}², {args.clips} clips, 1 torch thread per worker, "
          f"{os.cpu_count()} CPUs")
    print(f"  local (1 process, 1 thread) : {local_rate:.3f} clips/s")
    for r in (one, two):
        print(f"  ray {r['workers']} worker(s)          : {r['clips_per_s']:.3f} clips/s steady "
              f"(per worker {r['per_worker_clips_per_s']}), {r['clips_per_s_whole_run']:.3f} clips/s over the whole "
              f"run; workers ready after {r['first_worker_ready_s']:.1f}-{r['last_worker_ready_s']:.1f} s")
    print(f"  speed-up 2 vs 1 workers: {speedup:.2f}x (scaling efficiency {speedup / 2:.0%})")
    print(f"  start-up: ray.init {init_s:.1f} s; per job until a worker is ready {one['first_worker_ready_s']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
