"""`wfvae encode --out s3://…` against a real S3-compatible server (moto, started by the tests on 127.0.0.1).

Everything a local store does, on object storage: encode == local run to the bit, resume, --overwrite (only of a
wfvae store, only under the lease), two writers, info/verify/decode, kill -9 at several moments + rerun == an
uninterrupted run, and the Ray backend writing the store by URL.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from wfvae_cli.errors import WfvaeError
from wfvae_cli.io import make_sample_clips
from wfvae_cli.pipeline import EncodeOptions, encode_dataset
from wfvae_cli.store import StoreError, open_store, summary, verify
from wfvae_cli.store.lease import LeaseHeldError, WriterLease
from wfvae_cli.store.location import StoreLocation

from ..conftest import GOLDEN, assert_same_store

pytestmark = pytest.mark.integration  # a real HTTP server; subprocesses SIGKILLed

MODEL = str(GOLDEN)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    make_sample_clips(root, n=4, frames=13, size=[(64, 64), (48, 80), (64, 64), (72, 96)])
    return root


def options(inputs, out, **kw) -> EncodeOptions:
    base = dict(model=MODEL, frames=9, size=(64, 64), workers=2, decode_timeout=30.0, shard_size=2)
    base.update(kw)
    return EncodeOptions(inputs=tuple(str(i) for i in inputs), out=out, **base)


@pytest.fixture(scope="module")
def local_ref(videos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "ref.zarr"
    assert encode_dataset(options([videos], out)).ok
    return out


def _s3_calls(monkeypatch) -> list[str]:
    """Count the S3 API calls this process makes (s3fs and boto3 both end in botocore's _make_api_call)."""
    import aiobotocore.client

    calls: list[str] = []
    original = aiobotocore.client.AioBaseClient._make_api_call

    async def counting(self, operation_name, api_params):  # type: ignore[no-untyped-def]
        calls.append(operation_name)
        return await original(self, operation_name, api_params)

    monkeypatch.setattr(aiobotocore.client.AioBaseClient, "_make_api_call", counting)
    return calls


def test_encode_into_s3_equals_local_and_reads_back(videos, local_ref, s3_bucket, tmp_path, monkeypatch):
    url = f"s3://{s3_bucket}/runs/s.zarr"
    first = encode_dataset(options([videos], url))
    assert first.ok and first.done == 4 and first.store == url
    assert not Path("s3:").exists() and not (Path.cwd() / "s3:").exists()
    assert_same_store(local_ref, url)  # every array bitwise equal, same metadata; verify(url) ok
    again = encode_dataset(options([videos], url))  # resume of a finished store: nothing to do
    assert again.resumed and again.done == 0 and again.already_done == 4

    calls = _s3_calls(monkeypatch)
    store = open_store(url)
    opened = list(calls)
    assert opened == ["GetObject"], opened  # one request: the root document with consolidated metadata
    assert len(store) == 4 and store.meta.completed_at and len(store.run_stats()) == 1  # the no-op rerun wrote none
    assert len(calls) - len(opened) <= sum(info.num_shards for info in store.buckets.values())  # status chunks

    s = summary(url)
    assert s.totals.done == 4 and s.nbytes > 0
    report = verify(url)
    assert report.ok and report.checked == 4

    from wfvae_cli.pipeline.decode import decode_samples

    clips = decode_samples(url, [0], tmp_path / "dec")
    assert clips[0].path.exists() and clips[0].path.stat().st_size > 0

    # the commands, as a user types them (the endpoint and credentials come from the AWS_* environment)
    info = subprocess.run([sys.executable, "-m", "wfvae_cli", "info", url, "--json"], capture_output=True, text=True,
                          timeout=120)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["totals"]["done"] == 4
    checked = subprocess.run([sys.executable, "-m", "wfvae_cli", "verify", url], capture_output=True, text=True,
                             timeout=120)
    assert checked.returncode == 0 and "OK" in checked.stdout, checked.stderr


def test_reader_dataloader_workers_over_s3(videos, local_ref, s3_bucket):
    import torch

    from wfvae_cli.store import LatentDataset, collate_latents

    url = f"s3://{s3_bucket}/s.zarr"
    encode_dataset(options([videos], url))
    local, remote = LatentDataset(local_ref, sample=True, seed=1), LatentDataset(url, sample=True, seed=1)
    assert len(remote) == len(local) == 4
    remote[0]  # opens a client in this process: pickling must drop it (spawn workers, Ray Data) and reopen
    clone = pickle.loads(pickle.dumps(remote))
    assert clone._store is None and clone.location == remote.location
    torch.testing.assert_close(clone[3]["latent"], local[3]["latent"], atol=0, rtol=0)
    loader = torch.utils.data.DataLoader(remote, batch_size=2, num_workers=2, collate_fn=collate_latents)
    items = [item for batch in loader for item in zip(batch["key"], batch["latent"], strict=True)]
    assert len(items) == 4
    for k, (key, latent) in enumerate(items):
        want = local[k]
        assert key == want["key"]
        torch.testing.assert_close(latent, want["latent"], atol=0, rtol=0)


def test_overwrite_deletes_only_a_wfvae_store_under_the_lease(videos, s3_bucket):
    import boto3

    s3 = boto3.client("s3")
    url = f"s3://{s3_bucket}/s.zarr"
    encode_dataset(options([videos], url))
    s3.put_object(Bucket=s3_bucket, Key="s.zarr2/keep.txt", Body=b"sibling")  # shares the prefix text
    s3.put_object(Bucket=s3_bucket, Key="s.zarr/junk/stray.bin", Body=b"stray")  # inside: goes with the store
    redo = encode_dataset(options([videos], url, overwrite=True, frames=5))
    assert redo.done == 4 and not redo.resumed and open_store(url).meta.preprocessing["frames"] == 5
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert "s.zarr2/keep.txt" in keys and "s.zarr/junk/stray.bin" not in keys

    s3.put_object(Bucket=s3_bucket, Key="data/notes.txt", Body=b"precious")  # not a wfvae store
    with pytest.raises(WfvaeError, match=r"not a wfvae (latent )?store"):
        encode_dataset(options([videos], f"s3://{s3_bucket}/data", overwrite=True))
    assert s3.get_object(Bucket=s3_bucket, Key="data/notes.txt")["Body"].read() == b"precious"

    # a second writer (here: a lease held by this very process, i.e. a live holder) is refused, store untouched
    before = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="s.zarr/")["Contents"]}
    with WriterLease(StoreLocation(url).lease_blob(), what=url):
        for overwrite in (False, True):
            with pytest.raises(LeaseHeldError, match=f"pid {os.getpid()}"):
                encode_dataset(options([videos], url, overwrite=overwrite, frames=5))
    after = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="s.zarr/")["Contents"]}
    assert after == before
    assert verify(url).ok


