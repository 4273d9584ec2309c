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

#: creation builds the layout in memory, then writes: the root (marked "creating"), every other object, the final
#: root (the commit record). A failure is injected at each write phase; "objects" fails half-way through the batch.
STEPS = {"root": 1, "objects": 2, "commit": 3}


def _failing_put_all(real, fail_at: int, fail):
    calls = [0]

    def put_all(store, objects, *args, **kwargs):
        calls[0] += 1
        if calls[0] == fail_at:
            if fail_at == 2:  # half of the objects land, then the disk is full / the process dies
                keys = sorted(objects)
                real(store, {k: objects[k] for k in keys[: len(keys) // 2]})
            fail()
        return real(store, objects, *args, **kwargs)

    return put_all


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


@pytest.mark.parametrize("step", list(STEPS))
def test_enospc_at_each_creation_step_then_same_command_completes(step, inputs, reference, tmp_path, monkeypatch):
    out = tmp_path / "s.zarr"
    real = store_module._put_all

    def full_disk():
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, "_put_all", _failing_put_all(real, STEPS[step], full_disk))
    with pytest.raises(WfvaeError, match="cannot create the store"):
        encode_dataset(options([inputs], out))
    if step == "root":  # nothing was written: there is no store at all
        assert not (out / "zarr.json").exists()
    else:
        assert store_module.is_half_created(out)
        with pytest.raises(StoreError, match="rerun the same wfvae encode command"):
            open_store(out)
        with pytest.raises(StoreError, match="creation was interrupted"):
            verify(out)
    monkeypatch.setattr(store_module, "_put_all", real)
    summary = encode_dataset(options([inputs], out))  # the same command, no --overwrite
    assert summary.done == 4 and not summary.resumed
    _same(reference, open_store(out))


_KILL_AT = """
import os, signal, sys
from pathlib import Path
from wfvae_cli.store import store as store_module
from tests.store.test_store_create import STEPS, _failing_put_all
step, inputs, out, model = sys.argv[1:5]
def die():
    os.kill(os.getpid(), signal.SIGKILL)
store_module._put_all = _failing_put_all(store_module._put_all, STEPS[step], die)
from wfvae_cli.pipeline import EncodeOptions, encode_dataset
encode_dataset(EncodeOptions(inputs=(inputs,), out=Path(out), model=model, frames=9, size=(64, 64), workers=2))
"""


@pytest.mark.integration
@pytest.mark.parametrize("step", ["objects", "commit"])
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
