"""``wfvae bench pipeline``: can the encode pipeline feed an accelerator? (schema ``wfvae-bench-pipeline/1``)

The real encode job — planning (discovery + probing), decoding, preprocessing, batching, store writes, on
the local or the Ray executor — runs with the model replaced by :class:`~wfvae_cli.bench.standin.StandInModel`,
which takes ``model_time`` seconds per clip without using a core (as a GPU would). Beside it, in the same
run, the bare-decoder limit on the same clips and cores (:func:`wfvae_cli.io.bench.raw_decode_rate`, every
available backend, measured before *and* after the pipeline so machine drift hits both sides; the best is
the limit). The report says how close the pipeline gets to ``min(1 / model_time, raw decode rate)``, what
each stage costs per clip, how much CPU everything but decoding costs relative to decoding, and how many
cores one accelerator of that speed needs.

CPU accounting (local executor): decoding runs in decode worker processes, so their CPU time (from
``/proc``) is the decode CPU and this process's CPU time (every thread: batching, preprocessing, writing,
scheduling) is the rest. The machine is usually shared: the load average and the CPU other processes used
during the run are part of the report, so a slow number can be read for what it is.

Library use::

    from wfvae_cli.bench.pipeline import run_pipeline_bench
    report = run_pipeline_bench(EncodeOptions(inputs=("videos/",), out=Path("/tmp/b.zarr"), size=(512, 512)),
                                model_time=0.05)
    report.to_dict()["clips_per_s"]
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from wfvae_cli.bench.machine import machine_info, now_iso
from wfvae_cli.bench.standin import StandInModel
from wfvae_cli.errors import WfvaeError, one_line
from wfvae_cli.pipeline.options import EncodeOptions, usable_cores

PIPELINE_SCHEMA = "wfvae-bench-pipeline/1"
STAGES = ("probe", "decode", "preprocess", "batch", "model", "model_wait", "write")

ProgressFn = Callable[[int, int, str], None]


# ------------------------------------------------------------------------------------------ CPU accounting
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (0.0 if it is gone or /proc is unavailable)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14 and 15 of stat)


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy (non-idle) since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / _TICK  # guest time is already inside user


@dataclass
class CpuMeter:
    """CPU seconds of this process, of the decode worker processes and of the whole machine over an interval.

    Decode workers are found through :func:`wfvae_cli.io._worker.worker_pids` at the start and the end
    (a worker started in between counts from zero; one killed in between loses its last slice: timeouts only).
    """

    start_self: float = 0.0
    start_workers: dict[int, float] = field(default_factory=dict)
    start_machine: float = 0.0
    start_wall: float = 0.0
    self_s: float = 0.0
    workers_s: float = 0.0
    machine_s: float = 0.0
    wall_s: float = 0.0

    def start(self) -> None:
        from wfvae_cli.io import _worker

        self.start_self = time.process_time()
        self.start_workers = {pid: process_cpu_seconds(pid) for pid in _worker.worker_pids()}
        self.start_machine = machine_busy_seconds()
        self.start_wall = time.perf_counter()

    def stop(self) -> None:
        from wfvae_cli.io import _worker

        self.self_s = time.process_time() - self.start_self
        self.workers_s = sum(
            max(0.0, process_cpu_seconds(pid) - self.start_workers.get(pid, 0.0)) for pid in _worker.worker_pids()
        )
        self.machine_s = machine_busy_seconds() - self.start_machine
        self.wall_s = time.perf_counter() - self.start_wall

    @property
    def others_cores(self) -> float:
        """Cores' worth of CPU that processes other than this job's used meanwhile (the shared machine)."""
        return max(0.0, self.machine_s - self.self_s - self.workers_s) / self.wall_s if self.wall_s > 0 else 0.0


# ------------------------------------------------------------------------------------------ the report
@dataclass
class PipelineBenchReport:
    """One ``bench pipeline`` run; :meth:`to_dict` is the JSON form (all times in seconds)."""

    settings: dict[str, Any]
    machine: dict[str, Any]
    clips: int
    failed: int
    wall_s: float
    model_busy_fraction: float
    stage_s: dict[str, float]  # totals over the run (decode: summed over parallel decoders)
    cores: int
    decode_workers: int
    raw_decode: dict[str, dict[str, float]]  # backend -> {"before": clips/s, "after": clips/s}
    cpu: dict[str, float] | None = None  # {"decode_s", "other_s"} (local executor only)
    load: dict[str, Any] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)
    created_at: str = field(default_factory=now_iso)
    notes: list[str] = field(default_factory=list)
    #: Ray: seconds from the run's start until the first model worker was ready (actor start, model fetched)
    startup_s: float = 0.0

    @property
    def steady_clips_per_s(self) -> float:
        """Clips per second once the (Ray) model workers run: start-up excluded (equal to clips/s locally)."""
        wall = self.wall_s - self.startup_s
        return self.clips / wall if wall > 0 else 0.0

    @property
    def model_time(self) -> float:
        return float(self.settings["model_time"])

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.wall_s if self.wall_s > 0 else 0.0

    @staticmethod
    def _rate(measured: dict[str, float]) -> float:
        """A backend's rate: the better of its runs before and after the pipeline (noise only slows runs)."""
        return max((v for k, v in measured.items() if k in ("before", "after")), default=0.0)

    @property
    def raw_decode_backend(self) -> str | None:
        if not self.raw_decode:
            return None
        return max(self.raw_decode, key=lambda b: self._rate(self.raw_decode[b]))

    @property
    def raw_decode_clips_per_s(self) -> float | None:
        best = self.raw_decode_backend
        return self._rate(self.raw_decode[best]) if best is not None else None

    @property
    def raw_decode_cpu_s_per_clip(self) -> float | None:
        """CPU seconds per clip of the fastest bare backend (the lower of its two runs)."""
        best = self.raw_decode_backend
        if best is None:
            return None
        cpus = [v for k, v in self.raw_decode[best].items() if k.startswith("cpu_s_per_clip")]
        return min(cpus) if cpus else None

    @property
    def limit_clips_per_s(self) -> float | None:
        """``min(1 / model_time, raw decode rate)``: what a perfect pipeline would reach on these cores."""
        caps = [1.0 / self.model_time] if self.model_time > 0 else []
        if self.raw_decode_clips_per_s is not None:
            caps.append(self.raw_decode_clips_per_s)
        return min(caps) if caps else None

    @property
    def fraction_of_limit(self) -> float | None:
        limit = self.limit_clips_per_s
        return self.clips_per_s / limit if limit else None

    def per_clip(self, total: float) -> float:
        return total / self.clips if self.clips else 0.0

    @property
    def other_cpu_fraction(self) -> float | None:
        """CPU of everything but decoding, per clip, as a fraction of decoding's (the ≤ 0.1 goal)."""
        if not self.cpu or self.cpu["decode_s"] <= 0:
            return None
        return self.cpu["other_s"] / self.cpu["decode_s"]

    @property
    def host_other_cpu_fraction(self) -> float | None:
        """:attr:`other_cpu_fraction` without the uint8 → float scaling that ran on the host only because the
        device is the CPU (on an accelerator it runs on the device): the host-side figure of a GPU machine."""
        if not self.cpu or self.cpu["decode_s"] <= 0:
            return None
        return (self.cpu["other_s"] - self.cpu.get("cpu_device_scaling_s", 0.0)) / self.cpu["decode_s"]

    @property
    def cores_per_accelerator(self) -> float | None:
        """Cores that keep one accelerator of ``model_time`` s/clip busy: CPU seconds per clip / model_time.

        With the CPU split measured (local executor) it is the pipeline's total CPU per clip; otherwise
        (Ray) the cores the run had divided by its rate — an upper bound, as cores may have idled.
        """
        if self.model_time <= 0 or not self.clips:
            return None
        if self.cpu:
            return self.per_clip(self.cpu["decode_s"] + self.cpu["other_s"]) / self.model_time
        return self.cores / self.clips_per_s / self.model_time if self.clips_per_s > 0 else None

    @property
    def raw_cores_per_accelerator(self) -> float | None:
        """The same for the bare decoder loop (its CPU per clip / model_time): the floor for these decoders."""
        raw = self.raw_decode_cpu_s_per_clip
        return raw / self.model_time if raw and self.model_time > 0 else None

    @property
    def cpu_ratio_to_raw(self) -> float | None:
        """The pipeline's CPU per clip (decode + everything else) over the bare loop's: load-independent."""
        raw = self.raw_decode_cpu_s_per_clip
        if not self.cpu or not raw or not self.clips:
            return None
        return self.per_clip(self.cpu["decode_s"] + self.cpu["other_s"]) / raw

    def to_dict(self) -> dict[str, Any]:
        def r(x: float | None, digits: int = 4) -> float | None:
            return None if x is None else round(x, digits)

        return {
            "schema": PIPELINE_SCHEMA,
            "created_at": self.created_at,
            "machine": self.machine,
            "load": self.load,
            "settings": self.settings,
            "clips": self.clips,
            "failed": self.failed,
            "wall_s": r(self.wall_s),
            "clips_per_s": r(self.clips_per_s),
            "startup_s": r(self.startup_s),
            "steady_clips_per_s": r(self.steady_clips_per_s),
            "model_busy_fraction": r(self.model_busy_fraction),
            "stage_s_per_clip": {k: r(self.per_clip(v), 5) for k, v in self.stage_s.items()},
            "cpu_s_per_clip": (
                {"decode": r(self.per_clip(self.cpu["decode_s"]), 5), "other": r(self.per_clip(self.cpu["other_s"]), 5),
                 "cpu_device_scaling": r(self.per_clip(self.cpu.get("cpu_device_scaling_s", 0.0)), 7)}
                if self.cpu else None
            ),
            "other_cpu_fraction_of_decode": r(self.other_cpu_fraction),
            "host_other_cpu_fraction_of_decode": r(self.host_other_cpu_fraction),
            "raw_decode_clips_per_s": r(self.raw_decode_clips_per_s),
            "raw_decode_backend": self.raw_decode_backend,
            "raw_decode_cpu_s_per_clip": r(self.raw_decode_cpu_s_per_clip, 5),
            "cpu_ratio_to_raw": r(self.cpu_ratio_to_raw),
            "raw_decode": {b: {k: r(v) for k, v in d.items()} for b, d in self.raw_decode.items()},
            "limit_clips_per_s": r(self.limit_clips_per_s),
            "fraction_of_limit": r(self.fraction_of_limit),
            "cores": self.cores,
            "decode_workers": self.decode_workers,
            "cores_per_accelerator": r(self.cores_per_accelerator, 2),
            "raw_cores_per_accelerator": r(self.raw_cores_per_accelerator, 2),
            "failures": [list(f) for f in self.failures[:100]],
            "notes": list(self.notes),
        }


