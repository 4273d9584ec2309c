"""Decoding that is never silently wrong: damage detection, rotation, pixel-format agreement, keyframe seeking,
resizing while decoding, error classification and the recorded decoder identity."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
import torch

from wfvae_cli.io import (
    DamagedVideoError,
    VideoDecodeError,
    _backends,
    _decord,
    _pyav,
    _torchcodec,
    decoder_identity,
    fit_frames,
    iter_frames,
    make_sample_clips,
    probe,
    read_frames,
    to_model_input,
    write_video,
)
from wfvae_cli.io.samples import _photo, render_clip

needs_decord = pytest.mark.skipif(not _decord.available(), reason="decord is not installed on this platform")
OPTIONAL = [
    pytest.param(name, marks=pytest.mark.skipif(not mod.available(), reason=f"{name} is not installed"))
    for name, mod in (("decord", _decord), ("torchcodec", _torchcodec))
]


def sequential(path, idx) -> np.ndarray:
    """The reference: decode from frame 0 and count frames (no seeking, no timestamps)."""
    return np.concatenate(list(_pyav.iter_batches(str(path), np.asarray(idx), 10_000, 1, seek=False)))


# ------------------------------------------------------------------------------------------------ damage
@pytest.mark.parametrize("backend", ["auto", "pyav", *OPTIONAL])
def test_damaged_frames_raise_naming_the_frame(hard_inputs, backend: str) -> None:
    path = hard_inputs["damaged"]
    with pytest.raises(DamagedVideoError, match=r"damaged\.mp4: frame \d+ is damaged") as info:
        read_frames(path, np.arange(33), backend=backend)
    assert 16 <= info.value.frame <= 24 and not info.value.transient


def test_damage_crosses_the_worker_and_streams_fail_at_the_damaged_chunk(hard_inputs) -> None:
    path = hard_inputs["damaged"]
    with pytest.raises(DamagedVideoError) as info:
        read_frames(path, np.arange(33), timeout=20)
    assert info.value.frame is not None and not info.value.transient  # attributes survive pickling
    chunks = iter_frames(path, np.arange(33), 8, timeout=20)
    assert next(chunks).shape[0] == 8 and next(chunks).shape[0] == 8  # frames 0-15: before the damage
    with pytest.raises(DamagedVideoError):
        next(chunks)


def test_the_intact_gops_of_a_damaged_file_still_decode(hard_inputs) -> None:
    path = hard_inputs["damaged"]
    frames = read_frames(path, np.arange(4, 16), threads=1)  # the GOP before ends right before the damage
    assert np.array_equal(frames, sequential(path, np.arange(4, 16)))


def test_no_false_positive_on_many_clean_clips(tmp_path: Path, sample_clips, hard_inputs) -> None:
    sizes = [(64, 64), (48, 80), (80, 48), (33, 47), (96, 128), (72, 72)]
    paths = make_sample_clips(tmp_path / "h264", n=12, frames=17, size=sizes, seed=7)
    rng = np.random.default_rng(3)
    clip = render_clip(_photo("coffee"), 17, (64, 96), rng)
    paths += [
        write_video(tmp_path / "nob.mp4", clip, bframes=0),
        write_video(tmp_path / "b3_gop4.mp4", clip, gop=4, bframes=3),
        write_video(tmp_path / "vp9.webm", clip, codec="libvpx-vp9", pix_fmt="yuv420p"),
        write_video(tmp_path / "mpeg4.avi", clip, codec="mpeg4", pix_fmt="yuv420p"),
        write_video(tmp_path / "hevc.mp4", clip, codec="libx265", pix_fmt="yuv420p"),
    ]
    paths += [p for k, p in hard_inputs.items() if k != "damaged"] + [c.path for c in sample_clips]
    for path in paths:
        n = probe(path).num_frames
        assert read_frames(path, np.arange(n), threads=1).shape[0] == n, path
        assert read_frames(path, np.arange(n // 2, n)).shape[0] == n - n // 2, path  # seek path too


# ----------------------------------------------------------------------------------------------- seeking
def test_keyframe_seeking_is_frame_exact(hard_inputs) -> None:
    path = hard_inputs["long_gop"]  # 80 frames, GOP 30, 3 B-frames
    everything = sequential(path, np.arange(80))
    for idx in ([0], [79], [29, 30, 31], list(range(47, 80)), [5, 61, 62, 70], list(range(30, 63, 2))):
        assert np.array_equal(read_frames(path, idx), everything[idx]), idx
    rng = np.random.default_rng(0)
    for _ in range(5):
        idx = np.sort(rng.choice(80, 9, replace=False))
        assert np.array_equal(read_frames(path, idx), everything[idx])
    chunks = list(iter_frames(path, np.arange(40, 80), 7))
    assert np.array_equal(np.concatenate(chunks), everything[40:80])


def test_a_file_object_decodes_like_its_path(hard_inputs) -> None:
    path = hard_inputs["long_gop"]
    with open(path, "rb") as f:
        info = probe(f)
        frames = read_frames(f, [3, 50, 51], size=(32, 48))
    assert (info.num_frames, info.width, info.height) == (80, 96, 64)
    assert np.array_equal(frames, read_frames(path, [3, 50, 51], size=(32, 48)))
    with open(path, "rb") as f, pytest.raises(ValueError, match="needs a file path"):
        read_frames(f, [0], timeout=5)


def test_reading_past_the_last_frame_is_an_error(hard_inputs) -> None:
    with pytest.raises(VideoDecodeError, match="only 80 frames could be decoded but frame 80 was requested"):
        read_frames(hard_inputs["long_gop"], [79, 80])


# ----------------------------------------------------------------------------------------------- rotation
@pytest.mark.parametrize(("case", "turns"), [("rotated_90", 1), ("rotated_270", 3)])
def test_rotation_is_applied_as_a_player_shows_it(hard_inputs, case: str, turns: int) -> None:
    path, plain = hard_inputs[case], hard_inputs["unrotated"]
    info = probe(path)
    assert (info.width, info.height, info.rotation) == (96, 128, turns * 90)  # stored 128x96
    frames = read_frames(path, np.arange(9))
    assert np.array_equal(frames, np.rot90(read_frames(plain, np.arange(9)), k=turns, axes=(1, 2)))
    # resized while decoding: the displayed picture is resized, exactly as resizing afterwards
    assert np.array_equal(read_frames(path, [0, 8], size=(48, 40)), fit_frames(frames[[0, 8]], (48, 40)))


@pytest.mark.parametrize("backend", OPTIONAL)
@pytest.mark.parametrize("case", ["rotated_90", "rotated_270", "ten_bit", "odd_420", "long_gop", "unrotated"])
def test_every_backend_gives_the_same_bytes(hard_inputs, backend: str, case: str) -> None:
    path = hard_inputs[case]
    n = probe(path).num_frames
    idx = np.arange(n)
    expected = read_frames(path, idx, backend="pyav")
    assert np.array_equal(read_frames(path, idx, backend=backend), expected)
    assert np.array_equal(read_frames(path, idx, backend=backend, size=(32, 32)), fit_frames(expected, (32, 32)))


def test_ten_bit_and_odd_420_are_routed_to_pyav(hard_inputs) -> None:
    assert not _backends.identical_to_pyav(str(hard_inputs["ten_bit"]))
    assert not _backends.identical_to_pyav(str(hard_inputs["odd_420"]))
    assert _backends.identical_to_pyav(str(hard_inputs["rotated_90"]))
    assert probe(hard_inputs["ten_bit"]).pix_fmt == "yuv420p10le"


@needs_decord
def test_decord_alone_disagrees_on_ten_bit(hard_inputs) -> None:
    # why the routing exists: decord's own conversion of 10-bit frames is not PyAV's
    import decord

    path = hard_inputs["ten_bit"]
    raw = decord.VideoReader(str(path)).get_batch(list(range(9))).asnumpy()
    ours = read_frames(path, np.arange(9))
    assert raw.shape == ours.shape and np.abs(raw.astype(int) - ours).max() > 8


# --------------------------------------------------------------------------------------- resize in decoder
def test_resizing_while_decoding_equals_resizing_afterwards(sample_clips) -> None:
    for clip in sample_clips:
        idx = np.arange(0, 33, 4)
        full = read_frames(clip.path, idx)
        for size, crop in (((32, 32), "center"), ((40, 64), "center"), ((48, 24), "none")):
            small = read_frames(clip.path, idx, size=size, crop=crop)
            assert small.shape == (len(idx), *size, 3)
            assert np.array_equal(small, fit_frames(full, size, crop))
            torch.testing.assert_close(to_model_input(small), to_model_input(full, size, crop), rtol=0, atol=0)
        streamed = np.concatenate(list(iter_frames(clip.path, idx, 3, size=(32, 32), timeout=20)))
        assert np.array_equal(streamed, fit_frames(full, (32, 32)))


def test_uint8_resize_stays_within_one_level_of_the_float_resize(sample_clips) -> None:
    frames = read_frames(sample_clips[1].path, np.arange(8))  # 72x128
    ours = to_model_input(frames, (32, 48))
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    ref = torch.nn.functional.interpolate(x, size=(32, 57), mode="bilinear", antialias=True, align_corners=False)
    ref = (ref[:, :, :, 4:52] / 127.5 - 1).permute(1, 0, 2, 3)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1.0 / 127.5 + 1e-6)


# ------------------------------------------------------------------------------- classification, identity
def test_io_errors_are_transient_and_corruption_is_not(tmp_path: Path) -> None:
    err = _backends._wrap("s3://b/a.mp4", OSError(errno.EIO, "Input/output error"))
    assert err.transient and "a plain rerun of the same command retries it (no flag needed)" in str(err)
    err = _backends._wrap("a.mp4", OSError(errno.ECONNRESET, "Connection reset by peer"))
    assert err.transient
    bogus = tmp_path / "x.mp4"
    bogus.write_bytes(b"garbage" * 100)
    with pytest.raises(VideoDecodeError) as info:
        probe(bogus)
    assert not info.value.transient


def test_decoder_identity_is_recorded_and_a_different_one_is_refused() -> None:
    from wfvae_cli.store.errors import IncompatibleStoreError
    from wfvae_cli.store.meta import check_compatible
    from wfvae_cli.store.testing import demo_meta

    ident = decoder_identity()
    assert ident["backend"] == "pyav" and ident["pyav"] and ident["libavcodec"] and ident["resize"].startswith("2:")
    ours = demo_meta(preprocessing={"frames": 9, "decoder": ident})
    check_compatible(ours, demo_meta(preprocessing={"frames": 9, "decoder": dict(ident)}))
    other = demo_meta(preprocessing={"frames": 9, "decoder": {**ident, "libavcodec": "61.0.0"}})
    with pytest.raises(IncompatibleStoreError, match=r"preprocessing\.decoder\.libavcodec"):
        check_compatible(other, ours)


def test_encode_options_record_the_decoder() -> None:
    from wfvae_cli.pipeline.options import EncodeOptions

    pre = EncodeOptions(inputs=("x",), out=Path("/tmp/never.zarr")).preprocessing()
    assert pre["decoder"] == decoder_identity("auto") and pre["resize"] == decoder_identity()["resize"]


# ----------------------------------------------------------------------------------- bare-decoder limit
def test_raw_decode_rate_and_backend_choice(sample_clips) -> None:
    from wfvae_cli.io import ClipSpec, bench

    paths = [c.path for c in sample_clips[:2]]
    spec = ClipSpec(frames=9, mode="uniform", clips_per_video=2)
    assert len(bench.plan_jobs(paths, spec)) == 4
    one = bench.raw_decode_rate(paths, spec, (32, 32), "pyav", processes=1)
    two = bench.raw_decode_rate(paths, spec, (32, 32), "best", processes=2)
    assert one > 0 and two > 0
    assert bench.choose_backend(paths, spec, (32, 32)) in bench.available_backends()
    job = bench.plan_jobs(paths, spec)[0]
    for backend in bench.available_backends():
        assert bench.decode_clip(job, backend, bench.ResizeSpec(32, 32)) == 9
