"""Shared fixtures: the official golden model and manifests (vendored under tests/fixtures), tiny configs."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from wfvae_cli.model import WFVAE, WFVAEConfig
from wfvae_cli.store import open_store, verify

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "golden"
MANIFESTS = sorted((FIXTURES / "manifests").glob("*.json"))

EIGHT_X = {
    "l1_dowmsample_block": "Spatial2xTime2x3DDownsample",
    "l1_downsample_wavelet": "HaarWaveletTransform3D",
    "l1_upsample_block": "Spatial2xTime2x3DUpsample",
    "l1_upsample_wavelet": "InverseHaarWaveletTransform3D",
}


def tiny_config(**overrides) -> WFVAEConfig:
    """A WF-VAE small enough for CPU tests (same architecture, width 8)."""
    base = dict(
        latent_dim=4,
        base_channels=8,
        encoder_energy_flow_hidden_size=8,
        decoder_energy_flow_hidden_size=8,
        norm_type="layernorm",
        t_interpolation="trilinear",
        scale=[0.5] * 4,
        shift=[0.1] * 4,
    )
    base.update(overrides)
    return WFVAEConfig(**base)


def tiny_model(seed: int = 0, **overrides) -> WFVAE:
    torch.manual_seed(seed)
    model = WFVAE(tiny_config(**overrides)).eval()
    # random (non-default) norm parameters so that the norms are exercised, as in the golden fixture
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for the whole test session (start-up costs seconds and ~600 MB); skips without Ray."""
    ray = pytest.importorskip("ray", reason="Ray tests need the 'ray' extra: pip install -e '.[dev,ray]'")
    if ray.is_initialized():  # something in this session already joined one: share it
        yield ray.get_runtime_context().gcs_address
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20, log_to_driver=False,
             logging_level="warning")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


_CLOCK = re.compile(r"\[\d\d:\d\d:\d\d\] ")  # decord stamps the time into its error messages


def _untimed(value):
    """Error messages without decord's clock time (the only part that differs between two runs)."""
    if isinstance(value, str):
        return _CLOCK.sub("", value)
    if isinstance(value, (list, tuple)):
        return [_untimed(v) for v in value]
    return value


def assert_same_store(a: Path, b: Path) -> None:
    """Every array bitwise equal (latents, index, status, errors) except timings; same metadata."""
    sa, sb = open_store(a), open_store(b)
    skip = {"created_at", "completed_at", "command"}
    meta_a, meta_b = ({k: v for k, v in s._root.attrs.asdict().items() if k not in skip} for s in (sa, sb))
    assert meta_a == meta_b
    assert sa.rejected() == sb.rejected()
    assert list(sa.buckets) == list(sb.buckets)
    for bucket in sa.buckets:
        assert sa._root[f"buckets/{bucket}"].attrs.asdict() == sb._root[f"buckets/{bucket}"].attrs.asdict()
        names = set(sa._root[f"buckets/{bucket}"].array_keys())
        assert names == set(sb._root[f"buckets/{bucket}"].array_keys())
        for name in sorted(names - {"encode_seconds"}):
            x, y = sa.array(bucket, name)[:], sb.array(bucket, name)[:]
            if x.dtype.kind == "f":
                np.testing.assert_array_equal(x, y, err_msg=f"{bucket}/{name}")  # NaN == NaN, else bitwise
                assert x.tobytes() == y.tobytes(), f"{bucket}/{name} differs in bits"
            else:
                assert _untimed(x.tolist()) == _untimed(y.tolist()), f"{bucket}/{name}"
    assert verify(b).ok


# --- an S3-compatible server for the object-storage tests ------------------------------------------------------
# A real HTTP server (moto's server mode, in a thread of the test process) on 127.0.0.1, started once per test
# session; every client (s3fs, obstore, boto3, the `wfvae` subprocesses) reaches it through the standard AWS
# environment variables, as a user's job reaches their bucket. Tests take a fresh bucket from `s3_bucket`.

_S3_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION")


@pytest.fixture(scope="session")
def s3_endpoint():
    """The server's endpoint URL; the AWS environment variables point at it for the whole session."""
    import os

    server_mod = pytest.importorskip("moto.server", reason="the object-storage tests need moto[server]")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in (*_S3_ENV, "AWS_PROFILE", "AWS_SESSION_TOKEN")}
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
    )
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(k, None)
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_endpoint, request) -> str:
    """A new, empty bucket on the session's server; returns its name."""
    import re
    import uuid

    import boto3

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + uuid.uuid4().hex[:8]
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


# --- real mounts for the full-disk and read-only tests ----------------------------------------------------------
@contextlib.contextmanager
def mounted(kind: str, source: Path | None, target: Path, size: str = "1m"):
    """Mount a small tmpfs (``kind="tmpfs"``, ``size`` bytes, a real ENOSPC when full) or a read-only bind of
    ``source`` (``kind="bind-ro"``: EROFS on every write, also for root) at ``target``; unmounted on exit.

    Skips the test, with the reason, where the test cannot mount (not root, no CAP_SYS_ADMIN, a sandbox).
    """
    import subprocess

    if kind == "tmpfs":
        steps = [["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)]]
    elif kind == "bind-ro":
        steps = [["mount", "--bind", str(source), str(target)], ["mount", "-o", "remount,bind,ro", str(target)]]
    else:
        raise ValueError(kind)
    for k, step in enumerate(steps):
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=30)
        except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
            done = subprocess.CompletedProcess(step, 1, "", str(exc))
        if done.returncode != 0:
            if k:
                subprocess.run(["umount", str(target)], capture_output=True, timeout=30)
            pytest.skip(f"cannot mount a {kind} here ({' '.join(step)}: {done.stderr.strip()[:200]})")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)