# ------------------------------------------------------------------------------------------ the run
def _raw_rates(paths: list[str], opts: EncodeOptions, config: Any, processes: int, backends: list[str],
               into: dict[str, dict[str, float]], when: str, progress: ProgressFn | None, notes: list[str]) -> None:
    """Measure each of ``backends`` on ``paths``; one that cannot read them (decord without an AV1 decoder,
    say) is dropped from ``backends`` with a note: the limit is the fastest loop that *can* decode the files."""
    from wfvae_cli.io.bench import raw_decode_stats

    assert opts.size is not None
    spec = opts.clip_spec(config.temporal_factor)
    for k, backend in enumerate(list(backends)):
        if progress:
            progress(k, len(backends), f"bare {backend} decode ({when})")
        try:
            stats = raw_decode_stats(paths, spec, opts.size, backend, processes, crop=opts.crop)  # type: ignore[arg-type]
        except Exception as exc:  # any decoder library's own error type: this backend is out of the comparison
            backends.remove(backend)
            into.pop(backend, None)
            notes.append(f"bare {backend} cannot decode these files, left out of the limit: {one_line(exc)}")
            continue
        into.setdefault(backend, {})[when] = stats.clips_per_s
        into[backend][f"cpu_s_per_clip_{when}"] = stats.cpu_s_per_clip


