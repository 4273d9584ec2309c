"""probe / read_frames / iter_frames: both backends, the fallback, broken inputs and the decode timeout."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from wfvae_cli import faults
from wfvae_cli.errors import WfvaeError
from wfvae_cli.io import _backends, _decord, _worker
from wfvae_cli.io.samples import render_clip, write_video
from wfvae_cli.io.video import VideoDecodeError, iter_frames, probe, read_frames

needs_decord = pytest.mark.skipif(not _decord.available(), reason="decord is not installed on this platform")


def test_probe_reads_the_header_of_every_sample(sample_clips) -> None:
    for clip in sample_clips:
        info = probe(clip.path)
        assert (info.num_frames, info.fps, info.width, info.height) == (
            clip.frames,
            clip.fps,
            clip.width,
            clip.height,
        )
        assert info.duration == pytest.approx(clip.frames / clip.fps)
        assert (info.codec, info.backend, info.path) == ("h264", "pyav", str(clip.path))


@needs_decord
def test_decord_and_pyav_give_identical_frames(sample_clips) -> None:
    for clip in sample_clips:  # square, landscape, portrait, odd size (4:4:4)
        everything = np.arange(clip.frames)
        a = read_frames(clip.path, everything, backend="decord")
        b = read_frames(clip.path, everything, backend="pyav")
        assert a.dtype == np.uint8 and a.shape == (clip.frames, clip.height, clip.width, 3)
        assert np.array_equal(a, b), clip.path.name
        assert (
            len(np.unique(a.reshape(clip.frames, -1), axis=0)) == clip.frames
        )  # it moves: no repeated frame


@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_read_frames_any_order_with_repeats_is_a_gather(sample_clips, backend: str) -> None:
    path = sample_clips[1].path
    full = read_frames(path, np.arange(33), backend="pyav")
    idx = np.array([20, 3, 3, 32, 0, 20])
    assert np.array_equal(read_frames(path, idx, backend=backend), full[idx])
    assert np.array_equal(read_frames(path, [7], backend=backend), full[[7]])


@pytest.mark.parametrize(("backend", "timeout"), [("auto", None), ("pyav", None), ("auto", 20.0)])
def test_iter_frames_chunks_match_read_frames(sample_clips, backend: str, timeout: float | None) -> None:
    path = sample_clips[0].path
    idx = np.array([0, 0, 1, 2, 2, 2, 5, 8, 8, 13, 21, 22, 30, 32])  # repeats straddle chunk borders
    chunks = list(iter_frames(path, idx, 4, backend=backend, timeout=timeout))
    assert [len(c) for c in chunks] == [4, 4, 4, 2]
    assert np.array_equal(np.concatenate(chunks), read_frames(path, idx, backend="pyav"))


def test_iter_frames_rejects_decreasing_indices(sample_clips) -> None:
    with pytest.raises(ValueError, match="non-decreasing"):
        next(iter_frames(sample_clips[0].path, [3, 2], 4))


def test_decord_failing_part_way_continues_with_pyav(sample_clips, monkeypatch) -> None:
    path = sample_clips[2].path
    expected = read_frames(path, np.arange(33), backend="pyav")

    def failing_after_one_batch(path, wanted, batch, threads, fit=None):
        from wfvae_cli.io import _pyav

        yield next(_pyav.iter_batches(path, wanted, batch, threads, fit))  # stands in for decord's frames
        raise RuntimeError("simulated decord failure")

    monkeypatch.setattr(_decord, "available", lambda: True)
    monkeypatch.setattr(_decord, "version", lambda: "test")
    monkeypatch.setattr(_decord, "errors", lambda: (RuntimeError,))
    monkeypatch.setattr(_decord, "iter_batches", failing_after_one_batch)
    chunks = list(iter_frames(path, np.arange(33), 8, backend="decord"))
    assert [len(c) for c in chunks] == [8, 8, 8, 8, 1]
    assert np.array_equal(np.concatenate(chunks), expected)


def test_auto_is_pyav_and_never_calls_decord(sample_clips, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("auto must not decode with decord (it cannot detect damaged frames)")

    monkeypatch.setattr(_decord, "iter_batches", boom)
    assert read_frames(sample_clips[0].path, [0, 1]).shape == (2, 64, 64, 3)
    assert _backends.resolve_backend("auto") == "pyav"


@needs_decord
def test_decord_reads_a_file_it_rejects_through_pyav(tmp_path: Path) -> None:
    # decord 0.6.0 fails on 72-pixel-wide 4:2:0 frames ("The size must exactly match"): the fallback hides it.
    import decord

    frames = render_clip(np.full((64, 64, 3), 90, np.uint8), 5, (64, 72), np.random.default_rng(0))
    path = write_video(tmp_path / "narrow.mp4", frames)
    with pytest.raises(decord.DECORDError):
        decord.VideoReader(str(path)).get_batch(list(range(5)))  # proves the next line needed the fallback
    assert np.array_equal(read_frames(path, np.arange(5), backend="decord"), read_frames(path, np.arange(5)))


def test_without_decord_auto_uses_pyav_and_decord_is_a_user_error(sample_clips, monkeypatch) -> None:
    monkeypatch.setattr(_decord, "available", lambda: False)
    assert read_frames(sample_clips[0].path, [0, 32]).shape == (2, 64, 64, 3)
    with pytest.raises(WfvaeError, match="'decord' is not installed"):
        read_frames(sample_clips[0].path, [0], backend="decord")
    with pytest.raises(WfvaeError, match="unknown decode backend 'ffmpeg'"):
        read_frames(sample_clips[0].path, [0], backend="ffmpeg")  # type: ignore[arg-type]


@pytest.mark.parametrize("case", ["truncated_index", "zero_bytes", "text", "image", "directory"])
def test_broken_files_raise_a_one_line_decode_error_naming_the_file(bad_inputs, case: str) -> None:
    path = bad_inputs[case]
    for call in (lambda: probe(path), lambda: read_frames(path, [0])):
        with pytest.raises(VideoDecodeError) as err:
            call()
        message = str(err.value)
        assert message.startswith(f"{path}: ") and "\n" not in message


def test_broken_file_messages_say_what_is_wrong(bad_inputs, tmp_path: Path) -> None:
    expected = {
        "zero_bytes": "is empty (0 bytes)",
        "image": "is a still image",
        "directory": "is a directory",
    }
    for case, words in expected.items():
        with pytest.raises(VideoDecodeError, match=re.escape(words)):
            probe(bad_inputs[case])
    with pytest.raises(VideoDecodeError, match="no such file"):
        read_frames(tmp_path / "never_written.mp4", [0])


def test_truncated_file_probes_but_fails_when_reading_past_the_cut(bad_inputs) -> None:
    path = bad_inputs["truncated"]
    info = probe(path)  # the header at the front survived the cut and still claims 33 frames
    assert info.num_frames == 33
    assert read_frames(path, [0, 1, 2]).shape == (3, 64, 64, 3)  # frames before the cut are fine
    with pytest.raises(VideoDecodeError, match=r"truncated\.mp4: only \d+ frames could be decoded"):
        read_frames(path, np.arange(33))


def test_unreadable_file_is_reported_as_a_permission_problem(sample_clips, monkeypatch) -> None:
    # root reads a chmod-000 file anyway, so the permission check is exercised through os.access
    monkeypatch.setattr(_backends.os, "access", lambda *_: False)
    with pytest.raises(VideoDecodeError, match=r"not readable \(permission denied\)"):
        probe(sample_clips[0].path)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_chmod_000_file_is_a_decode_error(sample_clips, tmp_path: Path) -> None:
    locked = tmp_path / "locked.mp4"
    locked.write_bytes(sample_clips[0].path.read_bytes())
    locked.chmod(0)
    with pytest.raises(VideoDecodeError, match=r"locked\.mp4: is not readable"):
        read_frames(locked, [0])


def test_edge_case_videos_decode(bad_inputs) -> None:
    for case, (frames, h, w) in {
        "one_frame": (1, 64, 64),
        "short": (17, 64, 64),
        "odd_size": (9, 97, 175),
        "portrait": (9, 256, 144),
        "large": (3, 1080, 1920),
    }.items():
        info = probe(bad_inputs[case])
        assert (info.num_frames, info.height, info.width) == (frames, h, w), case
        assert read_frames(bad_inputs[case], [frames - 1]).shape == (1, h, w, 3), case


def test_errors_cross_the_worker_process_unchanged(bad_inputs, sample_clips) -> None:
    with pytest.raises(VideoDecodeError, match="still image"):
        probe(bad_inputs["image"], timeout=20)
    with pytest.raises(VideoDecodeError, match=r"only \d+ frames could be decoded"):
        list(iter_frames(bad_inputs["truncated"], np.arange(33), 4, timeout=20))
    # the worker survived those errors and serves the next call correctly
    path = sample_clips[0].path
    assert np.array_equal(read_frames(path, [5, 1], timeout=20), read_frames(path, [5, 1]))


def test_timeout_kills_a_hung_decoder_quickly_and_the_pool_recovers(sample_clips, monkeypatch) -> None:
    path = sample_clips[3].path
    monkeypatch.setenv(faults.DECODE_HANG, path.name)
    t0 = time.monotonic()
    with pytest.raises(VideoDecodeError, match=rf"{re.escape(path.name)}: decoding timed out after 0.5 s") as info:
        read_frames(path, [0, 1], timeout=0.5)
    assert time.monotonic() - t0 < 5
    assert info.value.transient  # a deadline on a loaded machine: retried on resume, never "rejected"
    with pytest.raises(VideoDecodeError, match="timed out"):
        next(iter_frames(path, np.arange(9), 4, timeout=0.5))
    monkeypatch.delenv(faults.DECODE_HANG)
    assert read_frames(path, [0, 1], timeout=20).shape == (2, 97, 175, 3)


def test_abandoned_stream_leaves_the_worker_consistent(sample_clips) -> None:
    a, b = sample_clips[0].path, sample_clips[1].path
    stream = iter_frames(a, np.arange(33), 4, timeout=20)
    first = next(stream)
    stream.close()  # the child still holds chunks in flight: they must not leak into the next call
    second = read_frames(b, [3, 4], timeout=20)
    assert np.array_equal(first, read_frames(a, np.arange(4)))
    assert np.array_equal(second, read_frames(b, [3, 4]))


@pytest.mark.integration  # SIGKILL
def test_a_crashed_worker_becomes_a_decode_error(sample_clips) -> None:
    worker = _worker.DecodeWorker()
    try:
        os.kill(worker._proc.pid, signal.SIGSEGV)  # what a segfault in FFmpeg looks like from outside
        with pytest.raises(VideoDecodeError, match=r"decoder process died \(exit code -11\)") as info:
            worker.read(str(sample_clips[0].path), np.arange(2), "auto", 0, 20.0)
        assert not worker.alive and not info.value.transient  # the file crashes FFmpeg: permanent
    finally:
        worker.close()
    worker = _worker.DecodeWorker()
    try:
        os.kill(worker._proc.pid, signal.SIGKILL)  # the OOM killer or an operator: not the file's fault
        with pytest.raises(VideoDecodeError, match=r"decoder process was killed \(SIGKILL") as info:
            worker.read(str(sample_clips[0].path), np.arange(2), "auto", 0, 20.0)
        assert info.value.transient
    finally:
        worker.close()
