"""Inputs where users keep them: URLs (a real S3-compatible server), webdataset shards, parquet manifests,
sample keys and metadata, bad URLs. Every remote run is compared with the same files on local disk."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from wfvae_cli.errors import WfvaeError
from wfvae_cli.io import make_sample_clips, probe, read_frames
from wfvae_cli.io.discover import discover_videos
from wfvae_cli.io.remote import FLAKY_ENV, open_input, parse_member, set_storage_options
from wfvae_cli.io.webdataset import expand_braces, sample_key
from wfvae_cli.pipeline import EncodeOptions, encode_dataset
from wfvae_cli.storage import StorageError
from wfvae_cli.store import LatentDataset, collate_latents, open_store

MODEL = "wfvae-tiny"  # bundled trained weights, fast on CPU
WFVAE = [sys.executable, "-m", "wfvae_cli"]


# ------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Four short clips in a folder (one in a sub-folder), the local reference of every test."""
    root = tmp_path_factory.mktemp("remote_clips")
    paths = make_sample_clips(root, n=4, frames=9, size=[(64, 64), (48, 80), (80, 48), (64, 96)], fps=8)
    (root / "sub").mkdir()
    paths[3].rename(root / "sub" / paths[3].name)
    return root


def clip_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.mp4"))


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def make_shards(clips_root: Path, out: Path) -> list[Path]:
    """Two video2dataset-style shards (KEY.mp4 + KEY.txt + KEY.json), plus three broken samples in the second:
    a corrupt video member, a .json that is not JSON, and a sample without a video."""
    out.mkdir(parents=True, exist_ok=True)
    files = clip_files(clips_root)
    shards = [out / "data-000000.tar", out / "data-000001.tar"]
    for s, shard in enumerate(shards):
        with tarfile.open(shard, "w", format=tarfile.GNU_FORMAT) as tar:
            for k, f in enumerate(files[2 * s : 2 * s + 2]):
                key = f"{2 * s + k:09d}"
                add_member(tar, f"{key}.mp4", f.read_bytes())
                add_member(tar, f"{key}.txt", f"caption of {f.name}".encode())
                meta = {"url": f"https://example.com/{f.name}", "key": key, "width": 64, "score": 0.5 + k,
                        "tags": ["a", k], "error_message": None}
                add_member(tar, f"{key}.json", json.dumps(meta).encode())
            if s == 1:
                add_member(tar, "000000100.mp4", b"\x00\x00\x00\x18ftypmp42 this is not a video" * 50)
                add_member(tar, "000000101.mp4", files[0].read_bytes())
                add_member(tar, "000000101.json", b"{not json")
                add_member(tar, "000000102.txt", b"only a caption")
    return shards


def options(inputs, out, **kw) -> EncodeOptions:
    base = dict(model=MODEL, frames=5, size=(32, 32), workers=2, decode_timeout=60.0)
    base.update(kw)
    return EncodeOptions(inputs=tuple(str(i) for i in inputs), out=Path(out), **base)


def by_key(store_path: Path) -> dict[str, dict]:
    store = open_store(store_path)
    return {s["key"]: s for s in store}


def assert_same_latents(a: dict[str, dict], b: dict[str, dict], *, sources: bool = False) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key]["mean"], b[key]["mean"], err_msg=key)
        np.testing.assert_array_equal(a[key]["logvar"], b[key]["logvar"], err_msg=key)
        assert a[key]["extra"] == b[key]["extra"] and a[key]["caption"] == b[key]["caption"]
        assert list(a[key]["frame_indices"]) == list(b[key]["frame_indices"])


@pytest.fixture(scope="module")
def local_reference(clips, tmp_path_factory) -> dict[str, dict]:
    """The folder of clips encoded from local disk."""
    out = tmp_path_factory.mktemp("ref") / "ref.zarr"
    assert encode_dataset(options([clips], out)).ok
    return by_key(out)


@pytest.fixture(autouse=True)
def _default_options(request):
    set_storage_options({})
    if request.node.get_closest_marker("integration"):
        # decode workers started by earlier tests copied the environment before the S3 fixture set AWS_*:
        # start fresh ones, as a user's job would (its environment is set before it starts)
        from wfvae_cli.io import _worker

        _worker.shutdown()
    yield
    set_storage_options({})


