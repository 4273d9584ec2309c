"""The WF-VAE latent store: a versioned Zarr v3 layout (see docs/store-format.md).

Coordinator (plans once)::

    store = create_store("out.zarr", meta, plan)          # all arrays + index rows, status pending

Workers (fill only the shards they own)::

    with store.shard_writer(bucket, shard) as w:          # or StoreWriter(store) for any-order input
        w.add(row, mean=mean, logvar=logvar)

Resume and check::

    store = open_store("out.zarr", "r+"); check_compatible(store.meta, new_meta, path=...)
    store.pending_samples(bucket); store.finalize(); verify("out.zarr"); summary("out.zarr")

Training::

    ds = LatentDataset("out.zarr", sample=True, normalize=True, seed=0)
    loader = DataLoader(ds, batch_sampler=BucketBatchSampler(ds, 8, seed=0), num_workers=4,
                        collate_fn=collate_latents)   # items also carry "key" and "extra" (a dict)

The store knows nothing about models: it takes numpy arrays and metadata. ``LatentDataset`` and
``BucketBatchSampler`` import torch and are loaded on first use, so writers do not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wfvae_cli.store.errors import IncompatibleStoreError, ShardOwnershipError, StoreError
from wfvae_cli.store.layout import BucketInfo, Compression, ProbeState, Status
from wfvae_cli.store.meta import FORMAT_NAME, FORMAT_VERSION, StoreMeta, check_compatible, utc_now
from wfvae_cli.store.plan import BucketPlan, SampleRecord, default_shard_size
from wfvae_cli.store.probes import ProbeTable
from wfvae_cli.store.store import LatentStore, create_store, open_store
from wfvae_cli.store.verify import StatusCounts, StoreSummary, VerifyReport, summary, verify
from wfvae_cli.store.writer import ShardWriter, StoreWriter

if TYPE_CHECKING:
    from wfvae_cli.store.dataset import BucketBatchSampler, LatentDataset, collate_latents

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "BucketBatchSampler",
    "BucketInfo",
    "BucketPlan",
    "Compression",
    "IncompatibleStoreError",
    "LatentDataset",
    "LatentStore",
    "ProbeState",
    "ProbeTable",
    "SampleRecord",
    "ShardOwnershipError",
    "ShardWriter",
    "Status",
    "StatusCounts",
    "StoreError",
    "StoreMeta",
    "StoreSummary",
    "StoreWriter",
    "VerifyReport",
    "check_compatible",
    "collate_latents",
    "create_store",
    "default_shard_size",
    "open_store",
    "summary",
    "utc_now",
    "verify",
]


def __getattr__(name: str) -> Any:
    """Load the torch-dependent training classes lazily."""
    if name in ("LatentDataset", "BucketBatchSampler", "collate_latents"):
        from wfvae_cli.store import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
