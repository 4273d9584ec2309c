"""`encode_dataset(options)`: the library call behind `wfvae encode` (create or resume a latent store)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wfvae_cli import __version__
from wfvae_cli.errors import WfvaeError
from wfvae_cli.io import discover_videos
from wfvae_cli.model import LatentNormalizer, load_model
from wfvae_cli.model.model import WFVAE
from wfvae_cli.pipeline.local import ProgressFn, RunResult, run_local
from wfvae_cli.pipeline.options import STORE_DTYPES, EncodeOptions
from wfvae_cli.pipeline.planning import DatasetPlan, parse_bucket_id, plan_dataset
from wfvae_cli.pipeline.stages import LatentEncoder, Task
from wfvae_cli.store import (
    LatentStore,
    Status,
    StoreMeta,
    check_compatible,
    create_store,
    open_store,
    utc_now,
)
from wfvae_cli.store.lease import WriterLease, lease_blob
from wfvae_cli.store.store import is_half_created


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
    failed: int
    rejected: list[tuple[str, str]]
    failures: list[tuple[str, str]]
    buckets: dict[str, dict[str, Any]]
    frames: int = 0
    times: dict[str, float] = field(default_factory=dict)
    dry_run: bool = False
    estimated_bytes: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.rejected

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
    )


def _is_store(path: Path) -> bool:
    """A complete store (one whose creation was interrupted is re-created, not resumed)."""
    return (path / "zarr.json").is_file() and not is_half_created(path)


def _tasks(store: LatentStore, retry_failed: bool) -> tuple[list[Task], int]:
    """Rows still to encode (pending, and failed with --retry-failed), sorted by bucket then row."""
    tasks, done = [], 0
    for bucket in store.buckets:
        status = store.status(bucket)
        done += int((status == Status.DONE).sum())
        todo = store.pending_samples(bucket, include_failed=retry_failed)
        if len(todo) == 0:
            continue
        records = store.records(bucket)
        size = parse_bucket_id(bucket)[1:]
        tasks.extend(Task(bucket, int(r), records[int(r)], size) for r in todo)
    return tasks, done


def _bucket_table(plan_or_store: DatasetPlan | LatentStore) -> dict[str, dict[str, Any]]:
    if isinstance(plan_or_store, DatasetPlan):
        return {b.bucket_id: {"clips": len(b.samples), "latent_shape": list(b.latent_shape)} for b in plan_or_store.buckets}
    return {
        bid: {"clips": info.num_samples, "latent_shape": list(info.latent_shape), **plan_or_store.counts(bid)}
        for bid, info in plan_or_store.buckets.items()
    }


def encode_dataset(
    opts: EncodeOptions,
    progress: ProgressFn | None = None,
    on_plan: Callable[[str, int, int], None] | None = None,
    dry_run: bool = False,
) -> EncodeSummary:
    """Encode every clip of ``opts.inputs`` into the store ``opts.out``, resuming it if it exists.

    A store written with other weights or preprocessing is refused unless ``opts.overwrite``.
    ``on_plan(stage, done, total)`` reports planning progress (probing videos).
    """
    model = load_model(opts.model)
    meta = store_meta(opts, model)
    if dry_run:
        return _encode_dataset(opts, model, meta, progress, on_plan, dry_run, lease=None)
    # The writer lease (wfvae_cli/store/lease.py) is taken before the store is even looked at, so that a second
    # job -- including one with --overwrite -- is refused while this one plans, creates or writes the store.
    lease = WriterLease(lease_blob(opts.out), what=f"--out {opts.out}")
    try:
        lease.acquire()
    except OSError as exc:
        raise WfvaeError(
            f"--out {opts.out}: cannot create the store (its writer lease: {exc.strerror or exc}); "
            "check the path and free space"
        ) from exc
    with lease:
        return _encode_dataset(opts, model, meta, progress, on_plan, dry_run, lease=lease)


def _encode_dataset(
    opts: EncodeOptions,
    model: WFVAE,
    meta: StoreMeta,
    progress: ProgressFn | None,
    on_plan: Callable[[str, int, int], None] | None,
    dry_run: bool,
    lease: WriterLease | None,
) -> EncodeSummary:
    out = opts.out
    resumed = _is_store(out) and not opts.overwrite and not dry_run
    warnings: list[str] = []
    if (out.is_dir() and not resumed and not opts.overwrite and not dry_run and any(out.iterdir())
            and not is_half_created(out)):
        raise WfvaeError(f"--out {out}: exists and is not a wfvae store; choose a new path (nothing was written)")
    # --- Ray backend (docs/ray.md): join Ray before planning, so a bad address fails before any work.
    # Imported only here: the local path never loads ray.
    backend = None
    if opts.ray is not None and not dry_run:
        from wfvae_cli.pipeline.ray_backend import RayBackend

        backend = RayBackend.connect(opts)
        opts = backend.opts  # `workers` resolved to the number of model workers
    # --- end Ray backend

    if resumed:
        store = open_store(out, "r+")
        store.lease = lease
        check_compatible(store.meta, meta, path=out)
        planned = {r.source for b in store.buckets for r in store.records(b)}  # one read of the index
        known = planned | {s for s, _ in store.rejected()}
        new = [s.path for s in discover_videos(opts.inputs).sources if s.path not in known]
        if new:
            warnings.append(
                f"{len(new)} input(s) are not in this store (it was planned when created), e.g. {new[0]}; "
                "encode them into a new store or rerun with --overwrite"
            )
        rejected = store.rejected()
        inputs = len(known)
        videos = len(planned)
    else:
        plan = plan_dataset(opts, model.config, on_probe=(lambda d, t: on_plan("probe", d, t)) if on_plan else None)
        if dry_run:
            return EncodeSummary(
                store=str(out), resumed=False, inputs=plan.inputs, videos=plan.videos, clips=plan.clips,
                already_done=0, done=0, failed=0, rejected=plan.rejected, failures=[],
                buckets=_bucket_table(plan), dry_run=True,
                estimated_bytes=plan.estimated_bytes(opts.store_dtype, opts.kind),
            )
        if not plan.buckets:
            raise WfvaeError(
                f"no usable clip in the inputs ({len(plan.rejected)} rejected, first: "
                f"{plan.rejected[0][0] + ': ' + plan.rejected[0][1] if plan.rejected else 'none'}); nothing was written"
            )
        if backend is not None:  # Ray: enough shards (units of parallel work) for every worker
            plan = backend.balance(plan)
        try:
            store = create_store(out, meta, plan.buckets, overwrite=opts.overwrite, rejected=plan.rejected)
        except OSError as exc:
            raise WfvaeError(f"--out {out}: cannot create the store ({exc.strerror or exc}); check the path and free space") from exc
        rejected, inputs, videos = plan.rejected, plan.inputs, plan.videos
    store.lease = lease  # every shard commit checks it: a job that lost the lease stops before marking

    tasks, already_done = _tasks(store, opts.retry_failed)
    if backend is not None:  # Ray: model workers own and write shards; this process schedules them
        result = backend.run(store, tasks, model, progress)
        warnings.extend(backend.warnings)
    else:
        encoder = LatentEncoder(model, opts)
        result = run_local(store, tasks, encoder, opts, progress) if tasks else RunResult()
    store.refresh()
    if all(store.counts(b)["pending"] == 0 for b in store.buckets):
        store.finalize(utc_now())
    times = result.times
    return EncodeSummary(
        store=str(out),
        resumed=resumed,
        inputs=inputs,
        videos=videos,
        clips=sum(info.num_samples for info in store.buckets.values()),
        already_done=already_done,
        done=result.done,
        failed=sum(store.counts(b)["failed"] for b in store.buckets),
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
            "model_busy_fraction": round(times.model_busy_fraction, 4),
        },
        warnings=warnings,
    )
