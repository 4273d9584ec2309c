"""A typed-TOML engine: TOML files (with ``extends`` chains and ``key=value`` overrides) into dataclasses.

The schema is plain dataclasses (``wfvae_cli/train/recipe.py`` is the one in use); this module knows
nothing about training. What it guarantees, for any schema:

* every key is checked: an unknown key is an error with a "did you mean" and the keys allowed there; a
  value of the wrong type names the expected type (``optim.lr = "fast" should be a number``); there is no
  silent coercion (``true`` is not an integer, ``"1"`` is not a number);
* every error is one line that names the key and the file (or ``command line``) that set it;
* value checks live beside the section they check, in its ``__post_init__``: a section raises
  :class:`FieldError` with a key relative to itself, and the engine prefixes the section's path and the
  key's source (so checks need not know where their section sits or which file set it);
* layering, lowest to highest priority: the dataclass defaults → the ``extends = "other.toml"`` chain
  (relative to the extending file; tables deep-merge) → the file → overrides (the value is read as TOML,
  a bare word as a string, ``none`` resets the key to its default);
* :meth:`TomlSchema.dump` writes a config back as TOML that parses back equal.

Why not pydantic: its validation errors carry neither the file a key came from nor a "did you mean", so
both would still be ours, on top of translating its error lists to one line; and its lax mode coerces
``"1"`` to ``1`` (strict mode exists, but the rest stays). The engine below is ~300 lines of stdlib.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from wfvae_cli.errors import WfvaeError

try:  # Python >= 3.11; on 3.10 the identical `tomli` backport, if installed
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ModuleNotFoundError:
        tomllib = None  # type: ignore[assignment]

__all__ = [
    "COMMAND_LINE",
    "ConfigError",
    "FieldError",
    "TomlSchema",
    "non_negative",
    "parse_override",
    "positive",
]

T = TypeVar("T")
COMMAND_LINE = "command line"
#: fields of the root dataclass the engine fills itself (where each key was set; the file read)
META_FIELDS = ("sources", "path")
_MISSING = object()


class ConfigError(WfvaeError):
    """A config key is unknown, mistyped or has an impossible value; the message names key and file."""


class FieldError(ConfigError):
    """Raised by a section's ``__post_init__``: ``key`` is relative to that section ("" for the section)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message


def positive(key: str, value: float) -> None:
    """A finite number > 0, else :class:`FieldError` for ``key``."""
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise FieldError(key, f"{value!r} must be > 0")


def non_negative(key: str, value: float) -> None:
    """A finite number >= 0, else :class:`FieldError` for ``key``."""
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise FieldError(key, f"{value!r} must be >= 0")


# ================================================================================================ types
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


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) < 60 else text[:57] + "..."


def _deepcopy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deepcopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepcopy(v) for v in value]
    return value


