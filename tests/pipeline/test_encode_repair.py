"""Reruns repair lost latents; reruns of finished stores write nothing (also read-only); devices fail first.

Damage is made the ways it happens: a shard file deleted (a cleanup script, a lost object), one chunk gone from
a shard (written as fill), a flipped byte (bit rot: only the full check sees it). Every repaired store must equal
an uninterrupted run bit for bit (tests/conftest.py: assert_same_store).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wfvae_cli.errors import WfvaeError
from wfvae_cli.io import make_sample_clips
from wfvae_cli.pipeline import EncodeOptions, encode_dataset
from wfvae_cli.store import LatentDataset, Status, open_store, verify
from wfvae_cli.store.errors import UnreadableSampleError

from ..conftest import GOLDEN, assert_same_store, mounted

MODEL = str(GOLDEN)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    make_sample_clips(root, n=4, frames=13, size=[(64, 64), (48, 80), (64, 64), (72, 96)])
    return root


def options(inputs, out, **kw) -> EncodeOptions:
    base = dict(model=MODEL, frames=9, size=(64, 64), workers=2, decode_timeout=30.0, shard_size=2, batch_size=1)
    base.update(kw)
    return EncodeOptions(inputs=tuple(str(i) for i in inputs), out=out, **base)


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "ref.zarr"
    assert encode_dataset(options([videos], out)).ok
    return out


def _copy(reference: Path, tmp_path: Path) -> Path:
    out = tmp_path / "s.zarr"
    shutil.copytree(reference, out)
    return out


def _tree(root: Path) -> dict[str, tuple[int, str]]:
    """Every file below ``root``: (mtime_ns, sha256) — what "nothing was written" is checked against."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------ item 6: repair