def run_pipeline_bench(
    opts: EncodeOptions,
    model_time: float,
    *,
    raw: bool = True,
    raw_backends: list[str] | None = None,
    keep_store: bool = False,
    progress: ProgressFn | None = None,
) -> PipelineBenchReport:
    """Run the encode pipeline of ``opts`` with a ``model_time`` s/clip stand-in model; see the module docstring.

    ``opts.model`` only provides the latent shape (its config; no weights are loaded beyond the config).
    The store goes to ``opts.out`` and is deleted afterwards unless ``keep_store`` (it holds noise).
    ``raw=False`` skips the bare-decoder measurement (then there is no limit to compare with).
    """
    from wfvae_cli.io import discover_videos
    from wfvae_cli.io.bench import available_backends
    from wfvae_cli.model.config import preset_config
    from wfvae_cli.pipeline import encode_dataset

    if opts.clip_mode == "full":
        raise WfvaeError("bench pipeline measures clip modes head/uniform/sliding; --clip-mode full is not modelled")
    if opts.size is None:
        raise WfvaeError("bench pipeline needs one model size (--resolution or --height/--width), not --buckets")
    if opts.out.exists() and any(opts.out.iterdir()) and not opts.overwrite:
        raise WfvaeError(f"--out {opts.out}: exists; bench pipeline writes a throwaway store, give a new path")
    config = _config(opts.model, preset_config)
    model = StandInModel(config, model_time)
    cores = usable_cores()
    device = opts.device
    load_before = os.getloadavg()
    paths = [s.path for s in discover_videos(opts.inputs, columns=opts.columns,
                                             storage_options=opts.storage_options).sources]
    backends = list(raw_backends or available_backends())
    raw_rates: dict[str, dict[str, float]] = {}
    local_files = [p for p in paths if "://" not in p]
    notes: list[str] = []
    if raw and len(local_files) < len(paths):
        notes.append("the bare-decoder limit is measured on local files only (URL inputs skipped)")
    raw = raw and bool(local_files)
    if raw:
        _raw_rates(local_files, opts, config, cores, backends, raw_rates, "before", progress, notes)

    meter = CpuMeter()
    marks: dict[str, float] = {}

    def on_plan(stage: str, done: int, total: int) -> None:
        if stage.startswith("encoding"):  # planning is over: the encode itself starts now
            marks["planned"] = time.perf_counter()
            meter.start()
        if progress:
            progress(done, total, stage)

    t0 = time.perf_counter()
    try:
        summary = encode_dataset(replace(opts, random_weights=True), on_plan=on_plan, model=model,
                                 progress=lambda result: marks.update(startup=getattr(result, "startup_s", 0.0)))
        meter.stop()
    finally:
        if not keep_store:
            shutil.rmtree(opts.out, ignore_errors=True)
    if raw:
        _raw_rates(local_files, opts, config, cores, backends, raw_rates, "after", progress, notes)
    load_after = os.getloadavg()
    times = summary.times
    stage_s = {
        "probe": marks.get("planned", t0) - t0,
        "decode": times.get("decode_s", 0.0),
        "preprocess": times.get("preprocess_s", 0.0),
        "batch": times.get("batch_s", 0.0),
        "model": times.get("model_s", 0.0),
        "model_wait": times.get("model_wait_s", 0.0),
        "write": times.get("write_s", 0.0),
    }
    local = opts.ray is None
    cpu = None
    if local and (opts.decode_timeout is not None):  # decoding ran in worker processes: the split is measured
        cpu = {"decode_s": meter.workers_s, "other_s": meter.self_s,
               "cpu_device_scaling_s": min(meter.self_s, times.get("preprocess_cpu_s", 0.0))}
    elif local:
        notes.append("without a decode timeout decoding runs in this process's threads: no CPU split")
    settings = {
        "inputs": list(opts.inputs), "videos": summary.videos, "size": list(opts.size), "frames": opts.frames,
        "clip_mode": opts.clip_mode, "clips_per_video": opts.clips_per_video, "crop": opts.crop,
        "batch_size": opts.batch_size, "model": opts.model, "model_time": model_time, "device": device,
        "executor": "ray" if opts.ray is not None else "local", "precision": opts.dtype,
        "store_dtype": opts.store_dtype, "prefetch_bytes": getattr(opts, "prefetch_bytes", None),
    }
    return PipelineBenchReport(
        settings=settings,
        machine=machine_info(device),
        clips=summary.done,
        failed=len(summary.failures),
        wall_s=times.get("wall_s", 0.0),
        model_busy_fraction=times.get("model_busy_fraction", 0.0),
        stage_s=stage_s,
        cores=cores,
        decode_workers=opts.workers,
        raw_decode=raw_rates,
        cpu=cpu,
        load={"loadavg_before": [round(v, 2) for v in load_before], "loadavg_after": [round(v, 2) for v in load_after],
              "other_processes_cores": round(meter.others_cores, 2)},
        failures=list(summary.failures),
        notes=notes + list(summary.warnings),
        startup_s=marks.get("startup", 0.0),
    )


