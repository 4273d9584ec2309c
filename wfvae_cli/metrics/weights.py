"""Finding and verifying the pretrained networks behind LPIPS and FVD, without any network access.

The metric networks are never downloaded by this package (the evaluation machines are often offline,
and torch.hub never re-checks a cached file). A file is taken from, in order:

1. the path the caller passes (a file, or a directory holding the file under its canonical name);
2. ``$TORCH_HOME/hub/checkpoints/`` (or ``$XDG_CACHE_HOME/torch/hub/checkpoints/`` when ``TORCH_HOME``
   is unset), i.e. where torchvision itself would have cached it;
3. ``~/.cache/torch/hub/checkpoints/``.

A missing file raises :class:`MetricUnavailable` (a caller may skip that metric); a file that is there
but wrong (hash, format) raises :class:`MetricWeightsError`, which must never be skipped silently.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from wfvae_cli.errors import WfvaeError

_CHUNK = 1 << 20


class MetricUnavailable(WfvaeError):
    """A metric's pretrained network is not on this machine; the message says where to put it."""


class MetricWeightsError(WfvaeError):
    """A metric's weight file exists but is not the expected one (hash mismatch, unreadable, wrong model)."""


def weight_search_dirs() -> list[Path]:
    """The cache directories searched for metric weights, in order (see the module docstring)."""
    dirs: list[Path] = []
    torch_home = os.environ.get("TORCH_HOME")
    xdg = os.environ.get("XDG_CACHE_HOME")
    if torch_home:
        dirs.append(Path(torch_home).expanduser() / "hub" / "checkpoints")
    elif xdg:
        dirs.append(Path(xdg).expanduser() / "torch" / "hub" / "checkpoints")
    dirs.append(Path.home() / ".cache" / "torch" / "hub" / "checkpoints")
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def find_weight_file(
    file_name: str, explicit: str | os.PathLike[str] | None, *, metric: str, source: str
) -> Path:
    """Locate ``file_name`` (an explicit path wins; see the module docstring for the search order).

    ``metric`` names the metric and ``source`` where the file comes from, for the one-line how-to of
    :class:`MetricUnavailable`.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_dir():
            path = path / file_name
        if not path.is_file():
            raise MetricUnavailable(
                f"{metric}: weight file {path} not found; pass the path of {file_name} (from {source})"
            )
        return path
    dirs = weight_search_dirs()
    for d in dirs:
        if (d / file_name).is_file():
            return d / file_name
    searched = ", ".join(str(d) for d in dirs)
    raise MetricUnavailable(
        f"{metric}: {file_name} not found in {searched}; download {source} on a machine with internet "
        f"and copy it to {dirs[0]}/ (or pass its path)"
    )


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (weight files are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected_prefix: str, *, metric: str, source: str) -> str:
    """Hash ``path`` and check it starts with ``expected_prefix``; return the full hex digest.

    A prefix is enough for torchvision files: their names carry the first 8 hex digits of the sha256
    (``alexnet-owt-7be5be79.pth``), which is exactly what torchvision itself checks on download.
    """
    digest = sha256_file(path)
    if not digest.startswith(expected_prefix.lower()):
        raise MetricWeightsError(
            f"{metric}: {path} has sha256 {digest[:16]}…, expected {expected_prefix}…; the file is corrupt "
            f"or a different model: delete it and download {source} again"
        )
    return digest