def test_deleted_shard_file_reader_raises_verify_names_rerun_repairs(videos, reference, tmp_path):
    out = _copy(reference, tmp_path)
    store = open_store(out)
    bucket = "9x64x64"
    store.chunk_file(bucket, "mean", 1).unlink()  # rows 2 and 3
    source = store.read_sample_info(bucket, 2, ("source",))["source"]

    with pytest.raises(UnreadableSampleError, match=r"bucket 9x64x64 row 2 .*status done.*mean is missing.*verify"):
        open_store(out).read_latents(bucket, 2)
    ds = LatentDataset(out)
    assert len(ds) == 4
    with pytest.raises(WfvaeError, match="row 2"):
        ds[2]  # never NaN latents into a training loop
    ds[0]  # the intact rows still read

    report = verify(out)
    assert [(p.bucket, p.row) for p in report.problems] == [(bucket, 2), (bucket, 3)]
    assert "mean shard file buckets/9x64x64/mean/c/1/0/0/0/0 is missing" in report.problems[0].reason
    assert report.problems[0].source == source and source in str(report.problems[0])
    cli = subprocess.run([sys.executable, "-m", "wfvae_cli", "verify", str(out)], capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode == 1 and "row 2" in cli.stdout and Path(source).name in cli.stdout

    again = encode_dataset(options([videos], out))  # the plain rerun
    assert again.resumed and again.done == 2 and again.already_done == 2 and again.ok
    assert "2 done row(s) had missing or unreadable latents" in again.warnings[0]
    assert_same_store(reference, out)  # exactly those rows, bit-identical to the uninterrupted run


def test_one_chunk_missing_inside_a_shard_is_found_by_the_shard_index(videos, reference, tmp_path):
    out = _copy(reference, tmp_path)
    store = open_store(out, "r+")
    shape = store.info("9x64x64").latent_shape
    store.array("9x64x64", "logvar")[1] = np.full(shape, np.nan, np.float32)  # == fill: zarr drops the chunk
    assert open_store(out).status("9x64x64")[1] == Status.DONE
    with pytest.raises(UnreadableSampleError, match="row 1"):
        open_store(out)[1]
    again = encode_dataset(options([videos], out))
    assert again.done == 1 and "logvar chunk of row 1 is missing from shard 0" in again.warnings[0]
    assert_same_store(reference, out)


def test_flipped_byte_is_seen_by_repair_and_by_the_reader(videos, reference, tmp_path):
    out = _copy(reference, tmp_path)
    shard = open_store(out).chunk_file("9x64x64", "mean", 0)
    data = bytearray(shard.read_bytes())
    data[len(data) // 4] ^= 0x55  # inside the first chunk's compressed bytes; the shard index stays intact
    shard.write_bytes(bytes(data))
    bad = [p.row for p in verify(out).problems]
    assert len(bad) == 1
    with pytest.raises(UnreadableSampleError, match=rf"row {bad[0]} .*mean is unreadable"):
        open_store(out).read_latents("9x64x64", bad[0])
    assert encode_dataset(options([videos], out)).done == 0  # the cheap check reads no latents: not seen
    args = ["encode", str(videos), "--out", str(out), "--model", MODEL, "--frames", "9", "--resolution", "64",
            "--shard-size", "2", "--repair", "--json"]  # the CLI flag, as a user types it
    cli = subprocess.run([sys.executable, "-m", "wfvae_cli", *args], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    fixed = json.loads(cli.stdout)
    assert fixed["done"] == 1 and f"row {bad[0]}" in fixed["warnings"][0]
    assert_same_store(reference, out)


def test_a_crash_after_the_reset_leaves_pending_rows_the_next_rerun_encodes(videos, reference, tmp_path, monkeypatch):
    """Write-then-mark during a repair: the reset is a status write only; until re-encoded the rows are pending."""
    from wfvae_cli.pipeline.local import LocalBackend

    out = _copy(reference, tmp_path)
    open_store(out).chunk_file("9x64x64", "logvar", 0).unlink()

    def crash(self, store, tasks, progress=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LocalBackend, "run", crash)
    with pytest.raises(OSError):
        encode_dataset(options([videos], out))
    monkeypatch.undo()
    store = open_store(out)
    assert store.counts("9x64x64") == {"pending": 2, "done": 2, "failed": 0, "transient": 0} and len(store) == 2
    assert len(LatentDataset(out)) == 2  # readers never see the lost rows
    assert encode_dataset(options([videos], out)).done == 2
    assert_same_store(reference, out)


@pytest.mark.integration
def test_lost_shard_object_on_s3_is_reencoded(videos, reference, s3_bucket):
    import boto3

    url = f"s3://{s3_bucket}/s.zarr"
    assert encode_dataset(options([videos], url)).ok
    key = f"s.zarr/{open_store(url).chunk_key('9x64x64', 'mean', 0)}"
    boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).delete_object(Bucket=s3_bucket, Key=key)
    with pytest.raises(UnreadableSampleError, match="row 0"):
        open_store(url)[0]
    assert [p.row for p in verify(url).problems] == [0, 1]
    again = encode_dataset(options([videos], url))
    assert again.done == 2 and again.already_done == 2
    assert_same_store(reference, url)


# ------------------------------------------------------------------------- item 7: reruns that write nothing
def test_rerun_of_a_finished_store_writes_nothing(videos, reference, tmp_path):
    out = _copy(reference, tmp_path)
    before = _tree(out)
    again = encode_dataset(options([videos], out))
    assert again.resumed and again.done == 0 and again.already_done == 4 and again.ok
    assert _tree(out) == before  # not completed_at, not run statistics: not one byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]  # and the lease was released


def test_rerun_on_a_read_only_mount(videos, reference, tmp_path):
    """A read-only bind mount (root ignores chmod, so this is the real test): finished = exit 0, no write."""
    out = _copy(reference, tmp_path / "src")
    view = tmp_path / "ro"
    view.mkdir()
    with mounted("bind-ro", out.parent, view):
        ro = view / "s.zarr"
        again = encode_dataset(options([videos], ro))
        assert again.resumed and again.done == 0 and again.already_done == 4 and again.ok
        args = ["encode", str(videos), "--out", str(ro), "--model", MODEL, "--frames", "9", "--resolution", "64",
                "--shard-size", "2"]
        cli = subprocess.run([sys.executable, "-m", "wfvae_cli", *args], capture_output=True, text=True, timeout=300)
        assert cli.returncode == 0, cli.stderr
        assert len(LatentDataset(ro)) == 4
    # with work to do it says so in one line, naming why it cannot write
    open_store(out).chunk_file("9x64x64", "mean", 1).unlink()
    with (mounted("bind-ro", out.parent, view),
          pytest.raises(WfvaeError, match=r"cannot be written \(Read-only file system\).*missing or unreadable")):
        encode_dataset(options([videos], view / "s.zarr"))


def test_rerun_of_a_chmod_read_only_copy(videos, reference, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod a-w does not stop root from writing (the bind-mount test covers it)")
    out = _copy(reference, tmp_path / "src")
    subprocess.run(["chmod", "-R", "a-w", str(out.parent)], check=True)
    try:
        again = encode_dataset(options([videos], out))
        assert again.ok and again.done == 0
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(out.parent)], check=True)


def test_rerun_through_read_only_zarr_stores_and_a_refused_lease(videos, reference, tmp_path, monkeypatch):
    """Without root or mounts (any CI): every zarr store opened read-only and the lease write refused (as with
    read-only object-storage credentials): a finished store reruns fine; any write attempt would raise."""
    import errno

    from wfvae_cli.store.lease import LocalBlob
    from wfvae_cli.store.location import StoreLocation

    out = _copy(reference, tmp_path)
    before = _tree(out)
    original = StoreLocation.zarr_store
    monkeypatch.setattr(StoreLocation, "zarr_store", lambda self, read_only: original(self, read_only=True))

    def refused(self, data):
        raise PermissionError(errno.EACCES, "Permission denied", str(self.path))

    monkeypatch.setattr(LocalBlob, "create", refused)
    again = encode_dataset(options([videos], out))
    assert again.ok and again.done == 0 and again.already_done == 4
    assert _tree(out) == before
    open_store(out).chunk_file("9x64x64", "mean", 0).unlink()
    with pytest.raises(WfvaeError, match=r"cannot be written \(Permission denied\).*2 done row\(s\) had missing"):
        encode_dataset(options([videos], out))


@pytest.mark.parametrize("device", ["bogus", "gpu"] + ([] if __import__("torch").cuda.is_available() else ["cuda"]))
def test_bad_device_fails_before_anything_exists(videos, tmp_path, device):
    with pytest.raises(WfvaeError, match=f"--device '?{device}"):
        encode_dataset(options([videos], tmp_path / "s.zarr", device=device))
    assert list(tmp_path.iterdir()) == []  # no store, no lease file


# ------------------------------------------------------------------------------- item 8: a real full disk
def _fill(path: Path, slack: int) -> None:
    """Fill the file system of ``path`` up to ENOSPC, then free ``slack`` bytes."""
    ballast = path / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while os.write(fd, b"\1" * 4096) == 4096:
            pass
    except OSError:
        pass  # ENOSPC: full
    finally:
        os.close(fd)
    os.truncate(ballast, max(0, ballast.stat().st_size - slack))


@pytest.mark.parametrize("slack", [0, 24 * 1024])
def test_enospc_on_a_real_tmpfs_then_rerun_completes(videos, reference, tmp_path, slack):
    """ENOSPC from a real (small) tmpfs once the store exists: one clear error, done rows intact, the same command
    completes the store after space is freed, equal to an uninterrupted run."""
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted("tmpfs", None, disk, size="4m"):
        out = disk / "s.zarr"

        def on_plan(stage: str, done: int, total: int) -> None:
            if stage.startswith("encoding"):  # the store is created: now the disk fills up
                _fill(disk, slack)

        with pytest.raises(WfvaeError, match=r"No space left on device.*rerun the same command"):
            encode_dataset(options([videos], out), on_plan=on_plan)
        partial = open_store(out)
        assert verify(out).ok and len(partial) == partial.counts("9x64x64")["done"] < 4
        (disk / "ballast").unlink()
        again = encode_dataset(options([videos], out))
        assert again.ok and again.done == 4 - len(partial)
        assert_same_store(reference, out)
