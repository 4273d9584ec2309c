"""`wfvae_cli.bench` profiling: grid, isolated CPU measurement, OOM handling, JSON report, plot, table.

Everything runs on a width-8 WF-VAE saved as a checkpoint directory (the children load it by path, as they
would a real checkpoint). Timings are never asserted: only that they exist and are positive.
"""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from wfvae_cli.bench import SCHEMA, BenchReport, BenchSettings, Cell, plan_cells
from wfvae_cli.bench.plot import plot_report
from wfvae_cli.bench.profile import describe_model, run_profile
from wfvae_cli.bench.render import profile_notes, profile_table
from wfvae_cli.bench.results import CellResult, MemoryStats, ModelInfo, PhaseResult, Timing
from wfvae_cli.errors import WfvaeError
from wfvae_cli.faults import BENCH_OOM as DEBUG_OOM_ENV

from ..conftest import tiny_model

FAST = dict(device="cpu", warmup=0, repeat=1, threads=1)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return str(tiny_model().save_pretrained(tmp_path_factory.mktemp("bench_model") / "tiny"))


@pytest.fixture(scope="module")
def isolated_report(tiny_dir) -> BenchReport:
    """2 resolutions × 1 length, encode+decode, each configuration in its own child process."""
    return run_profile([tiny_dir], [(32, 32), (48, 64)], [5], BenchSettings(**FAST))


def test_isolated_grid_measures_every_phase(isolated_report, tiny_dir):
    cells = isolated_report.cells
    assert [(c.cell.height, c.cell.width) for c in cells] == [(32, 32), (48, 64)]
    for cell in cells:
        assert cell.status == "ok" and cell.isolated
        assert cell.latent_shape == (1, 4, 2, cell.cell.height // 8, cell.cell.width // 8)
        for phase in ("encode", "decode"):
            r = cell.phase(phase)
            assert r is not None and r.status == "ok"
            assert len(r.timing.times_s) == 1 and r.timing.median_s > 0
            assert r.frames_per_s == pytest.approx(5 * r.clips_per_s)
            assert r.memory.kind == "rss" and r.memory.phase_scoped
            assert r.memory.peak_bytes >= r.memory.baseline_bytes > 0
    info = isolated_report.models[0]
    assert info.spec == tiny_dir and info.params["total"] == tiny_model().num_params()["total"]


def test_json_schema(isolated_report):
    data = json.loads(json.dumps(isolated_report.to_dict()))
    assert data["schema"] == SCHEMA == "wfvae-bench/1"
    assert {"torch", "device_name", "threads", "cpu_model", "cpu_count"} <= set(data["machine"])
    assert data["settings"]["threads"] == 1 and data["settings"]["isolate"] is True
    cell = data["cells"][0]
    assert {"model", "frames", "height", "width", "inference", "status", "batch_size", "encode", "decode"} <= set(cell)
    enc = cell["encode"]
    assert {"median_s", "min_s", "max_s", "times_s"} <= set(enc["timing"])
    assert {"clips_per_s", "frames_per_s"} <= set(enc)
    assert {"kind", "peak_bytes", "baseline_bytes", "activation_bytes"} <= set(enc["memory"])
    assert BenchReport.from_dict(data).to_dict() == data  # lossless round trip


def test_plot_and_table(isolated_report, tmp_path):
    png = plot_report(isolated_report, tmp_path / "sub" / "bench.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    console = Console(width=140, record=True)
    console.print(profile_table(isolated_report))
    text = console.export_text()
    assert "48×64" in text and "encode" in text and "decode" in text
    assert profile_notes(isolated_report) == []


@pytest.mark.integration  # SIGKILL
def test_killed_child_is_oom_and_its_other_phase_still_runs(tiny_dir, monkeypatch):
    """SIGKILL (what the OOM killer sends) during encode: that phase is OOM, decode runs in a new child."""
    monkeypatch.setenv(DEBUG_OOM_ENV, "kill:*@5x32x32/direct/encode")
    report = run_profile([tiny_dir], [(32, 32)], [5], BenchSettings(**FAST))
    (cell,) = report.cells
    assert cell.phase("encode").status == "oom" and "OOM killer" in cell.phase("encode").error
    assert cell.phase("decode").status == "ok" and cell.phase("decode").timing is not None
    assert report.failed == []  # OOM is a measurement, not a failure
    assert any("OOM" in note for note in profile_notes(report))


def test_memory_error_is_oom_and_the_run_continues(tiny_dir, monkeypatch):
    monkeypatch.setenv(DEBUG_OOM_ENV, "raise:*@5x32x32/direct/decode")
    report = run_profile([tiny_dir], [(32, 32), (40, 40)], [5], BenchSettings(isolate=False, **FAST))
    first, second = report.cells
    assert first.phase("encode").status == "ok" and not first.isolated
    assert first.phase("decode").status == "oom" and "MemoryError" in first.phase("decode").error
    assert first.status == "oom" and second.status == "ok"


def test_max_rss_limit_kills_the_child(tiny_dir):
    report = run_profile([tiny_dir], [(32, 32)], [5], BenchSettings(max_rss_gb=0.05, mode="encode", **FAST))
    (cell,) = report.cells
    assert cell.status == "oom" and "--max-rss-gb 0.05" in cell.phase("encode").error


def test_chunked_cells_sit_next_to_direct():
    cells = plan_cells(["a", "b"], [(32, 32)], [5, 9], 4)
    expected = ["a@5x32x32/direct", "a@5x32x32/chunk4", "a@9x32x32/direct", "a@9x32x32/chunk4"]
    assert [c.label for c in cells[:4]] == expected
    assert cells[1].inference == "chunked" and cells[0].inference == "direct"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(compile=True, warmup=0), "--compile needs --warmup"),
        (dict(repeat=0), "--repeat"),
        (dict(dtype="int8"), "--precision"),
        (dict(mode="train"), "--mode"),
        (dict(chunk_frames=0), "--chunk-frames"),
        (dict(max_rss_gb=-1.0), "--max-rss-gb"),
    ],
)
def test_bad_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(WfvaeError, match=message):
        BenchSettings(**kwargs)


