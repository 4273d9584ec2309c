"""The trainer end to end at tiny size: G/D alternation, EMA, accumulation, exact resume, export, CLI."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from wfvae_cli.cli.app import main
from wfvae_cli.metrics import LPIPSMetric
from wfvae_cli.model import load_model
from wfvae_cli.train import Trainer, export_checkpoint, load_checkpoint
from wfvae_cli.train.recipe import RecipeError

from ..conftest import EIGHT_X, tiny_config
from .test_train_common import tiny_recipe, write_tiny_recipe

pytestmark = pytest.mark.integration  # training loops


def _lpips():
    return LPIPSMetric.random_trunk().net


def _states(trainer: Trainer) -> dict[str, torch.Tensor]:
    out = {f"vae.{k}": v.detach().clone() for k, v in trainer.vae.state_dict().items()}
    out.update({f"disc.{k}": v.detach().clone() for k, v in trainer.disc.state_dict().items()})
    out.update({f"ema.{k}": v.clone() for k, v in trainer.ema.state_dict().items()})
    return out


def test_straight_run_equals_half_then_resume(tmp_path):
    """4 steps straight == 2 steps, a fresh process-like Trainer with --resume, 2 more steps.

    Covers G and D steps (disc_start 1: step 1 and 3 are D steps), LPIPS (random trunk), accumulation
    (batch 2 = 2 micro-batches of 1), the warm-up scheduler and the EMA.
    """
    over = ["loss.perceptual_weight=0.5", "schedule.checkpoint_every=2"]
    straight = Trainer(tiny_recipe(tmp_path, *over, name="a"), perceptual=_lpips())
    result = straight.fit()
    assert result.step == 4
    first = Trainer(tiny_recipe(tmp_path, *over, "schedule.steps=2", name="b"), perceptual=_lpips())
    first.fit()
    second = Trainer(tiny_recipe(tmp_path, *over, name="b"), perceptual=_lpips(), resume=True)
    assert second.step == 2
    second.fit()
    a, b = _states(straight), _states(second)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    for opt in ("gen_opt", "disc_opt"):
        sa, sb = getattr(straight, opt).state_dict()["state"], getattr(second, opt).state_dict()["state"]
        for i in sa:
            torch.testing.assert_close(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"], rtol=1e-5, atol=1e-10)
    assert straight.gen_opt.param_groups[0]["lr"] == second.gen_opt.param_groups[0]["lr"]

    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4]
    assert "d_loss" in train_rows[1] and "d_loss" in train_rows[3]  # odd steps (0-based 1, 3) are D steps
    assert "rec" in train_rows[0] and "rec" in train_rows[2] and train_rows[2]["d_weight"] > 0
    assert train_rows[0]["d_weight"] == 0  # step 0 < disc_start
    assert train_rows[0]["lpips"] > 0 and {"clips_per_s", "frames_per_s", "lr"} <= set(train_rows[0])


def test_checkpoint_is_safe_official_compatible_and_exports(tmp_path):
    trainer = Trainer(tiny_recipe(tmp_path, "schedule.steps=2", "loss.disc_start=0"))
    result = trainer.fit()
    ckpt_path = result.checkpoint
    assert ckpt_path is not None and ckpt_path.name == "step_0000002.pt"
    ckpt = torch.load(ckpt_path, weights_only=True)  # plain types only
    assert {"state_dict", "ema_state_dict", "optimizer_state", "scheduler_state", "rng_state", "sampler_state",
            "recipe", "config", "current_step"} <= set(ckpt)
    assert ckpt["state_dict"]["dics_model"] and ckpt["sampler_state"]["next_step"] == 2
    assert {"torch", "numpy", "python"} <= set(ckpt["rng_state"])
    assert load_checkpoint(ckpt_path)["recipe"]["optim"]["lr"] == 1e-3

    ema = trainer.ema.full_state_dict(trainer.vae)
    # load_model reads the training checkpoint directly (EMA by default, like the official loader)
    direct = load_model(ckpt_path)
    for k, v in direct.state_dict().items():
        torch.testing.assert_close(v, ema[k], msg=k)
    raw = load_model(ckpt_path, ema=False)
    torch.testing.assert_close(raw.get_last_layer(), trainer.vae.get_last_layer().detach())

    out = export_checkpoint(ckpt_path, tmp_path / "exported")
    assert (out / "config.json").is_file() and (out / "diffusion_pytorch_model.safetensors").is_file()
    exported = load_model(out)
    assert exported.fingerprint() == direct.fingerprint()
    half = load_model(export_checkpoint(ckpt_path, tmp_path / "half", dtype=torch.float16))
    enc = "encoder.wavelet_transform_in.h_conv.conv.weight"
    torch.testing.assert_close(half.state_dict()[enc], exported.state_dict()[enc], rtol=0, atol=0)  # Haar stays exact


def test_eval_writes_metrics_videos_and_baseline(tmp_path):
    recipe = tiny_recipe(tmp_path, "schedule.steps=1", "schedule.eval_every=1", "eval.save_videos=1",
                         "loss.disc_weight=0", "data.eval_clips=2")
    result = Trainer(recipe).fit()
    assert {"psnr", "ssim", "ema/psnr", "ema/ssim"} <= set(result.last_eval)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "baseline" and r["psnr"] > 10 for r in rows)
    videos = sorted((tmp_path / "run" / "eval").rglob("*.mp4"))
    assert [v.name for v in videos] == ["ema_000.mp4", "raw_000.mp4"]
    assert (tmp_path / "run" / "recipe.toml").is_file()


def test_user_errors_name_the_recipe_key(tmp_path):
    with pytest.raises(RecipeError, match=r"precision.*CUDA"):
        Trainer(tiny_recipe(tmp_path, "precision=bf16"))
    with pytest.raises(RecipeError, match=r"loss\.perceptual_weight"):
        Trainer(tiny_recipe(tmp_path, "loss.perceptual_weight=1", "loss.lpips_weights=/nonexistent/alexnet.pth"))
    eight = tmp_path / "tiny_8x.json"
    tiny_config(**EIGHT_X).to_json(eight)
    with pytest.raises(RecipeError, match=r"data\.frames: 13 is not 8k\+1"):
        Trainer(tiny_recipe(tmp_path, "data.frames=13", f"model.config={eight}"))
    with pytest.raises(Exception, match="no checkpoint"):
        Trainer(tiny_recipe(tmp_path, name="fresh"), resume=True)


def test_cli_train_and_export(tmp_path, capsys):
    recipe = write_tiny_recipe(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["train", str(recipe), "schedule.steps=1", "loss.disc_weight=0", "--quiet"])
    assert done.value.code in (0, None)
    assert (tmp_path / "run" / "checkpoints" / "step_0000001.pt").is_file()
    with pytest.raises(SystemExit) as done:
        main(["train", "export", str(tmp_path / "run" / "checkpoints"), "--out", str(tmp_path / "hf")])
    assert done.value.code in (0, None)
    assert load_model(tmp_path / "hf").config.base_channels == 8
    if importlib.util.find_spec("ray") is None:  # Ray itself is not tested here, only its absence
        with pytest.raises(SystemExit) as done:
            main(["train", str(recipe), "--ray", "--train-workers", "2"])
        assert done.value.code == 2
        assert "pip install 'wfvae[ray]'" in capsys.readouterr().err
