"""Cost of the rerun chunk check (``store.verify.find_damaged(full=False)``) against the full check on a local store.

Usage: ``python benchmarks/chunk_check.py ROWS SHARD_SIZE`` (docs/encode.md quotes ``2000 8``). The chunk check
reads one shard index per latent shard; the full check reads every latent. The store is made in a fresh temporary
folder, which is deleted afterwards.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from wfvae_cli.store import create_store, open_store
from wfvae_cli.store.testing import demo_meta, demo_plan
from wfvae_cli.store.verify import find_damaged

BUCKET = "33x256x256"
SHAPE = (4, 9, 32, 32)  # 4 latent channels (the demo metadata), a 33x256x256 clip


def main(rows: int, shard: int) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="wfvae-chunk-check-"))
    try:
        store = create_store(tmp / "s.zarr", demo_meta(), demo_plan([(BUCKET, SHAPE, rows)], shard_size=shard))
        block = np.random.default_rng(0).standard_normal((shard, *SHAPE)).astype(np.float32)
        for r in store.shard_ranges(BUCKET):
            store.write_block(BUCKET, r.start, mean=block[: len(r)], logvar=block[: len(r)])
        reader = open_store(tmp / "s.zarr")
        t0 = time.perf_counter()
        assert not find_damaged(reader)
        t1 = time.perf_counter()
        assert not find_damaged(reader, full=True)
        t2 = time.perf_counter()
        size = sum(p.stat().st_size for p in (tmp / "s.zarr").rglob("*") if p.is_file())
        shards = len(reader.shard_ranges(BUCKET))
        return (f"{rows} rows, {shards} shards x 2 arrays, {size / 2**20:.0f} MiB: chunk check {t1 - t0:.3f} s, "
                f"full check {t2 - t1:.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    print(main(int(sys.argv[1]), int(sys.argv[2])))
