"""ClipSpec validation and plan_clips index selection, against hand-computed cases and invariants."""

from __future__ import annotations

import numpy as np
import pytest

from wfvae_cli.errors import WfvaeError
from wfvae_cli.io.sampling import ClipPlanError, ClipSpec, plan_clips, segment_frames
from wfvae_cli.io.video import VideoInfo, probe, read_frames


def video(num_frames: int, fps: float = 30.0, name: str = "/data/clip.mp4") -> VideoInfo:
    return VideoInfo(name, num_frames, fps, 320, 240, num_frames / fps, "h264")


def starts(clips) -> list[int]:
    return [c.start_frame for c in clips]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frames": 32}, "not 4k\\+1"),
        ({"frames": 0}, "not 4k\\+1"),
        ({"frames": 2}, "not 4k\\+1"),
        ({"stride": 2, "fps": 8.0}, "alternatives"),
        ({"stride": 0}, "--sample-rate 0 must be a whole number >= 1"),
        ({"stride": 1.5}, "--sample-rate 1.5"),
        ({"fps": -1.0}, "--fps -1.0 must be a positive"),
        ({"fps": float("nan")}, "--fps nan"),
        ({"mode": "random"}, "--clip-mode 'random' is unknown"),
        ({"mode": "head", "clips_per_video": 3}, "one clip per video"),
        ({"mode": "uniform", "clips_per_video": 0}, "must be >= 1 with --clip-mode uniform"),
    ],
)
def test_bad_options_fail_when_the_spec_is_built(kwargs, message: str) -> None:
    with pytest.raises(WfvaeError, match=message):
        ClipSpec(**kwargs)


@pytest.mark.parametrize("frames", [1, 5, 9, 17, 33, 65, 129])
def test_4k_plus_1_frame_counts_are_accepted(frames: int) -> None:
    assert ClipSpec(frames=frames).frames == frames


def test_stride_picks_every_nth_frame() -> None:
    (clip,) = plan_clips(video(100), ClipSpec(frames=5, stride=3))
    assert clip.indices.tolist() == [0, 3, 6, 9, 12]
    assert clip.indices.dtype == np.int64
    assert (clip.start_frame, clip.end_frame, clip.stride, clip.fps) == (0, 13, 3.0, 10.0)


@pytest.mark.parametrize(
    ("source_fps", "target_fps", "expected"),
    [
        (30.0, 12.0, [0, 3, 5, 8, 10]),  # step 2.5: 0, 2.5→3 (ties round up), 5, 7.5→8, 10
        (24.0, 30.0, [0, 1, 2, 2, 3]),  # step 0.8 (upsampling repeats): 0, .8→1, 1.6→2, 2.4→2, 3.2→3
        # NTSC 29.97 → 23.976: step 1.25 computed in floats; 2.5 must still round up to 3
        (30000 / 1001, 24000 / 1001, [0, 1, 3, 4, 5]),
        (25.0, 25.0, [0, 1, 2, 3, 4]),
    ],
)
def test_fps_resampling_uses_nearest_time_rounding(
    source_fps: float, target_fps: float, expected: list[int]
) -> None:
    (clip,) = plan_clips(video(100, source_fps), ClipSpec(frames=5, fps=target_fps))
    assert clip.indices.tolist() == expected
    assert clip.fps == pytest.approx(target_fps)
    assert clip.stride == pytest.approx(source_fps / target_fps)


def test_fps_grid_never_goes_past_the_last_frame() -> None:
    # 10 frames at 30 fps → 12 fps: grid 0, 3, 5, 8 (the next, 10, does not exist): only 4 frames
    with pytest.raises(ClipPlanError, match=r"clip\.mp4: has 4 frames at 12 fps, needs 5"):
        plan_clips(video(10), ClipSpec(frames=5, fps=12.0))
    (clip,) = plan_clips(video(10), ClipSpec(frames=1, fps=12.0, mode="full"))
    assert clip.indices.tolist() == [0]  # 4 grid frames → largest 4k+1 is 1


def test_too_short_video_names_the_file_and_the_numbers() -> None:
    with pytest.raises(ClipPlanError, match=r"^/data/clip\.mp4: has 20 frames at stride 2, needs 33"):
        plan_clips(video(40), ClipSpec(frames=33, stride=2))
    (clip,) = plan_clips(video(65), ClipSpec(frames=33, stride=2))  # exactly enough: 0, 2, …, 64
    assert clip.indices[-1] == 64


def test_start_and_end_seconds_bound_the_segment() -> None:
    info = video(300)  # 10 s at 30 fps
    (clip,) = plan_clips(info, ClipSpec(frames=5), start=1.0, end=2.0)
    assert clip.indices.tolist() == [30, 31, 32, 33, 34]  # 1.0 s * 30 is frame 30 exactly (not 31)
    (clip,) = plan_clips(info, ClipSpec(frames=1, mode="full"), start=1.0, end=2.0)
    assert (clip.start_frame, clip.end_frame, clip.num_frames) == (30, 59, 29)  # 30 frames → 29 = 4·7+1
    (clip,) = plan_clips(info, ClipSpec(frames=5), start=0.99)
    assert clip.start_frame == 30  # first frame shown at or after 0.99 s
    (clip,) = plan_clips(video(300, 25.0), ClipSpec(frames=5), start=2.2, end=4.4)
    assert (clip.start_frame, clip.indices[-1]) == (55, 59)  # 2.2 * 25 is 55.00000000000001 in floats
    (clip,) = plan_clips(video(300, 25.0), ClipSpec(frames=1, mode="full"), start=2.2, end=4.4)
    assert segment_frames(video(300, 25.0), 2.2, 4.4) == (55, 110)  # 4.4 * 25 is 110.00000000000001
    # frames 55..109 (frame 110 is shown at 4.4 s, excluded): 55 frames → 53 = 4·13+1, i.e. 55..107
    assert (clip.start_frame, clip.end_frame, clip.num_frames) == (55, 108, 53)
    (clip,) = plan_clips(info, ClipSpec(frames=1, mode="full"), end=99.0)  # end past the video: clamped
    assert clip.end_frame == 297


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (12.0, None, "start 12 s is past the end"),
        (3.0, 2.0, "end 2 s is not after start 3 s"),
        (-1.0, None, "start -1.0"),
    ],
)
def test_invalid_segments_are_clip_plan_errors(start, end, message: str) -> None:
    with pytest.raises(ClipPlanError, match=message):
        plan_clips(video(300), ClipSpec(frames=5), start=start, end=end)


