"""Optional dependencies: one place that maps a module to the extra that installs it.

The core install (``pip install wfvae``) is what loading a model and encoding a dataset need. Everything
else is an extra (``[ray]``, ``[bench]``, ``[samples]``), imported lazily through :func:`require`, so that a
missing one is a :class:`MissingExtraError` (exit 2) whose message carries the exact install command,
verbatim, instead of a ``ModuleNotFoundError`` traceback (exit 3) somewhere deep in a run.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from wfvae_cli.errors import WfvaeError

DISTRIBUTION = "wfvae"

# top-level module -> (extra, what needs it); the extras themselves are declared in pyproject.toml
EXTRA_OF: dict[str, tuple[str, str]] = {
    "ray": ("ray", "the Ray backend"),
    "lpips": ("bench", "LPIPS"),
    "torchvision": ("bench", "LPIPS (torchvision)"),
    "scipy": ("bench", "rFVD"),
    "matplotlib": ("bench", "plots"),
    "psutil": ("bench", "process memory"),
    "skimage": ("samples", "sample clips (scikit-image photos)"),
    "pyarrow": ("parquet", "parquet manifests"),
    "s3fs": ("s3", "s3:// URLs"),
    "gcsfs": ("gcs", "gs:// URLs"),
    "adlfs": ("azure", "az:// URLs"),
    "aiohttp": ("http", "http(s):// URLs"),
}


class MissingExtraError(WfvaeError):
    """An optional dependency is not installed; the message is the one-line fix."""


def install_command(extra: str) -> str:
    """The command that installs ``extra``, as the user should type it (quoted for every shell)."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def require(module: str, feature: str | None = None) -> ModuleType:
    """Import ``module`` (e.g. ``"ray"``, ``"ray.train"``, ``"skimage.data"``) or raise :class:`MissingExtraError`.

    Only a missing *top-level* package is reported as a missing extra; an ImportError raised inside an
    installed package (a broken install, a torch/torchvision mismatch) is re-raised with its own message,
    because "install the extra" would be the wrong advice for it.
    """
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if top not in EXTRA_OF or (exc.name is not None and exc.name.split(".")[0] != top):
            raise  # not an optional dependency, or an installed extra failing inside: a real bug to see
        extra, what = EXTRA_OF[top]
        needed = feature or what
        raise MissingExtraError(
            f"{needed} needs {top}, which is not installed: {install_command(extra)}"
        ) from None
