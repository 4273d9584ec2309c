"""Small, deterministic stores for tests (ours and other layers'): a meta, a plan, and expected latents.

Latents are a pure function of ``(bucket, row, name)``, so a test (or a crashed subprocess's parent)
can check any stored sample without keeping what was written.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence

import numpy as np

from wfvae_cli.store.meta import StoredDtype, StoredKind, StoreMeta
from wfvae_cli.store.plan import BucketPlan, SampleRecord


def demo_meta(
    kind: StoredKind = "posterior",
    dtype: StoredDtype = "float32",
    *,
    channels: int = 4,
    scaled: bool = False,
    preprocessing: dict[str, object] | None = None,
) -> StoreMeta:
    """A valid meta for a fake model with ``channels`` latent channels."""
    return StoreMeta(
        model="wfvae-test",
        model_config={"latent_channels": channels, "base_channels": 8, "scale": [0.5] * channels},
        weights_sha256=hashlib.sha256(b"wfvae-test-weights").hexdigest(),
        kind=kind,
        dtype=dtype,
        scaled=scaled,
        scale=[0.5 + 0.25 * c for c in range(channels)],
        shift=[0.1 * c for c in range(channels)],
        preprocessing=preprocessing or {"frames": 9, "stride": 2, "resolution": [32, 32], "crop": "center"},
        tool_version="0.0.test",
        command=["wfvae", "encode", "videos/", "-o", "out.zarr"],
        sample_seed=1234 if kind == "sample" else None,
    )


def demo_plan(
    buckets: Sequence[tuple[str, tuple[int, int, int, int], int]] = (
        ("9x32x32", (4, 3, 4, 4), 10),
        ("17x32x48", (4, 5, 4, 6), 7),
    ),
    *,
    shard_size: int | None = 4,
) -> list[BucketPlan]:
    """One :class:`BucketPlan` per ``(bucket_id, latent_shape, num_samples)``; frames = 4*(T-1)+1."""
    plans = []
    for bucket_id, shape, n in buckets:
        frames = 4 * (shape[1] - 1) + 1
        rows = [
            SampleRecord(
                source=f"videos/{bucket_id}/clip_{i:03d}_é.mp4",
                clip_start=10 * i,
                clip_end=10 * i + 2 * frames,
                frame_indices=tuple(10 * i + 2 * k for k in range(frames)),
                fps=24.0 + i,
                width=640 + i,
                height=360 + i,
                caption="" if i % 3 == 0 else f"caption {i} of {bucket_id} — ünïcode",
            )
            for i in range(n)
        ]
        plans.append(BucketPlan(bucket_id, shape, rows, shard_size=shard_size))
    return plans


def expected_latent(bucket: str, row: int, name: str, shape: Sequence[int], dtype: str) -> np.ndarray:
    """The deterministic latent a test writes for ``(bucket, row, name)``."""
    seed = zlib.crc32(f"{bucket}/{row}/{name}".encode())
    values = np.random.default_rng(seed).standard_normal(tuple(shape), dtype=np.float32)
    return values.astype(dtype)


def expected_latents(meta: StoreMeta, bucket: str, row: int, shape: Sequence[int]) -> dict[str, np.ndarray]:
    """All latent arrays of one row, keyed by name (``mean``/``logvar`` or ``sample``)."""
    return {name: expected_latent(bucket, row, name, shape, meta.dtype) for name in meta.latent_names}
