"""Bookkeeping at scale: what planning, a no-op resume, ``info``, ``verify`` and the reader cost per sample.

    python benchmarks/scale.py                       # 10^4 and 10^5 samples, extrapolated to 10^6 (~4 min)
    python benchmarks/scale.py --sizes 1000 10000 --json rows.jsonl

Inputs: a CSV manifest of ``N`` rows pointing at a few tiny generated videos (``--files``, 16x16, 24 frames),
each row a distinct ``start`` (seconds) and ``key``, so every row is one sample and discovery, planning, store
creation and the index are exercised at full size while probing costs ``--files`` probes (the probe cache
and the parallel probe are measured separately: ``probe`` rows). The model is the repository's small
official-format fixture (tests/fixtures/golden), 1 frame at 8x8: latents of 4x1x1x1.

Steps, each timed in its own subprocess (so its peak RSS is its own, ``ru_maxrss``):

* ``plan``: ``encode_dataset(..., dry_run=True)``, the library call behind ``wfvae encode --dry-run`` (discover,
  probe, cut clips, bucket);
* ``create``: the real encode's store creation from that plan (the store every other step reads), then every
  sample written through the shard writers (synthetic latents) and the store finalised: setup, also timed;
* ``resume``: ``encode_dataset`` on the finished store (a no-op rerun: discover, compare, nothing to do);
* ``info``: ``summary()`` + ``run_stats()`` (what ``wfvae info`` prints);
* ``verify``: ``verify()`` (every done sample read and checked);
* ``reader``: ``LatentDataset(store)`` opened + 1000 random ``dataset[i]`` reads.

For each step: seconds and peak RSS at each size, the growth exponent ``log(t2/t1)/log(N2/N1)`` between the two
largest sizes, and the time at 10^6 extrapolated by ``max(linear fit a + b*N, power law t2*(1e6/N2)^k)`` (the
pessimistic of the two). Rows go to ``--json`` (one JSON object per line) with the machine (CPU model).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODEL = str(REPO / "tests" / "fixtures" / "golden")
STEPS = ("plan", "create", "resume", "info", "verify", "reader")
FPS = 8.0
FILE_FRAMES = 24


def _options(manifest: Path, out: Path, workers: int = 2) -> Any:
    from wfvae_cli.pipeline import EncodeOptions

    return EncodeOptions(inputs=(str(manifest),), out=out, model=MODEL, frames=1, size=(8, 8), workers=workers,
                         decode_timeout=60.0, store_dtype="fp16")


def make_inputs(root: Path, n: int, files: int) -> Path:
    """``files`` tiny videos and a manifest of ``n`` rows over them (distinct start times and keys)."""
    from wfvae_cli.io import make_sample_clips

    videos = root / "videos"
    if not videos.exists():
        make_sample_clips(videos, n=files, frames=FILE_FRAMES, size=(16, 16), fps=FPS)
    paths = sorted(str(p) for p in videos.iterdir())
    manifest = root / f"manifest-{n}.csv"
    per_file = math.ceil(n / len(paths))
    with open(manifest, "w") as f:
        f.write("path,start,key\n")
        for i in range(n):
            # starts are distinct per file (not duplicates) and all fall on frame 0..FILE_FRAMES-2
            start = (i // len(paths)) / per_file * (FILE_FRAMES - 2) / FPS
            f.write(f"{paths[i % len(paths)]},{start:.9f},k{i:08d}\n")
    return manifest


def run_step(step: str, manifest: Path, out: Path) -> dict[str, Any]:
    """One step in this process; returns its seconds (and what it saw, to check it did the work)."""
    import numpy as np

    from wfvae_cli.pipeline import encode_dataset

    opts = _options(manifest, out)
    model = None
    if step in ("plan", "resume"):  # loaded before the clock starts: a constant (~5 s here), not bookkeeping
        from wfvae_cli.model import load_model

        model = load_model(opts.model)
    t0 = time.perf_counter()
    info: dict[str, Any] = {}
    if step == "plan":
        summary = encode_dataset(opts, dry_run=True, model=model)
        info["clips"] = summary.clips
    elif step == "create":
        info.update(_create(opts))
    elif step == "resume":
        summary = encode_dataset(opts, model=model)
        assert summary.resumed and summary.done == 0, summary
        info["already_done"] = summary.already_done
    elif step == "info":
        from wfvae_cli.store import open_store, summary

        s = summary(out)
        open_store(out).run_stats()
        info["done"] = s.totals.done
    elif step == "verify":
        from wfvae_cli.store import verify

        report = verify(out)
        assert report.ok, report.problems[:3]
        info["checked"] = report.checked
    elif step == "reader":
        from wfvae_cli.store import LatentDataset

        ds = LatentDataset(out)
        rng = np.random.default_rng(0)
        for i in rng.integers(0, len(ds), 1000):
            item = ds[int(i)]
        info["len"] = len(ds)
        info["item_keys"] = sorted(item)[:3]
    else:
        raise ValueError(step)
    info["seconds"] = time.perf_counter() - t0
    return info


def _create(opts: Any) -> dict[str, Any]:
    """The store a real encode of these options creates, filled with synthetic latents, finalised."""
    import numpy as np

    from wfvae_cli.model import load_model
    from wfvae_cli.pipeline.encode import store_meta
    from wfvae_cli.pipeline.planning import plan_dataset
    from wfvae_cli.store import create_store, utc_now

    model = load_model(opts.model)
    t0 = time.perf_counter()
    plan = plan_dataset(opts, model.config)
    store = create_store(opts.out, store_meta(opts, model), plan.buckets, overwrite=True, rejected=plan.rejected,
                         probes=plan.probes)
    t_create = time.perf_counter() - t0
    del plan
    names = store.meta.latent_names
    import zarr

    zarr.config.set({"codec_pipeline.batch_size": 256})  # setup only: zarr encodes a shard's chunks in batches
    for bucket, info in store.buckets.items():
        for shard, rows in enumerate(store.shard_ranges(bucket)):
            block = np.full((len(rows), *info.latent_shape), 0.5, dtype=np.float32)
            with store.shard_writer(bucket, shard, durable=False) as writer:
                writer.write_block(rows.start, **dict.fromkeys(names, block))
    store.finalize(utc_now())
    return {"create_seconds": t_create, "fill_seconds": time.perf_counter() - t0 - t_create,
            "samples": sum(i.num_samples for i in store.buckets.values())}


def _child(step: str, manifest: str, out: str) -> None:
    info = run_step(step, Path(manifest), Path(out))
    info["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("RESULT " + json.dumps(info))


def measure(step: str, manifest: Path, out: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.run([sys.executable, __file__, "--child", step, str(manifest), str(out)], env=env,
                          capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"step {step} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def probe_rate(root: Path, files: int, workers: int) -> dict[str, Any]:
    """Distinct inputs probed per second (parallel, ``workers`` threads driving decode subprocesses), and the
    same plan again from the store's probe cache."""
    from wfvae_cli.io import make_sample_clips
    from wfvae_cli.io._worker import shutdown
    from wfvae_cli.model import load_model
    from wfvae_cli.pipeline.planning import plan_dataset

    folder = root / f"probe-{files}"
    if not folder.exists():
        make_sample_clips(folder, n=files, frames=9, size=(16, 16), fps=FPS)
    model = load_model(MODEL)
    opts = _options(folder, root / "probe.zarr", workers=workers)
    plan_dataset(opts, model.config, sources=[])  # nothing: start-up only
    t0 = time.perf_counter()
    plan = plan_dataset(opts, model.config)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = plan_dataset(opts, model.config, cache=plan.probes)
    warm = time.perf_counter() - t0
    assert plan.probed == files and again.probed == 0, (plan.probed, again.probed)
    shutdown()
    return {"files": files, "workers": workers, "probe_s": cold, "probes_per_s": files / cold,
            "cached_plan_s": warm}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--files", type=int, default=8, help="distinct tiny videos behind the manifest rows")
    ap.add_argument("--probe-files", type=int, default=64, help="distinct videos for the probe-rate rows (0: skip)")
    ap.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS)
    ap.add_argument("--json", type=Path, help="append one JSON row per measurement")
    ap.add_argument("--workdir", type=Path, help="keep the inputs and stores here (default: a temporary folder)")
    ap.add_argument("--reuse", action="store_true", help="keep a finished store of --workdir (skip 'create')")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return

    from wfvae_cli.bench.machine import machine_info

    machine = machine_info("cpu")
    print(f"CPU: {machine['cpu_model']} ({machine['cpu_count']} logical)", flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="wfvae-scale-") as tmp:
        root = args.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        results: dict[str, dict[int, dict[str, Any]]] = {s: {} for s in args.steps}
        for n in args.sizes:
            manifest = make_inputs(root, n, args.files)
            out = root / f"scale-{n}.zarr"
            for step in ("create", *[s for s in args.steps if s != "create"]):  # the store first
                if step == "create" and args.reuse and (out / "zarr.json").exists():
                    continue
                r = measure(step, manifest, out)
                results.setdefault(step, {})[n] = r
                print(f"  N={n:>8} {step:<7} {r['seconds']:8.2f} s  peak RSS {r['max_rss_bytes'] / 2**20:7.0f} MiB",
                      flush=True)
        probe_rows = []
        if args.probe_files:
            for workers in (1, 2, 4):
                p = probe_rate(root, args.probe_files, workers)
                probe_rows.append(p)
                print(f"  probe {p['files']} files, {workers} worker(s): {p['probes_per_s']:.1f} inputs/s; "
                      f"the same plan from the cache {p['cached_plan_s']:.2f} s", flush=True)

    import numpy as np

    sizes = sorted(args.sizes)
    print(f"\n{'step':<8} " + " ".join(f"{'N=' + str(n):>12}" for n in sizes)
          + f" {'exponent':>9} {'@1e6 (s)':>9} {'RSS/sample':>11}")
    for step, by_n in results.items():
        if not by_n:
            continue
        have = [n for n in sizes if n in by_n]
        if not have:
            continue
        ts = [by_n[n]["seconds"] for n in have]
        rss = [by_n[n]["max_rss_bytes"] for n in have]
        if len(have) > 1:  # least squares over every size: t = a + b*N, and log t = c + k*log N
            b, a = (float(v) for v in np.polyfit(have, ts, 1))
            k = float(np.polyfit(np.log(have), np.log(ts), 1)[0])
            per_sample = float(np.polyfit(have, rss, 1)[0])
        else:
            a, b, k, per_sample = 0.0, ts[-1] / have[-1], float("nan"), float("nan")
        linear = a + max(b, 0.0) * 1e6
        power = ts[-1] * (1e6 / have[-1]) ** max(k, 0.0) if len(have) > 1 else linear
        at_1e6 = max(linear, power)
        print(f"{step:<8} " + " ".join(f"{t:11.2f}s" for t in ts) + f" {k:9.2f} {at_1e6:9.1f} {per_sample:9.0f} B")
        for n in have:
            rows.append({"bench": "scale", "step": step, "samples": n, **by_n[n], "growth_exponent": k,
                         "extrapolated_1e6_s": at_1e6, "rss_bytes_per_sample": per_sample,
                         "cpu_model": machine["cpu_model"], "machine": machine})
    for p in probe_rows:
        rows.append({"bench": "scale", "step": "probe", **p, "cpu_model": machine["cpu_model"], "machine": machine})
    if args.json:
        with open(args.json, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        print(f"wrote {len(rows)} rows to {args.json}")


if __name__ == "__main__":
    main()
