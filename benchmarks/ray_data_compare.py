"""Our Ray executor vs Ray Data's streaming executor on the same encode job, side by side in one Ray session.

    python benchmarks/ray_data_compare.py /tmp/hdec/web/web_720p_20s_g250.mp4 --model-time 0.05 \\
        --clips-per-video 12 --res 512 --decode-cpus 0.5

Both run the same clips (planned as ``wfvae encode`` plans them), the same decode stage
(:func:`wfvae_cli.pipeline.stages.load_clip`: PyAV, uint8 resize, damage checks) and the same model stage
(:class:`~wfvae_cli.pipeline.stages.LatentEncoder` around the ``bench pipeline`` stand-in model of
``--model-time`` s/clip), with one model worker (1 CPU) and decode tasks of ``--decode-cpus`` CPUs:

* **ours**: ``wfvae bench pipeline --ray`` (:func:`wfvae_cli.bench.pipeline.run_pipeline_bench`): shards
  handed to model workers, decode tasks in flight bounded in clips and bytes, latents written to the store
  (write-then-mark) — the whole job;
* **Ray Data**: ``from_items(tasks) → map(load_clip, num_cpus=decode_cpus) → map_batches(encoder actor,
  ActorPoolStrategy(size=1), num_cpus=1)``, consumed with ``iter_batches``; latents are *not* written
  anywhere (that only favours Ray Data).

Reported: clips/s of each (Ray start-up excluded: both run in one session started first; each includes
its own actor start), the ratio, and the peak object-store use sampled every 0.2 s. Record the CPU and the
load beside the numbers: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def _peak_object_store(stop: threading.Event, out: list[float]) -> None:
    import ray

    peak = 0.0
    while not stop.is_set():
        total, avail = ray.cluster_resources(), ray.available_resources()
        used = total.get("object_store_memory", 0.0) - avail.get("object_store_memory", 0.0)
        peak = max(peak, used)
        time.sleep(0.2)
    out.append(peak)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--model-time", type=float, default=0.05)
    ap.add_argument("--res", type=int, default=512)
    ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--clips-per-video", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--decode-cpus", type=float, default=0.5)
    ap.add_argument("--shard-size", type=int, default=None, help="ours: samples per shard (default: ~4 per worker)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    import ray.data
    from ray.data import ActorPoolStrategy

    from wfvae_cli.bench.machine import machine_info
    from wfvae_cli.bench.pipeline import run_pipeline_bench
    from wfvae_cli.bench.standin import StandInModel
    from wfvae_cli.model.config import preset_config
    from wfvae_cli.pipeline import EncodeOptions
    from wfvae_cli.pipeline.planning import bucket_id, plan_dataset
    from wfvae_cli.pipeline.stages import LatentEncoder, LoadedClip, Task, load_clip

    ray.init(include_dashboard=False, log_to_driver=False, logging_level="warning",
             object_store_memory=1 << 30)
    config = preset_config("wfvae-l")
    results: dict[str, object] = {"machine": machine_info("cpu")["cpu_model"], "loadavg_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="wfvae-raydata-") as tmp:
        opts = EncodeOptions(inputs=tuple(args.inputs), out=Path(tmp) / "s.zarr", model="wfvae-l",
                             frames=args.frames, size=(args.res, args.res), clip_mode="uniform",
                             clips_per_video=args.clips_per_video, batch_size=args.batch_size, device="cpu",
                             ray="auto", workers=1, decode_cpus=args.decode_cpus, shard_size=args.shard_size)
        plan = plan_dataset(opts, config)
        tasks = [Task(b.bucket_id, i, rec, (args.res, args.res))
                 for b in plan.buckets for i, rec in enumerate(b.samples)]
        assert all(t.bucket == bucket_id(args.frames, args.res, args.res) for t in tasks)

        # ---- ours (the whole job: plan, decode, encode, write) -------------------------------------
        stop, peak = threading.Event(), []
        sampler = threading.Thread(target=_peak_object_store, args=(stop, peak), daemon=True)
        sampler.start()
        ours = run_pipeline_bench(opts, args.model_time, raw=False)
        stop.set()
        sampler.join()
        results["ours"] = {"clips": ours.clips, "clips_per_s": round(ours.clips_per_s, 3),
                           "steady_clips_per_s": round(ours.steady_clips_per_s, 3),
                           "startup_s": round(ours.startup_s, 2),
                           "model_busy_fraction": round(ours.model_busy_fraction, 3),
                           "peak_object_store_mb": round(peak[0] / 2**20, 1)}

        # ---- Ray Data streaming executor (decode + encode only, no writes) -------------------------
        class Encode:
            def __init__(self) -> None:
                self.encoder = LatentEncoder(StandInModel(config, args.model_time), opts)

            def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
                import torch

                clips = [LoadedClip(tasks[int(i)], torch.from_numpy(f))
                         for i, f in zip(batch["i"], batch["frames"], strict=True)]
                rows = self.encoder.encode_batch(clips)
                return {"i": batch["i"], "mean": np.stack([r["mean"] for r in rows])}

        def decode(row: dict) -> dict:
            clip = load_clip(tasks[int(row["i"])], opts)
            if clip.frames is None:
                raise RuntimeError(clip.error)
            return {"i": row["i"], "frames": clip.frames.numpy()}

        stop, peak = threading.Event(), []
        sampler = threading.Thread(target=_peak_object_store, args=(stop, peak), daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        ds = (ray.data.from_items([{"i": k} for k in range(len(tasks))])
              .map(decode, num_cpus=args.decode_cpus)
              .map_batches(Encode, batch_size=args.batch_size, compute=ActorPoolStrategy(size=1), num_cpus=1))
        done = sum(len(b["i"]) for b in ds.iter_batches(batch_size=None))
        wall = time.perf_counter() - t0
        stop.set()
        sampler.join()
        results["ray_data"] = {"clips": done, "clips_per_s": round(done / wall, 3),
                               "peak_object_store_mb": round(peak[0] / 2**20, 1)}
    results["ratio_ours_over_ray_data"] = round(
        results["ours"]["clips_per_s"] / results["ray_data"]["clips_per_s"], 3)  # type: ignore[index]
    results["loadavg_end"] = os.getloadavg()
    ray.shutdown()
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