def _config(spec: str, preset_config: Callable[[str], Any]) -> Any:
    """The model config giving the latent shape: a preset name, or a checkpoint directory's config.json."""
    from wfvae_cli.model.config import WFVAEConfig

    path = Path(spec).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return WFVAEConfig.from_json(path / "config.json")
    if path.is_file() and path.suffix == ".json":
        return WFVAEConfig.from_json(path)
    try:
        return preset_config(spec)
    except Exception as exc:
        raise WfvaeError(f"--model {spec}: give a preset (wfvae-s, wfvae-l, …) or a checkpoint directory with "
                         "config.json (only its latent shape is used)") from exc


def default_out() -> Path:
    """A fresh path for the throwaway store (in the temp dir, which is usually local disk)."""
    return Path(tempfile.mkdtemp(prefix="wfvae-bench-pipeline-")) / "store.zarr"


def render_text(report: PipelineBenchReport) -> list[str]:
    """The report as a few plain lines (the JSON form has everything)."""
    d = report.to_dict()
    s = report.settings
    m = report.machine
    size = "x".join(str(v) for v in s["size"])
    lines = [
        f"bench pipeline · {s['executor']} · {report.clips} clips of {s['frames']}x{size} from {s['videos']} video(s) "
        f"· stand-in {report.model_time:g} s/clip on {s['device']} · batch {s['batch_size']}",
        f"machine: {m.get('cpu_model')} · {report.cores} usable cores · {report.decode_workers} decode workers · "
        f"load avg {d['load']['loadavg_before'][0]} → {d['load']['loadavg_after'][0]} · other processes used "
        f"{d['load']['other_processes_cores']} cores",
        f"clips/s {d['clips_per_s']} · model busy {report.model_busy_fraction:.0%}"
        + (f" · Ray start-up {report.startup_s:.1f} s, then {d['steady_clips_per_s']} clips/s" if report.startup_s
           else ""),
    ]
    if report.raw_decode:
        raw = " · ".join(
            f"{b} {r.get('before', 0):.2f} / {r.get('after', 0):.2f}" for b, r in report.raw_decode.items()
        )
        lines.append(f"bare decode clips/s (before / after): {raw} → limit {d['limit_clips_per_s']} clips/s "
                     f"(min of 1/model-time and the best bare decoder) · pipeline at {d['fraction_of_limit']:.0%} of it"
                     if d["fraction_of_limit"] is not None else f"bare decode clips/s: {raw}")
    stages = " · ".join(f"{k} {1000 * v:.1f}" for k, v in d["stage_s_per_clip"].items())
    lines.append(f"per clip (ms; decode summed over parallel workers): {stages}")
    if d["cpu_s_per_clip"]:
        c = d["cpu_s_per_clip"]
        lines.append(f"CPU per clip: decode {1000 * c['decode']:.1f} ms · everything else {1000 * c['other']:.1f} ms "
                     f"({d['other_cpu_fraction_of_decode']:.1%} of decode; of it the CPU device's uint8→float "
                     f"scaling {1000 * c['cpu_device_scaling']:.1f} ms, without it "
                     f"{d['host_other_cpu_fraction_of_decode']:.1%})"
                     + (f" · total {d['cpu_ratio_to_raw']:.2f}x the bare loop's "
                        f"{1000 * d['raw_decode_cpu_s_per_clip']:.1f} ms" if d["cpu_ratio_to_raw"] else ""))
    if d["cores_per_accelerator"] is not None:
        raw_cores = d["raw_cores_per_accelerator"]
        lines.append(f"cores per accelerator at {report.model_time:g} s/clip: {d['cores_per_accelerator']}"
                     + (f" (bare decoder: {raw_cores})" if raw_cores is not None else ""))
    lines += [f"note: {n}" for n in report.notes]
    lines += [f"failed: {src}: {why}" for src, why in report.failures[:10]]
    return lines
