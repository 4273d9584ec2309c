"""Decoder levers side by side: one 33-frame clip resized to 512², early and late in long-GOP web video.

    python benchmarks/make_web_video.py /tmp/hdec/web                      # 1080p + 720p, 20 s, GOP 250
    python benchmarks/make_web_video.py /tmp/hdec/web --sizes 2160x3840 --seconds 3
    python benchmarks/decode_bench.py /tmp/hdec/web/web_1080p_20s_g250.mp4 /tmp/hdec/web/web_720p_20s_g250.mp4 \
        --rss /tmp/hdec/web/web_2160p_3s_g250.mp4

Every row decodes the same frames in the same process, one FFmpeg thread and one torch thread, best of
``--repeat`` runs (noise from other jobs only slows a run down; read ratios, not absolute numbers):

* ``v1 path``        what ``read_frames`` + ``to_model_input`` did before: PyAV from frame 0, full-size RGB,
                     float32 resize of the whole clip;
* ``tool path``      ``read_frames(size=…, timeout=…)`` + ``to_model_input``: the pipeline's ``load_clip``
                     (decode worker subprocess, frames over a socket);
* ``pyav``           this package now, bare: keyframe seek by pts, rotation, per-frame uint8 resize, damage checks;
* ``decord`` / ``torchcodec``        bare library decode + the same uint8 resize (no damage check);
* ``… +verify``      the same plus PyAV's damage verification, as ``read_frames(backend=…)`` does it.

``--rss`` runs each path once in a fresh subprocess on the given (4K) file and reports its peak RSS (VmHWM,
and how much of it is above the ~0.5 GiB that importing torch and the package costs).
The CPU model is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from wfvae_cli.bench.machine import machine_info
from wfvae_cli.io import _pyav, bench, read_frames, to_model_input
from wfvae_cli.io.transform import ResizeSpec, resized_size

SIZE = (512, 512)


def v1_path(path: str, idx: np.ndarray) -> None:
    """The pre-change read path, reproduced: sequential PyAV, full-size RGB, one float32 resize."""
    frames = np.concatenate(list(_pyav.iter_batches(path, idx, len(idx), 1, None, seek=False)))
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2).to(torch.float32)
    nh, nw = resized_size(clip.shape[2], clip.shape[3], SIZE)
    clip = F.interpolate(clip, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - SIZE[0]) // 2, (nw - SIZE[1]) // 2
    (clip[:, :, top : top + SIZE[0], left : left + SIZE[1]] / 127.5 - 1).permute(1, 0, 2, 3).contiguous()


def run(kind: str, path: str, idx: np.ndarray) -> None:
    fit = ResizeSpec(*SIZE)
    job = bench.ClipJob(path, tuple(int(i) for i in idx))
    if kind == "v1 path":
        v1_path(path, idx)
    elif kind == "tool path":  # what the encode pipeline's load_clip does (decode worker process, timeout)
        to_model_input(read_frames(path, idx, timeout=120, threads=1, size=SIZE), SIZE)
    elif kind.endswith("+verify"):
        bench.decode_clip(job, kind.split("+")[0], fit, verified=True)
    else:
        bench.decode_clip(job, kind, fit)


def kinds() -> list[str]:
    out = ["v1 path", "tool path", "pyav"]
    for b in bench.available_backends()[1:]:
        out += [b, f"{b}+verify"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="*")
    ap.add_argument("--late", type=float, default=18.0, help="start of the late clip, seconds")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--rss", help="a 4K file: peak RSS of each path, one fresh process each")
    ap.add_argument("--one", nargs=3, metavar=("KIND", "PATH", "START"), help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.one:  # child of --rss
        kind, path, start = args.one
        with open("/proc/self/status") as f:  # VmHWM starts afresh at exec; ru_maxrss keeps the parent's
            base = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
        run(kind, path, np.arange(int(start), int(start) + 33))
        with open("/proc/self/status") as f:
            peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
        print(peak / 1024, (peak - base) / 1024)
        return
    rows = []
    for path in args.videos:
        head = _pyav.probe(path)
        late = min(int(args.late * head.fps), head.num_frames - 33)
        for label, start in (("early", 0), ("late", late)):
            idx = np.arange(start, start + 33)
            for kind in kinds():
                best = float("inf")
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    run(kind, path, idx)
                    best = min(best, time.perf_counter() - t0)
                rows.append({"file": path.rsplit("/", 1)[-1], "clip": f"{label} (frame {start})", "path": kind,
                             "seconds": round(best, 3)})
                print(f"{rows[-1]['file']:28s} {rows[-1]['clip']:18s} {kind:18s} {best:7.3f} s", flush=True)
    if args.rss:
        for kind in kinds():
            out = subprocess.run([sys.executable, __file__, "--one", kind, args.rss, "0"], capture_output=True,
                                 text=True, check=True)
            mib, extra = (float(v) for v in out.stdout.strip().splitlines()[-1].split())
            rows.append({"file": args.rss.rsplit("/", 1)[-1], "clip": "early", "path": kind,
                         "peak_rss_mib": round(mib), "above_imports_mib": round(extra)})
            print(f"peak RSS {kind:18s} {mib:8.0f} MiB ({extra:.0f} MiB above the imports)", flush=True)
    print(f"CPU: {machine_info('cpu')['cpu_model']} ({len(__import__('os').sched_getaffinity(0))} cores available)")
    if args.json:
        print(json.dumps({"cpu": machine_info("cpu")["cpu_model"], "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
