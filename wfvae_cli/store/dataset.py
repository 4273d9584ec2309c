"""Training-side access: a torch ``Dataset`` over the done samples and a same-bucket batch sampler.

Fork safety: zarr handles (and object-store clients) hold an event loop, connections and file state that
must not cross a ``fork`` or be pickled into ``spawn`` workers. :class:`LatentDataset` therefore keeps only
plain data (the done-row snapshot, the normalisation factors, the store's location and storage options) and
opens the store lazily in whichever process first reads a sample, re-opening when it notices the process id
changed. That is also what makes a store on object storage work with ``num_workers > 0``: each worker builds
its own client.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from wfvae_cli.errors import WfvaeError
from wfvae_cli.store.location import as_location
from wfvae_cli.store.store import LatentStore, open_store


def _factor(values: list[float], channels: int, name: str, path: Path | str) -> torch.Tensor:
    """Shape a scale/shift list for ``(C, T, H, W)``: length 1 is a scalar, length C is per channel."""
    if len(values) not in (1, channels):
        raise WfvaeError(
            f"{path}: {name} has {len(values)} values but latents have {channels} channels; "
            "fix the store's scale/shift attributes or read with normalize=False"
        )
    return torch.tensor(values, dtype=torch.float32).reshape(-1, 1, 1, 1)


class LatentDataset(Dataset[dict[str, Any]]):
    """The done samples of a store as ``{"latent", "caption", "bucket", "row", "source", "key", "extra"}`` dicts.

    ``key`` is the sample's stable key (a string) and ``extra`` its source metadata (a dict of JSON values;
    metadata varies per sample (missing fields, nulls), so batch with ``collate_fn=collate_latents``, which
    stacks the latents and keeps every other field as a list; torch's default collate would fail on it).

    ``latent`` is a float32 ``(C, T, H, W)`` tensor: the posterior mean, a draw
    ``mean + exp(0.5 * logvar) * eps`` when ``sample=True``, or the stored sample for stores of kind
    ``sample``. ``normalize=True`` applies ``(z - shift) * scale`` with the store's recorded factors.

    Args:
        path: the store: a local folder or a URL (``s3://bucket/latents.zarr``).
        sample: draw from the posterior instead of returning its mean.
        normalize: apply the recorded scale/shift (refused if the store is already scaled).
        bucket: restrict to one bucket id or a list of them.
        seed: makes draws reproducible per ``(seed, epoch, bucket, row)``; ``None`` uses torch's RNG.
        storage_options: fsspec options for a URL (credentials and endpoint otherwise come from the
            cloud's standard environment variables, which DataLoader workers inherit).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sample: bool = False,
        normalize: bool = False,
        bucket: str | Sequence[str] | None = None,
        seed: int | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.location = as_location(path, storage_options)
        self.path: Path | str = self.location.path if self.location.path is not None else str(self.location)
        self.sample = sample
        self.normalize = normalize
        self.seed = seed
        self.epoch = 0
        store = open_store(self.location, "r")
        meta = store.meta
        if sample and meta.kind != "posterior":
            raise WfvaeError(f"{self.path} stores samples, not posteriors; read it with sample=False")
        if normalize and meta.scaled:
            raise WfvaeError(f"{self.path} already holds scaled latents; read it with normalize=False")
        wanted = [bucket] if isinstance(bucket, str) else list(bucket or store.buckets)
        for b in wanted:
            store.info(b)  # raises for unknown buckets
        done = [(b, rows) for b, rows in store.done_rows() if b in wanted]
        self.buckets: list[str] = [b for b, _ in done]
        self.shapes = {b: store.buckets[b].latent_shape for b in self.buckets}
        self._bucket_of = np.concatenate(
            [np.full(len(r), k, dtype=np.int32) for k, (_, r) in enumerate(done)]
        )
        self._row_of = np.concatenate([r for _, r in done]).astype(np.int64)
        self._kind = meta.kind
        self._scale: torch.Tensor | None = None
        self._shift: torch.Tensor | None = None
        if normalize:  # every bucket has the model's channel count; check now, not in a worker
            channels = next(iter(store.buckets.values())).latent_shape[0]
            self._scale = _factor(meta.scale, channels, "scale", self.path)
            self._shift = _factor(meta.shift, channels, "shift", self.path)
        self._store: LatentStore | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self._row_of)

    def set_epoch(self, epoch: int) -> None:
        """Change the posterior draws of the next epoch (with a fixed ``seed``)."""
        self.epoch = epoch

    def bucket_indices(self) -> dict[str, np.ndarray]:
        """Dataset indices of each bucket (what :class:`BucketBatchSampler` groups by)."""
        return {b: np.flatnonzero(self._bucket_of == k) for k, b in enumerate(self.buckets)}

    def locate(self, index: int) -> tuple[str, int]:
        """``(bucket, row)`` of a dataset index."""
        return self.buckets[int(self._bucket_of[index])], int(self._row_of[index])

    def _open(self) -> LatentStore:
        if self._store is None or self._pid != os.getpid():
            self._store = open_store(self.location, "r")
            self._pid = os.getpid()
        return self._store

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_store"] = None  # never pickle zarr handles into workers
        state["_pid"] = None
        return state

    def _noise(self, bucket: str, row: int, shape: torch.Size) -> torch.Tensor:
        if self.seed is None:
            return torch.randn(shape)
        bucket_key = self.buckets.index(bucket)
        entropy = np.random.SeedSequence([self.seed, self.epoch, bucket_key, row]).generate_state(2)
        generator = torch.Generator().manual_seed(int(entropy[0]) << 32 | int(entropy[1]))
        return torch.randn(shape, generator=generator)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        bucket, row = self.locate(int(index) % len(self))
        store = self._open()
        # only the arrays this item needs (logvar only when drawing), all read in one concurrent round trip
        names = ("sample",) if self._kind != "posterior" else ("mean", "logvar") if self.sample else ("mean",)
        arrays, info = store.read_row(bucket, row, names, ("caption", "source", "key", "extra"))
        latent = torch.from_numpy(arrays[names[0]].astype(np.float32))
        if self.sample:
            std = torch.exp(0.5 * torch.from_numpy(arrays["logvar"].astype(np.float32)))
            latent = latent + std * self._noise(bucket, row, latent.shape)
        if self._scale is not None and self._shift is not None:
            latent = (latent - self._shift) * self._scale
        return {
            "latent": latent,
            "caption": info["caption"],
            "bucket": bucket,
            "row": row,
            "source": info["source"],
            "key": info["key"],
            "extra": info["extra"],
        }


def collate_latents(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch :class:`LatentDataset` items: ``latent`` stacked into ``(B, C, T, H, W)``, other fields as lists.

    Use it as the DataLoader's ``collate_fn``: torch's default collate recurses into ``extra`` and fails
    on metadata whose fields differ between samples or hold ``None``, which real datasets always have.
    """
    out: dict[str, Any] = {name: [item[name] for item in batch] for name in batch[0]}
    out["latent"] = torch.stack(out["latent"])
    return out


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices, each from a single bucket (so latents stack into one tensor).

    Per epoch: rows are shuffled within each bucket, cut into batches, and the batches of all buckets
    are shuffled together; the order depends only on ``(seed, epoch)``. With ``num_replicas > 1`` every
    rank takes every ``num_replicas``-th batch of that common order, after the list is padded by
    repeating batches (or trimmed, with ``drop_last``) so that all ranks run the same number of steps.
    """

    def __init__(
        self,
        dataset: LatentDataset,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if batch_size < 1:
            raise WfvaeError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < num_replicas:
            raise WfvaeError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.groups = list(dataset.bucket_indices().values())
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        batches: list[list[int]] = []
        for group in self.groups:
            order = rng.permutation(group) if self.shuffle else group
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    batches.append([int(i) for i in batch])
        if self.shuffle:
            batches = [batches[k] for k in rng.permutation(len(batches))]
        return batches

    def _rank_batches(self) -> list[list[int]]:
        batches = self._all_batches()
        r = self.num_replicas
        if r == 1 or not batches:
            return batches
        if self.drop_last:
            batches = batches[: len(batches) // r * r]
        else:
            padding = (-len(batches)) % r
            batches = batches + [batches[k % len(batches)] for k in range(padding)]
        return batches[self.rank :: r]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._rank_batches())

    def __len__(self) -> int:
        sizes = [len(g) for g in self.groups]
        rounding = math.floor if self.drop_last else math.ceil
        total = sum(int(rounding(n / self.batch_size)) for n in sizes)
        if self.num_replicas == 1:
            return total
        return total // self.num_replicas if self.drop_last else math.ceil(total / self.num_replicas)
