"""StoreMeta round-trips through zarr attrs and check_compatible refuses unsafe resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wfvae_cli.errors import WfvaeError
from wfvae_cli.store import (
    FORMAT_NAME,
    FORMAT_VERSION,
    IncompatibleStoreError,
    StoreError,
    StoreMeta,
    check_compatible,
    create_store,
    open_store,
)
from wfvae_cli.store.testing import demo_meta, demo_plan


def test_meta_round_trips_through_attrs_on_disk(tmp_path: Path) -> None:
    meta = demo_meta(kind="sample", dtype="float16", scaled=True)
    create_store(tmp_path / "s.zarr", meta, demo_plan())
    attrs = json.loads((tmp_path / "s.zarr" / "zarr.json").read_text())["attributes"]
    assert attrs["format"] == FORMAT_NAME
    assert attrs["format_version"] == FORMAT_VERSION
    assert attrs["kind"] == "sample" and attrs["sample_seed"] == 1234 and attrs["scaled"] is True
    assert attrs["buckets"] == ["9x32x32", "17x32x48"]
    assert open_store(tmp_path / "s.zarr").meta == meta


def test_meta_normalises_numpy_and_tuples_to_json_native() -> None:
    meta = demo_meta().replace(
        model_config={"latent_channels": np.int64(4), "sizes": (1, 2), "nested": {"x": np.float32(0.5)}},
        preprocessing={"frames": np.int32(9), "resolution": np.array([32, 32]), "crop": Path("center")},
        scale=np.array([1.0], dtype=np.float32),
    )
    assert meta.model_config == {"latent_channels": 4, "sizes": [1, 2], "nested": {"x": 0.5}}
    assert type(meta.model_config["latent_channels"]) is int
    assert meta.preprocessing == {"frames": 9, "resolution": [32, 32], "crop": "center"}
    assert meta.scale == [1.0]
    json.dumps(meta.to_attrs())  # strictly JSON
    assert StoreMeta.from_attrs(meta.to_attrs()) == meta


@pytest.mark.parametrize(
    "change",
    [
        {"preprocessing": {"fn": object()}},
        {"model_config": {"x": float("nan")}},
        {"weights_sha256": "abc"},
        {"kind": "posterior", "sample_seed": 3},
        {"dtype": "bfloat16"},
        {"scale": []},
    ],
)
def test_meta_rejects_invalid_values(change: dict) -> None:
    with pytest.raises(StoreError):
        demo_meta().replace(**change)


def test_open_refuses_foreign_and_newer_stores(tmp_path: Path) -> None:
    import zarr

    zarr.open_group(tmp_path / "other.zarr", mode="w", attributes={"format": "something-else"})
    with pytest.raises(StoreError, match="not a wfvae latent store"):
        open_store(tmp_path / "other.zarr")
    with pytest.raises(StoreError, match=r"no zarr\.json"):
        open_store(tmp_path / "missing.zarr")
    attrs = {**demo_meta().to_attrs(), "format_version": FORMAT_VERSION + 1}
    with pytest.raises(StoreError, match="upgrade wfvae"):
        StoreMeta.from_attrs(attrs, path="x.zarr")


def test_compatible_when_only_provenance_differs() -> None:
    old = demo_meta()
    new = old.replace(
        model="/other/path", tool_version="9.9", command=["x"], created_at="2030-01-01T00:00:00+00:00"
    )
    check_compatible(old, new, path="s.zarr")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"weights_sha256": "0" * 64}, "model weights"),
        ({"dtype": "float16"}, "stored dtype"),
        ({"kind": "sample", "sample_seed": 1}, "stored kind"),
        (
            {"preprocessing": {"frames": 17, "stride": 2, "resolution": [32, 32], "crop": "center"}},
            "preprocessing.frames",
        ),
        (
            {"preprocessing": {"frames": 9, "stride": 2, "resolution": [32, 32], "crop": "center", "fps": 8}},
            "preprocessing.fps",
        ),
        ({"model_config": {"latent_channels": 8}}, "model config"),
        ({"scaled": True}, "scaling"),
    ],
)
def test_check_compatible_refuses_with_one_line_naming_field(change: dict, named: str) -> None:
    old = demo_meta()
    with pytest.raises(IncompatibleStoreError) as info:
        check_compatible(old, old.replace(**change), path="out/s.zarr")
    message = str(info.value)
    assert isinstance(info.value, WfvaeError)
    assert "\n" not in message and "out/s.zarr" in message and named in message and "--overwrite" in message


def test_check_compatible_compares_scale_only_when_scaled() -> None:
    old = demo_meta(scaled=False)
    check_compatible(old, old.replace(scale=[9.0]))
    scaled = demo_meta(scaled=True)
    with pytest.raises(IncompatibleStoreError, match="scale factor"):
        check_compatible(scaled, scaled.replace(scale=[9.0]))


def test_rejected_inputs_are_recorded(tmp_path):
    from wfvae_cli.store import create_store, open_store, summary
    from wfvae_cli.store.testing import demo_meta, demo_plan

    rejected = [("/data/bad.mp4", "VideoDecodeError: truncated"), ("/data/short.mp4", "has 5 frames, needs 33")]
    create_store(tmp_path / "s.zarr", demo_meta(), demo_plan(), rejected=rejected)
    assert open_store(tmp_path / "s.zarr").rejected() == rejected
    assert list(summary(tmp_path / "s.zarr").rejected) == rejected
    create_store(tmp_path / "t.zarr", demo_meta(), demo_plan())
    assert open_store(tmp_path / "t.zarr").rejected() == []
