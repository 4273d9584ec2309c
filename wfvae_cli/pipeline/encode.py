"""`encode_dataset(options)`: the library call behind `wfvae encode` (create or resume a latent store)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wfvae_cli import __version__
from wfvae_cli.devices import check_device
from wfvae_cli.dtypes import STORE_DTYPES
from wfvae_cli.errors import WfvaeError, one_line
from wfvae_cli.io import VideoSource, discover_videos
from wfvae_cli.io.remote import set_storage_options
from wfvae_cli.model import LatentNormalizer, load_model
from wfvae_cli.model.autoencoder import WFVAE
from wfvae_cli.pipeline.backend import Backend, ProgressFn, open_backend
from wfvae_cli.pipeline.options import EncodeOptions
from wfvae_cli.pipeline.planning import DatasetPlan, parse_bucket_id, plan_dataset
from wfvae_cli.pipeline.stages import TaskList, clear_checkpoints
from wfvae_cli.storage import StorageError
from wfvae_cli.store import (
    LatentStore,
    Status,
    StoreMeta,
    check_compatible,
    create_store,
    open_store,
    utc_now,
)
from wfvae_cli.store.errors import StoreError
from wfvae_cli.store.index import unique_strings
from wfvae_cli.store.layout import ProbeState
from wfvae_cli.store.lease import LeaseHeldError, WriterLease
from wfvae_cli.store.location import StoreLocation
from wfvae_cli.store.probes import ProbeTable
from wfvae_cli.store.store import is_half_created
from wfvae_cli.store.verify import SampleProblem, find_damaged, reset_damaged


@dataclass
class EncodeSummary:
    """What a run did; ``--json`` prints this."""

    store: str
    resumed: bool
    inputs: int
    videos: int
    clips: int
    already_done: int
    done: int
    failed: int  # rows failed for good (a plain rerun leaves them; --retry-failed redoes them)
    rejected: list[tuple[str, str]]
    failures: list[tuple[str, str]]
    buckets: dict[str, dict[str, Any]]
    frames: int = 0
    times: dict[str, float] = field(default_factory=dict)
    dry_run: bool = False
    estimated_bytes: int = 0
    warnings: list[str] = field(default_factory=list)
    #: rows that failed for a reason that may not recur (timeouts, I/O errors): a plain rerun retries them
    transient: int = 0
    #: inputs whose probe failed that way: a plain rerun probes them again and adds their clips
    transient_inputs: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.rejected and not self.transient and not self.transient_inputs

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


def store_meta(opts: EncodeOptions, model: WFVAE) -> StoreMeta:
    """The root metadata a store created (or resumed) by these options must carry."""
    norm = LatentNormalizer.from_config(model.config, on_mismatch="uniform")
    spec = Path(opts.model).expanduser()
    return StoreMeta(
        model=str(spec.resolve()) if spec.exists() else opts.model,  # a path must work from any folder
        model_config=model.config.to_dict(),
        weights_sha256=model.fingerprint(),
        kind=opts.kind,
        dtype=STORE_DTYPES[opts.store_dtype],
        scaled=False,
        scale=list(norm.scale),
        shift=list(norm.shift),
        preprocessing=opts.preprocessing(),
        tool_version=__version__,
        command=list(opts.command),
        sample_seed=opts.seed if opts.store_sample else None,
        random_weights=bool(getattr(model, "random_weights", False)),
    )


def _is_store(location: StoreLocation) -> bool:
    """A complete store (one whose creation was interrupted is re-created, not resumed)."""
    return location.has_root() and not is_half_created(location)


def _tasks(store: LatentStore, retry_failed: bool) -> tuple[TaskList, int]:
    """Rows still to encode (pending and transient, and failed with --retry-failed), sorted by bucket then row;
    as index columns of those rows only (a Task is built when the executor reaches it)."""
    tasks, done = TaskList(), 0
    for bucket in store.buckets:
        status = store.status(bucket)
        done += int((status == Status.DONE).sum())
        todo = store.pending_samples(bucket, include_failed=retry_failed)
        if len(todo) == 0:
            continue
        size = parse_bucket_id(bucket)[1:]
        tasks.add(bucket, todo, store.index_columns(bucket).take(todo), size)  # type: ignore[arg-type]
    return tasks, done


def _probe_cache(location: StoreLocation) -> ProbeTable | None:
    """The probe table of the complete store at ``location`` (an ``--overwrite`` re-plan or a dry run reuses
    it), or ``None``; a store that cannot be read only costs the probes."""
    if not _is_store(location):
        return None
    try:
        return open_store(location).probes()
    except Exception:
        return None


def _retry_transient_inputs(store: LatentStore, opts: EncodeOptions, model: WFVAE, sources: list[VideoSource],
                            on_plan: Callable[[str, int, int], None] | None) -> list[tuple[str, str]]:
    """Probe again the inputs whose probe failed transiently when the store was planned; add the clips of those
    that now succeed and reject those that now fail for good (one commit: :meth:`LatentStore.extend`).

    Returns the inputs still transient. Only inputs the command still lists are retried (others keep waiting).
    """
    table = store.probes()
    if table is None or not (table.state == ProbeState.TRANSIENT).any():
        return []
    waiting = dict(zip(table.sources_in(ProbeState.TRANSIENT),
                       table.error[table.state == ProbeState.TRANSIENT].tolist(), strict=True))
    retry = [s for s in sources if s.path in waiting]
    if not retry:
        return list(waiting.items())
    plan = plan_dataset(opts, model.config, on_probe=(lambda d, t: on_plan("probe", d, t)) if on_plan else None,
                        sources=retry)
    if plan.buckets or plan.rejected or len(plan.transient) < len({s.path for s in retry}):
        store.extend(plan.buckets, [*store.rejected(), *plan.rejected], table.merged(plan.probes))
    retried = {s.path for s in retry}
    return [(p, e) for p, e in waiting.items() if p not in retried] + plan.transient


def _bucket_table(plan_or_store: DatasetPlan | LatentStore) -> dict[str, dict[str, Any]]:
    if isinstance(plan_or_store, DatasetPlan):
        return {
            b.bucket_id: {"clips": len(b.samples), "latent_shape": list(b.latent_shape)} for b in plan_or_store.buckets
        }
    return {
        bid: {"clips": info.num_samples, "latent_shape": list(info.latent_shape), **plan_or_store.counts(bid)}
        for bid, info in plan_or_store.buckets.items()
    }


def encode_dataset(
    opts: EncodeOptions,
    progress: ProgressFn | None = None,
    on_plan: Callable[[str, int, int], None] | None = None,
    dry_run: bool = False,
    model: WFVAE | None = None,
) -> EncodeSummary:
    """Encode every clip of ``opts.inputs`` into the store ``opts.out``, resuming it if it exists.

    ``model``: an already built model (or any object with its encode interface, e.g. the stand-in of
    ``wfvae bench pipeline``) instead of loading ``opts.model``.

    A store written with other weights or preprocessing is refused unless ``opts.overwrite``.
    ``on_plan(stage, done, total)`` reports what the run is doing: ``"probe"`` with counts while probing
    videos, and a few one-off stages (``"connecting to Ray"``, ``"starting decoders"``) so a long start-up is
    never silent. Each run (not a dry run) leaves its statistics in the store (``LatentStore.write_run_stats``).
    """
    started = utc_now(), time.perf_counter()
    if opts.ray is not None and not dry_run:
        from wfvae_cli.extras import require

        require("ray", "--ray")  # before anything is loaded: one line with the install command, exit 2
    set_storage_options(opts.storage_options)  # inputs by URL: this process and its decode workers
    if opts.ray is None:  # a bad or absent device fails before the model loads and before any lease or store exists
        check_device(opts.device)
    if model is None:
        model = load_model(opts.model, random_weights=opts.random_weights)
    meta = store_meta(opts, model)
    if dry_run:
        return _encode_dataset(opts, model, meta, None, on_plan, started=started, lease=None)
    # The writer lease (wfvae_cli/store/lease.py) is taken before the store is even looked at, so that a second
    # job -- including one with --overwrite -- is refused while this one plans, creates or writes the store.
    location = opts.store_location
    if not location.is_local:
        _ = location.fs  # the scheme's package is installed and the options are accepted (one line if not)
    lease = WriterLease(location.lease_blob(), what=f"--out {opts.out}")
    try:
        lease.acquire()
    except LeaseHeldError:
        raise
    except (OSError, StoreError, StorageError) as exc:
        # A read-only mount (or read-only credentials): a rerun of a finished store still succeeds, writing nothing
        if not opts.overwrite and _is_store(location):
            return _read_only_rerun(opts, meta, exc)
        if isinstance(exc, WfvaeError):
            raise
        if not opts.store_location.is_local:
            raise opts.store_location.describe_error(exc) from exc
        raise WfvaeError(
            f"--out {opts.out}: cannot create the store (its writer lease: {exc.strerror or exc}); "
            "check the path and free space"
        ) from exc
    # the backend is closed whatever happens (a Ray this run started is stopped), then the lease released
    with lease, open_backend(opts) as backend:
        return _encode_dataset(opts, model, meta, backend, on_plan, progress, started=started, lease=lease)


def _encode_dataset(
    opts: EncodeOptions,
    model: WFVAE,
    meta: StoreMeta,
    backend: Backend | None,
    on_plan: Callable[[str, int, int], None] | None,
    progress: ProgressFn | None = None,
    *,
    started: tuple[str, float],
    lease: WriterLease | None,
) -> EncodeSummary:
    """:func:`encode_dataset` with the model loaded (and the lease held); ``backend`` is None for a dry run
    (plan only); ``started``: the run's start (UTC timestamp, perf_counter) for its statistics."""
    dry_run = backend is None
    started_at, t_start = started
    stage = on_plan or (lambda _stage, _done, _total: None)
    out = opts.out
    location = opts.store_location
    resumed = not dry_run and _is_store(location) and not opts.overwrite
    warnings: list[str] = []
    if (not resumed and not opts.overwrite and not dry_run and location.is_dir_or_prefix()
            and not location.is_empty() and not is_half_created(location)):
        raise WfvaeError(f"--out {out}: exists and is not a wfvae store; choose a new path (nothing was written)")
    # Before planning: a bad device, Ray address or worker count fails before any work.
    if backend is not None:
        if opts.ray is not None:
            stage("connecting to Ray", 0, 0)
        backend.prepare(model)
        opts = backend.opts  # Ray: `workers` resolved to the number of model workers

    repaired = 0
    if resumed:
        store = open_store(location, "r+")
        store.lease = lease
        check_compatible(store.meta, meta, path=out)
        found = discover_videos(opts.inputs, columns=opts.columns, storage_options=opts.storage_options)
        transient_inputs = _retry_transient_inputs(store, opts, model, found.sources, on_plan)
        inputs, videos, rejected = _resume_inputs(store, found.sources, warnings)
        # Done rows whose latents are gone (a deleted shard file / chunk) or, with --repair, unreadable: back to
        # pending, so this run re-encodes exactly them (store/verify.py: how "written" is told from "fill").
        damaged = find_damaged(store, full=opts.repair)
        if damaged:
            warnings.append(_damage_warning(damaged))
            reset_damaged(store, damaged, prefix="rerun" if not opts.repair else "--repair")
            repaired = len(damaged)
    else:
        plan = plan_dataset(opts, model.config, on_probe=(lambda d, t: on_plan("probe", d, t)) if on_plan else None,
                            cache=_probe_cache(location))
        if dry_run:
            return EncodeSummary(
                store=str(out), resumed=False, inputs=plan.inputs, videos=plan.videos, clips=plan.clips,
                already_done=0, done=0, failed=0, rejected=plan.rejected, failures=[],
                buckets=_bucket_table(plan), dry_run=True,
                estimated_bytes=plan.estimated_bytes(opts.store_dtype, opts.kind), transient_inputs=plan.transient,
            )
        if not plan.buckets:
            first = plan.transient[0] if plan.transient else plan.rejected[0] if plan.rejected else None
            raise WfvaeError(
                f"no usable clip in the inputs ({len(plan.rejected)} rejected, {len(plan.transient)} transient "
                f"(rerun to retry them), first: {first[0] + ': ' + first[1] if first else 'none'}); nothing was written"
            )
        if backend is not None:  # Ray: enough shards (units of parallel work) for every worker
            plan = backend.shape_plan(plan)
        try:
            store = create_store(location, meta, plan.buckets, overwrite=opts.overwrite, rejected=plan.rejected,
                                 probes=plan.probes)
        except OSError as exc:
            if not location.is_local:
                raise location.describe_error(exc) from exc
            raise WfvaeError(
                f"--out {out}: cannot create the store ({exc.strerror or exc}); check the path and free space"
            ) from exc
        rejected, inputs, videos, transient_inputs = plan.rejected, plan.inputs, plan.videos, plan.transient
        del plan  # its per-clip records: the run works from the store's index columns, not from them
    store.lease = lease  # every shard commit checks it: a job that lost the lease stops before marking

    tasks, already_done = _tasks(store, opts.retry_failed)
    assert backend is not None  # a dry run returned above
    t_planned = time.perf_counter()
    stage(f"encoding {len(tasks)} clip(s) ({already_done} already done); starting decoders", 0, len(tasks))
    if resumed and not tasks and not repaired and store.meta.completed_at:
        # nothing to do: a finished store is left exactly as it is (no completed_at rewrite, no run statistics),
        # so a rerun on a read-only copy or by a reader-only credential behaves like one on a writable store
        return _finished_summary(store, opts, inputs, videos, rejected, already_done, warnings)
    result = backend.run(store, tasks, progress)
    warnings.extend(backend.warnings)
    store.refresh()
    if opts.clip_mode == "full":
        clear_checkpoints(store)  # rows now done or failed (also leftovers of killed runs)
    # "completed" only when no work is left: no pending or transient row, no input waiting to be probed again;
    # a finished store that this run did not change keeps its completed_at (nothing rewritten)
    totals = _totals(store)
    left = totals["pending"] + totals["transient"]
    if not transient_inputs and not left and (result.done or result.failed or repaired or not store.meta.completed_at):
        store.finalize(utc_now())
    times = result.times
    summary = EncodeSummary(
        store=str(out),
        resumed=resumed,
        inputs=inputs,
        videos=videos,
        clips=sum(info.num_samples for info in store.buckets.values()),
        already_done=already_done,
        done=result.done,
        failed=totals["failed"],
        transient=totals["transient"],
        rejected=rejected,
        failures=result.failures,
        buckets=_bucket_table(store),
        frames=result.frames,
        times={
            "wall_s": round(times.wall, 3),
            "decode_s": round(times.decode, 3),
            "model_s": round(times.model, 3),
            "model_wait_s": round(times.model_wait, 3),
            "write_s": round(times.write, 3),
            "preprocess_s": round(times.preprocess, 3),
            "preprocess_cpu_s": round(times.preprocess_cpu, 6),  # small: µs per tiny clip
            "batch_s": round(times.batch, 3),
            "model_busy_fraction": round(times.model_busy_fraction, 4),
        },
        warnings=warnings,
        transient_inputs=transient_inputs,
    )
    _write_stats(store, summary, opts, started_at, t_planned - t_start, time.perf_counter() - t_start)
    return summary


