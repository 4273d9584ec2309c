"""Our module tree has exactly the official state-dict keys, shapes, dtypes, order and parameter counts."""

from __future__ import annotations

import json

import pytest
import torch

from wfvae_cli.model import WFVAE, WFVAEConfig, preset_config

from ..conftest import MANIFESTS


def _build_meta(config: WFVAEConfig) -> WFVAE:
    with torch.device("meta"):  # shapes only: no memory, no init time
        return WFVAE(config)


@pytest.mark.parametrize("manifest_path", MANIFESTS, ids=lambda p: p.stem)
def test_state_dict_matches_manifest(manifest_path):
    manifest = json.loads(manifest_path.read_text())
    model = _build_meta(WFVAEConfig.from_dict(manifest["config"]))
    ours = model.state_dict()
    expected = manifest["state_dict"]
    assert list(ours) == list(expected), "keys or their order differ"
    for key, spec in expected.items():
        assert list(ours[key].shape) == spec["shape"], key
        assert str(ours[key].dtype).removeprefix("torch.") == spec["dtype"], key
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    for key, spec in expected.items():
        if spec["kind"] == "parameter":
            assert key in params and params[key].requires_grad == spec["requires_grad"], key
        else:
            assert key in buffers, key
    counts = manifest["param_counts"]
    enc = sum(p.numel() for p in model.encoder.parameters())
    dec = sum(p.numel() for p in model.decoder.parameters())
    assert (enc, dec) == (counts["encoder_params"], counts["decoder_params"])
    trainable = sum(p.numel() for p in model.encoder.parameters() if p.requires_grad)
    assert trainable == counts["encoder_trainable_params"]
    assert len(ours) == manifest["num_state_dict_keys"]


@pytest.mark.parametrize(
    ("preset", "manifest_name"),
    [("wfvae-s", "wfvae-S-16chn"), ("wfvae-m", "wfvae-M-16chn"), ("wfvae-l", "wfvae-L-16chn"),
     ("wfvae-s-8chn", "wfvae-S-8chn-osp13")],
)
def test_presets_are_the_released_configs(preset, manifest_name):
    manifest = next(json.loads(p.read_text()) for p in MANIFESTS if p.stem == manifest_name)
    ours = preset_config(preset).to_dict()
    theirs = manifest["config"]
    assert ours == {k: (v if k not in ("scale", "shift") else [float(x) for x in v]) for k, v in theirs.items()}


@pytest.mark.parametrize("latent_dim", [4, 8, 16, 32])
def test_latent_dim_presets(latent_dim):
    cfg = preset_config(f"wfvae-l-{latent_dim}ch")
    assert cfg.latent_dim == latent_dim and cfg.base_channels == 192
    model = _build_meta(cfg)
    assert model.encoder.conv_out.conv.weight.shape[0] == 2 * latent_dim
    if latent_dim == 4:  # the paper's Table 3 counts are the Z=4 twins, truncated to millions
        n = model.num_params()
        assert (n["encoder"] // 10**6, n["decoder"] // 10**6) == (84, 232)


def test_eight_x_presets():
    cfg = preset_config("wfvae-s-8x")
    assert cfg.temporal_factor == 8 and cfg.latent_shape(33, 256, 256) == (16, 5, 32, 32)
    model = _build_meta(cfg)
    assert model.encoder.down1[-1].conv.conv.weight.dim() == 5  # level-1 downsampler is 3D
    assert model.encoder.connect_l1.weight.shape[1] == 24
    assert preset_config("wfvae-l-8ch-8x").latent_dim == 8
