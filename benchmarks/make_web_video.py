"""Generate "real-like" web H.264 for decoder benchmarks: long GOP (250), 10–20 s, moving textured content.

    python benchmarks/make_web_video.py /tmp/hdec/web --sizes 1080x1920 720x1280 --seconds 20
    python benchmarks/make_web_video.py /tmp/hdec/web --sizes 2160x3840 --seconds 2   # 4K, for peak RSS

Web video (YouTube/Vimeo downloads, video2dataset shards) is typically libx264 with a keyframe every ~8 s and
B-frames, which is what makes a clip late in the video expensive for a decoder that cannot seek. The content
is a mosaic of the ``skimage.data`` photos, upscaled, panned by the camera with changing speed, so the encoder
sees real texture and motion (flat or random frames would make decoding unrealistically cheap or expensive).
These files are large: write them under /tmp, never into the repository or the test fixtures.

``--codec`` picks the encoder for the per-codec "cores per GPU" table (docs/performance.md): ``h264`` (libx264),
``hevc`` (libx265), ``vp9`` (libvpx-vp9, in .webm) and ``av1`` (libsvtav1), each at a web-like quality and the
same GOP, so that only the codec differs between rows.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from wfvae_cli.io.samples import SAMPLE_IMAGES, _photo


def _mosaic(height: int, width: int) -> np.ndarray:
    """A 2x3 mosaic of the sample photos, nearest-upscaled to at least twice the frame size."""
    tiles = [_photo(name) for name in SAMPLE_IMAGES]
    th = min(t.shape[0] for t in tiles)
    tw = min(t.shape[1] for t in tiles)
    rows = [np.concatenate([t[:th, :tw] for t in tiles[r * 3 : r * 3 + 3]], axis=1) for r in range(2)]
    image = np.concatenate(rows, axis=0)
    k = int(np.ceil(max(2 * height / image.shape[0], 2 * width / image.shape[1])))
    return np.repeat(np.repeat(image, k, axis=0), k, axis=1)


# encoder and options per codec name: web-like quality, B-frames/alt-refs where the codec has them
CODECS: dict[str, tuple[str, str, dict[str, str]]] = {
    "h264": ("libx264", "mp4", {"crf": "23", "preset": "veryfast", "bf": "3"}),
    "hevc": ("libx265", "mp4", {"crf": "28", "preset": "veryfast", "x265-params": "log-level=error"}),
    "vp9": ("libvpx-vp9", "webm", {"crf": "33", "b": "0", "deadline": "realtime", "cpu-used": "8"}),
    "av1": ("libsvtav1", "mp4", {"crf": "35", "preset": "10"}),
}


def make_web_video(
    path: Path, height: int, width: int, seconds: float, fps: int = 30, gop: int = 250, codec: str = "h264"
) -> Path:
    """Write one long-GOP file of ``seconds`` at ``fps`` (yuv420p) with the encoder of ``codec`` (CODECS)."""
    encoder, _, options = CODECS[codec]
    image = _mosaic(height, width)
    span_y, span_x = image.shape[0] - height, image.shape[1] - width
    n = round(seconds * fps)
    t = np.linspace(0.0, 1.0, n)
    ys = (span_y * (0.5 - 0.5 * np.cos(2 * np.pi * t))).astype(int)  # there and back again
    xs = (span_x * (t + 0.05 * np.sin(6 * np.pi * t)).clip(0, 1)).astype(int)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {**options, "g": str(gop)}
        for i in range(n):
            frame = np.ascontiguousarray(image[ys[i] : ys[i] + height, xs[i] : xs[i] + width])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--sizes", nargs="+", default=["1080x1920", "720x1280"], help="HxW each")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--gop", type=int, default=250)
    ap.add_argument("--codec", choices=sorted(CODECS), default="h264")
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for size in args.sizes:
        h, w = (int(v) for v in size.lower().split("x"))
        suffix = "" if args.codec == "h264" else f"_{args.codec}"
        path = args.out_dir / f"web_{h}p_{args.seconds:g}s_g{args.gop}{suffix}.{CODECS[args.codec][1]}"
        make_web_video(path, h, w, args.seconds, args.fps, args.gop, args.codec)
        print(path)


if __name__ == "__main__":
    main()
