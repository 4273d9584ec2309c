"""benchmarks/gpu_check.sh --dry-run: every step of the GPU check runs on the CPU at tiny size and the JSON holds
each step's figures (CI proves the script before a GPU is at hand; no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_gpu_check_dry_run_writes_every_step(tmp_path):
    out = tmp_path / "tmp.json"
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(ROOT))
    subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(out)],
                   check=True, env=env, cwd=tmp_path, timeout=900, capture_output=True)
    result = json.loads(out.read_text())
    assert result["dry_run"] is True and result["device"] == "cpu"
    assert result["cpu_vendor"] is not None and "conv_backend" in result
    for name in (
        "parity_vs_cpu_golden", "precision", "chunked_vs_direct", "throughput", "channels_last", "torch_compile",
        "encode_pipeline",
    ):
        assert "error" not in result[name], (name, result[name])
    assert result["parity_vs_cpu_golden"]["posterior_mean_max_abs"] < 5e-5
    assert result["parity_vs_cpu_golden"]["decoded_max_abs"] < 5e-5
    assert result["chunked_vs_direct"]["decode_max_abs"] < 1e-4
    assert result["chunked_vs_direct"]["encode_max_abs"] < 1e-4
    assert result["precision"]["bf16"]["posterior_mean_max_abs"] < 0.1
    assert result["precision"]["fp16"]["posterior_mean_max_abs"] < 0.05
    assert result["torch_compile"]["max_abs_vs_eager"] < 1e-4 and result["torch_compile"]["backend"] == "aot_eager"
    assert result["throughput"]["ours"]["encode"]["median_s"] > 0
    enc = result["encode_pipeline"]
    assert enc["clips"] == 3 and enc["failed"] == 0 and enc["clips_per_s"] > 0
    assert enc["staging"]["batch_device"] == "cpu" and enc["staging"]["host_buffer_pinned"] is False
    assert enc["store_vs_cpu_max_abs"] == 0.0  # the same device twice in the dry run