def test_bad_frames_and_missing_cuda(tiny_dir):
    with pytest.raises(WfvaeError, match="needs 4k\\+1 frames"):
        run_profile([tiny_dir], [(32, 32)], [6], BenchSettings(**FAST))
    import torch

    from wfvae_cli.bench import resolve_device

    if not torch.cuda.is_available():
        with pytest.raises(WfvaeError, match="CUDA is not available"):
            resolve_device("cuda:0")
    assert resolve_device("auto") in ("cpu", "cuda")


def test_presets_are_described_without_allocating():
    info = describe_model("wfvae-s")
    assert info.params["total"] == 146994524 and "random init" in info.source and info.temporal_factor == 4


def test_plot_log_scale_and_failed_cells(tmp_path):
    """A synthetic report with a 100x spread (log axes) and an OOM cell (left out of the figure)."""
    settings = BenchSettings(mode="encode")

    def cell(res: int, seconds: float, peak: int, status: str = "ok") -> CellResult:
        ok = status == "ok"
        phase = PhaseResult("encode", status, Timing((seconds,)) if ok else None,
                            MemoryStats("rss", peak, peak // 2) if ok else None, 1, 33, None if ok else "x")
        return CellResult(Cell("wfvae-s", 33, res, res), (phase,), 1)

    report = BenchReport({"device_name": "test"}, settings,
                         [ModelInfo("wfvae-s", "preset", {"total": 1, "encoder": 1, "decoder": 0}, 4, 16)],
                         [cell(256, 0.1, 2**30), cell(512, 10.0, 2**34), cell(1024, 0, 0, "oom")])
    assert plot_report(report, tmp_path / "b.pdf").stat().st_size > 0
