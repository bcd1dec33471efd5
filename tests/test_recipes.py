"""Recipe validation, YAML round trip, presets, create_model and build() on three kinds of model."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import TINY_ARCH
from fbnetv3_zoo.recipes import Recipe, RecipeError, RecipeWarning, preset_names
from fbnetv3_zoo.recipes.apply import (
    build,
    create_model,
    for_model,
    missing_regularisers,
    regulariser_kwargs,
)
from torch import nn

from fbnetv3_zoo.cli import main
from fbnetv3_zoo.errors import UserError


# ------------------------------------------------------------------ recipe
@pytest.mark.parametrize("name", ["fbnetv3", "fbnetv3_proxy", "baseline"])
def test_presets_load_and_round_trip(name, tmp_path):
    recipe = Recipe.load(name)
    assert recipe.name == name
    path = tmp_path / "r.yaml"
    recipe.to_yaml(path)
    assert Recipe.from_yaml(path) == recipe
    assert Recipe.load(str(path)) == recipe


def test_presets_say_where_each_value_comes_from():
    from fbnetv3_zoo.recipes.recipe import PRESET_DIR

    assert {"fbnetv3", "fbnetv3_proxy", "baseline"} <= set(preset_names())
    for line in (PRESET_DIR / "fbnetv3.yaml").read_text().splitlines():
        if line and not line.startswith(("#", "name:", "description:")):
            assert "# paper (arXiv 2006.02049, " in line or "# our choice" in line, line
    for name in preset_names():  # users have the paper, not this project's notes
        text = (PRESET_DIR / f"{name}.yaml").read_text()
        assert "PAPER.md" not in text and "shared/" not in text, name
    cited = (PRESET_DIR / "fbnetv3.yaml").read_text()
    assert "https://arxiv.org/abs/2006.02049" in cited
    assert "search space: recipe" in cited and "search space: architecture" in cited
    base = Recipe.load("baseline")
    assert (
        base.optimizer == "sgd"
        and base.mixup == 0
        and base.ema_decay is None
        and base.drop_path == 0
    )
    paper = Recipe.load("fbnetv3")
    assert paper.optimizer == "rmsprop" and paper.label_smoothing == 0.1 and paper.auto_augment
    assert paper.resolution is None and base.resolution is None  # the model's own input size


def test_search_facing_field_names_exist():
    names = {f.name for f in dataclasses.fields(Recipe)}
    wanted = "optimizer lr weight_decay mixup dropout drop_path ema_decay label_smoothing epochs batch_size resolution"
    assert set(wanted.split()) <= names


@pytest.mark.parametrize(
    "changes, field, allowed",
    [
        ({"lr": -0.1}, "lr", "(0, 10]"),
        ({"optimizer": "adam"}, "optimizer", "rmsprop, sgd, adamw"),
        ({"dropout": 1.0}, "dropout", "[0, 1)"),
        ({"epochs": 2.5}, "epochs", "int"),
        ({"auto_augment": "bogus"}, "auto_augment", "rand-"),
        ({"train_crop_scale": (0.9, 0.1)}, "train_crop_scale", "min <= max"),
        ({"ema_decay": 1.5}, "ema_decay", "(0, 1)"),
        ({"schedule": "linear"}, "schedule", "cosine, step, exponential"),
    ],
)
def test_bad_values_name_field_value_and_allowed(changes, field, allowed):
    with pytest.raises(RecipeError) as err:
        dataclasses.replace(Recipe.load("fbnetv3"), **changes)
    message = str(err.value)
    assert repr(field) in message and repr(next(iter(changes.values()))) in message
    assert allowed in message


def test_unknown_field_and_preset_suggest_close_names():
    with pytest.raises(RecipeError, match=r"'lrate'.*did you mean lr"):
        Recipe.from_dict({"lrate": 0.1})
    with pytest.raises(RecipeError, match="did you mean fbnetv3"):
        Recipe.load("fbnet_v3")
    with pytest.raises(RecipeError) as err:  # nothing alike: no guess, the valid names
        Recipe.from_dict({"nosuch": 1})
    assert "did you mean" not in str(err.value) and "allowed: name, " in str(err.value)
    assert isinstance(err.value, UserError)


@pytest.mark.parametrize(
    "text, message",
    [
        ('lr: !!python/object/apply:os.system ["echo x"]\n', "could not determine a constructor"),
        ("a: &a [1, 2]\nb: [*a, *a]\n", "aliases/anchors are not allowed"),
        ("- 1\n- 2\n", "expected a mapping of recipe fields"),
    ],
)
def test_recipe_yaml_refuses_code_aliases_and_non_mappings(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as err:
        Recipe.load(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_short_run_of_a_preset_is_not_refused_and_says_what_it_fitted():
    recipe = Recipe.from_dict({**Recipe.load("fbnetv3").to_dict(), "epochs": 4})
    assert recipe.warmup_epochs == 5  # kept: build() fits it to the run
    parts = build(recipe, create_model(recipe, "test_resnet", num_classes=10), steps_per_epoch=4)
    assert parts.recipe.warmup_epochs == 1 and parts.recipe.ema_decay == 0.9999
    assert parts.notes[0] == "warmup_epochs: 5 -> 1 (at most 25% of this 4-epoch run)"
    assert "ema_warmup ramps it" in parts.notes[1] and len(parts.notes) == 2
    # without timm's EMA warmup the decay itself shrinks to a tenth of the run's updates
    plain = dataclasses.replace(recipe, ema_warmup=False, epochs=50)
    parts = build(plain, nn.Linear(4, 3), steps_per_epoch=20)  # 1000 updates
    assert parts.recipe.ema_decay == pytest.approx(0.99) and parts.ema.decay == pytest.approx(0.99)
    assert any(n.startswith("ema_decay: 0.9999 -> 0.99 ") for n in parts.notes)
    long = build(dataclasses.replace(recipe, epochs=400), nn.Linear(4, 3), steps_per_epoch=5000)
    assert long.recipe.warmup_epochs == 5 and long.recipe.ema_decay == 0.9999
    assert not [n for n in long.notes if n.startswith(("warmup", "ema"))]


def test_resolution_follows_the_model_unless_set(tmp_path):
    from PIL import Image

    from fbnetv3_zoo import ArchSpec

    (tmp_path / "tiny.yaml").write_text(TINY_ARCH)
    spec = ArchSpec.from_yaml(tmp_path / "tiny.yaml")
    recipe = Recipe.load("fbnetv3")
    model = create_model(recipe, spec, num_classes=3)
    assert for_model(recipe, model).resolution == spec.input_size == 16
    parts = build(recipe, model, steps_per_epoch=2)
    assert parts.resolution == parts.eval_resolution == 16
    assert parts.train_transform(Image.new("RGB", (40, 40))).shape == (3, 16, 16)
    timm_model = create_model(recipe, "test_resnet", num_classes=3)
    assert build(recipe, timm_model, 2).resolution == timm_model.pretrained_cfg["input_size"][-1]
    fixed = dataclasses.replace(recipe, resolution=24)
    assert for_model(fixed, model).resolution == 24 and build(fixed, model, 2).resolution == 24
    bare = build(recipe, nn.Linear(4, 3), 2)
    assert bare.resolution == 224 and "states no input size" in bare.notes[0]


def test_yaml_quirks_and_lr_scaling():
    r = Recipe.from_dict({"lr": "1e-3", "ema_decay": 0, "batch_size": 64, "lr_batch_size": 256})
    assert r.lr == 1e-3 and r.ema_decay is None
    assert r.scaled_lr == pytest.approx(0.25e-3)
    assert dataclasses.replace(r, lr_scaling="sqrt").scaled_lr == pytest.approx(0.5e-3)
    assert dataclasses.replace(r, lr_scaling="none").scaled_lr == pytest.approx(1e-3)


# ------------------------------------------------------------ create_model
def test_create_model_timm_applies_dropout_and_drop_path():
    recipe = dataclasses.replace(Recipe.load("fbnetv3"), dropout=0.3, drop_path=0.1)
    model = create_model(recipe, "test_resnet", num_classes=10)
    assert model.drop_rate == 0.3
    assert any(type(m).__name__ == "DropPath" for m in model.modules())
    assert missing_regularisers(recipe, model) == [] and "recipe_applied" not in vars(model)
    assert regulariser_kwargs(recipe) == {"drop_rate": 0.3, "drop_path_rate": 0.1}
    assert regulariser_kwargs(recipe, torchvision=True) == {
        "dropout": 0.3,
        "stochastic_depth_prob": 0.1,
    }


def test_create_model_zoo_name_and_arch_yaml(tmp_path):
    from fbnetv3_zoo import ArchSpec, FBNetV3

    recipe = Recipe.load("fbnetv3")
    model = create_model(recipe, "fbnetv3_a", num_classes=7)
    assert isinstance(model, FBNetV3) and model.num_classes == 7 and model.drop_rate == 0.2
    (tmp_path / "tiny.yaml").write_text(TINY_ARCH)
    tiny = create_model(recipe, str(tmp_path / "tiny.yaml"), num_classes=3)
    assert isinstance(tiny, FBNetV3) and tiny(torch.randn(2, 3, 16, 16)).shape == (2, 3)
    spec = ArchSpec.from_yaml(tmp_path / "tiny.yaml")
    from_spec = create_model(dataclasses.replace(recipe, drop_path=0.1), spec, num_classes=3)
    assert from_spec.drop_rate == 0.2 and any(
        type(m).__name__ == "DropPath" and m.drop_prob > 0 for m in from_spec.modules()
    )


def test_create_model_unknown_name_lists_close_matches():
    with pytest.raises(UserError, match="close matches: .*resnet18"):
        create_model(Recipe.load("baseline"), "resnet81")


def test_create_model_torchvision():
    recipe = dataclasses.replace(Recipe.load("fbnetv3"), dropout=0.3, drop_path=0.1)
    with pytest.warns(RecipeWarning, match="drop_path=0.1 could not be applied to MobileNetV3"):
        model = create_model(recipe, "torchvision/mobilenet_v3_small", num_classes=5)
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.3]
    # mobilenet has no drop path
    assert missing_regularisers(recipe, model) == ["drop_path"]
    parts = build(recipe, model, steps_per_epoch=2)
    assert parts.not_applied == ["drop_path"] and parts.num_classes == 5 and parts.ema is not None
    assert any(n.startswith("drop_path=0.1 not applied") for n in parts.notes)
    with pytest.warns(RecipeWarning, match="dropout=0.3, drop_path=0.1"):
        create_model(recipe, "torchvision/resnet18", num_classes=5)


# ------------------------------------------------------------------- build
def test_build_timm_model_composes_timm_parts():
    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy
    from timm.optim import RMSpropTF
    from timm.utils import ModelEmaV3

    recipe = dataclasses.replace(Recipe.load("fbnetv3"), resolution=32, batch_size=32, epochs=40)
    model = create_model(recipe, "test_resnet", num_classes=10)
    parts = build(recipe, model, steps_per_epoch=10)
    assert isinstance(parts.optimizer, RMSpropTF) and parts.lr == pytest.approx(0.016 / 8)
    decay = {g["weight_decay"]: g["params"] for g in parts.optimizer.param_groups}
    assert set(decay) == {0.0, 1e-5}
    assert all(p.ndim <= 1 for p in decay[0.0]) and all(p.ndim > 1 for p in decay[1e-5])
    assert isinstance(parts.mixup, Mixup) and isinstance(parts.train_loss, SoftTargetCrossEntropy)
    assert isinstance(parts.ema, ModelEmaV3) and parts.num_classes == 10
    # warmup is per update: 5 warmup epochs x 10 steps; the lr climbs, then decays to min_lr
    parts.scheduler.step_update(25)
    mid = parts.optimizer.param_groups[0]["lr"]
    parts.scheduler.step_update(400)
    assert mid < parts.lr and parts.optimizer.param_groups[0]["lr"] == pytest.approx(1e-6, rel=0.1)
    from PIL import Image

    img = Image.new("RGB", (40, 40))
    assert parts.train_transform(img).shape == (3, 32, 32)
    assert parts.eval_transform(img).shape == (3, 32, 32)


def test_build_baseline_has_no_extras():
    recipe = Recipe.load("baseline")
    parts = build(recipe, create_model(recipe, "test_resnet", num_classes=4), steps_per_epoch=3)
    assert (
        parts.mixup is None
        and parts.ema is None
        and isinstance(parts.train_loss, nn.CrossEntropyLoss)
    )
    assert type(parts.optimizer).__name__ == "SGD"


@pytest.mark.parametrize("schedule", ["step", "exponential"])
def test_step_and_exponential_schedules_decay(schedule):
    recipe = Recipe.from_dict(
        dict(schedule=schedule, decay_epochs=2, decay_rate=0.5, epochs=10, lr=0.256, batch_size=256)
    )
    parts = build(recipe, nn.Linear(4, 3), steps_per_epoch=4)
    parts.scheduler.step_update(8)  # two epochs in: one full decay either way
    assert parts.optimizer.param_groups[0]["lr"] == pytest.approx(0.128, rel=1e-6)
    parts.scheduler.step_update(4)  # one epoch: the staircase has not stepped, the smooth one has
    expected = 0.256 if schedule == "step" else 0.256 * 0.5**0.5
    assert parts.optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-6)


def test_build_is_pure_and_reports_what_a_bare_module_lacks():
    import warnings

    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recipe = Recipe.load("fbnetv3")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: the result says it
        parts = build(recipe, model, steps_per_epoch=2)
    assert parts.not_applied == ["dropout", "drop_path"]
    assert (
        "dropout=0.2, drop_path=0.2 not applied: Sequential has no such layers" in parts.notes[-1]
    )
    assert vars(model).get("drop_rate") is None and all(
        torch.equal(v, before[k]) for k, v in model.state_dict().items()
    )
    assert parts.num_classes == 10 and parts.ema is not None and parts.mixup is not None
    assert type(parts.optimizer).__name__ == "RMSpropTF"


def test_build_needs_a_class_count():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(RecipeError, match="num_classes"):
        build(Recipe.load("baseline"), model, steps_per_epoch=1)
    assert build(Recipe.load("baseline"), model, steps_per_epoch=1, num_classes=4).num_classes == 4


# --------------------------------------------------------------------- CLI
def test_cli_recipes_table_and_show(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in ("fbnetv3", "fbnetv3_proxy", "baseline", "rmsprop", "sgd"))
    assert main(["recipes", "fbnetv3"]) == 0
    assert "# paper" in capsys.readouterr().out
    assert main(["recipes", "basline"]) == 2
    assert "did you mean baseline" in capsys.readouterr().err


def test_a_recipe_is_data_and_never_imports_how_it_is_applied():
    """One way: ``recipes.apply`` reads ``Recipe``; ``recipe.py`` imports nothing of it."""
    import ast
    from pathlib import Path

    import fbnetv3_zoo.recipes.recipe as recipe_module

    tree = ast.parse(Path(recipe_module.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in imported if m and m.endswith(("apply", "build", "engine"))}
