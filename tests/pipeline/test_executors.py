"""One stage pipeline, two executors: the local and the Ray backend cut the same batches and write the
same store on an input that mixes buckets (aspect ratios) and holds a clip that fails to decode.

Batches are observed two ways: locally by recording every call of the model's batch encoder, and in
both stores through ``encode_seconds`` — each clip of a batch is charged the same share of the batch's
model time, so the rows of one batch hold one value and rows of different batches (almost surely) not.
The local observation checks that the store-side one is sound.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from wfvae_cli.io import make_bad_inputs, make_sample_clips
from wfvae_cli.pipeline import EncodeOptions, encode_dataset
from wfvae_cli.pipeline import stages as stages_mod
from wfvae_cli.pipeline.backend import Backend, open_backend
from wfvae_cli.pipeline.local import LocalBackend
from wfvae_cli.store import Status, open_store

from ..conftest import GOLDEN, assert_same_store

BUCKETS = ((64, 64), (48, 80), (80, 48))
BATCH = 3


@pytest.fixture(scope="module")
def mixed_videos(tmp_path_factory) -> Path:
    """6 videos over 3 aspect-ratio buckets (2 clips each), plus a video whose second clip cannot be decoded."""
    root = tmp_path_factory.mktemp("mixed")
    make_sample_clips(root, n=6, frames=13, size=[(64, 64), (48, 80), (80, 48)])
    bad = make_bad_inputs(tmp_path_factory.mktemp("bad"))
    shutil.copy(bad["truncated"], root / "03b_truncated.mp4")  # sorts between the others: mid-bucket failure
    return root


def _options(videos: Path, out: Path, **kw) -> EncodeOptions:
    base = dict(model=str(GOLDEN), frames=9, size=None, buckets=BUCKETS, clip_mode="uniform", clips_per_video=2,
                batch_size=BATCH, workers=2, decode_timeout=30.0, shard_size=64)
    base.update(kw)
    return EncodeOptions(inputs=(str(videos),), out=out, **base)


def _expected_batches(store_path: Path) -> list[list[tuple[str, int]]]:
    """Runs of up to BATCH consecutive decodable rows of one bucket: what both executors must encode together."""
    store = open_store(store_path)
    out = []
    for bucket in store.buckets:
        done = [int(r) for r in np.flatnonzero(store.status(bucket) == Status.DONE)]
        out += [[(bucket, r) for r in done[i:i + BATCH]] for i in range(0, len(done), BATCH)]
    return out


def _stored_batches(store_path: Path) -> list[list[tuple[str, int]]]:
    """Batches as the store shows them: consecutive done rows of a bucket charged the same model time."""
    store = open_store(store_path)
    out: list[list[tuple[str, int]]] = []
    for bucket in store.buckets:
        seconds = np.asarray(store.array(bucket, "encode_seconds")[:])
        last = None
        for r in np.flatnonzero(store.status(bucket) == Status.DONE):
            if last is None or seconds[r] != last:
                out.append([])
            out[-1].append((bucket, int(r)))
            last = seconds[r]
    return out


@pytest.fixture(scope="module")
def local_run(mixed_videos, tmp_path_factory) -> tuple[Path, list[list[tuple[str, int]]]]:
    """The local executor with one torch thread (a Ray model worker's setting); its store and model batches."""
    out = tmp_path_factory.mktemp("local") / "s.zarr"
    calls: list[list[tuple[str, int]]] = []
    original = stages_mod.LatentEncoder.encode_batch

    def spy(self, clips):
        calls.append([(c.task.bucket, c.task.row) for c in clips])
        return original(self, clips)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    stages_mod.LatentEncoder.encode_batch = spy
    try:
        summary = encode_dataset(_options(mixed_videos, out))
    finally:
        stages_mod.LatentEncoder.encode_batch = original
        torch.set_num_threads(threads)
    assert summary.failed == 1 and summary.done == 13, summary
    assert len(open_store(out).buckets) == 3
    return out, calls


def test_open_backend_picks_the_executor(mixed_videos, tmp_path):
    backend = open_backend(_options(mixed_videos, tmp_path / "s.zarr"))
    assert isinstance(backend, LocalBackend) and isinstance(backend, Backend)
    with pytest.raises(RuntimeError, match="before prepare"):
        backend.run(None, [])  # type: ignore[arg-type]


def test_local_batches_are_the_shared_batching(local_run):
    """Every batch is up to BATCH clips of one bucket; a bucket's first clip is not encoded alone."""
    store, calls = local_run
    expected = _expected_batches(store)
    assert calls == expected
    assert _stored_batches(store) == calls  # the store-side observation agrees with the recorded calls


@pytest.mark.integration
def test_ray_executor_cuts_the_same_batches_and_writes_the_same_store(ray_cluster, mixed_videos, local_run, tmp_path):
    """2 model workers, one shard per bucket: the batches, latents (bitwise), index and errors of the local run."""
    local_store, calls = local_run
    out = tmp_path / "ray.zarr"
    summary = encode_dataset(_options(mixed_videos, out, ray="auto"))
    assert summary.failed == 1 and summary.done == 13
    assert _stored_batches(out) == calls
    assert_same_store(local_store, out)
