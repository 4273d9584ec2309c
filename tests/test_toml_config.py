"""The typed-TOML engine on its own (a schema that is not a recipe): keys, types, sources, section checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from wfvae_cli.toml_config import ConfigError, FieldError, TomlSchema, positive


@dataclass
class Inner:
    size: int = 8

    def __post_init__(self) -> None:
        if self.size % 8:
            raise FieldError("size", f"{self.size} must be a multiple of 8")


@dataclass
class Outer:
    rate: float = 1.0
    name: str | None = None
    inner: Inner = field(default_factory=Inner)
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    path: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        positive("rate", self.rate)


class MyError(ConfigError):
    pass


SCHEMA = TomlSchema(Outer, MyError, noun="settings file")


def test_sources_layers_and_round_trip(tmp_path: Path) -> None:
    base = tmp_path / "base.toml"
    base.write_text("rate = 2\n[inner]\nsize = 16\n")
    top = tmp_path / "top.toml"
    top.write_text('extends = "base.toml"\nname = "x"\n')
    cfg = SCHEMA.load(top, ["inner.size=24"])
    assert cfg == Outer(rate=2.0, name="x", inner=Inner(24))
    assert cfg.sources["rate"] == str(base) and cfg.sources["name"] == str(top)
    assert cfg.sources["inner.size"] == "command line"
    assert SCHEMA.from_dict(SCHEMA.to_dict(cfg)) == cfg
    assert "# name = (unset)" in SCHEMA.dump(Outer())


def test_errors_name_the_file_and_the_full_key(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("[inner]\nsiez = 16\n")
    with pytest.raises(MyError, match=r"s\.toml: unknown key 'inner\.siez' \(did you mean 'inner\.size'\?\)"):
        SCHEMA.load(path)
    path.write_text("[inner]\nsize = 12\n")
    with pytest.raises(MyError, match=r"s\.toml: inner\.size: 12 must be a multiple of 8"):
        SCHEMA.load(path)
    with pytest.raises(MyError, match=r"command line: rate: -1\.0 must be > 0"):
        SCHEMA.load(path, ["inner.size=8", "rate=-1"])
    with pytest.raises(MyError, match=r"rate = true should be a number"):
        SCHEMA.from_dict({"rate": True})
    with pytest.raises(MyError, match="settings file not found"):
        SCHEMA.load(tmp_path / "missing.toml")


@dataclass
class Strict:
    value: int | None = None

    def __post_init__(self) -> None:
        if self.value is None:
            raise FieldError("", "set strict.value")


@dataclass
class Root:
    strict: Strict = field(default_factory=lambda: Strict(1))


def test_a_section_left_out_is_still_checked_under_its_own_name() -> None:
    """The engine builds absent sections itself (not their default_factory), so their checks run and their
    errors carry the section's path."""
    with pytest.raises(ConfigError, match=r"^defaults: strict: set strict\.value$"):
        TomlSchema(Root, noun="defaults").from_dict({})
    assert TomlSchema(Root).from_dict({"strict": {"value": 3}}).strict.value == 3
