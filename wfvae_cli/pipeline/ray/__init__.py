"""`wfvae encode --ray`: the same encode job spread over a Ray cluster (docs/ray.md has the design).

Modules by job: :mod:`.results` (what a run reports), :mod:`.worker` (the model-worker actor and its
decode tasks), :mod:`.scheduler` (the coordinator's loop: shards to workers, deaths, progress),
:mod:`.backend` (:class:`RayBackend`: join Ray, size the job, run the scheduler).

::

    coordinator (the `wfvae encode` process)        one placement-group bundle per model worker
    plan ─► create store ─► queue of shards ─────►  model worker (actor, model loaded once): owns the shard
            dead worker's shard back in line ◄─────   ◄─ decode tasks (Ray, same bundle, <= prefetch in flight)
            aggregate progress ◄── stats (polled)     ─► encode_clips ─► ShardWriter (flock, status last)
    finalize

Decoding reserves ``decode_cpus`` per task in the worker's bundle. With ``decode_cpus == 0`` (every CPU
runs a model worker) it runs in the worker's own process instead, in threads, exactly like a local run:
Ray kills idle task processes beyond its per-node soft limit (the CPU count), so unreserved decode tasks
would start a new process (importing torch, ~1 s) for nearly every clip; measured, it halved throughput.

Why a shard is the unit of work: zarr loses writes when two writers touch one shard, so the coordinator
hands each shard to exactly one worker at a time, and that worker writes it whole and commits its status
last. Everything per sample (decode, batching, one-by-one fallback, stored values) is the shared code of
:mod:`wfvae_cli.pipeline.stages`, so a Ray run stores what a local run stores.

Why a bundle per worker ({GPU: g, CPU: 1 + its decode CPUs}): a worker and its decode tasks are reserved
together, on one node. Decoded clips (~100x the video's size) never cross the network, every worker gets
the same decode capacity, and a replacement worker can never take the CPUs the survivors' decodes need
(it waits for its own bundle instead, which Ray re-places when the node that held it is gone).

Fault tolerance: when a worker dies (process crash, ``ray.kill``, node loss) its shard goes back to the
front of the queue; whoever takes it reopens the shard and reads its status under the lock, so rows the
dead worker committed stay done and the rest are encoded once. The slot gets a new worker. A shard redone
after a death commits every sample as it goes, so a clip that kills workers is pinned down and failed
alone (:data:`CLIP_DEATHS`). If the coordinator dies, Ray kills its workers; rerunning the command
resumes from the store.

This package imports ray; :func:`wfvae_cli.pipeline.backend.open_backend` imports it only when
``EncodeOptions.ray`` is set.
"""

from wfvae_cli.pipeline.ray.backend import RayBackend, RaySizing
from wfvae_cli.pipeline.ray.results import RayRunResult, RayStageTimes, ShardWork, WorkerStatus

__all__ = ["RayBackend", "RayRunResult", "RaySizing", "RayStageTimes", "ShardWork", "WorkerStatus"]
