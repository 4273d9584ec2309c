"""`wfvae bench` through the real entry point (few subprocesses: each pays ~2 s of imports)."""

from __future__ import annotations

import json
import subprocess
import sys

from ..conftest import tiny_model


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wfvae_cli", *args], capture_output=True, text=True, timeout=300)


def test_profile_json_out_and_plot(tmp_path):
    model = tiny_model().save_pretrained(tmp_path / "tiny")
    out, png = tmp_path / "r" / "report.json", tmp_path / "bench.png"
    proc = run("bench", "--model", str(model), "--resolution", "32", "--frames", "5", "--warmup", "0", "--repeat", "1",
               "--threads", "1", "--mode", "encode", "--conv-algorithm", "winograd", "--json", "--report", str(out),
               "--plot", str(png))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # stdout is nothing but the report (progress goes to stderr)
    assert data["schema"] == "wfvae-bench/1" and data == json.loads(out.read_text())
    assert data["settings"]["conv_algorithm"] == "winograd"
    (cell,) = data["cells"]
    assert cell["status"] == "ok" and cell["isolated"] and "decode" not in cell
    assert png.stat().st_size > 0


def test_recon_help_and_user_error():
    help_ = run("bench", "recon", "--help")
    assert help_.returncode == 0 and "--compare-chunked" in help_.stdout
    bad = run("bench", "--resolution", "30", "--model", "wfvae-s")
    assert bad.returncode == 2 and "multiples of 8" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    algo = run("bench", "--conv-algorithm", "fft", "--model", "wfvae-s")
    assert algo.returncode == 2 and "--conv-algorithm" in algo.stderr and len(algo.stderr.strip().splitlines()) == 1


def test_recon_reports_bad_videos_and_exits_1(tmp_path):
    from wfvae_cli.io import make_sample_clips

    model = tiny_model().save_pretrained(tmp_path / "tiny")
    make_sample_clips(tmp_path / "videos", n=1, frames=9, size=(32, 32))
    (tmp_path / "videos" / "broken.mp4").write_bytes(b"")
    proc = run("bench", "recon", str(tmp_path / "videos"), "--model", str(model), "--frames", "9", "--resolution", "32",
               "--metrics", "psnr,ssim", "--compare-chunked", "4", "--device", "cpu", "--json")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert len(data["clips"]) == 1 and data["max_abs_diff"] < 1e-4
    assert "broken.mp4" in data["failures"][0]["path"] and "broken.mp4" in proc.stderr