def _resume_inputs(
    store: LatentStore, sources: list[VideoSource], warnings: list[str]
) -> tuple[int, int, list[tuple[str, str]]]:
    """``(inputs, videos, rejected)`` of a resumed store; warns about inputs that were not planned into it."""
    planned = unique_strings([store.array(b, "source")[:] for b in store.buckets])  # one read per bucket
    probes = store.probes()
    rejected = store.rejected()
    known = planned | {s for s, _ in rejected} | (set(probes.source.tolist()) if probes else set())
    new = [s.path for s in sources if s.path not in known]
    if new:
        warnings.append(
            f"{len(new)} input(s) are not in this store (it was planned when created), e.g. {new[0]}; "
            "encode them into a new store or rerun with --overwrite"
        )
    return len(known), len(planned), rejected


def _totals(store: LatentStore) -> dict[str, int]:
    """Rows per status name over all buckets: one read of each bucket's status (a GET per bucket on S3)."""
    totals = {s.name.lower(): 0 for s in Status}
    for bucket in store.buckets:
        for name, n in store.counts(bucket).items():
            totals[name] += n
    return totals


def _damage_warning(damaged: list[SampleProblem]) -> str:
    more = f" (and {len(damaged) - 1} more; `wfvae verify` lists them)" if len(damaged) > 1 else ""
    return f"{len(damaged)} done row(s) had missing or unreadable latents and are re-encoded: {damaged[0]}{more}"


