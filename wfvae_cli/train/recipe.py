"""Training recipes: TOML files validated into typed dataclasses.

Why a strict schema: a training run costs hours to weeks of accelerator time, and a misspelled key in a
loosely parsed config (``optim.lrr = 2e-5``) silently trains with the default. Here every key is checked
against the dataclasses below: unknown keys (with a "did you mean"), wrong types and impossible values
(``data.frames`` not 4k+1, a resolution that is not a multiple of 8, a batch that does not split into
micro-batches, ...) are a :class:`RecipeError` naming the key and the file that set it.

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

import dataclasses
import difflib
import json
import math
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from wfvae_cli.errors import WfvaeError

try:  # Python >= 3.11; on 3.10 the identical `tomli` backport, if installed
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ModuleNotFoundError:
        tomllib = None  # type: ignore[assignment]

__all__ = [
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

COMMAND_LINE = "command line"


class RecipeError(WfvaeError):
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


@dataclass
class EmaSection:
    """Exponential moving average of the VAE weights: ``shadow = decay·shadow + (1-decay)·param``."""

    enabled: bool = True
    decay: float = 0.999


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

    # ------------------------------------------------------------------------------------ validation
    def validate(self) -> Recipe:
        """Check value ranges and cross-field rules (types were checked while parsing)."""
        m, d, lo, o, e, s, ev = self.model, self.data, self.loss, self.optim, self.ema, self.schedule, self.eval
        if m.preset is None and m.config is None and m.init is None:
            raise self.error("model", 'set model.preset (e.g. "wfvae-s"), model.config or model.init')
        if m.preset is not None and m.config is not None:
            raise self.error("model.config", "model.preset and model.config are alternatives: keep one")
        if m.preset is not None:
            from wfvae_cli.model.config import preset_config, preset_names

            try:
                preset_config(m.preset)
            except KeyError:
                close = difflib.get_close_matches(m.preset.lower(), preset_names(), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.error("model.preset", f"unknown preset {m.preset!r}{hint}") from None
        if m.init_discriminator and m.init is None:
            raise self.error("model.init_discriminator", "needs model.init (a training checkpoint)")

        if not d.inputs and d.synthetic is None:
            raise self.error("data.inputs", 'no training data: list videos/folders/manifests, or add [data.synthetic]')
        if d.inputs and d.synthetic is not None:
            raise self.error("data.synthetic", "data.inputs and [data.synthetic] are alternatives: keep one")
        if d.synthetic is not None:
            self._check_photos(d.synthetic.photos, "data.synthetic.photos", allow_empty=False)
            self._check_photos(d.synthetic.eval_photos, "data.synthetic.eval_photos", allow_empty=True)
            self._positive("data.synthetic.epoch_clips", d.synthetic.epoch_clips)
        for key, frames in (("data.frames", d.frames), ("data.eval_frames", d.eval_frames)):
            if frames is not None and (frames < 1 or frames % 4 != 1):
                near = max(1, round((frames - 1) / 4) * 4 + 1)
                raise self.error(key, f"{frames} is not 4k+1 (WF-VAE compresses time by 4 after frame 0); e.g. {near}")
        r = d.resolution
        sides = [r] if isinstance(r, int) else list(r)
        if any(v < 8 or v % 8 for v in sides):
            near = [max(8, round(v / 8) * 8) for v in sides]
            raise self.error("data.resolution", f"{r!r} must be positive multiples of 8 (e.g. {near[0] if len(near) == 1 else near})")
        self._positive("data.sample_rate", d.sample_rate)
        self._positive("data.batch_size", d.batch_size)
        self._positive("data.micro_batch_size", d.micro_batch_size)
        if d.batch_size % d.micro_batch_size:
            raise self.error(
                "data.batch_size",
                f"{d.batch_size} is not a multiple of data.micro_batch_size={d.micro_batch_size}",
            )
        self._non_negative("data.workers", d.workers)
        self._non_negative("data.eval_clips", d.eval_clips)
        if d.decode_timeout is not None and not d.decode_timeout > 0:
            raise self.error("data.decode_timeout", "must be > 0 seconds (or leave it unset)")

        for key in ("perceptual_weight", "kl_weight", "wavelet_weight", "disc_weight"):
            self._non_negative(f"loss.{key}", getattr(lo, key))
        self._non_negative("loss.disc_start", lo.disc_start)
        self._positive("loss.discriminator.ndf", lo.discriminator.ndf)
        self._positive("loss.discriminator.n_layers", lo.discriminator.n_layers)
        if lo.discriminator.lr is not None:
            self._positive("loss.discriminator.lr", lo.discriminator.lr)

        self._positive("optim.lr", o.lr)
        if not all(0.0 <= b < 1.0 for b in o.betas):
            raise self.error("optim.betas", f"{list(o.betas)}: each beta must be in [0, 1)")
        self._positive("optim.eps", o.eps)
        self._non_negative("optim.weight_decay", o.weight_decay)
        self._non_negative("optim.warmup_steps", o.warmup_steps)
        if not 0.0 <= o.min_lr_ratio <= 1.0:
            raise self.error("optim.min_lr_ratio", f"{o.min_lr_ratio} must be in [0, 1]")
        self._non_negative("optim.grad_clip", o.grad_clip)

        if not 0.0 <= e.decay < 1.0:
            raise self.error("ema.decay", f"{e.decay} must be in [0, 1) (0.999 in the paper)")

        for key in ("steps", "log_every", "eval_every", "checkpoint_every"):
            self._positive(f"schedule.{key}", getattr(s, key))
        self._non_negative("schedule.keep_checkpoints", s.keep_checkpoints)
        self._non_negative("eval.save_videos", ev.save_videos)
        self._positive("eval.batch_size", ev.batch_size)
        if not self.output_dir:
            raise self.error("output_dir", "must not be empty")
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise self.error("device", f"{self.device!r}: use auto, cpu, cuda or cuda:N")
        return self

    def _positive(self, key: str, value: float) -> None:
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise self.error(key, f"{value!r} must be > 0")

    def _non_negative(self, key: str, value: float) -> None:
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise self.error(key, f"{value!r} must be >= 0")

    def _check_photos(self, photos: list[str], key: str, allow_empty: bool) -> None:
        from wfvae_cli.train.data import SYNTHETIC_PHOTOS

        if not photos and not allow_empty:
            raise self.error(key, "needs at least one photo name")
        for name in photos:
            if name not in SYNTHETIC_PHOTOS:
                raise self.error(key, f"unknown photo {name!r}; available: {', '.join(SYNTHETIC_PHOTOS)}")


# ================================================================================================ parsing
_MISSING = object()


def _type_name(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(a) for a in args)
    if origin is list:
        return f"a list of {_type_name(args[0])}"
    if origin is tuple:
        return f"a list of {len(args)} {_type_name(args[0])}"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


class _Mismatch(Exception):
    pass


def _coerce(value: Any, tp: Any, key: str, sources: dict[str, str]) -> Any:
    """``value`` as type ``tp`` or :class:`_Mismatch`; nested tables recurse (and report their own keys)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, sources)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is Literal:
        if value in args and type(value) is type(args[0]):
            return value
        raise _Mismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if origin is list:
        if not isinstance(value, list | tuple):
            raise _Mismatch
        return [_coerce(v, args[0], key, sources) for v in value]
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise _Mismatch
        return tuple(_coerce(v, a, key, sources) for v, a in zip(value, args, strict=True))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _Mismatch
        return _build(tp, value, key, sources)
    raise TypeError(f"unsupported recipe field type {tp!r} at {key}")  # a bug in the schema, not the user


