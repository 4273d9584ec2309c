"""How every command behaves for a user: escaped text, one-line errors with the option they typed, missing
extras, devices, Ctrl-C, start-up cost, redirected logs, run statistics and random weights."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from wfvae_cli.io import make_sample_clips
from wfvae_cli.store import open_store

from ..conftest import GOLDEN

MODEL = str(GOLDEN)
ENV = {**os.environ, "COLUMNS": "200"}


def wfvae(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wfvae_cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**ENV, **(env or {})})


def python(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=ENV)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("error:", "internal error:"))]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    make_sample_clips(root, n=2, frames=9, size=(64, 64))
    (root / "Broken one [xyz789].mp4").write_bytes(b"this is not a video")
    return root


# ------------------------------------------------------------------------------------------ user text
def test_bracketed_file_name_is_shown_verbatim(videos, tmp_path):
    out = tmp_path / "s.zarr"
    p = wfvae("encode", str(videos), "--out", str(out), "--model", MODEL, "--frames", "9", "--resolution", "64")
    assert p.returncode == 1, p.stderr  # one input rejected
    assert "Broken one [xyz789].mp4" in p.stdout
    info = wfvae("info", str(out))
    assert info.returncode == 0 and "Broken one [xyz789].mp4" in info.stdout


def test_markup_in_a_model_path_is_one_line_error():
    p = wfvae("info", "ckpt[/bold]")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    (line,) = error_lines(p.stderr)
    assert "ckpt[/bold]" in line and len(p.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------- missing extras
BLOCK = "import sys; sys.modules[{name!r}] = None  # the package is not installed\n"


@pytest.mark.parametrize(
    ("module", "argv", "command"),
    [
        ("ray", ["encode", "VIDEOS", "--out", "OUT", "--model", MODEL, "--ray", "auto", "--model-workers", "1"],
         "pip install 'wfvae[ray]'"),
        ("ray", ["train", "RECIPE", "--ray", "--train-workers", "2"], "pip install 'wfvae[ray]'"),
        ("skimage", ["samples", "OUT", "--clips", "1", "--frames", "5", "--resolution", "32"],
         "pip install 'wfvae[samples]'"),
    ],
)
def test_missing_extra_is_exit_2_with_the_install_command(module, argv, command, videos, tmp_path):
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "tiny-cpu.toml"
    argv = [{"VIDEOS": str(videos), "OUT": str(tmp_path / "out"), "RECIPE": str(recipe)}.get(a, a) for a in argv]
    p = python(BLOCK.format(name=module) + f"from wfvae_cli.cli.app import main\nmain({argv!r})\n")
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    (line,) = error_lines(p.stderr)
    assert command in line  # verbatim: Rich must not eat "[ray]"
    assert not (tmp_path / "out").exists()  # nothing was created


def test_require_reports_the_extra_and_reraises_inner_import_errors(monkeypatch):
    from wfvae_cli.extras import MissingExtraError, install_command, require

    monkeypatch.setitem(sys.modules, "lpips", None)
    with pytest.raises(MissingExtraError, match=re.escape("LPIPS needs lpips, which is not installed: "
                                                          "pip install 'wfvae[bench]'")):
        require("lpips", "LPIPS")
    assert install_command("ray") == "pip install 'wfvae[ray]'"
    assert require("json").dumps([1]) == "[1]"
    with pytest.raises(ModuleNotFoundError):  # a missing submodule of the core is a bug, not an extra
        require("wfvae_cli.no_such_module")


# ------------------------------------------------------------------------------------- options, devices
@pytest.mark.parametrize(
    "device", ["gpu", "bogus", "cuda:x"] + ([] if __import__("torch").cuda.is_available() else ["cuda"])
)
def test_bad_device_is_exit_2_before_anything_is_created(device, videos, tmp_path):
    out = tmp_path / "s.zarr"
    p = wfvae("encode", str(videos), "--out", str(out), "--model", MODEL, "--device", device)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    (line,) = error_lines(p.stderr)
    assert f"--device {device}" in line.replace("'", "")
    assert not out.exists() and "loading the model" not in p.stderr
    assert list(tmp_path.iterdir()) == []  # no store, no writer lease, nothing


def test_errors_name_the_option_the_user_typed(videos, tmp_path):
    p = wfvae("encode", str(videos), "--out", str(tmp_path / "s.zarr"), "--model", MODEL, "--clip-mode", "random")
    (line,) = error_lines(p.stderr)
    assert p.returncode == 2 and "--clip-mode" in line and "--mode " not in line
    p = wfvae("encode", str(videos), "--out", str(tmp_path / "s.zarr"), "--model", MODEL, "--model-workers", "2")
    (line,) = error_lines(p.stderr)
    assert p.returncode == 2 and "--model-workers is for --ray" in line


def test_deprecated_spelling_warns_and_still_works():
    p = wfvae("info", MODEL, "--res", "64", "--frames", "9", "--json")
    assert p.returncode == 0, p.stderr
    assert "--res is deprecated, use --resolution" in p.stderr
    assert json.loads(p.stdout)["latent_shape"][-1] == 8


def test_choices_and_flags_show_as_such_in_help():
    p = wfvae("encode", "--help")
    assert p.returncode == 0
    assert "head|uniform|sliding|full" in p.stdout and "fp32|bf16|fp16" in p.stdout
    assert not [line for line in p.stdout.splitlines() if "<bool>" in line and "Show this message" not in line]


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["encode", "--help"], ["bench", "--help"]])
def test_version_and_help_do_not_import_torch(argv):
    p = python(
        "import sys\nfrom wfvae_cli.cli.app import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    code = e.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code, file=sys.stderr)\n"
    )
    assert p.stderr.strip().splitlines()[-1] == "NO-TORCH 0", p.stderr


# ------------------------------------------------------------------------------------- random weights
def test_weightless_preset_needs_random_weights_and_the_store_says_so(videos, tmp_path):
    out = tmp_path / "r.zarr"
    args = ["encode", str(videos / "00_astronaut_64x64.mp4"), "--out", str(out), "--model", "wfvae-s",
            "--frames", "9", "--resolution", "64", "--json"]
    refused = wfvae(*args)
    assert refused.returncode == 2 and not out.exists()
    (line,) = error_lines(refused.stderr)
    assert "no trained weights" in line and "--random-weights" in line
    done = wfvae(*args, "--random-weights")
    assert done.returncode == 0, done.stderr
    store = open_store(out)
    assert store.meta.random_weights is True and store.meta.model == "wfvae-s"
    assert "RANDOM WEIGHTS" in wfvae("info", str(out)).stdout
    info = wfvae("info", "wfvae-s", "--random-weights", "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["random_weights"] is True
    tiny = wfvae("info", "wfvae-tiny", "--json")
    assert tiny.returncode == 0 and json.loads(tiny.stdout)["random_weights"] is False


# --------------------------------------------------------------------------------- observable batch jobs
def test_redirected_log_gets_periodic_plain_lines_and_log_file(videos, tmp_path):
    out, log = tmp_path / "s.zarr", tmp_path / "logs" / "encode.log"
    p = wfvae("encode", str(videos), "--out", str(out), "--model", MODEL, "--frames", "9", "--resolution", "64",
              "--log-every", "0.1", "--log-file", str(log))
    assert p.returncode == 1, p.stderr  # the broken input
    err = p.stderr.splitlines()
    assert err[0].startswith("loading the model")
    assert any(line.startswith("planning: probing 3 video(s)") for line in err)
    assert any("starting decoders" in line for line in err)
    progress = [line for line in err if re.match(r"encode: \d+/2 done · .* clips/s", line)]
    assert progress and progress[-1].startswith("encode: 2/2 done")
    assert "\x1b[" not in p.stderr  # plain text: no terminal control codes in a file
    logged = log.read_text().splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ", line) for line in logged)
    assert any("encode: 2/2 done" in line for line in logged)


def test_each_run_leaves_stats_in_the_store(videos, tmp_path):
    out = tmp_path / "s.zarr"
    args = ["encode", str(videos), "--out", str(out), "--model", MODEL, "--frames", "9", "--resolution", "64", "--json"]
    assert wfvae(*args).returncode == 1
    time.sleep(1.1)  # run ids start with the UTC second
    assert wfvae(*args).returncode == 1  # resume: nothing to do, so nothing is written (not even statistics)
    assert len(open_store(out).run_stats()) == 1
    time.sleep(1.1)
    open_store(out).chunk_file("9x64x64", "mean", 0).unlink()  # a lost shard file: the next rerun re-encodes it
    assert wfvae(*args).returncode == 1
    runs = open_store(out).run_stats()
    assert len(runs) == 2
    first, second = runs.values()
    assert first["schema"] == "wfvae-run-stats/1" and first["backend"] == "local"
    assert first["counts"]["done"] == 2 and first["counts"]["rejected"] == 1 and first["counts"]["clips"] == 2
    assert first["rates"]["clips_per_s"] > 0 and {"setup", "total", "wall", "decode", "model"} <= set(first["times_s"])
    assert second["resumed"] and second["counts"]["done"] == 2 and second["counts"]["already_done"] == 0
    assert "missing or unreadable latents" in second["warnings"][0]
    assert (out / "stats" / next(iter(runs)) / "zarr.json").is_file()  # a plain JSON object in the store
    assert len(json.loads(wfvae("info", str(out), "--json").stdout)["runs"]) == 2


def test_progress_bar_fits_80_columns(monkeypatch):
    from rich.console import Console

    from wfvae_cli.cli import console as ui
    from wfvae_cli.cli.encode import _progress

    screen = io.StringIO()
    monkeypatch.setattr(ui, "err", Console(file=screen, width=80, force_terminal=True, color_system=None))
    bar = _progress(disable=False, log_every=1e9)
    times = SimpleNamespace(wall=52.0, model_busy_fraction=0.9)
    bar.on_run(SimpleNamespace(times=times, done=120, failed=3, total=1000, frames=120 * 33))
    bar.progress.stop()
    table = Console(width=80, record=True, file=io.StringIO())
    table.print(bar.progress.make_tasks_table(bar.progress.tasks))
    (line,) = [ln for ln in table.export_text().splitlines() if ln.strip()]
    assert "123/1000" in line and "2.31 clips/s" in line and "3 failed" in line and "…" not in line


@pytest.mark.integration
def test_ctrl_c_prints_one_line_and_no_worker_tracebacks(tmp_path):
    src = tmp_path / "v"
    make_sample_clips(src, n=6, frames=9, size=(64, 64))
    p = subprocess.Popen([sys.executable, "-m", "wfvae_cli", "encode", str(src), "--out", str(tmp_path / "s.zarr"),
                          "--model", MODEL, "--frames", "9", "--resolution", "64"], stderr=subprocess.PIPE, text=True,
                         # 0.5 s per batch: the 6 clips take >= 3 s, so the interrupt lands mid-run even when this
                         # process is descheduled for a while on a loaded machine (else the job may just finish)
                         env={**ENV, "WFVAE_DEBUG_ENCODE_DELAY": "0.5"}, start_new_session=True)
    assert p.stderr is not None
    first = p.stderr.readline()  # "loading the model ...": start-up is under way, decode workers are starting
    assert first.startswith("loading the model")
    time.sleep(0.3)
    os.killpg(p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    rest = p.stderr.read()
    assert p.wait(timeout=60) == 130, rest  # the rest of stderr says where the interrupt went
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest
    assert rest.strip().splitlines()[-1] == "interrupted; rerun the same command to resume"
