"""load_model: every accepted spec, wrappers, prefixes, safe unpickling, clear errors."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from wfvae_cli import load_model
from wfvae_cli.errors import CheckpointError, OfflineError
from wfvae_cli.model import WFVAEConfig, load_state_dict_file
from wfvae_cli.model.loading import infer_config

from ..conftest import GOLDEN, tiny_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = tiny_model(seed=3)
    directory = model.save_pretrained(tmp_path_factory.mktemp("tiny") / "model")
    return model, directory


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_save_pretrained_layout_and_roundtrip(saved):
    model, directory = saved
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    config = json.loads((directory / "config.json").read_text())
    assert config["_class_name"] == "WFVAEModel" and "l1_dowmsample_block" in config
    loaded = load_model(directory)
    assert _same_weights(model, loaded)
    assert loaded.fingerprint() == model.fingerprint()
    assert not loaded.training


def test_fingerprint_changes_with_weights(saved):
    model, directory = saved
    other = load_model(directory)
    with torch.no_grad():
        other.decoder.conv_out.bias[0] += 1e-3
    assert other.fingerprint() != model.fingerprint()


def test_presets_are_seeded():
    a, b = load_model("wfvae-s-8chn", random_weights=True), load_model("wfvae-s-8chn", random_weights=True)
    assert a.fingerprint() == b.fingerprint()
    assert load_model("wfvae-s-8chn", seed=1, random_weights=True).fingerprint() != a.fingerprint()
    assert a.config.latent_dim == 8 and a.source.startswith("preset:") and a.random_weights


@pytest.mark.parametrize("preset", ["wfvae-s", "wfvae-l-8ch", "wfvae-s-8chn", "WFVAE-M"])
def test_weightless_preset_is_refused_without_random_weights(preset):
    with pytest.raises(CheckpointError, match="no trained weights") as info:
        load_model(preset)
    message = str(info.value)
    assert "--random-weights" in message and "random_weights=True" in message and "\n" not in message


def test_bundled_tiny_loads_trained_weights_as_before():
    model = load_model("wfvae-tiny")
    assert model.source == "bundled:wfvae-tiny" and model.random_weights is False


def test_random_weights_refuses_a_checkpoint(saved):
    _, directory = saved
    with pytest.raises(CheckpointError, match="not from a checkpoint"):
        load_model(directory, random_weights=True)
    assert load_model(directory).random_weights is False


def test_single_file_with_and_without_config(saved, tmp_path):
    model, directory = saved
    weights = directory / "diffusion_pytorch_model.safetensors"
    assert _same_weights(model, load_model(weights))
    lone = tmp_path / "weights.safetensors"
    lone.write_bytes(weights.read_bytes())
    inferred = load_model(lone)
    assert _same_weights(model, inferred)
    assert "inferred" in inferred.source
    assert inferred.config.base_channels == model.config.base_channels


def test_infer_config_from_golden_shapes():
    from safetensors.torch import load_file

    cfg = infer_config(load_file(str(GOLDEN / "model.safetensors")))
    official = WFVAEConfig.from_json(GOLDEN / "config.json")
    for field in ("latent_dim", "base_channels", "encoder_energy_flow_hidden_size", "decoder_energy_flow_hidden_size",
                  "encoder_num_resblocks", "decoder_num_resblocks", "use_attention", "norm_type",
                  "connect_res_layer_num"):
        assert getattr(cfg, field) == getattr(official, field), field


def test_training_checkpoint_wrappers(saved, tmp_path):
    model, _ = saved
    sd = model.state_dict()
    # official train_ddp layout: state_dict={gen_model, dics_model}, ema_state_dict with module. prefixes
    ema = {f"module.{k}": v + 1.0 for k, v in sd.items() if "wavelet_transform" not in k}
    ckpt = {"state_dict": {"gen_model": sd, "dics_model": {"x": torch.zeros(1)}}, "ema_state_dict": ema,
            "current_step": 7}
    (tmp_path / "config.json").write_text(json.dumps(model.config.to_dict()))
    torch.save(ckpt, tmp_path / "checkpoint-7.ckpt")
    raw = load_model(tmp_path, ema=False)
    assert _same_weights(model, raw)
    with_ema = load_model(tmp_path, ema=True)
    w = with_ema.state_dict()
    assert torch.equal(w["decoder.conv_out.bias"], sd["decoder.conv_out.bias"] + 1.0)
    # the Haar constants are absent from EMA dicts and keep their official values
    key = "encoder.wavelet_transform_in.h_conv.conv.weight"
    assert torch.equal(w[key], sd[key])


@pytest.mark.parametrize("prefix", ["module.", "vae.", "autoencoder."])
def test_prefixes_are_removed(saved, tmp_path, prefix):
    model, _ = saved
    torch.save({"model": {prefix + k: v for k, v in model.state_dict().items()}}, tmp_path / "w.pt")
    assert set(load_state_dict_file(tmp_path / "w.pt")) == set(model.state_dict())


def test_pickles_never_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("open('pwned','w').write('x')",))

    path = tmp_path / "evil.ckpt"
    with path.open("wb") as f:
        pickle.dump({"state_dict": Evil()}, f)
    with pytest.raises(CheckpointError, match=r"evil\.ckpt"):
        load_state_dict_file(path)
    assert not (tmp_path / "pwned").exists()


def test_mismatch_names_keys_and_shapes(saved, tmp_path):
    model, _ = saved
    sd = dict(model.state_dict())
    sd["decoder.conv_out.weight"] = torch.zeros(24, 8, 5, 5)
    sd.pop("encoder.conv_out.conv.bias")
    sd["decoder.extra.weight"] = torch.zeros(1)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    model.config.to_json(tmp_path / "config.json")
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path)
    msg = str(err.value)
    assert "decoder.conv_out.weight (24, 8, 5, 5)" in msg
    assert "encoder.conv_out.conv.bias" in msg and "decoder.extra.weight" in msg


def test_config_roundtrip_keeps_official_misspellings(tmp_path):
    official = json.loads((GOLDEN / "config.json").read_text())
    cfg = WFVAEConfig.from_json(GOLDEN / "config.json")
    cfg.to_json(tmp_path / "config.json")
    assert json.loads((tmp_path / "config.json").read_text()) == {
        k: ([float(x) for x in v] if k in ("scale", "shift") else v) for k, v in official.items()
    }


def test_config_rejects_unknown_fields(tmp_path):
    bad = json.loads((GOLDEN / "config.json").read_text()) | {"base_chanels": 3}
    (tmp_path / "config.json").write_text(json.dumps(bad))
    with pytest.raises(CheckpointError, match="base_chanels"):
        WFVAEConfig.from_json(tmp_path / "config.json")


def test_hub_id_offline_gives_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="huggingface-cli download chestnutlzj/WF-VAE-L-16Chn"):
        load_model("chestnutlzj/WF-VAE-L-16Chn")


def test_hub_id_from_local_cache(saved, tmp_path, monkeypatch):
    model, directory = saved
    snap = tmp_path / "models--someone--tiny-vae" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    for f in directory.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (tmp_path / "models--someone--tiny-vae" / "refs").mkdir()
    (tmp_path / "models--someone--tiny-vae" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    loaded = load_model("someone/tiny-vae")
    assert _same_weights(model, loaded) and loaded.source == "hub:someone/tiny-vae"


def test_unknown_spec_and_bad_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such file, directory or preset"):
        load_model(str(tmp_path / "nope"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=r"junk\.safetensors: cannot read weights"):
        load_model(tmp_path / "junk.safetensors")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no weights found"):
        load_model(empty)


def test_device_and_dtype(saved):
    _, directory = saved
    model = load_model(directory, device="cpu", dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16
    with torch.no_grad():
        post = model.encode(torch.rand(1, 3, 5, 16, 16, dtype=torch.bfloat16))
    assert post.mean.dtype == torch.bfloat16