# ------------------------------------------------------------------------------------------------ unit tests
def test_brace_ranges_as_webdataset_writes_them():
    assert expand_braces("s/data-{000000..000002}.tar") == [
        "s/data-000000.tar", "s/data-000001.tar", "s/data-000002.tar"
    ]
    assert expand_braces("{a,b}-{1..2}") == ["a-1", "a-2", "b-1", "b-2"]
    assert expand_braces("x-{9..11}") == ["x-9", "x-10", "x-11"]
    assert expand_braces("plain{x}.tar") == ["plain{x}.tar"] and expand_braces("no braces") == ["no braces"]
    with pytest.raises(WfvaeError, match="unbalanced"):
        expand_braces("data-{000..")


def test_webdataset_key_rule():
    assert sample_key("a/b/000042.clip.mp4") == ("a/b/000042", "clip.mp4")
    assert sample_key("000042.json") == ("000042", "json")


def test_webdataset_shards_local(clips, tmp_path, local_reference):
    shards = make_shards(clips, tmp_path / "shards")
    found = discover_videos([str(tmp_path / "shards" / "data-{000000..000001}.tar")])
    keys = [s.key for s in found.sources]
    assert keys == ["000000000", "000000001", "000000002", "000000003", "000000100"]
    first = found.sources[0]
    assert first.caption == f"caption of {clip_files(clips)[0].name}"
    assert first.extra["tags"] == ["a", 0] and first.extra["error_message"] is None
    member = parse_member(first.path)
    assert member is not None and member.shard == str(shards[0]) and member.name == "000000000.mp4"
    reasons = {s.path: s.reason for s in found.skipped}
    assert any("000000101" in p and "bad metadata" in r and "data-000001.tar" in r for p, r in reasons.items())
    assert any("000000102" in p and "no video member" in r for p, r in reasons.items())
    # a member is read by its byte range: the same frames as the file it came from
    with open_input(first.path) as src:
        assert not isinstance(src, str) and src.size == clip_files(clips)[0].stat().st_size
    np.testing.assert_array_equal(
        read_frames(first.path, [0, 3], timeout=30), read_frames(clip_files(clips)[0], [0, 3])
    )

    summary = encode_dataset(options([str(tmp_path / "shards" / "data-{000000..000001}.tar")], tmp_path / "w.zarr"))
    assert summary.done == 4 and len(summary.rejected) == 3  # the corrupt video fails alone, at probing
    broken = [r for s, r in summary.rejected if "000000100" in s]
    assert broken and "data-000001.tar" in broken[0] and "000000100.mp4" in broken[0]
    got = by_key(tmp_path / "w.zarr")
    files = clip_files(clips)
    for i, f in enumerate(files):  # same latents as the same files on local disk
        ref = local_reference[str(f.relative_to(clips))]
        np.testing.assert_array_equal(got[f"{i:09d}"]["mean"], ref["mean"])
        assert got[f"{i:09d}"]["extra"]["url"].endswith(f.name)