def _all_keys(table: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for name, value in table.items():
        key = f"{prefix}.{name}" if prefix else name
        keys.append(key)
        if isinstance(value, dict):
            keys += _all_keys(value, key)
    return keys


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


def parse_override(text: str, error: type[ConfigError] = ConfigError) -> tuple[list[str], Any]:
    """``"optim.lr=2e-5"`` → (["optim", "lr"], 2e-5). The value is TOML; a bare word is a string; ``none`` unsets."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise error(f"{COMMAND_LINE}: override {text!r} should look like section.key=value (e.g. optim.lr=2e-5)")
    raw = raw.strip()
    if raw.lower() in ("none", "null"):
        return key.split("."), _MISSING
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: model.preset=wfvae-s, output_dir=runs/x
    return key.split("."), value


# ================================================================================================ schema
@dataclass(frozen=True)
class TomlSchema(Generic[T]):
    """How to read, check and write configs whose root is the dataclass ``root``.

    ``error`` is the :class:`ConfigError` subclass raised (``RecipeError`` for recipes); ``noun`` and
    ``not_found_hint`` word the file errors ("recipe not found; check the path (recipes/ ...)").
    """

    root: type[T]
    error: type[ConfigError] = ConfigError
    noun: str = "config"
    not_found_hint: str = "check the path"

    # -------------------------------------------------------------------------------- reading
    def load(self, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> T:
        """Read, merge (``extends``), override and check a config file."""
        path = Path(path).expanduser()
        sources: dict[str, str] = {}
        table = self._load_chain(path, sources)
        for text in overrides:
            parts, value = parse_override(text, self.error)
            self._apply_override(table, parts, value, sources)
        return self.from_dict(table, sources=sources, path=str(path))

    def from_dict(self, table: dict[str, Any], *, sources: dict[str, str] | None = None, path: str = "") -> T:
        """Check a plain dict (e.g. a copy stored in a checkpoint) into the root dataclass."""
        sources = dict(sources or {})
        table = _deepcopy(table)
        table.pop("extends", None)
        for key in _all_keys(table):
            sources.setdefault(key, path or self.noun)
        meta = {"sources": sources, "path": path}
        return self._build(self.root, table, "", sources, path or self.noun, meta)

    def _build(self, cls: type, table: dict[str, Any], prefix: str, sources: dict[str, str], fallback: str,
               meta: dict[str, Any] | None = None) -> Any:
        hints = get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in META_FIELDS}
        kwargs: dict[str, Any] = {}
        for name, value in table.items():
            key = f"{prefix}.{name}" if prefix else name
            if name not in fields:
                close = difflib.get_close_matches(name, list(fields), n=1)
                hint = f" (did you mean {(prefix + '.' if prefix else '') + close[0]!r}?)" if close else ""
                where = f"[{prefix}]" if prefix else "the top level"
                raise self.error(
                    f"{sources.get(key, '?')}: unknown key {key!r}{hint}; allowed in {where}: {', '.join(fields)}"
                )
            tp = hints[name]
            try:
                kwargs[name] = self._coerce(value, tp, key, sources, fallback)
            except _Mismatch:
                message = f"{key} = {_show(value)} should be {_type_name(tp)}"
                raise self.error(f"{sources.get(key, '?')}: {message}") from None
        # Sections the table leaves out are built here too (not by their default_factory), so that their
        # checks run with their own path in the messages.
        for name in fields.keys() - kwargs.keys():
            tp = hints[name]
            if dataclasses.is_dataclass(tp) and fields[name].default_factory is not dataclasses.MISSING:
                kwargs[name] = self._build(tp, {}, f"{prefix}.{name}" if prefix else name, sources, fallback)
        if meta is not None:
            kwargs.update({k: v for k, v in meta.items() if k in {f.name for f in dataclasses.fields(cls)}})
        try:
            return cls(**kwargs)
        except FieldError as exc:  # a section's own check: give it its path and the key's source
            key = ".".join(p for p in (prefix, exc.key) if p)
            raise self.error(f"{sources.get(key) or fallback}: {key}: {exc.message}") from None

    def _coerce(self, value: Any, tp: Any, key: str, sources: dict[str, str], fallback: str) -> Any:
        """``value`` as type ``tp`` or :class:`_Mismatch`; nested tables recurse (and report their own keys)."""
        origin, args = get_origin(tp), get_args(tp)
        if origin in (Union, types.UnionType):
            for arg in args:
                if arg is type(None):
                    continue
                try:
                    return self._coerce(value, arg, key, sources, fallback)
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
            return [self._coerce(v, args[0], key, sources, fallback) for v in value]
        if origin is tuple:
            if not isinstance(value, list | tuple) or len(value) != len(args):
                raise _Mismatch
            return tuple(self._coerce(v, a, key, sources, fallback) for v, a in zip(value, args, strict=True))
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise _Mismatch
            return self._build(tp, value, key, sources, fallback)
        raise TypeError(f"unsupported config field type {tp!r} at {key}")  # a bug in the schema, not the user

    # -------------------------------------------------------------------------------- files and overrides
    def _read_toml(self, path: Path) -> dict[str, Any]:
        if tomllib is None:  # pragma: no cover
            raise self.error(f"{path}: reading a {self.noun} needs Python >= 3.11 (tomllib) or `pip install tomli`")
        try:
            with path.open("rb") as fh:
                return tomllib.load(fh)
        except FileNotFoundError:
            raise self.error(f"{path}: {self.noun} not found; {self.not_found_hint}") from None
        except tomllib.TOMLDecodeError as exc:
            raise self.error(f"{path}: not valid TOML ({exc})") from None
        except OSError as exc:
            raise self.error(f"{path}: cannot read the {self.noun} ({exc.strerror or exc})") from None

    def _load_chain(self, path: Path, sources: dict[str, str], seen: tuple[Path, ...] = ()) -> dict[str, Any]:
        """The merged table of ``path`` and everything it ``extends`` (parents first)."""
        path = path.resolve()
        if path in seen:
            chain = " -> ".join(p.name for p in (*seen, path))
            raise self.error(f"{seen[-1]}: extends: circular chain {chain}")
        table = self._read_toml(path)
        parent = table.pop("extends", None)
        merged: dict[str, Any] = {}
        if parent is not None:
            if not isinstance(parent, str):
                raise self.error(f"{path}: extends = {_show(parent)} should be a string (a {self.noun} path)")
            parent_path = Path(parent).expanduser()
            if not parent_path.is_absolute():
                parent_path = path.parent / parent_path
            if not parent_path.is_file():
                raise self.error(f"{path}: extends: {parent_path} not found (paths are relative to {path.parent})")
            merged = self._load_chain(parent_path, sources, (*seen, path))
        _merge(merged, table, str(path), sources)
        return merged

    def _apply_override(self, table: dict[str, Any], parts: list[str], value: Any, sources: dict[str, str]) -> None:
        node = table
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise self.error(f"{COMMAND_LINE}: {'.'.join(parts)}: {'.'.join(parts[: i + 1])} is not a table")
            node = child
        key = ".".join(parts)
        if value is _MISSING:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
        sources[key] = COMMAND_LINE

    # -------------------------------------------------------------------------------- writing
    @staticmethod
    def to_dict(obj: Any) -> dict[str, Any]:
        """Plain types only (str/int/float/bool/list/dict), ``None`` fields dropped: TOML- and pickle-safe."""

        def convert(value: Any) -> Any:
            if dataclasses.is_dataclass(value):
                out = {}
                for f in dataclasses.fields(value):
                    if f.name in META_FIELDS:
                        continue
                    inner = getattr(value, f.name)
                    if inner is not None:
                        out[f.name] = convert(inner)
                return out
            if isinstance(value, list | tuple):
                return [convert(v) for v in value]
            return value

        return convert(obj)

    @staticmethod
    def dump(obj: Any) -> str:
        """The config as TOML; unset optional keys are shown as comments. Parses back equal."""
        lines: list[str] = []

        def emit(section: Any, header: str) -> None:
            scalars, tables = [], []
            for f in dataclasses.fields(section):
                if f.name in META_FIELDS:
                    continue
                value = getattr(section, f.name)
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

        emit(obj, "")
        return "\n".join(lines).lstrip("\n") + "\n"


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
