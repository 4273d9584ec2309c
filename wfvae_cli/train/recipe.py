"""Training recipes: the schema (typed dataclasses, one per TOML section) and its checks.

Why a strict schema: a training run costs hours to weeks of accelerator time, and a misspelled key in a
loosely parsed config (``optim.lrr = 2e-5``) silently trains with the default. Every key is checked
against the dataclasses below: unknown keys (with a "did you mean"), wrong types and impossible values
(``data.frames`` not 4k+1, a resolution that is not a multiple of 8, a batch that does not split into
micro-batches, ...) are a :class:`RecipeError` naming the key and the file that set it. Each section checks
its own values in ``__post_init__``, beside its fields; reading, layering (``extends``, overrides) and
writing TOML are the schema-agnostic engine of :mod:`wfvae_cli.toml_config`.

Layering, lowest to highest priority:

1. the dataclass defaults (the official ``train_ddp.py`` defaults where it has one);
2. the ``extends = "other.toml"`` chain (path relative to the extending file), deep-merged table by table;
3. the recipe file itself;
4. ``key=value`` overrides from the command line (``optim.lr=2e-5``, ``data.inputs=["a/", "b/"]``;
   the value is read as a TOML value, a bare word as a string, and ``none`` resets the key to its default).

:func:`dump_recipe` writes the fully resolved recipe back as TOML (``wfvae train --print-config``); it is
also stored in every checkpoint, so a run can always be reproduced from its checkpoint alone.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from wfvae_cli.toml_config import (
    COMMAND_LINE,
    ConfigError,
    FieldError,
    TomlSchema,
    non_negative,
    positive,
)
from wfvae_cli.toml_config import parse_override as _parse_override

__all__ = [
    "COMMAND_LINE",
    "DataSection",
    "DiscriminatorSection",
    "EmaSection",
    "EvalSection",
    "LogSection",
    "LossSection",
    "ModelSection",
    "OptimSection",
    "Recipe",
    "RecipeError",
    "ScheduleSection",
    "SyntheticSection",
    "dump_recipe",
    "load_recipe",
    "parse_override",
    "recipe_from_dict",
    "recipe_to_dict",
]


class RecipeError(ConfigError):
    """A recipe key is unknown, mistyped or has an impossible value; the message names key and file."""


# ================================================================================================ schema
@dataclass
class ModelSection:
    """Which network to train and where its first weights come from.

    ``preset`` (a :func:`~wfvae_cli.model.load_model` preset such as ``wfvae-s``) or ``config`` (a
    ``config.json``) defines a randomly initialised network; ``init`` loads weights from anything
    ``load_model`` reads (an exported directory, a training checkpoint of a previous stage, ...). When both
    are given the architectures must agree, which catches "stage II of S started from an M checkpoint".
    """

    preset: str | None = None
    config: str | None = None
    init: str | None = None
    #: official loader behaviour: a training checkpoint's EMA weights are what the next stage starts from
    init_ema: bool = True
    #: load the discriminator from ``init`` too; the paper *refreshes* it at stages II and III (false)
    init_discriminator: bool = False
    freeze_encoder: bool = False

    def __post_init__(self) -> None:
        if self.preset is None and self.config is None and self.init is None:
            raise FieldError("", 'set model.preset (e.g. "wfvae-s"), model.config or model.init')
        if self.preset is not None and self.config is not None:
            raise FieldError("config", "model.preset and model.config are alternatives: keep one")
        if self.preset is not None:
            from wfvae_cli.model.config import preset_config, preset_names

            try:
                preset_config(self.preset)
            except KeyError:
                close = difflib.get_close_matches(self.preset.lower(), preset_names(), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise FieldError("preset", f"unknown preset {self.preset!r}{hint}") from None
        if self.init_discriminator and self.init is None:
            raise FieldError("init_discriminator", "needs model.init (a training checkpoint)")


@dataclass
class SyntheticSection:
    """Clips rendered on the fly (pan / zoom / rotation over ``skimage.data`` photos), no files, no codec.

    Train and eval photos are disjoint by default, so the eval numbers are on unseen images.
    """

    photos: list[str] = field(
        default_factory=lambda: [
            "astronaut", "coffee", "cat", "rocket", "immunohistochemistry", "hubble_deep_field",
            "colorwheel", "brick", "grass", "gravel", "coins", "moon", "page", "text", "clock", "camera",
        ]
    )
    eval_photos: list[str] = field(default_factory=lambda: ["chelsea", "retina"])
    #: clips per "epoch" (only the data order depends on it: every clip is a fresh random camera path)
    epoch_clips: int = 1024
    #: ``camera``: pan/zoom/roll over one photo; ``scenes``: layered scenes with moving objects, occlusion,
    #: shake, exposure changes, noise and H.264 artefacts (:mod:`wfvae_cli.train.synthetic`)
    style: Literal["camera", "scenes"] = "camera"
    #: ``scenes`` only: the fraction of dark, low-contrast clips (exposure 0.2–0.6×, colours permuted half
    #: the time); 0 renders exactly the clips of recipes written before it existed
    low_key: float = 0.0
    #: ``scenes`` only: the fraction of clips with fast motion (a large object flying through at 6–20 px per
    #: frame, motion blur, sometimes a whip pan); 0 renders exactly the older recipes' clips
    fast: float = 0.0
    #: ``scenes`` only: the fraction of still shots that a fast object crosses early, after which nothing
    #: moves (the trace of motion must not leak into the still frames); 0 renders the older recipes' clips
    still: float = 0.0

    def __post_init__(self) -> None:
        _check_photos(self.photos, "photos", allow_empty=False)
        _check_photos(self.eval_photos, "eval_photos", allow_empty=True)
        positive("epoch_clips", self.epoch_clips)
        for key in ("low_key", "fast", "still"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise FieldError(key, f"{value} is a probability: use a number from 0 to 1")
            if value > 0 and self.style != "scenes":
                raise FieldError(key, f'a "scenes" feature: set style = "scenes" or drop {key}')


@dataclass
class DataSection:
    """Training and held-out clips.

    ``batch_size`` is the **global** batch of one optimizer step (the paper's "total batch 8"); each device
    runs ``micro_batch_size`` clips at a time and gradients are accumulated over
    ``batch_size / (micro_batch_size · world_size)`` micro-batches, so one recipe trains the same on 1 GPU
    or 8. ``inputs`` accept what ``wfvae encode`` accepts (files, folders, globs, txt/csv/jsonl manifests).
    """

    inputs: list[str] = field(default_factory=list)
    synthetic: SyntheticSection | None = None
    frames: int = 25
    resolution: int | tuple[int, int] = 256
    #: source frames per clip frame (2 = half the frame rate, stage II); the official ``sample_rate``
    sample_rate: int = 1
    #: draw the rate uniformly from 1..sample_rate per clip (official ``--dynamic_sample``)
    dynamic_sample: bool = False
    batch_size: int = 8
    micro_batch_size: int = 1
    workers: int = 2
    #: seconds before a hung decode is killed (None: decode in the loader process, no timeout)
    decode_timeout: float | None = None
    eval_inputs: list[str] = field(default_factory=list)
    eval_clips: int = 8
    #: None: the training ``frames``
    eval_frames: int | None = None

    def __post_init__(self) -> None:
        if not self.inputs and self.synthetic is None:
            raise FieldError("inputs", "no training data: list videos/folders/manifests, or add [data.synthetic]")
        if self.inputs and self.synthetic is not None:
            raise FieldError("synthetic", "data.inputs and [data.synthetic] are alternatives: keep one")
        for key, frames in (("frames", self.frames), ("eval_frames", self.eval_frames)):
            if frames is not None and (frames < 1 or frames % 4 != 1):
                near = max(1, round((frames - 1) / 4) * 4 + 1)
                raise FieldError(key, f"{frames} is not 4k+1 (WF-VAE compresses time by 4 after frame 0); e.g. {near}")
        r = self.resolution
        sides = [r] if isinstance(r, int) else list(r)
        if any(v < 8 or v % 8 for v in sides):
            near = [max(8, round(v / 8) * 8) for v in sides]
            example = near[0] if len(near) == 1 else near
            raise FieldError("resolution", f"{r!r} must be positive multiples of 8 (e.g. {example})")
        positive("sample_rate", self.sample_rate)
        positive("batch_size", self.batch_size)
        positive("micro_batch_size", self.micro_batch_size)
        if self.batch_size % self.micro_batch_size:
            raise FieldError(
                "batch_size", f"{self.batch_size} is not a multiple of data.micro_batch_size={self.micro_batch_size}"
            )
        non_negative("workers", self.workers)
        non_negative("eval_clips", self.eval_clips)
        if self.decode_timeout is not None and not self.decode_timeout > 0:
            raise FieldError("decode_timeout", "must be > 0 seconds (or leave it unset)")

    @property
    def size(self) -> tuple[int, int]:
        r = self.resolution
        return (r, r) if isinstance(r, int) else (int(r[0]), int(r[1]))


@dataclass
class DiscriminatorSection:
    """``NLayerDiscriminator3D`` (3D patch discriminator) width and depth; the official defaults."""

    ndf: int = 64
    n_layers: int = 4
    #: None: ``optim.lr`` (the official code uses one lr for both optimizers)
    lr: float | None = None

    def __post_init__(self) -> None:
        positive("ndf", self.ndf)
        positive("n_layers", self.n_layers)
        if self.lr is not None:
            positive("lr", self.lr)


@dataclass
class LossSection:
    """The ``LPIPSWithDiscriminator3D`` terms (see docs/training.md for the equations and their scaling)."""

    reconstruction: Literal["l1", "l2"] = "l1"
    perceptual_weight: float = 1.0
    #: AlexNet trunk ``alexnet-owt-7be5be79.pth`` (file or folder); None: the torch hub cache
    lpips_weights: str | None = None
    kl_weight: float = 1e-6
    wavelet_weight: float = 0.1
    #: λ_adv; 0 switches the GAN off entirely (no discriminator, no alternation)
    disc_weight: float = 0.5
    disc_start: int = 5
    disc_loss: Literal["hinge", "vanilla"] = "hinge"
    discriminator: DiscriminatorSection = field(default_factory=DiscriminatorSection)

    def __post_init__(self) -> None:
        for key in ("perceptual_weight", "kl_weight", "wavelet_weight", "disc_weight"):
            non_negative(key, getattr(self, key))
        non_negative("disc_start", self.disc_start)


@dataclass
class OptimSection:
    """AdamW for the VAE and for the discriminator, linear warm-up then constant or cosine."""

    lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 1e-4
    warmup_steps: int = 0
    decay: Literal["constant", "cosine"] = "constant"
    #: floor of the cosine decay, as a fraction of ``lr``
    min_lr_ratio: float = 0.0
    #: max global gradient norm; 0 disables clipping (the official code never clips)
    grad_clip: float = 0.0

    def __post_init__(self) -> None:
        positive("lr", self.lr)
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise FieldError("betas", f"{list(self.betas)}: each beta must be in [0, 1)")
        positive("eps", self.eps)
        non_negative("weight_decay", self.weight_decay)
        non_negative("warmup_steps", self.warmup_steps)
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise FieldError("min_lr_ratio", f"{self.min_lr_ratio} must be in [0, 1]")
        non_negative("grad_clip", self.grad_clip)


@dataclass
class EmaSection:
    """Exponential moving average of the VAE weights: ``shadow = decay·shadow + (1-decay)·param``."""

    enabled: bool = True
    decay: float = 0.999

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay < 1.0:
            raise FieldError("decay", f"{self.decay} must be in [0, 1) (0.999 in the paper)")


@dataclass
class ScheduleSection:
    """How long to train and how often to log, evaluate and checkpoint (in optimizer steps)."""

    steps: int = 1000
    log_every: int = 10
    eval_every: int = 500
    checkpoint_every: int = 500
    #: checkpoints kept in ``output_dir/checkpoints`` (oldest deleted first); 0 keeps all
    keep_checkpoints: int = 3
    eval_at_start: bool = False

    def __post_init__(self) -> None:
        for key in ("steps", "log_every", "eval_every", "checkpoint_every"):
            positive(key, getattr(self, key))
        non_negative("keep_checkpoints", self.keep_checkpoints)


@dataclass
class EvalSection:
    """Held-out evaluation: PSNR/SSIM always, LPIPS when its AlexNet trunk is on the machine."""

    lpips: Literal["auto", "on", "off"] = "auto"
    #: AlexNet trunk for the LPIPS metric; None: ``loss.lpips_weights``, then the torch hub cache
    lpips_weights: str | None = None
    #: reconstructions written as side-by-side mp4 (input | reconstruction) per eval
    save_videos: int = 2
    #: also report the 4x8x8 average-pool + upsample baseline on the eval set (computed once)
    baseline: bool = True
    #: evaluate the raw weights as well as the EMA weights
    raw: bool = True
    batch_size: int = 1

    def __post_init__(self) -> None:
        non_negative("save_videos", self.save_videos)
        positive("batch_size", self.batch_size)


@dataclass
class LogSection:
    """Where metrics go besides ``output_dir/metrics.jsonl`` and the console (both optional, off)."""

    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "wfvae"


@dataclass
class Recipe:
    """A whole training run. Relative paths (data, init, output) are relative to the working directory."""

    name: str = ""
    description: str = ""
    output_dir: str = "runs/wfvae"
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: str = "auto"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    ema: EmaSection = field(default_factory=EmaSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    eval: EvalSection = field(default_factory=EvalSection)
    log: LogSection = field(default_factory=LogSection)
    #: where each dotted key was set (file path or "command line"); for error messages only
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    path: str = field(default="", repr=False, compare=False)

    @property
    def gan(self) -> bool:
        return self.loss.disc_weight > 0

    def source_of(self, key: str) -> str:
        return self.sources.get(key) or self.path or "recipe"

    def error(self, key: str, message: str) -> RecipeError:
        return RecipeError(f"{self.source_of(key)}: {key}: {message}")

    def __post_init__(self) -> None:
        if not self.output_dir:
            raise FieldError("output_dir", "must not be empty")
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise FieldError("device", f"{self.device!r}: use auto, cpu, cuda or cuda:N")

    def validate(self) -> Recipe:
        """Every section checked itself when built (``__post_init__``); kept for callers of the old API."""
        return self


def _check_photos(photos: list[str], key: str, allow_empty: bool) -> None:
    from wfvae_cli.train.data import SYNTHETIC_PHOTOS

    if not photos and not allow_empty:
        raise FieldError(key, "needs at least one photo name")
    for name in photos:
        if name not in SYNTHETIC_PHOTOS:
            raise FieldError(key, f"unknown photo {name!r}; available: {', '.join(SYNTHETIC_PHOTOS)}")


# ================================================================================================ reading / writing
SCHEMA: TomlSchema[Recipe] = TomlSchema(
    Recipe, RecipeError, noun="recipe", not_found_hint="check the path (recipes/ lists the shipped ones)"
)


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, merge (``extends``), override and check a recipe file."""
    return SCHEMA.load(path, overrides)


def recipe_from_dict(table: dict[str, Any], *, sources: dict[str, str] | None = None, path: str = "") -> Recipe:
    """Check a plain dict (e.g. the copy stored in a checkpoint) into a :class:`Recipe`."""
    return SCHEMA.from_dict(table, sources=sources, path=path)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=2e-5"`` → (["optim", "lr"], 2e-5). The value is TOML; a bare word is a string; ``none`` unsets."""
    return _parse_override(text, RecipeError)


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """Plain types only (str/int/float/bool/list/dict), ``None`` fields dropped: TOML- and checkpoint-safe."""
    return SCHEMA.to_dict(recipe)


def dump_recipe(recipe: Recipe) -> str:
    """The fully resolved recipe as TOML; unset optional keys are shown as comments. Parses back equal."""
    return SCHEMA.dump(recipe)
