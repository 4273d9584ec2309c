"""pipeline/stages.py: prefetch bounded in bytes, and the batch input built without extra copies."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from wfvae_cli.io import to_model_input
from wfvae_cli.pipeline import EncodeOptions
from wfvae_cli.pipeline import stages as stages_mod
from wfvae_cli.pipeline.stages import LoadedClip, Task, clip_bytes, prefetch_clips
from wfvae_cli.store import SampleRecord


def _task(row: int, frames: int, side: int) -> Task:
    rec = SampleRecord(source=f"v{row}.mp4", clip_start=0, clip_end=frames, frame_indices=tuple(range(frames)),
                       fps=30.0, width=side, height=side)
    return Task("b", row, rec, (side, side))


def _opts(tmp_path: Path, **kw) -> EncodeOptions:
    return EncodeOptions(inputs=("x.mp4",), out=tmp_path / "s.zarr", device="cpu", **kw)


@pytest.mark.parametrize("budget_clips", [1.5, 3.0, 40.0])
def test_prefetch_is_bounded_in_bytes_and_ordered(monkeypatch, tmp_path, budget_clips):
    """In flight + ready never exceeds the byte budget (whatever the depth), and clips come out in order."""
    tasks = [_task(i, 9, 16 if i % 3 else 32) for i in range(12)]  # mixed sizes: 6912 or 27648 bytes
    budget = int(budget_clips * clip_bytes(tasks[1]))
    started: list[Task] = []
    lock = threading.Lock()

    def fake_load(task, opts, retries=1):
        with lock:
            started.append(task)
        return LoadedClip(task, torch.zeros((9, *task.size, 3), dtype=torch.uint8))

    monkeypatch.setattr(stages_mod, "load_clip", fake_load)
    consumed = 0
    rows = []
    for clip in prefetch_clips(tasks, _opts(tmp_path), depth=100, threads=3, max_bytes=budget):
        with lock:
            outstanding = sum(clip_bytes(t) for t in started) - consumed  # incl. the clip just received
        assert outstanding <= max(budget, clip_bytes(clip.task)), (outstanding, budget)
        consumed += clip_bytes(clip.task)
        rows.append(clip.task.row)
    assert rows == list(range(12))


def test_prefetch_default_budget_is_the_option(monkeypatch, tmp_path):
    """A clip larger than prefetch_bytes still loads, alone (one in flight at a time)."""
    tasks = [_task(i, 9, 32) for i in range(4)]
    seen_in_flight = []
    state = {"live": 0}
    lock = threading.Lock()

    def fake_load(task, opts, retries=1):
        with lock:
            state["live"] += 1
            seen_in_flight.append(state["live"])
        return LoadedClip(task, torch.zeros((9, 32, 32, 3), dtype=torch.uint8))

    monkeypatch.setattr(stages_mod, "load_clip", fake_load)
    out = []
    for clip in prefetch_clips(tasks, _opts(tmp_path, prefetch_bytes=1000), depth=8, threads=4):
        with lock:
            state["live"] -= 1
        out.append(clip.task.row)
    assert out == [0, 1, 2, 3] and max(seen_in_flight) == 1


def test_prefetch_bytes_must_be_positive(tmp_path):
    from wfvae_cli.errors import WfvaeError

    with pytest.raises(WfvaeError, match="prefetch"):
        _opts(tmp_path, prefetch_bytes=0)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_model_input_matches_to_model_input(tmp_path, dtype):
    """The batch built in place from uint8 clips is bit-identical to stacking to_model_input(...).to(dtype)."""
    from wfvae_cli.bench.standin import StandInModel
    from wfvae_cli.dtypes import torch_dtype
    from wfvae_cli.model.config import preset_config

    encoder = stages_mod.LatentEncoder(StandInModel(preset_config("wfvae-s"), 0.0), _opts(tmp_path, dtype=dtype))
    rng = np.random.default_rng(0)
    frames = [torch.from_numpy(rng.integers(0, 256, (5, 16, 24, 3), dtype=np.uint8)) for _ in range(3)]
    clips = [LoadedClip(_task(i, 5, 16), f) for i, f in enumerate(frames)]
    expected = torch.stack([to_model_input(f.numpy()) for f in frames]).to(torch_dtype(dtype))
    got = encoder.model_input(clips)
    assert got.dtype == expected.dtype
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    again = encoder.model_input(clips[:2])  # a smaller batch reallocates; the same size reuses the buffer
    torch.testing.assert_close(again, expected[:2], rtol=0, atol=0)
    # the accelerator path (uint8 staged, copied, converted on the device) on the CPU: the same bytes
    encoder.stage_on_device = True
    staged = encoder.model_input(clips)
    assert encoder._host is not None and encoder._host.dtype == torch.uint8
    torch.testing.assert_close(staged, expected, rtol=0, atol=0)