@pytest.mark.parametrize(
    ("num_frames", "kept"), [(33, 33), (34, 33), (35, 33), (36, 33), (37, 37), (1, 1), (4, 1)]
)
def test_full_mode_trims_down_to_4k_plus_1(num_frames: int, kept: int) -> None:
    (clip,) = plan_clips(video(num_frames), ClipSpec(frames=1, mode="full"))
    assert clip.indices.tolist() == list(range(kept))
    assert clip.end_frame == kept


def test_full_mode_frames_is_the_minimum_length() -> None:
    with pytest.raises(ClipPlanError, match="has 20 frames at stride 1, needs 33"):
        plan_clips(video(20), ClipSpec(frames=33, mode="full"))


def test_uniform_spreads_clips_from_start_to_end() -> None:
    clips = plan_clips(video(100), ClipSpec(frames=9, mode="uniform", clips_per_video=3))
    assert starts(clips) == [0, 46, 91]  # slack 91: 0, 45.5→46, 91; the last clip ends at the last frame
    assert clips[-1].end_frame == 100
    assert [c.clip_index for c in clips] == [0, 1, 2]
    (centred,) = plan_clips(video(100), ClipSpec(frames=9, mode="uniform", clips_per_video=1))
    assert centred.start_frame == 45


def test_uniform_in_grid_units_with_a_stride() -> None:
    clips = plan_clips(video(100), ClipSpec(frames=5, stride=4, mode="uniform", clips_per_video=2))
    # grid 0, 4, …, 96 (25 entries); windows start at grid entries 0 and 20 → source frames 0 and 80
    assert [c.indices.tolist() for c in clips] == [[0, 4, 8, 12, 16], [80, 84, 88, 92, 96]]


def test_uniform_merges_identical_clips_of_a_short_video() -> None:
    clips = plan_clips(video(10), ClipSpec(frames=9, mode="uniform", clips_per_video=5))
    assert starts(clips) == [0, 1]


def test_sliding_windows_are_consecutive_and_capped() -> None:
    assert starts(plan_clips(video(30), ClipSpec(frames=9, mode="sliding", clips_per_video=0))) == [0, 9, 18]
    assert starts(plan_clips(video(30), ClipSpec(frames=9, mode="sliding", clips_per_video=2))) == [0, 9]
    clips = plan_clips(video(100, 30.0), ClipSpec(frames=5, fps=12.0, mode="sliding", clips_per_video=0))
    flat = np.concatenate([c.indices for c in clips])
    assert flat[:10].tolist() == [0, 3, 5, 8, 10, 13, 15, 18, 20, 23]  # one continuous 12 fps timeline


def test_every_plan_stays_inside_the_video() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        n, src_fps = int(rng.integers(1, 400)), float(rng.choice([8, 15, 23.976, 25, 29.97, 30, 60]))
        mode = str(rng.choice(["head", "uniform", "sliding", "full"]))
        step = (
            {"stride": int(rng.integers(1, 5))} if rng.random() < 0.5 else {"fps": float(rng.uniform(4, 70))}
        )
        spec = ClipSpec(
            frames=int(rng.choice([1, 5, 9, 17, 33])),
            mode=mode,  # type: ignore[arg-type]
            clips_per_video=int(rng.integers(1, 4)) if mode in ("uniform", "sliding") else 1,
            **step,
        )
        try:
            clips = plan_clips(video(n, src_fps), spec)
        except ClipPlanError as err:
            assert "needs" in str(err)
            continue
        for clip in clips:
            idx = clip.indices
            assert idx.min() >= 0 and idx.max() < n
            assert np.all(np.diff(idx) >= 0)
            assert len(idx) % 4 == 1 and len(idx) >= spec.frames
            if spec.mode != "full":
                assert len(idx) == spec.frames


def test_plan_then_read_a_real_clip(sample_clips) -> None:
    clip_file = sample_clips[0]
    (clip,) = plan_clips(probe(clip_file.path), ClipSpec(frames=9, fps=8.0))  # 16 → 8 fps: every 2nd frame
    assert clip.indices.tolist() == list(range(0, 17, 2))
    frames = read_frames(clip_file.path, clip.indices)
    assert frames.shape == (9, clip_file.height, clip_file.width, 3)


def test_8x_temporal_compression_needs_8k_plus_1() -> None:
    assert ClipSpec(frames=33, time_compression=8).frames == 33
    with pytest.raises(WfvaeError, match=r"--frames 13 is not 8k\+1: this WF-VAE needs 1, 9, 17, 33, 65"):
        ClipSpec(frames=13, time_compression=8)
    (clip,) = plan_clips(video(40), ClipSpec(frames=1, mode="full", time_compression=8))
    assert clip.num_frames == 33  # 40 → 33 = 8·4+1 (4k+1 would keep 37)
