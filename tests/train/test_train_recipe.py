"""Recipes: every shipped recipe parses; bad keys, types and values are one-line errors naming key and file."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from wfvae_cli.cli.app import main
from wfvae_cli.train.recipe import RecipeError, dump_recipe, load_recipe, recipe_from_dict, recipe_to_dict

from .test_train_common import write_tiny_recipe

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.toml"))


def test_recipes_folder_has_the_paper_stages_and_the_cpu_recipe():
    names = {p.stem for p in RECIPES}
    for size in "sml":
        for stage in (1, 2, 3):
            assert f"wfvae-{size}-stage{stage}" in names
    assert "tiny-cpu" in names


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_shipped_recipe_parses_and_round_trips(path):
    recipe = load_recipe(path)
    again = recipe_from_dict(tomllib.loads(dump_recipe(recipe)))
    assert recipe_to_dict(again) == recipe_to_dict(recipe)


def test_paper_stages_follow_table_7():
    root = RECIPES[0].parent
    s1, s2, s3 = (load_recipe(root / f"wfvae-l-stage{i}.toml") for i in (1, 2, 3))
    assert (s1.data.frames, s1.data.size, s1.data.batch_size, s1.optim.lr) == (25, (256, 256), 8, 1e-5)
    weights = (s1.loss.perceptual_weight, s1.loss.wavelet_weight, s1.loss.kl_weight, s1.ema.decay)
    assert weights == (1.0, 0.1, 1e-6, 0.999)
    assert s1.schedule.steps == 800_000 and s1.model.preset == "wfvae-l"
    assert (s2.data.frames, s2.data.sample_rate, s2.schedule.steps) == (49, 2, 200_000)
    assert s2.model.init and "stage1" in s2.model.init and not s2.model.init_discriminator
    assert s3.loss.perceptual_weight == 0.1 and "stage2" in (s3.model.init or "")
    assert not s3.model.init_discriminator and s3.data.frames == 49


def test_unknown_key_names_key_file_and_suggestion(tmp_path):
    path = write_tiny_recipe(tmp_path)
    path.write_text(path.read_text().replace("lr = 1e-3", "lrr = 1e-3"))
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    msg = str(err.value)
    assert str(path) in msg and "'optim.lrr'" in msg and "did you mean 'optim.lr'" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("data.frames=10", "data.frames: 10 is not 4k+1"),
        ("data.resolution=30", "data.resolution: 30 must be positive multiples of 8"),
        ("data.resolution=[32, 36]", "multiples of 8"),
        ("data.frames=\"nine\"", "data.frames = \"nine\" should be an integer"),
        ("optim.betas=[0.9]", "optim.betas"),
        ("optim.lr=-1", "optim.lr: -1.0 must be > 0"),
        ("data.batch_size=3", "data.batch_size: 3 is not a multiple of data.micro_batch_size=2"),
        ("loss.reconstruction=l3", "one of \"l1\", \"l2\""),
        ("ema.decay=1.0", "ema.decay"),
        ("model.preset=wfvae-q", "unknown preset"),
        ("schedule.step=3", "did you mean 'schedule.steps'"),
        ("data.synthetic.photos=[\"lena\"]", "unknown photo 'lena'"),
    ],
)
def test_bad_values_are_errors_naming_the_key(tmp_path, override, needle):
    extra = ["data.micro_batch_size=2", "data.batch_size=4"] if "batch_size=3" in override else []
    if override.startswith("model.preset"):
        extra = ["model.config=none"]
    with pytest.raises(RecipeError) as err:
        load_recipe(write_tiny_recipe(tmp_path), [*extra, override])
    assert needle in str(err.value)
    if "=" in override and not override.startswith(("data.batch_size", "model.preset")):
        assert "command line" in str(err.value)


def test_overrides_parse_toml_values_bare_words_and_none(tmp_path):
    r = load_recipe(
        write_tiny_recipe(tmp_path),
        ["optim.lr=2e-5", "output_dir=runs/x", "data.resolution=[32, 64]", "model.init=some/ckpt", "ema.enabled=false"],
    )
    assert r.optim.lr == 2e-5 and r.output_dir == "runs/x" and r.data.size == (32, 64)
    assert r.model.init == "some/ckpt" and r.ema.enabled is False
    assert r.source_of("optim.lr") == "command line"
    r2 = load_recipe(write_tiny_recipe(tmp_path), ["data.synthetic=none", "data.inputs=[\"videos/\"]"])
    assert r2.data.synthetic is None and r2.data.inputs == ["videos/"]
    with pytest.raises(RecipeError, match=r"section\.key=value"):
        load_recipe(write_tiny_recipe(tmp_path), ["optim.lr"])


def test_extends_merges_tables_and_reports_the_right_file(tmp_path):
    base = write_tiny_recipe(tmp_path, "base")
    child = tmp_path / "sub" / "child.toml"
    child.parent.mkdir()
    child.write_text('extends = "../base.toml"\nname = "child"\n[optim]\nweight_decay = 0.5\n[data]\nframes = 17\n')
    r = load_recipe(child)
    assert (r.name, r.optim.weight_decay, r.optim.lr, r.data.frames, r.data.resolution) == ("child", 0.5, 1e-3, 17, 32)
    assert r.source_of("optim.lr") == str(base.resolve()) and r.source_of("data.frames") == str(child.resolve())
    child.write_text('extends = "../base.toml"\n[data]\nframes = 8\n')
    with pytest.raises(RecipeError, match=f"{child.resolve()}: data.frames: 8 is not 4k\\+1"):
        load_recipe(child)
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(RecipeError, match="circular"):
        load_recipe(tmp_path / "a.toml")


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(RecipeError, match="recipe not found"):
        load_recipe(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim\nlr = 1")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(bad)


def test_cli_print_config_shows_the_resolved_recipe(tmp_path, capsys):
    path = write_tiny_recipe(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["train", "--print-config", str(path), "optim.lr=2e-5"])
    assert done.value.code in (0, None)
    out = capsys.readouterr().out
    parsed = tomllib.loads(out)
    assert parsed["optim"]["lr"] == 2e-5 and parsed["ema"]["decay"] == 0.9 and parsed["loss"]["kl_weight"] == 1e-6


def test_cli_recipe_error_is_one_line_and_exit_2(tmp_path, capsys):
    path = write_tiny_recipe(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["train", str(path), "optim.lrr=2e-5"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "optim.lrr" in err and "command line" in err
