"""The same encode into a local S3-compatible server and onto local disk, side by side in one run.

    python benchmarks/object_store.py                        # 8 clips, 33 frames at 128², wfvae-tiny, 3 rounds
    python benchmarks/object_store.py --clips 16 --size 256 --rounds 5 --json results.json

What it reports (the issue's target: object-store overhead <= 10 % of the local run's wall time):

* wall time of the whole ``encode_dataset`` call (lease, planning, store creation, encoding, finalize, stats)
  per target, rounds alternating local / S3 so that noise from other jobs on the machine hits both alike;
  the median ratio S3 / local and the overhead in per cent of the local run;
* requests per sample, counted by the server (each request line of its log), by method and by kind
  (root/metadata documents, latent shards, index chunks, the lease, listings), for one encode;
* CPU seconds of this process per run (all threads) and of the server process: other jobs on a shared machine
  stretch wall times at random, CPU seconds are what the object store costs the job itself;
* where the extra time goes: the encode's own stage times (``write_s`` holds the latent + status PUTs) and the
  time the client spent inside S3 calls (botocore calls timed in this process).

The server is moto's (``python -m moto.server``) in its own process on 127.0.0.1: a pure-Python server
(werkzeug + XML + an in-memory bucket), far slower per request than S3 or MinIO. Its per-request latency is
measured and printed, so the result can be read against a real endpoint's. The CPU model is printed too.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from wfvae_cli.bench.machine import machine_info


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    """``python -m moto.server`` in a subprocess; its request log is what we count."""

    def __init__(self, log: Path) -> None:
        self.port = _free_port()
        self.log = log
        self._file = open(log, "w")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self._file, stderr=subprocess.STDOUT)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto server did not start")

    def lines(self) -> list[str]:
        self._file.flush()
        return [line for line in self.log.read_text().splitlines() if '"' in line and "HTTP/1.1" in line]

    def cpu_s(self) -> float:
        """CPU seconds the server process has used (user + system)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._file.close()


_REQ = re.compile(r'"(GET|PUT|HEAD|POST|DELETE) (\S+) HTTP')


def _kind(method: str, path: str) -> str:
    if "list-type=2" in path or ("?" in path and method == "GET"):
        return "list"
    if method == "POST":
        return "batch-delete" if "delete" in path else "post"
    if path.endswith(".lease.json"):
        return "lease"
    if path.endswith("zarr.json"):
        return "metadata"
    if re.search(r"/(mean|logvar|sample)/c/", path):
        return "latent shard"
    if re.search(r"/(status|error|encode_seconds)/c/", path):
        return "status/error chunk"
    if "/c/" in path:
        return "index chunk"
    return "other"


def _count(lines: list[str]) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for line in lines:
        m = _REQ.search(line)
        if m:
            counts[f"{m.group(1)} {_kind(m.group(1), m.group(2))}"] += 1
    return counts


