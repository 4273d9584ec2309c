"""The `wfvae` CLI: thin commands over the library, one-line errors, meaningful exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ..conftest import GOLDEN


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wfvae_cli", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_commands():
    out = run("--help")
    assert out.returncode == 0 and "info" in out.stdout


def test_info_json_golden():
    out = run("info", str(GOLDEN), "--resolution", "64", "--frames", "17", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["latent_shape"] == [4, 5, 8, 8]
    assert data["params"]["total"] == 996122
    assert data["compression"]["temporal"] == 4 and len(data["fingerprint"]) == 64
    assert data["config"]["l1_dowmsample_block"] == "Downsample"


def test_info_table():
    out = run("info", "wfvae-s-8chn", "--random-weights", "--resolution", "128x256")
    assert out.returncode == 0, out.stderr
    assert "145.577M" in out.stdout and "(8, 9, 16, 32)" in out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["info", "does/not/exist/"], "no such file, directory or preset"),
        (["info", "wfvae-s", "--resolution", "100"], "multiples of 8"),
    ],
)
def test_user_errors_are_one_line_exit_2(args, message):
    out = run(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_debug_shows_traceback():
    out = run("--debug", "info", "does/not/exist/")
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_missing_argument_is_usage_error():
    assert run("info").returncode == 2


def test_demo_json(tmp_path):
    """The README's main-job command, at the smallest size, on the golden model."""
    out = run("demo", "--model", str(GOLDEN), "--out", str(tmp_path / "demo"), "--clips", "1", "--frames", "9",
              "--resolution", "64", "--chunk-frames", "4", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    (clip,) = data["clips"]
    assert clip["latent_shape"] == [4, 3, 8, 8]
    assert 0 < clip["psnr"] < 100 and clip["max_abs_chunked_vs_direct"] < 1e-4
    assert len(list((tmp_path / "demo").glob("*.mp4"))) == 1