def _finished_summary(
    store: LatentStore, opts: EncodeOptions, inputs: int, videos: int, rejected: list[tuple[str, str]],
    already_done: int, warnings: list[str],
) -> EncodeSummary:
    """The summary of a rerun that found nothing to do (written nothing)."""
    return EncodeSummary(
        store=str(opts.out), resumed=True, inputs=inputs, videos=videos,
        clips=sum(info.num_samples for info in store.buckets.values()), already_done=already_done, done=0,
        failed=_totals(store)["failed"], rejected=rejected, failures=[],
        buckets=_bucket_table(store), warnings=warnings,
    )


def _read_only_rerun(opts: EncodeOptions, meta: StoreMeta, cause: BaseException) -> EncodeSummary:
    """A rerun where the writer lease cannot be written (read-only mount, read-only credentials): succeeds when
    the store is finished and intact (nothing to write), else says what would need writing and why it cannot."""
    store = open_store(opts.store_location, "r")
    check_compatible(store.meta, meta, path=opts.out)
    warnings: list[str] = []
    found = discover_videos(opts.inputs, columns=opts.columns, storage_options=opts.storage_options)
    inputs, videos, rejected = _resume_inputs(store, found.sources, warnings)
    damaged = find_damaged(store, full=opts.repair)
    tasks, already_done = _tasks(store, opts.retry_failed)
    if not damaged and not tasks and store.meta.completed_at:
        return _finished_summary(store, opts, inputs, videos, rejected, already_done, warnings)
    todo = f"{len(tasks)} row(s) to encode" if tasks else (_damage_warning(damaged) if damaged else "it to finalize")
    why = getattr(cause, "strerror", None) or one_line(cause, limit=200)
    raise WfvaeError(
        f"--out {opts.out}: cannot be written ({why}) and it has {todo}; rerun where the store is writable"
    ) from cause