def test_bad_store_urls(videos, s3_bucket, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = (("s3:/b/x.zarr", "two slashes"), ("s3://", "no bucket"), ("s3://bucket-only", "below the bucket"))
    for bad, match in cases:
        with pytest.raises(WfvaeError, match=match):
            encode_dataset(options([videos], bad))
    with pytest.raises(WfvaeError, match=r"does not exist|NoSuchBucket"):
        encode_dataset(options([videos], "s3://no-such-bucket-zz/x.zarr"))
    with pytest.raises(StoreError, match="not a zarr v3 store"):
        open_store(f"s3://{s3_bucket}/nothing.zarr")
    assert not any(tmp_path.iterdir())  # nothing created locally


# --- kill -9 at several moments, then the same command ------------------------------------------------------

def _cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "wfvae_cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})


def _keys(bucket: str, prefix: str) -> list[str]:
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.mark.parametrize("moment", ["creating", "first-commit", "mid-run"])
def test_sigkill_then_rerun_equals_uninterrupted_run_on_s3(moment, s3_bucket, tmp_path):
    src = tmp_path / "v"
    make_sample_clips(src, n=6, frames=9, size=(64, 64))
    args = [str(src), "--model", MODEL, "--frames", "9", "--resolution", "64", "--shard-size", "1", "--json"]
    ref = _cli("encode", *args, "--out", str(tmp_path / "ref.zarr"))
    url = f"s3://{s3_bucket}/s.zarr"
    victim = _cli("encode", *args, "--out", url, env={"WFVAE_DEBUG_ENCODE_DELAY": "0.4"})
    status = "s.zarr/buckets/9x64x64/status/c/"
    ready = {
        "creating": lambda: any(k.endswith("/zarr.json") for k in _keys(s3_bucket, "s.zarr/buckets/")),
        "first-commit": lambda: len(_keys(s3_bucket, status)) >= 1,
        "mid-run": lambda: len(_keys(s3_bucket, status)) >= 3,
    }[moment]
    deadline = time.time() + 180
    while time.time() < deadline and victim.poll() is None and not ready():
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, victim.stderr.read()
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    done_before = 0
    if moment != "creating":
        done_before = open_store(url).counts("9x64x64")["done"]
        assert 0 < done_before < 6
    rerun = _cli("encode", *args, "--out", url)  # the same command: the dead job's lease is recovered at once
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    result = json.loads(out)
    assert result["done"] == 6 - done_before and result["resumed"] == (moment != "creating")
    assert_same_store(tmp_path / "ref.zarr", url)


# --- Ray without a shared file system -----------------------------------------------------------------------

def test_ray_into_s3_equals_local_run(videos, local_ref, s3_bucket, ray_cluster, tmp_path, monkeypatch):
    """Inputs and store both by URL: the coordinator and the workers share no file (no lease file, no lock)."""
    import boto3

    s3 = boto3.client("s3")
    for video in sorted(videos.iterdir()):
        s3.upload_file(str(video), s3_bucket, f"videos/{video.name}")
    monkeypatch.chdir(tmp_path)
    url = f"s3://{s3_bucket}/ray.zarr"
    result = encode_dataset(options([f"s3://{s3_bucket}/videos/"], url, ray="auto", workers=1, decode_cpus=0))
    assert result.ok and result.done == 4
    a, b = open_store(local_ref), open_store(url)
    assert len(a) == len(b) == 4
    for i in range(4):
        sa, sb = a[i], b[i]
        assert sa["key"] == sb["key"] and sb["source"] == f"s3://{s3_bucket}/videos/" + Path(sa["source"]).name
        np.testing.assert_array_equal(sa["mean"], sb["mean"])  # bit-identical latents
        np.testing.assert_array_equal(sa["logvar"], sb["logvar"])
    assert verify(url).ok
    assert not any(tmp_path.iterdir())  # nothing local: the lease is an object, shard locks are in-process