def _time_s3_calls() -> dict[str, float]:
    """Time every botocore call made in this process (s3fs goes through aiobotocore)."""
    import aiobotocore.client

    spent = {"s": 0.0, "n": 0}
    original = aiobotocore.client.AioBaseClient._make_api_call

    async def timed(self, operation_name, api_params):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        try:
            return await original(self, operation_name, api_params)
        finally:
            spent["s"] += time.perf_counter() - t0
            spent["n"] += 1

    aiobotocore.client.AioBaseClient._make_api_call = timed
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--model", default="wfvae-tiny")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shard-size", type=int, default=None, help="default: the store's own choice")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="wfvae-objbench-"))
    server = MotoServer(work / "moto.log")
    os.environ.update(AWS_ENDPOINT_URL=server.endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")
    try:
        import boto3

        from wfvae_cli.io import make_sample_clips
        from wfvae_cli.pipeline import EncodeOptions, encode_dataset

        boto3.client("s3").create_bucket(Bucket="bench")
        videos = work / "videos"
        make_sample_clips(videos, n=args.clips, frames=args.frames, size=(args.size, args.size))
        s3_time = _time_s3_calls()

        def run(out: str | Path) -> dict[str, Any]:
            opts = EncodeOptions(inputs=(str(videos),), out=out, model=args.model, frames=args.frames,
                                 size=(args.size, args.size), workers=2, shard_size=args.shard_size)
            before_lines, before_s3 = len(server.lines()), dict(s3_time)
            server_cpu, c0, t0 = server.cpu_s(), time.process_time(), time.perf_counter()
            summary = encode_dataset(opts)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            assert summary.ok and summary.done == args.clips, summary.to_dict()
            return {"wall_s": wall, "cpu_s": cpu, "server_cpu_s": server.cpu_s() - server_cpu,
                    "times": summary.times, "requests": _count(server.lines()[before_lines:]),
                    "s3_call_s": s3_time["s"] - before_s3["s"], "s3_calls": s3_time["n"] - before_s3["n"]}

        run(work / "warmup.zarr")  # imports, model load, decoder start-up paid once, outside the rounds
        results: dict[str, list[dict[str, Any]]] = {"local": [], "s3": []}
        for r in range(args.rounds):
            order = ("local", "s3") if r % 2 == 0 else ("s3", "local")
            for target in order:
                out = work / f"local-{r}.zarr" if target == "local" else f"s3://bench/run-{r}/latents.zarr"
                results[target].append(run(out))
                print(f"round {r} {target:5s}: {results[target][-1]['wall_s']:.2f} s", flush=True)

        # per-request latency of this server, for reading the result against a real endpoint
        s3 = boto3.client("s3")
        s3.put_object(Bucket="bench", Key="probe", Body=b"x" * 4096)
        t0 = time.perf_counter()
        for _ in range(50):
            s3.get_object(Bucket="bench", Key="probe")["Body"].read()
        get_ms = (time.perf_counter() - t0) / 50 * 1e3
    finally:
        server.stop()

    local = statistics.median(r["wall_s"] for r in results["local"])
    remote = statistics.median(r["wall_s"] for r in results["s3"])
    requests = results["s3"][0]["requests"]
    total_requests = sum(requests.values())
    write_local = statistics.median(r["times"]["write_s"] for r in results["local"])
    write_s3 = statistics.median(r["times"]["write_s"] for r in results["s3"])
    enc_local = statistics.median(r["times"]["wall_s"] for r in results["local"])
    enc_s3 = statistics.median(r["times"]["wall_s"] for r in results["s3"])
    s3_call = statistics.median(r["s3_call_s"] for r in results["s3"])
    cpu_local = statistics.median(r["cpu_s"] for r in results["local"])
    cpu_s3 = statistics.median(r["cpu_s"] for r in results["s3"])
    server_cpu = statistics.median(r["server_cpu_s"] for r in results["s3"])
    report = {
        "machine": machine_info("cpu"),
        "setup": {"clips": args.clips, "frames": args.frames, "size": args.size, "model": args.model,
                  "rounds": args.rounds, "server": "moto.server (separate process, 127.0.0.1)"},
        "wall_s": {"local": [round(r["wall_s"], 3) for r in results["local"]],
                   "s3": [round(r["wall_s"], 3) for r in results["s3"]]},
        "median_wall_s": {"local": round(local, 3), "s3": round(remote, 3)},
        "ratio_s3_over_local": round(remote / local, 3),
        "overhead_percent_of_local": round(100 * (remote - local) / local, 1),
        "target_met_10_percent": (remote - local) / local <= 0.10,
        # CPU seconds of this process (all its threads; the decode worker subprocesses are not included, they do
        # the same work for both targets): immune to other jobs slowing a run down, unlike wall time
        "cpu_s": {"local": [round(r["cpu_s"], 3) for r in results["local"]],
                  "s3": [round(r["cpu_s"], 3) for r in results["s3"]]},
        "median_cpu_s": {"local": round(cpu_local, 3), "s3": round(cpu_s3, 3),
                         "server (moto process)": round(server_cpu, 3)},
        "cpu_overhead_percent_of_local": round(100 * (cpu_s3 - cpu_local) / cpu_local, 1),
        "requests_per_encode": dict(sorted(requests.items())),
        "requests_total": total_requests,
        "requests_per_sample": round(total_requests / args.clips, 2),
        "where_the_time_goes_s": {
            "encode_loop_wall": {"local": round(enc_local, 3), "s3": round(enc_s3, 3)},
            "write_stage": {"local": round(write_local, 3), "s3": round(write_s3, 3)},
            **{f"{k.removesuffix('_s')}_stage": {t: round(statistics.median(r["times"][k] for r in results[t]), 3)
                                               for t in ("local", "s3")} for k in ("model_s", "decode_s")},
            "outside_encode_loop (lease, plan, create, finalize, stats)": {
                "local": round(local - enc_local, 3), "s3": round(remote - enc_s3, 3)},
            "inside_s3_calls_client_side": round(s3_call, 3),
        },
        "server_get_latency_ms": round(get_ms, 2),
    }
    cpu = report["machine"].get("cpu_model", "?")
    print(f"\nCPU: {cpu}; {args.clips} clips x {args.frames} frames at {args.size}², model {args.model}")
    print(f"median wall: local {local:.2f} s, S3 (moto) {remote:.2f} s -> ratio {remote / local:.3f}, "
          f"overhead {report['overhead_percent_of_local']:+.1f} % of local (target <= 10 %: "
          f"{'met' if report['target_met_10_percent'] else 'NOT met'})")
    print(f"CPU seconds (median, this process): local {cpu_local:.2f}, S3 {cpu_s3:.2f} "
          f"({report['cpu_overhead_percent_of_local']:+.1f} %); moto server process {server_cpu:.2f}")
    print(f"requests per encode: {total_requests} ({report['requests_per_sample']} per sample): "
          + ", ".join(f"{k} {v}" for k, v in sorted(requests.items())))
    print("where the time goes (medians, s): " + json.dumps(report["where_the_time_goes_s"]))
    print(f"moto GET latency (4 KiB object): {get_ms:.2f} ms per request")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
