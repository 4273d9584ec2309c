"""Store-level metadata: what the latents are, how they were made, and when a resume is allowed.

The metadata lives in the root group's attributes as plain JSON. :class:`StoreMeta` is its typed form;
it normalises every value to JSON-native types at construction (numpy scalars, tuples and ``Path``
objects are converted, anything else is refused), because zarr's attribute encoder rejects numpy scalars
and because a meta that equals itself after a round-trip through attrs is what makes
:func:`check_compatible` trustworthy.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import PurePath
from typing import Any, Literal, cast, get_args

import numpy as np

from wfvae_cli.store.errors import IncompatibleStoreError, StoreError

FORMAT_NAME = "wfvae-latents"
#: Bump on any change a reader of the previous version would misread (see docs/store-format.md).
FORMAT_VERSION = 1

StoredKind = Literal["posterior", "sample"]
StoredDtype = Literal["float16", "float32"]

JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def utc_now() -> str:
    """The current time as ISO 8601 UTC with an explicit offset (``2025-01-31T12:00:00+00:00``)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def to_json_native(value: Any, *, where: str = "value") -> JSONValue:
    """Return ``value`` as JSON-native Python types, or raise naming the offending key.

    Converted: numpy scalars and arrays, tuples, ``PurePath``. Refused: NaN/Inf (not JSON), non-string
    dict keys and any other object, because silently ``str()``-ing them would break comparisons later.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        return to_json_native(value.item(), where=where)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise StoreError(f"{where} is {value}, which JSON cannot store; use a finite number or null")
        return float(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, np.ndarray):
        return to_json_native(value.tolist(), where=where)
    if isinstance(value, (list, tuple)):
        return [to_json_native(v, where=f"{where}[{k}]") for k, v in enumerate(value)]
    if isinstance(value, Mapping):
        out: dict[str, JSONValue] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise StoreError(f"{where} has a non-string key {k!r}; JSON object keys must be strings")
            out[k] = to_json_native(v, where=f"{where}.{k}")
        return out
    raise StoreError(f"{where} has a {type(value).__name__}, which is not JSON-native; convert it first")


@dataclass(frozen=True)
class StoreMeta:
    """Everything a consumer needs to trust and interpret the latents of a store.

    Attributes:
        model: the model spec as the user gave it (preset name, path or hub id); informational.
        model_config: the full model config dict (the official ``config.json`` form).
        weights_sha256: fingerprint of the weights that produced the latents (64 lowercase hex digits).
        kind: ``"posterior"`` stores ``mean`` and ``logvar``; ``"sample"`` stores one draw per clip.
        dtype: the stored floating-point type.
        scaled: whether ``(z - shift) * scale`` was applied before storing.
        scale, shift: the per-channel (or length-1) factors of the model, recorded even when
            ``scaled`` is false so that readers can normalise later.
        preprocessing: how clips were cut and resized (frames, stride/fps, resolution, crop, clip mode...).
        sample_seed: the seed of the draw; required when ``kind == "sample"``, else ``None``.
        tool_version, command: provenance (``wfvae`` version and the argv of the run).
        created_at, completed_at: ISO 8601 UTC; ``completed_at`` is set by ``finalize``.
        format_version: the layout version the store was written with.
        random_weights: the latents come from a randomly initialised preset (``--random-weights``), not a
            trained checkpoint; absent in stores written before this field existed (= false).
    """

    model: str
    model_config: dict[str, Any]
    weights_sha256: str
    kind: StoredKind
    dtype: StoredDtype
    scaled: bool
    scale: list[float]
    shift: list[float]
    preprocessing: dict[str, Any]
    tool_version: str
    command: list[str]
    sample_seed: int | None = None
    created_at: str = field(default_factory=utc_now)
    completed_at: str | None = None
    format_version: int = FORMAT_VERSION
    random_weights: bool = False

    def __post_init__(self) -> None:
        # Frozen dataclass: normalise through object.__setattr__ so the instance is canonical.
        set_ = object.__setattr__
        set_(self, "model_config", to_json_native(dict(self.model_config), where="model_config"))
        set_(self, "preprocessing", to_json_native(dict(self.preprocessing), where="preprocessing"))
        set_(self, "scale", _float_list(self.scale, "scale"))
        set_(self, "shift", _float_list(self.shift, "shift"))
        set_(self, "command", [str(a) for a in self.command])
        set_(self, "weights_sha256", str(self.weights_sha256).lower())
        set_(self, "random_weights", bool(self.random_weights))
        if self.sample_seed is not None:
            set_(self, "sample_seed", int(self.sample_seed))
        self._validate()

    def _validate(self) -> None:
        if self.kind not in get_args(StoredKind):
            raise StoreError(f"kind must be one of {get_args(StoredKind)}, got {self.kind!r}")
        if self.dtype not in get_args(StoredDtype):
            raise StoreError(f"dtype must be one of {get_args(StoredDtype)}, got {self.dtype!r}")
        if not _SHA256.match(self.weights_sha256):
            raise StoreError(f"weights_sha256 must be 64 hex digits, got {self.weights_sha256!r}")
        if (self.kind == "sample") != (self.sample_seed is not None):
            raise StoreError("sample_seed is required when kind='sample' and must be None otherwise")
        if not self.scale or not self.shift:
            raise StoreError("scale and shift must be non-empty lists (length 1 or the channel count)")

    @property
    def latent_names(self) -> tuple[str, ...]:
        """Names of the per-bucket latent arrays this kind stores."""
        return ("mean", "logvar") if self.kind == "posterior" else ("sample",)

    def replace(self, **changes: Any) -> StoreMeta:
        """A copy with some fields changed (e.g. ``completed_at``)."""
        return dataclasses.replace(self, **changes)

    def to_attrs(self) -> dict[str, JSONValue]:
        """The root-group attributes (JSON-native only)."""
        attrs = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return cast(dict[str, JSONValue], {"format": FORMAT_NAME, **attrs})

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], *, path: str | os.PathLike[str] = "store") -> StoreMeta:
        """Parse root attributes; refuse anything that is not a wfvae store this version can read."""
        if attrs.get("format") != FORMAT_NAME:
            raise StoreError(f"{path} is not a wfvae latent store (no format={FORMAT_NAME!r} attribute)")
        version = attrs.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise StoreError(
                f"{path} has format_version {version!r} but this wfvae reads up to {FORMAT_VERSION}; "
                "upgrade wfvae"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(n for n in names if n not in attrs and n not in _OPTIONAL)
        if missing:
            raise StoreError(
                f"{path} is missing root attributes {missing}; the store is damaged, re-encode it"
            )
        return cls(**{k: v for k, v in attrs.items() if k in names})


def _float_list(values: Any, where: str) -> list[float]:
    native = to_json_native(list(values), where=where)
    assert isinstance(native, list)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in native):
        raise StoreError(f"{where} must be a list of numbers, got {native!r}")
    return [float(v) for v in native]  # type: ignore[arg-type]


_OPTIONAL = frozenset({"sample_seed", "created_at", "completed_at", "format_version", "random_weights"})

#: Fields that change what the latents *are*. A resume with any difference would mix incompatible data.
_COMPARED: tuple[tuple[str, str], ...] = (
    ("format_version", "format version"),
    ("weights_sha256", "model weights (sha256)"),
    ("model_config", "model config"),
    ("kind", "stored kind"),
    ("sample_seed", "sample seed"),
    ("dtype", "stored dtype"),
    ("scaled", "scaling"),
    ("preprocessing", "preprocessing"),
)


def _first_difference(a: Any, b: Any, where: str) -> str | None:
    """The dotted path of the first difference between two JSON values, or ``None`` if equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{where}.{key}"
            sub = _first_difference(a[key], b[key], f"{where}.{key}")
            if sub:
                return sub
        return None
    return None if a == b else where


