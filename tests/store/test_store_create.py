"""Store creation is resumable: a failure (ENOSPC) or kill -9 at any step of creation leaves a store that the
same encode command re-creates, identical to an uninterrupted run, with the rejected list intact."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import numpy as np
import pytest

from wfvae_cli.errors import WfvaeError
from wfvae_cli.pipeline import encode_dataset
from wfvae_cli.store import StoreError, open_store, verify
from wfvae_cli.store import store as store_module

from ..pipeline.test_encode import options, videos  # noqa: F401  (fixture)

STEPS = ["create_bucket", "write_index", "write_rejected"]


@pytest.fixture(scope="module")
def inputs(videos, tmp_path_factory):  # noqa: F811
    """Four good clips plus a missing file, so that the rejected table is not empty."""
    manifest = tmp_path_factory.mktemp("m") / "list.txt"
    names = sorted(videos.iterdir())
    manifest.write_text("\n".join([*map(str, names), str(videos / "missing.mp4")]) + "\n")
    return manifest


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.zarr"
    encode_dataset(options([inputs], out))
    return open_store(out)


def _same(a, b) -> None:
    assert list(a.buckets) == list(b.buckets) and a.rejected() == b.rejected() and a.rejected()
    for bucket in a.buckets:
        for name in ("mean", "logvar", "status", "source", "frame_indices"):
            np.testing.assert_array_equal(np.asarray(a.array(bucket, name)[:]), np.asarray(b.array(bucket, name)[:]))
    assert verify(b.path).ok


@pytest.mark.parametrize("step", STEPS)
def test_enospc_at_each_creation_step_then_same_command_completes(step, inputs, reference, tmp_path, monkeypatch):
    out = tmp_path / "s.zarr"
    real = getattr(store_module, step)

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, step, full_disk)
    with pytest.raises(WfvaeError, match="cannot create the store"):
        encode_dataset(options([inputs], out))
    assert store_module.is_half_created(out)
    with pytest.raises(StoreError, match="rerun the same wfvae encode command"):
        open_store(out)
    with pytest.raises(StoreError, match="creation was interrupted"):
        verify(out)
    monkeypatch.setattr(store_module, step, real)
    summary = encode_dataset(options([inputs], out))  # the same command, no --overwrite
    assert summary.done == 4 and not summary.resumed
    _same(reference, open_store(out))


_KILL_AT = """
import os, signal, sys
from pathlib import Path
from wfvae_cli.store import store as store_module
step, inputs, out, model = sys.argv[1:5]
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
setattr(store_module, step, die)
from wfvae_cli.pipeline import EncodeOptions, encode_dataset
encode_dataset(EncodeOptions(inputs=(inputs,), out=Path(out), model=model, frames=9, size=(64, 64), workers=2))
"""


@pytest.mark.integration
@pytest.mark.parametrize("step", ["write_index", "write_rejected"])
def test_kill_during_creation_then_same_command_completes(step, inputs, reference, tmp_path):
    from ..pipeline.test_encode import MODEL

    out = tmp_path / "s.zarr"
    proc = subprocess.run([sys.executable, "-c", _KILL_AT, step, str(inputs), str(out), MODEL],
                          env=os.environ.copy(), capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    assert store_module.is_half_created(out)
    assert (tmp_path / "s.zarr.lease.json").exists()  # the dead job's lease: recovered at once (same host)
    summary = encode_dataset(options([inputs], out))
    assert summary.done == 4 and not summary.resumed
    _same(reference, open_store(out))
