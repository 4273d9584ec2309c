"""Two Ray nodes on one machine: `wfvae encode --ray HOST:PORT` must use both, and survive losing one.

Starts a head (`ray start --head`) and a second node (`ray start --address=...`), each with its own
temp dir and CPUs, then encodes generated clips through the coordinator API with one model worker per
node. Checks: workers ran on both node ids; with ``--kill-node``, the second node (all its processes)
is killed once its worker has finished a shard, and the job still completes on the head; the store is
bitwise the store of a local run (one torch thread, same batches). CI runs it small through
``tests/pipeline/test_ray_cluster.py``. Exit code 0 when every check holds.

    python scripts/ray_two_nodes.py --clips 8 --kill-node
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def session_pids(leader: int) -> list[int]:
    """Processes in the session led by ``leader`` (a `ray start` we launched with start_new_session)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp session ...
        if int(fields[3]) == leader:
            pids.append(int(entry.name))
    return pids


def kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL every process of one node we started (by pid), like a machine that loses power."""
    for pid in session_pids(proc.pid):
        with contextlib.suppress(ProcessLookupError):  # exited meanwhile
            os.kill(pid, signal.SIGKILL)
    proc.wait()


def ray_cli() -> str:
    """The `ray` command of this interpreter's environment (CI runs the venv's python without activating it)."""
    bindir = str(Path(sys.executable).parent)
    found = shutil.which("ray", path=bindir) or shutil.which("ray")
    if found is None:
        raise SystemExit(f"no `ray` command next to {sys.executable} or on PATH: pip install -e '.[ray]'")
    return found


def start_node(args: list[str], temp: Path, log: Path) -> subprocess.Popen:
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, **RAY_ENV, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.Popen(
        [ray_cli(), "start", *args, f"--temp-dir={temp}", "--block"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=log.open("w"),
    )


def warm_nodes(ray, nodes: set[str]) -> None:
    """Import torch and the model code once on every node before the run.

    Why: on a loaded 2-core machine the second node's first import of torch can take longer than the
    whole 12-clip job on the head, so the remote worker would never hold a shard before the job ends and
    there would be nothing to kill mid-run. Warming is what a long-lived cluster has anyway.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    def warm() -> str:
        import torch  # noqa: F401

        import wfvae_cli.model  # noqa: F401

        return ray.get_runtime_context().get_node_id()

    ray.get([warm.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote()
             for n in nodes], timeout=180)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs per node (one model worker + decode)")
    parser.add_argument("--model", default=str(Path(__file__).resolve().parents[1] / "tests/fixtures/golden"))
    parser.add_argument("--kill-node", action="store_true", help="kill the second node mid-run")
    parser.add_argument("--delay", type=float, default=0.4,
                        help="seconds added per model batch with --kill-node, so the tiny model is caught mid-run")
    args = parser.parse_args()
    os.environ.update(RAY_ENV)

    work = Path(tempfile.mkdtemp(prefix="wfr-"))  # short: Ray's socket paths live under the temp dirs
    port = free_port()
    address = f"127.0.0.1:{port}"
    t0 = time.perf_counter()
    head = start_node(["--head", f"--port={port}", f"--num-cpus={args.cpus}", "--num-gpus=0",
                       "--include-dashboard=false", "--disable-usage-stats"], work / "h", work / "head.log")
    second: subprocess.Popen | None = None
    try:
        import ray

        from wfvae_cli.io import make_sample_clips
        from wfvae_cli.pipeline import EncodeOptions, encode_dataset
        from wfvae_cli.store import open_store

        deadline = time.time() + 120
        while True:  # the head accepts drivers once its GCS is up
            try:
                env = {"WFVAE_DEBUG_ENCODE_DELAY": str(args.delay)} if args.kill_node else {}
                ray.init(address=address, log_to_driver=False, logging_level="warning",
                         runtime_env={"env_vars": env})
                break
            except Exception:
                if time.time() > deadline or head.poll() is not None:
                    raise
                time.sleep(0.5)
        second = start_node([f"--address={address}", f"--num-cpus={args.cpus}", "--num-gpus=0"],
                            work / "w", work / "second.log")
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            if time.time() > deadline:
                raise RuntimeError("the second node did not join within 120 s; see " + str(work / "second.log"))
            time.sleep(0.25)
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        head_node = ray.get_runtime_context().get_node_id()
        print(f"cluster: 2 nodes up in {time.perf_counter() - t0:.1f} s", flush=True)
        warm_nodes(ray, nodes)

        make_sample_clips(work / "videos", n=args.clips, frames=9, size=(64, 64))
        base = dict(inputs=(str(work / "videos"),), model=args.model, frames=9, size=(64, 64), shard_size=1,
                    batch_size=1, decode_timeout=60.0)
        killed: list[float] = []

        def progress(result) -> None:
            if not args.kill_node or killed or second is None:
                return
            remote = [w for w in result.workers if w.node_id and w.node_id != head_node]
            if remote and remote[0].shards >= 1 and result.shards_done < result.shards - 1:
                killed.append(time.perf_counter())
                kill_session(second)
                print(f"killed the second node (its worker: {remote[0].shards} shard(s) done, state {remote[0].state})",
                      flush=True)

        reports = []
        t1 = time.perf_counter()
        summary = encode_dataset(EncodeOptions(out=work / "ray.zarr", ray=address, workers=2, **base),
                                 progress=lambda r: (reports.append(r), progress(r)))
        wall = time.perf_counter() - t1
        final = reports[-1]
        used = {w.node_id for w in final.workers if w.shards > 0}
        for w in final.workers:
            print(f"  worker {w.index} node {w.node_id[:12]} ({w.node_ip}) {w.done} clips, {w.shards} shards, "
                  f"{w.restarts} replacement(s), state {w.state}")
        print(f"encoded {summary.done} clips in {wall:.1f} s on {len(used)} node(s); "
              f"{final.reassigned} shard(s) reassigned; warnings: {summary.warnings}")
        ray.shutdown()

        import torch

        torch.set_num_threads(1)  # as each model worker
        local = encode_dataset(EncodeOptions(out=work / "local.zarr", **base))
        a, b = open_store(work / "ray.zarr"), open_store(work / "local.zarr")
        same = len(a) == len(b) == args.clips and all(
            a[i]["source"] == b[i]["source"] and a[i]["mean"].tobytes() == b[i]["mean"].tobytes()
            and a[i]["logvar"].tobytes() == b[i]["logvar"].tobytes() for i in range(len(b))
        )
        checks = {
            "workers ran on both node ids": used == nodes and len(used) == 2,
            "every clip encoded once": summary.ok and summary.done == local.done == args.clips,
            "store equals the local run (bitwise)": same,
        }
        if args.kill_node:
            checks["second node killed mid-run, job completed"] = bool(killed)
        for name, ok in checks.items():
            print(f"{'ok  ' if ok else 'FAIL'} {name}")
        return 0 if all(checks.values()) else 1
    finally:
        for proc in (second, head):
            if proc is not None and proc.poll() is None:
                kill_session(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