def test_parquet_manifest_keys_extra_and_reader(clips, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    files = clip_files(clips)
    manifest = clips.parent / "meta" / "m.parquet"
    manifest.parent.mkdir(exist_ok=True)
    rel = [os.path.relpath(f, manifest.parent) for f in files]
    table = pa.table({
        "video": rel, "text": [f"c{i}" for i in range(4)], "videoid": [f"v{i}" for i in range(4)],
        "aesthetic": [4.5, None, 5.0, 6.25], "tags": [["x"], [], ["y", "z"], None], "n": [1, 2, 3, 4],
    })
    pq.write_table(table, manifest)
    opts = options([manifest], tmp_path / "p.zarr", path_col="video", caption_col="text", key_col="videoid")
    assert encode_dataset(opts).ok
    got = by_key(tmp_path / "p.zarr")
    assert sorted(got) == ["v0", "v1", "v2", "v3"]
    assert got["v1"]["extra"] == {"aesthetic": None, "tags": [], "n": 2} and got["v1"]["caption"] == "c1"
    assert got["v2"]["extra"] == {"aesthetic": 5.0, "tags": ["y", "z"], "n": 3}
    ds = LatentDataset(tmp_path / "p.zarr")
    item = ds[0]
    assert item["key"] in got and item["extra"] == got[item["key"]]["extra"]
    batch = collate_latents([ds[i] for i in range(len(ds)) if ds.locate(i)[0] == ds.locate(0)[0]])
    assert batch["latent"].ndim == 5 and isinstance(batch["extra"][0], dict)
    with pytest.raises(WfvaeError, match=r"has no .path. column .*video"):
        discover_videos([manifest])


def test_default_keys_are_relative_to_the_input_root_and_duplicates_are_errors(clips, tmp_path):
    found = discover_videos([clips])
    assert [s.key for s in found.sources] == [str(f.relative_to(clips)) for f in clip_files(clips)]
    other = tmp_path / "other"
    other.mkdir()
    name = clip_files(clips)[0].name
    (other / name).write_bytes(clip_files(clips)[0].read_bytes())
    with pytest.raises(
        WfvaeError, match=f"sample key '{name}' is used twice: by .*{clips.name}.* and by .*other"
    ) as err:
        discover_videos([clips, other])
    assert "\n" not in str(err.value)
    csv = tmp_path / "k.csv"
    csv.write_text(f"path,key\n{clip_files(clips)[0]},same\n{clip_files(clips)[1]},same\n")
    with pytest.raises(WfvaeError, match="'same' is used twice"):
        discover_videos([csv])


def test_stores_without_key_and_extra_still_read(clips, tmp_path):
    """Stores written before the key/extra arrays existed: empty key, empty extra."""
    import shutil

    out = tmp_path / "old.zarr"
    assert encode_dataset(options([clip_files(clips)[0]], out)).ok
    for bucket in (b for b in (out / "buckets").iterdir() if b.is_dir()):
        shutil.rmtree(bucket / "key")
        shutil.rmtree(bucket / "extra")
    store = open_store(out)
    assert store[0]["key"] == "" and store[0]["extra"] == {}
    assert LatentDataset(out)[0]["key"] == ""


# ------------------------------------------------------------------------------------------ S3 server tests
def upload(bucket: str, root: Path, prefix: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    for f in sorted(root.rglob("*")):
        if f.is_file():
            fs.pipe(f"{bucket}/{prefix}/{f.relative_to(root).as_posix()}", f.read_bytes())


@pytest.mark.integration
def test_prefix_glob_and_single_url_match_local_disk(clips, s3_bucket, tmp_path, local_reference):
    upload(s3_bucket, clips, "videos")
    # a prefix, listed recursively
    assert encode_dataset(options([f"s3://{s3_bucket}/videos/"], tmp_path / "a.zarr")).ok
    got = by_key(tmp_path / "a.zarr")
    assert_same_latents(got, local_reference)
    assert all(s["source"].startswith(f"s3://{s3_bucket}/videos/") for s in got.values())
    # a glob (keys relative to its fixed prefix) and one video by URL
    found = discover_videos([f"s3://{s3_bucket}/videos/**/*.mp4"])
    assert sorted(s.key for s in found.sources) == sorted(local_reference)
    one = clip_files(clips)[1]
    url = f"s3://{s3_bucket}/videos/{one.name}"
    assert encode_dataset(options([url], tmp_path / "b.zarr")).ok
    single = by_key(tmp_path / "b.zarr")
    assert list(single) == [one.name]
    np.testing.assert_array_equal(single[one.name]["mean"], local_reference[one.name]["mean"])
    # the decode worker subprocess opens the URL itself (deadline applies) and agrees with a local read
    assert probe(url, timeout=30).num_frames == probe(one).num_frames


@pytest.mark.integration
def test_webdataset_and_parquet_on_the_server_match_local(clips, s3_bucket, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    data = tmp_path / "data"
    make_shards(clips, data / "shards")
    (data / "videos").mkdir()
    for f in clip_files(clips):
        (data / "videos" / f.name).write_bytes(f.read_bytes())
    names = sorted(p.name for p in (data / "videos").iterdir())
    (data / "meta").mkdir()
    pq.write_table(
        pa.table({"path": [f"../videos/{n}" for n in names], "caption": names, "score": list(range(len(names)))}),
        data / "meta" / "m.parquet",
    )
    upload(s3_bucket, data, "ds")
    local = [str(data / "shards" / "data-{000000..000001}.tar"), str(data / "meta" / "m.parquet")]
    remote = [f"s3://{s3_bucket}/ds/shards/data-{{000000..000001}}.tar", f"s3://{s3_bucket}/ds/meta/m.parquet"]
    s_local = encode_dataset(options(local, tmp_path / "l.zarr"))
    s_remote = encode_dataset(options(remote, tmp_path / "r.zarr"))
    assert s_local.done == s_remote.done == 4 + len(names)
    assert len(s_local.rejected) == len(s_remote.rejected) == 3
    broken = next(r for s, r in s_remote.rejected if "000000100" in s)
    assert f"s3://{s3_bucket}/ds/shards/data-000001.tar" in broken and "000000100.mp4" in broken
    a, b = by_key(tmp_path / "l.zarr"), by_key(tmp_path / "r.zarr")
    assert_same_latents(a, b)
    # relative paths of the remote manifest resolved against its own location
    assert b[f"../videos/{names[0]}"]["source"] == f"s3://{s3_bucket}/ds/videos/{names[0]}"
    assert b[f"../videos/{names[2]}"]["extra"] == {"score": 2}


@pytest.mark.integration
def test_cli_with_storage_options_and_transient_errors(clips, s3_bucket, s3_endpoint, tmp_path, local_reference):
    """`wfvae encode` in a subprocess, endpoint given only by --storage-options (the decode workers get it too);
    the first reads of every object fail with a connection reset and are retried."""
    upload(s3_bucket, clips, "v")
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")}
    env[FLAKY_ENV] = "*.mp4:2"
    opts = json.dumps({"endpoint_url": s3_endpoint})
    cmd = [*WFVAE, "encode", f"s3://{s3_bucket}/v/", "--out", str(tmp_path / "c.zarr"), "--model", MODEL,
           "--frames", "5", "--res", "32", "--storage-options", opts, "--json"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    got = by_key(tmp_path / "c.zarr")
    assert_same_latents(got, local_reference)
    command = open_store(tmp_path / "c.zarr").meta.command
    assert "<redacted>" in command and s3_endpoint not in " ".join(command)  # secrets stay out of the store
    # a read that keeps failing: that sample fails alone, with one line naming it
    env[FLAKY_ENV] = f"{clip_files(clips)[0].name}:99"
    run = subprocess.run(
        [*cmd[:6], str(tmp_path / "d.zarr"), *cmd[7:]], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 1, run.stderr
    summary = json.loads(run.stdout)
    # ... at probing: the input is transient (not rejected) and the message names the way out
    assert summary["done"] == 3 and not summary["rejected"] and len(summary["transient_inputs"]) == 1
    assert "reading failed after 4 attempts" in summary["transient_inputs"][0][1]
    assert "rerun the same command" in summary["transient_inputs"][0][1]
    # the network is back: a plain rerun (no flag) probes it again, adds its clip and encodes it
    del env[FLAKY_ENV]
    run = subprocess.run(
        [*cmd[:6], str(tmp_path / "d.zarr"), *cmd[7:]], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["resumed"] and summary["done"] == 1 and not summary["transient_inputs"]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("s3:/bucket/x", "expected two slashes"),
        ("foo://bucket/x", "unknown scheme"),
        ("s3://no-such-bucket-h14i/x/", "does not exist"),
        ("s3://BUCKET/missing/", "does not exist"),
        ("UNREACHABLE", "cannot reach the storage endpoint"),
    ],
    ids=["malformed", "scheme", "missing-bucket", "missing-prefix", "unreachable"],
)
def test_bad_input_urls_fail_fast_with_one_line(url, needle, s3_bucket, tmp_path):
    env = dict(os.environ)
    if url == "UNREACHABLE":
        env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:1"
        url = f"s3://{s3_bucket}/x/"
    url = url.replace("BUCKET", s3_bucket)
    work = tmp_path / "cwd"
    work.mkdir()
    t0 = time.monotonic()
    run = subprocess.run([*WFVAE, "encode", url, "--out", "o.zarr", "--model", MODEL], cwd=work, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    # status lines ("loading the model …") may come first; the failure itself is exactly one line
    lines = [line for line in run.stderr.strip().splitlines() if line.strip() and not line.endswith("…")]
    assert len(lines) == 1 and needle in lines[0] and "error:" in lines[0], run.stderr
    assert list(work.iterdir()) == []  # nothing created locally
    assert time.monotonic() - t0 < 60


@pytest.mark.integration
def test_bad_credentials_are_named(clips, s3_bucket, monkeypatch):
    """The server (a thread of this process) checks signatures during this test: our key is unknown to it."""
    import moto.settings

    upload(s3_bucket, clips, "v")
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # moto's switch for auth checks
    with pytest.raises(StorageError) as err:
        discover_videos([f"s3://{s3_bucket}/v/"], storage_options={"skip_instance_cache": True})
    text = str(err.value)
    assert "access denied" in text and "AWS_ACCESS_KEY_ID" in text and s3_bucket in text and "\n" not in text
