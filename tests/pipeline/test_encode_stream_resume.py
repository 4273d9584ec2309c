"""`--clip-mode full` checkpoints: kill -9 mid-video (at exact checkpoint moments) and the rerun continues from the
last chunk, bit-identical to an uninterrupted run, encoding only the frames after the checkpoint."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from wfvae_cli.io import make_sample_clips
from wfvae_cli.model.streaming import StreamEncoder
from wfvae_cli.pipeline import EncodeOptions, encode_dataset
from wfvae_cli.store import open_store

from ..conftest import GOLDEN, assert_same_store

MODEL = str(GOLDEN)
FRAMES, CHUNK = 41, 8  # one long video: 5 chunks of 8 frames + 1, then the flush


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("long")
    make_sample_clips(root, n=1, frames=FRAMES, size=(64, 64))
    return root


def options(inputs: Path, out: Path, **kw) -> EncodeOptions:
    base = dict(model=MODEL, clip_mode="full", chunk_frames=CHUNK, size=(64, 64), workers=1, decode_timeout=60.0)
    base.update(kw)
    return EncodeOptions(inputs=(str(inputs),), out=out, **base)


@pytest.fixture(scope="module")
def reference(video, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "ref.zarr"
    assert encode_dataset(options(video, out)).ok
    return out


def _killed_run(video: Path, out: Path, at: str) -> None:
    code = ("import sys; from pathlib import Path; from tests.pipeline.test_encode_stream_resume import options; "
            "from wfvae_cli.pipeline import encode_dataset; "
            "encode_dataset(options(Path(sys.argv[1]), Path(sys.argv[2])))")
    env = {**os.environ, "WFVAE_DEBUG_KILL_STREAM": at,
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-c", code, str(video), str(out)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == -9, p.stderr  # SIGKILLed at the hook, not finished


def _count_pushed(monkeypatch) -> list[int]:
    pushed: list[int] = []
    original = StreamEncoder.push

    def counting(self, frames: torch.Tensor):
        pushed.append(frames.shape[2])
        return original(self, frames)

    monkeypatch.setattr(StreamEncoder, "push", counting)
    return pushed


@pytest.mark.integration  # SIGKILL
@pytest.mark.parametrize(("at", "saved_frames"), [("3", 24), ("3+", 16), ("6", FRAMES)])
def test_kill_mid_video_loses_at_most_one_chunk(video, reference, tmp_path, monkeypatch, at, saved_frames):
    """``N``: killed right after the N-th checkpoint; ``N+``: right before it (the chunk being encoded is lost);
    ``6``: after the last checkpoint (stream complete), before the row was committed."""
    out = tmp_path / "s.zarr"
    _killed_run(video, out, at)
    store = open_store(out)
    assert store.counts("41x64x64") == {"pending": 1, "done": 0, "failed": 0, "transient": 0}
    state = store.get_stream_object("41x64x64", 0, "state")
    assert state is not None and torch.load(io.BytesIO(state), weights_only=True)["frames"] == saved_frames

    pushed = _count_pushed(monkeypatch)
    again = encode_dataset(options(video, out))
    assert again.ok and again.done == 1
    assert sum(pushed) == FRAMES - saved_frames  # only the frames after the checkpoint were encoded again
    assert_same_store(reference, out)  # bit-identical to the uninterrupted run
    assert store.get_stream_object("41x64x64", 0, "state") is None  # cleared once the row is done
    assert not (out / "buckets" / "41x64x64" / "status" / ".stream" / "0").exists()


def test_a_checkpoint_of_other_settings_is_ignored(video, reference, tmp_path, monkeypatch):
    out = tmp_path / "s.zarr"
    _killed_run(video, out, "2")
    store = open_store(out, "r+")
    raw = store.get_stream_object("41x64x64", 0, "state")
    state = torch.load(io.BytesIO(raw), weights_only=True)
    state["fingerprint"] = "0" * 64  # as if made with other weights, device or precision
    buf = io.BytesIO()
    torch.save(state, buf)
    store.put_stream_object("41x64x64", 0, "state", buf.getvalue())
    pushed = _count_pushed(monkeypatch)
    assert encode_dataset(options(video, out)).done == 1
    assert sum(pushed) == FRAMES  # started again from frame 0
    assert_same_store(reference, out)
