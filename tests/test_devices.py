"""``--device auto``: one rule (wfvae_cli.devices) behind every command and library default."""

from __future__ import annotations

import pytest
import torch

from wfvae_cli.devices import DEFAULT_DEVICE, auto_device, check_device
from wfvae_cli.errors import WfvaeError


def test_auto_is_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert auto_device() == "cpu" and check_device("auto") == "cpu" and check_device(" AUTO ") == "cpu"
    with pytest.raises(WfvaeError, match="CUDA is not available"):
        check_device("cuda")


def test_auto_is_cuda_when_present(monkeypatch):
    # no GPU here: the CUDA branch of the rule is reachable only by mocking the availability check
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert auto_device() == "cuda" and check_device("auto") == "cuda" and auto_device(local_rank=3) == "cuda:3"
    from wfvae_cli.train.distributed import resolve_device

    assert resolve_device("auto", 2) == torch.device("cuda:2")  # training follows the same rule, per rank


def test_auto_can_be_refused_and_bad_names_fail():
    with pytest.raises(WfvaeError, match="unknown device"):
        check_device("auto", allow_auto=False)
    with pytest.raises(WfvaeError, match="unknown device; use cpu"):
        check_device("gpu")


def test_every_default_is_auto():
    import inspect

    from wfvae_cli.cli import bench, demo, encode
    from wfvae_cli.pipeline import EncodeOptions
    from wfvae_cli.train.recipe import Recipe

    assert DEFAULT_DEVICE == "auto" and EncodeOptions.__dataclass_fields__["device"].default == "auto"
    assert Recipe.__dataclass_fields__["device"].default == "auto"
    for fn in (encode.encode, demo.demo, bench.bench, bench.recon, bench.pipeline):
        assert inspect.signature(fn).parameters["device"].default.default == "auto", fn.__name__


def test_library_encoder_resolves_auto(tmp_path):
    from wfvae_cli.bench.standin import StandInModel
    from wfvae_cli.model.config import preset_config
    from wfvae_cli.pipeline import EncodeOptions
    from wfvae_cli.pipeline.stages import LatentEncoder

    opts = EncodeOptions(inputs=("x.mp4",), out=tmp_path / "s.zarr")
    encoder = LatentEncoder(StandInModel(preset_config("wfvae-s"), 0.0), opts)
    assert encoder.device == torch.device(auto_device())
