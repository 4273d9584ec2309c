"""`wfvae train --ray --train-workers 2`: the same trainer under Ray Train's TorchTrainer (CPU, gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .test_train_common import write_tiny_recipe

pytestmark = pytest.mark.integration  # Ray Train workers

pytest.importorskip("ray.train", reason="Ray Train needs the 'ray' extra: pip install -e '.[dev,ray]'")


def test_ray_train_two_workers(tmp_path):
    recipe = write_tiny_recipe(tmp_path, "ray")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": ""}
    out = subprocess.run(
        [sys.executable, "-m", "wfvae_cli", "train", str(recipe), "schedule.steps=2", "schedule.checkpoint_every=2",
         "--ray", "--train-workers", "2"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    events = [json.loads(line) for line in (tmp_path / "ray" / "metrics.jsonl").read_text().splitlines()]
    assert events[0]["kind"] == "start" and events[0]["world_size"] == 2
    assert [e["step"] for e in events if e["kind"] == "train"] == [1, 2]
    assert (tmp_path / "ray" / "checkpoints" / "step_0000002.pt").is_file()