def _lookup(value: Any, dotted: str) -> Any:
    for part in dotted.split(".")[1:]:
        value = value.get(part, "<absent>") if isinstance(value, dict) else "<absent>"
    return value


def check_compatible(
    existing: StoreMeta, new: StoreMeta, *, path: str | os.PathLike[str] = "the store"
) -> None:
    """Refuse to resume into a store whose latents would not match the new run's.

    Compared: format version, weights fingerprint, model config, stored kind (and sample seed), dtype,
    scaling (and, when scaled, the scale/shift values) and preprocessing. Not compared: the model spec
    string (the same weights may live at another path), tool version, command line and timestamps.

    Raises:
        IncompatibleStoreError: one line naming the first differing field and suggesting ``--overwrite``.
    """
    compared = list(_COMPARED)
    if existing.scaled or new.scaled:
        compared += [("scale", "scale factor"), ("shift", "shift factor")]
    for name, label in compared:
        old_value, new_value = getattr(existing, name), getattr(new, name)
        where = _first_difference(old_value, new_value, name)
        if where is None:
            continue
        if where != name:
            label = f"{label} ({where})"
            old_value, new_value = _lookup(old_value, where), _lookup(new_value, where)
        raise IncompatibleStoreError(
            f"{path} was written with a different {label}: {old_value!r} there vs {new_value!r} now; "
            "use another output path or rerun with --overwrite to replace it"
        )
