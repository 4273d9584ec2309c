"""Webdataset tar shards as inputs: brace-range expansion and indexing a shard into samples.

A shard is an uncompressed tar whose members are grouped into samples by **key**, webdataset's rule: the
member's path up to the first dot of its base name (``dir/000042.mp4`` and ``dir/000042.json`` are sample
``dir/000042``). video2dataset writes ``KEY.mp4`` + ``KEY.txt`` + ``KEY.json`` per sample. Per sample:

* the video is the member with a video extension (any of :data:`~wfvae_cli.io.discover.VIDEO_EXTENSIONS`;
  for multi-dot names such as ``KEY.clip.mp4`` the last extension counts);
* the caption is the ``.txt`` member, else ``.caption``, else the ``.json``'s ``caption`` field;
* every field of the ``.json`` member is kept as the sample's ``extra`` metadata (JSON types kept).

Indexing reads only the tar headers (and the small text/JSON members): :mod:`tarfile` seeks over member
data, and over a :class:`~wfvae_cli.io.remote.RemoteFile` a seek is free, so a remote shard costs about one
ranged read per sample rather than a download. The video's bytes are then addressed by their offset in the
shard (:func:`~wfvae_cli.io.remote.member_source`) and read by the decoder with ranged reads.

Problems stay local: a sample with no video member, a ``.json`` that is not valid JSON, or a shard that is
truncated part-way are reported per sample (naming the shard and key); the other samples go on.
"""

from __future__ import annotations

import json
import posixpath
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from wfvae_cli.errors import WfvaeError
from wfvae_cli.io import remote

__all__ = ["ShardSample", "expand_braces", "index_shard", "sample_key"]

#: members read at indexing time (small metadata); anything larger is skipped with a reason
MAX_TEXT_BYTES = 16 * 2**20
#: read-ahead while walking a shard's headers: big enough to hold a sample's small members after its video
INDEX_BLOCK = 256 * 2**10
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")


def expand_braces(pattern: str) -> list[str]:
    """Expand ``{000..099}`` ranges (zero padding kept) and ``{a,b,c}`` lists, as webdataset and the shell do.

    ``data-{000000..000002}.tar`` -> ``data-000000.tar``, ``data-000001.tar``, ``data-000002.tar``. Several
    groups multiply; a group without ``..`` or ``,`` is left as is. Order is the pattern's order.
    """
    start = pattern.find("{")
    if start < 0:
        return [pattern]
    depth = 0
    for end in range(start, len(pattern)):
        depth += {"{": 1, "}": -1}.get(pattern[end], 0)
        if depth == 0:
            break
    else:
        raise WfvaeError(f"input {pattern!r}: unbalanced '{{' in a brace pattern; write e.g. data-{{000..009}}.tar")
    head, body, tail = pattern[:start], pattern[start + 1 : end], pattern[end + 1 :]
    m = _RANGE.match(body)
    if m:
        lo, hi = int(m[1]), int(m[2])
        width = len(m[1]) if m[1].lstrip("-").startswith("0") else 0
        step = 1 if hi >= lo else -1
        options = [f"{k:0{width}d}" for k in range(lo, hi + step, step)]
    else:
        options = _split_top(body)
        if len(options) == 1:  # not a brace group: keep it literally
            return [head + "{" + o + "}" + t for o in expand_braces(body) for t in expand_braces(tail)]
    return [head + x + t for o in options for x in expand_braces(o) for t in expand_braces(tail)]


def _split_top(body: str) -> list[str]:
    """``a,{b,c},d`` -> ``['a', '{b,c}', 'd']`` (commas inside nested braces do not split)."""
    parts, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    parts.append(cur)
    return parts


def sample_key(member: str) -> tuple[str, str]:
    """``(key, suffix)`` of a member by webdataset's rule: ``a/b/000042.clip.mp4`` -> ``('a/b/000042', 'clip.mp4')``."""
    folder, base = posixpath.split(member)
    stem, dot, suffix = base.partition(".")
    return (posixpath.join(folder, stem) if folder else stem), (suffix if dot else "")


