"""Two Ray nodes on one machine (`ray start --head` + `ray start --address`, separate temp dirs): the
encode job uses both, loses the second node mid-run and still completes with the local run's store.

Runs ``scripts/ray_two_nodes.py`` in a subprocess: that cluster is its own, apart from the Ray session
other tests share in this process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # a two-node Ray cluster

pytest.importorskip("ray", reason="Ray tests need the 'ray' extra: pip install -e '.[dev,ray]'")

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ray_two_nodes.py"


def test_two_node_cluster_uses_both_nodes_and_survives_losing_one():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--clips", "12", "--kill-node"], capture_output=True,
                          text=True, timeout=300)
    report = proc.stdout + "\n" + proc.stderr[-3000:]
    assert proc.returncode == 0, report
    for check in ("workers ran on both node ids", "every clip encoded once", "store equals the local run (bitwise)",
                  "second node killed mid-run, job completed"):
        assert f"ok   {check}" in proc.stdout, report
