"""Generated sample videos and broken-input fixtures (no download), for tests, demos and benchmarks.

Clips are slow pans, zooms and rotations over the photos that ``skimage.data`` ships, so they have real
texture and real motion (a VAE's reconstruction of flat colour or noise tells little). The camera path of a
whole clip is one batched ``F.grid_sample``: per-frame image resizing would dominate the time.

Encoding is H.264 (libx264, ``crf`` 18, GOP 8 so that random access is cheap, B-frames on so that decoders
must reorder). 4:2:0 chroma needs even sides, so odd sizes are encoded as 4:4:4 (``yuv444p``, High 4:4:4
profile) instead of being padded or cropped: the file keeps the exact odd size, and both decord and PyAV read
it bit-identically (the odd-size MPEG-4 Part 2 alternative decodes differently in the two backends).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "SAMPLE_IMAGES",
    "damage_packet",
    "make_bad_inputs",
    "make_hard_inputs",
    "make_sample_clips",
    "render_clip",
    "write_video",
]

SAMPLE_IMAGES: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket", "cat", "camera")
"""``skimage.data`` photos used in turn (camera is greyscale and is replicated to RGB)."""

Size = tuple[int, int]  # (height, width), as everywhere in wfvae_cli.io


def _photo(name: str) -> np.ndarray:
    from wfvae_cli.extras import require

    image = getattr(require("skimage.data", "sample clips"), name)()
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]


def _ease(t: np.ndarray) -> np.ndarray:
    """Smooth start and stop (cosine ease-in-out), like a camera operator, instead of a constant speed."""
    return 0.5 - 0.5 * np.cos(np.pi * t)


def render_clip(image: np.ndarray, frames: int, size: Size, rng: np.random.Generator) -> np.ndarray:
    """A virtual camera moving over ``image``: uint8 ``(frames, H, W, 3)``.

    The camera has a centre ``c`` (source pixels), a zoom ``z`` (source pixels per output pixel) and an angle
    ``θ``, each eased between two random values. Output pixel offset ``q`` from the frame centre samples the
    source at ``c + z·R(θ)·q``; written in ``affine_grid``'s normalised coordinates, that is ``theta`` below.
    Reflection padding hides the corners a rotation can pull outside the photo.
    """
    h, w = size
    hs, ws = image.shape[:2]
    fit = min(ws / w, hs / h)  # zoom at which the view just fits the photo
    z = fit * rng.uniform(0.45, 0.85, 2)
    angle = np.deg2rad(rng.uniform(-8.0, 8.0, 2))
    half = np.array([w, h]) * z.min() / 2  # keep the centre far enough from the edges for the widest view
    lo, hi = np.minimum(half, [ws / 2, hs / 2]), np.maximum([ws, hs] - half, [ws / 2, hs / 2])
    centre = rng.uniform(lo, hi, (2, 2))  # (endpoint, xy)

    s = _ease(np.linspace(0.0, 1.0, frames))[:, None]
    zt = z[0] + (z[1] - z[0]) * s[:, 0]
    at = angle[0] + (angle[1] - angle[0]) * s[:, 0]
    ct = centre[0] + (centre[1] - centre[0]) * s
    cos, sin = np.cos(at), np.sin(at)
    theta = np.stack(
        [
            np.stack([zt * cos * w / ws, -zt * sin * h / ws, 2 * ct[:, 0] / ws - 1], axis=1),
            np.stack([zt * sin * w / hs, zt * cos * h / hs, 2 * ct[:, 1] / hs - 1], axis=1),
        ],
        axis=1,
    )  # (T, 2, 3)
    grid = F.affine_grid(torch.from_numpy(theta).float(), [frames, 3, h, w], align_corners=False)
    src = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    # All frames in one call: stack the T grids along the height axis, sample the photo once.
    out = F.grid_sample(
        src,
        grid.reshape(1, frames * h, w, 2),
        mode="bilinear",
        padding_mode="reflection",
        align_corners=False,
    )
    clip = out[0].reshape(3, frames, h, w).permute(1, 2, 3, 0)
    return clip.round().clamp(0, 255).to(torch.uint8).contiguous().numpy()


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float = 16,
    *,
    crf: int = 18,
    gop: int = 8,
    faststart: bool = False,
    codec: str = "libx264",
    pix_fmt: str | None = None,
    rotation: int = 0,
    bframes: int | None = None,
) -> Path:
    """Encode uint8 ``(T, H, W, 3)`` RGB frames as H.264 MP4 (4:2:0 when both sides are even, else 4:4:4).

    ``faststart`` moves the index (moov) to the front, as web-delivered files have it; a truncated file of
    that kind still opens, which is the nastier failure to test. ``rotation`` writes a display matrix
    (counter-clockwise degrees, as phones do for portrait video); ``pix_fmt`` overrides the 4:2:0/4:4:4 rule
    (e.g. ``yuv420p10le`` for 10-bit High 10); ``codec`` other encoders (``mpeg4`` for odd-size 4:2:0).
    """
    path = Path(path)
    h, w = frames.shape[1:3]
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = w, h
        stream.pix_fmt = pix_fmt or ("yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p")
        if codec == "libx264":
            stream.options = {"crf": str(crf), "g": str(gop), "preset": "veryfast"}
            if bframes is not None:
                stream.options = {**stream.options, "bf": str(bframes)}
        else:
            stream.options = {"g": str(gop), "qscale": "3"}
        if rotation:
            stream.set_display_rotation(rotation)
        for frame in frames:  # the encoder API is per frame
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def make_sample_clips(
    out_dir: str | Path,
    n: int = 4,
    frames: int = 33,
    size: Size | Sequence[Size] = (256, 256),
    fps: float = 16,
    seed: int = 0,
) -> list[Path]:
    """Write ``n`` sample clips to ``out_dir`` and return their paths (sorted by name).

    ``size`` is one ``(H, W)`` for all clips or a list cycled over the clips (mix portrait, landscape and
    odd sizes). The same seed gives the same pixels, so tests can compare against stored values.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sizes = [tuple(size)] if isinstance(size[0], int) else [tuple(s) for s in size]  # type: ignore[arg-type]
    paths = []
    for i in range(n):
        name = SAMPLE_IMAGES[i % len(SAMPLE_IMAGES)]
        h, w = sizes[i % len(sizes)]
        clip = render_clip(_photo(name), frames, (h, w), np.random.default_rng([seed, i]))
        paths.append(write_video(out / f"{i:02d}_{name}_{w}x{h}.mp4", clip, fps))
    return paths


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def make_bad_inputs(out_dir: str | Path, fps: float = 16, seed: int = 0) -> dict[str, Path]:
    """Write the awkward inputs a real dataset contains; keys name the case.

    Unreadable files (``chmod 000``) are left to the caller: whether they are readable depends on the user
    (root reads them anyway).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photo = _photo("astronaut")

    def clip(frames: int, size: Size) -> np.ndarray:
        return render_clip(photo, frames, size, rng)

    cases: dict[str, Path] = {}
    # Index at the front, second half of the frames cut off: opens and probes fine, then decoding fails.
    cases["truncated"] = _truncate(
        write_video(out / "truncated.mp4", clip(33, (64, 64)), fps, faststart=True)
    )
    # Index at the end (the muxer default) cut off with the tail: the file cannot even be opened.
    cases["truncated_index"] = _truncate(write_video(out / "truncated_index.mp4", clip(9, (64, 64)), fps))
    cases["zero_bytes"] = out / "zero_bytes.mp4"
    cases["zero_bytes"].write_bytes(b"")
    cases["text"] = out / "not_a_video.mp4"
    cases["text"].write_text("this is a text file with a video extension\n" * 20)
    cases["image"] = out / "still.png"
    with av.open(str(cases["image"]), "w") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 64, 48, "rgb24"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(clip(1, (48, 64))[0], format="rgb24")))
        container.mux(stream.encode(None))
    cases["directory"] = out / "folder.mp4"
    cases["directory"].mkdir(exist_ok=True)
    cases["one_frame"] = write_video(out / "one_frame.mp4", clip(1, (64, 64)), fps)
    cases["short"] = write_video(out / "short_17f.mp4", clip(17, (64, 64)), fps)
    cases["odd_size"] = write_video(out / "odd_175x97.mp4", clip(9, (97, 175)), fps)
    cases["portrait"] = write_video(out / "portrait_144x256.mp4", clip(9, (256, 144)), fps)
    cases["large"] = write_video(out / "large_1920x1080.mp4", clip(3, (1080, 1920)), fps)
    return cases


def damage_packet(path: str | Path, frame: int, out: str | Path, nbytes: int = 24) -> Path:
    """Copy ``path`` to ``out`` with bytes flipped inside the packet of (decode-order) video frame ``frame``.

    The damage sits in ``mdat``, after the slice header, where FFmpeg reports "error while decoding MB"
    and, by default, conceals the broken macroblocks from the previous frame (what a bit-rotted download or a
    bad disk sector does). Frames before the damaged GOP are intact.
    """
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [(p.pos, p.size) for p in container.demux(stream) if p.size]
    pos, size = packets[frame]
    data = bytearray(Path(path).read_bytes())
    start = pos + min(size // 3, 40)
    for k in range(start, min(start + nbytes, pos + size)):
        data[k] ^= 0x5A
    Path(out).write_bytes(bytes(data))
    return Path(out)


def make_hard_inputs(out_dir: str | Path, fps: float = 16, seed: int = 0) -> dict[str, Path]:
    """Inputs that decode "successfully" yet wrongly unless the decoder takes care; keys name the case.

    ``damaged`` (64 bytes flipped in the 18th packet, a P-frame, GOP 8: frames 0–15 are intact), ``rotated_90`` and
    ``rotated_270`` (display matrix, stored 96x128 landscape, shown portrait), ``ten_bit`` (yuv420p10le,
    High 10), ``odd_420`` (MPEG-4 Part 2, 4:2:0 at 97x175), ``long_gop`` (80 frames, GOP 30, 3 B-frames: seeks
    land mid-GOP). All tiny, generated in well under a second.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photo = _photo("chelsea")
    cases: dict[str, Path] = {}
    clean = write_video(out / "clean_for_damage.mp4", render_clip(photo, 33, (96, 128), rng), fps)
    cases["damaged"] = damage_packet(clean, 17, out / "damaged.mp4", nbytes=64)
    clean.unlink()
    base = render_clip(photo, 9, (96, 128), rng)
    cases["rotated_90"] = write_video(out / "rotated_90.mp4", base, fps, rotation=90)
    cases["rotated_270"] = write_video(out / "rotated_270.mp4", base, fps, rotation=270)
    cases["unrotated"] = write_video(out / "unrotated.mp4", base, fps)
    cases["ten_bit"] = write_video(out / "ten_bit.mp4", base, fps, pix_fmt="yuv420p10le")
    cases["odd_420"] = write_video(
        out / "odd_420_175x97.mp4", render_clip(photo, 9, (97, 175), rng), fps, codec="mpeg4", pix_fmt="yuv420p"
    )
    cases["long_gop"] = write_video(
        out / "long_gop.mp4", render_clip(photo, 80, (64, 96), rng), fps, gop=30, bframes=3
    )
    return cases