def _build(cls: type, table: dict[str, Any], prefix: str, sources: dict[str, str]) -> Any:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in ("sources", "path")}
    kwargs: dict[str, Any] = {}
    for name, value in table.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in fields:
            close = difflib.get_close_matches(name, list(fields), n=1)
            hint = f" (did you mean {(prefix + '.' if prefix else '') + close[0]!r}?)" if close else ""
            where = f"[{prefix}]" if prefix else "the top level"
            raise RecipeError(
                f"{sources.get(key, '?')}: unknown key {key!r}{hint}; allowed in {where}: {', '.join(fields)}"
            )
        tp = hints[name]
        try:
            kwargs[name] = _coerce(value, tp, key, sources)
        except _Mismatch:
            raise RecipeError(
                f"{sources.get(key, '?')}: {key} = {_show(value)} should be {_type_name(tp)}"
            ) from None
    return cls(**kwargs)


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) < 60 else text[:57] + "..."


def _merge(base: dict[str, Any], top: dict[str, Any], src: str, sources: dict[str, str], prefix: str = "") -> None:
    """Deep-merge ``top`` into ``base`` (tables merge, everything else replaces) and record key sources."""
    for name, value in top.items():
        key = f"{prefix}.{name}" if prefix else name
        if isinstance(value, dict) and isinstance(base.get(name), dict):
            _merge(base[name], value, src, sources, key)
        else:
            base[name] = _deepcopy(value)
            _mark(value, key, src, sources)


def _mark(value: Any, key: str, src: str, sources: dict[str, str]) -> None:
    sources[key] = src
    if isinstance(value, dict):
        for name, inner in value.items():
            _mark(inner, f"{key}.{name}", src, sources)


