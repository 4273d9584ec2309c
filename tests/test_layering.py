"""The package's layering rules, checked on the source: the library never imports the CLI, and the
command modules never import the app that assembles them."""

from __future__ import annotations

import ast
from pathlib import Path

import wfvae_cli

PACKAGE = Path(wfvae_cli.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved against the package)."""
    return _imported_names(path.read_text(), ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))


def _imported_names(source: str, module: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: -node.level]
                base = ".".join([*parent, base]) if base else ".".join(parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_the_library_never_imports_the_cli() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "cli" or rel.name == "__main__.py":
            continue
        bad = sorted(n for n in _imports(path) if n == "wfvae_cli.cli" or n.startswith("wfvae_cli.cli."))
        if bad:
            offenders.append(f"{rel}: {', '.join(bad)}")
    assert not offenders, "library modules import the CLI:\n" + "\n".join(offenders)


def test_command_modules_do_not_import_the_app() -> None:
    offenders = [
        path.name
        for path in sorted((PACKAGE / "cli").glob("*.py"))
        if path.name != "app.py" and any(n.startswith("wfvae_cli.cli.app") for n in _imports(path))
    ]
    assert not offenders, f"command modules import cli/app.py (the app imports them): {offenders}"


def test_the_checker_sees_an_import_of_the_cli() -> None:
    """The rules above can fail: absolute, relative and function-level imports of the CLI are all seen."""
    source = (
        "from wfvae_cli.cli.options import err_console\n"
        "def f():\n    from ..cli import app\n"
    )
    names = _imported_names(source, "wfvae_cli.train.probe")
    assert {"wfvae_cli.cli.options", "wfvae_cli.cli", "wfvae_cli.cli.app"} <= names