@dataclass
class ShardSample:
    """One sample of a shard: its video member's source string, caption and ``.json`` fields."""

    key: str
    source: str  # remote.member_source(...) of the video member
    caption: str | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Group:
    members: dict[str, tarfile.TarInfo] = field(default_factory=dict)  # suffix -> header


def _groups(tar: tarfile.TarFile, shard: str, problems: list[tuple[str, str]]) -> Iterator[tuple[str, _Group]]:
    """Samples in shard order; a damaged tail becomes one problem naming where it starts."""
    current: tuple[str, _Group] | None = None
    last = "the first member"
    while True:
        try:
            info = tar.next()
        except (tarfile.TarError, OSError, EOFError) as err:
            problems.append(
                (shard, f"{shard}: unreadable after {last} ({type(err).__name__}: {err}); the shard is truncated "
                 "or corrupt (samples before it are kept)")
            )
            break
        if info is None:
            break
        last = f"member {info.name!r}"
        if not info.isfile():
            continue
        key, suffix = sample_key(info.name)
        if posixpath.basename(key).startswith("_") and not suffix:  # e.g. __index__ files of some writers
            continue
        if current is None or current[0] != key:
            if current is not None:
                yield current
            current = (key, _Group())
        current[1].members[suffix.lower()] = info
    if current is not None:
        yield current


def _read_text(tar_file: remote.RemoteFile, info: tarfile.TarInfo) -> bytes:
    if info.size > MAX_TEXT_BYTES:
        raise ValueError(f"{info.name} is {info.size} bytes, more than {MAX_TEXT_BYTES} for a text member")
    tar_file.seek(info.offset_data)
    return tar_file.read(info.size)


def index_shard(shard: str, video_extensions: frozenset[str]) -> tuple[list[ShardSample], list[tuple[str, str]]]:
    """The samples of one shard and the problems found, as ``(samples, [(origin, reason)])``.

    Raises :class:`WfvaeError` only when the shard cannot be opened at all (missing, unreachable, not a tar).
    """
    if shard.lower().endswith((".tar.gz", ".tgz", ".tar.zst", ".tar.bz2", ".tar.xz")):
        raise WfvaeError(
            f"shard {shard}: compressed tar shards cannot be read by byte range; write uncompressed .tar shards"
        )
    try:
        handle = remote.open_binary(shard, block_size=INDEX_BLOCK)
    except WfvaeError as err:
        raise WfvaeError(str(err).replace("cannot be opened", "(webdataset shard) cannot be opened")) from None
    problems: list[tuple[str, str]] = []
    samples: list[ShardSample] = []
    with handle:
        try:
            tar = tarfile.open(fileobj=handle, mode="r:")  # noqa: SIM115 - the handle is closed below
        except (tarfile.TarError, OSError) as err:
            raise WfvaeError(
                f"shard {shard}: is not a tar file ({err}); check the input or re-create the shard"
            ) from None
        for key, group in _groups(tar, shard, problems):
            origin = f"{shard}#{key}"
            videos = sorted(s for s in group.members if "." + s.rsplit(".", 1)[-1] in video_extensions)
            if not videos:
                found = ", ".join("." + s for s in sorted(group.members)) or "nothing"
                problems.append((origin, f"{shard}: sample {key!r} has no video member (found {found})"))
                continue
            video = group.members[videos[0]]
            extra: dict[str, Any] = {}
            caption: str | None = None
            try:
                if "json" in group.members:
                    obj = json.loads(_read_text(handle, group.members["json"]).decode("utf-8"))
                    if not isinstance(obj, dict):
                        raise ValueError(".json member is not a JSON object")
                    extra = obj
                for suffix in ("txt", "caption"):
                    if suffix in group.members:
                        caption = _read_text(handle, group.members[suffix]).decode("utf-8").strip()
                        break
                else:
                    value = extra.get("caption")
                    caption = None if value is None else str(value)
            except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
                problems.append((origin, f"{shard}: sample {key!r}: bad metadata member ({err}); fix or drop it"))
                continue
            except WfvaeError as err:  # a read error of the metadata (network)
                problems.append((origin, str(err)))
                continue
            source = remote.member_source(shard, video.name, video.offset_data, video.size)
            samples.append(ShardSample(key, source, caption or None, extra))
    return samples, problems