def _deepcopy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deepcopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepcopy(v) for v in value]
    return value


def _read_toml(path: Path) -> dict[str, Any]:
    if tomllib is None:  # pragma: no cover
        raise RecipeError(f"{path}: reading recipes needs Python >= 3.11 (tomllib) or `pip install tomli`")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe not found; check the path (recipes/ lists the shipped ones)") from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read the recipe ({exc.strerror or exc})") from None


def _load_chain(path: Path, sources: dict[str, str], seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The merged table of ``path`` and everything it ``extends`` (parents first)."""
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(p.name for p in (*seen, path))
        raise RecipeError(f"{seen[-1]}: extends: circular chain {chain}")
    table = _read_toml(path)
    parent = table.pop("extends", None)
    merged: dict[str, Any] = {}
    if parent is not None:
        if not isinstance(parent, str):
            raise RecipeError(f"{path}: extends = {_show(parent)} should be a string (a recipe path)")
        parent_path = Path(parent).expanduser()
        if not parent_path.is_absolute():
            parent_path = path.parent / parent_path
        if not parent_path.is_file():
            raise RecipeError(f"{path}: extends: {parent_path} not found (paths are relative to {path.parent})")
        merged = _load_chain(parent_path, sources, (*seen, path))
    _merge(merged, table, str(path), sources)
    return merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=2e-5"`` → (["optim", "lr"], 2e-5). The value is TOML; a bare word is a string; ``none`` unsets."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise RecipeError(f"{COMMAND_LINE}: override {text!r} should look like section.key=value (e.g. optim.lr=2e-5)")
    raw = raw.strip()
    if raw.lower() in ("none", "null"):
        return key.split("."), _MISSING
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: model.preset=wfvae-s, output_dir=runs/x
    return key.split("."), value


def _apply_override(table: dict[str, Any], parts: list[str], value: Any, sources: dict[str, str]) -> None:
    node = table
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise RecipeError(f"{COMMAND_LINE}: {'.'.join(parts)}: {'.'.join(parts[: i + 1])} is not a table")
        node = child
    key = ".".join(parts)
    if value is _MISSING:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
    sources[key] = COMMAND_LINE


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, merge (``extends``), override and validate a recipe file."""
    path = Path(path).expanduser()
    sources: dict[str, str] = {}
    table = _load_chain(path, sources)
    for text in overrides:
        parts, value = parse_override(text)
        _apply_override(table, parts, value, sources)
    return recipe_from_dict(table, sources=sources, path=str(path))


def recipe_from_dict(table: dict[str, Any], *, sources: dict[str, str] | None = None, path: str = "") -> Recipe:
    """Validate a plain dict (e.g. the copy stored in a checkpoint) into a :class:`Recipe`."""
    sources = dict(sources or {})
    table = _deepcopy(table)
    table.pop("extends", None)
    for key in _all_keys(table):
        sources.setdefault(key, path or "recipe")
    recipe = _build(Recipe, table, "", sources)
    recipe.sources = sources
    recipe.path = path
    return recipe.validate()


def _all_keys(table: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for name, value in table.items():
        key = f"{prefix}.{name}" if prefix else name
        keys.append(key)
        if isinstance(value, dict):
            keys += _all_keys(value, key)
    return keys


# ================================================================================================ output
def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """Plain types only (str/int/float/bool/list/dict), ``None`` fields dropped: TOML- and checkpoint-safe."""

    def convert(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            out = {}
            for f in dataclasses.fields(obj):
                if f.name in ("sources", "path"):
                    continue
                value = getattr(obj, f.name)
                if value is not None:
                    out[f.name] = convert(value)
            return out
        if isinstance(obj, list | tuple):
            return [convert(v) for v in obj]
        return obj

    return convert(recipe)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dump_recipe(recipe: Recipe) -> str:
    """The fully resolved recipe as TOML; unset optional keys are shown as comments. Parses back equal."""
    lines: list[str] = []

    def emit(obj: Any, header: str) -> None:
        scalars, tables = [], []
        for f in dataclasses.fields(obj):
            if f.name in ("sources", "path"):
                continue
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                tables.append((f.name, value))
            elif value is None:
                scalars.append(f"# {f.name} = (unset)")
            else:
                scalars.append(f"{f.name} = {_toml_value(value)}")
        if header:
            lines.append("")
            lines.append(f"[{header}]")
        lines.extend(scalars)
        for name, value in tables:
            emit(value, f"{header}.{name}" if header else name)

    emit(recipe, "")
    return "\n".join(lines).lstrip("\n") + "\n"