def run_stats(
    summary: EncodeSummary, opts: EncodeOptions, started_at: str, setup_s: float, total_s: float
) -> dict[str, Any]:
    """The per-run statistics a store keeps (like video2dataset's ``_stats.json``); see docs/store-format.md."""
    wall = summary.times.get("wall_s", 0.0)
    return {
        "schema": "wfvae-run-stats/1",
        "started_at": started_at,
        "finished_at": utc_now(),
        "command": list(opts.command),
        "backend": "ray" if opts.ray is not None else "local",
        "resumed": summary.resumed,
        "counts": {
            "inputs": summary.inputs, "videos": summary.videos, "clips": summary.clips,
            "already_done": summary.already_done, "done": summary.done, "failed_total": summary.failed,
            "failed_this_run": len(summary.failures), "rejected": len(summary.rejected),
            "transient": summary.transient, "transient_inputs": len(summary.transient_inputs),
        },
        "rates": {
            "clips_per_s": round(summary.done / wall, 4) if wall > 0 else 0.0,
            "frames_per_s": round(summary.frames / wall, 3) if wall > 0 else 0.0,
            "model_busy_fraction": summary.times.get("model_busy_fraction", 0.0),
        },
        "times_s": {"setup": round(setup_s, 3), "total": round(total_s, 3), **{
            k.removesuffix("_s"): v for k, v in summary.times.items() if k.endswith("_s")}},
        "failures": [{"source": s, "reason": r} for s, r in summary.failures[:1000]],
        "warnings": list(summary.warnings),
    }


def _write_stats(store: LatentStore, summary: EncodeSummary, opts: EncodeOptions, started_at: str,
                 setup_s: float, total_s: float) -> None:
    run_id = started_at.replace(":", "").replace("-", "").removesuffix("+0000") + f"Z-{os.getpid()}"
    store.write_run_stats(run_id, run_stats(summary, opts, started_at, setup_s, total_s))
