"""The training engine: CLI run on digits, exact resume, validation, bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_ARCH
from fbnetv3_zoo.recipes import Recipe
from fbnetv3_zoo.recipes.engine import TrainingDiverged, train
from safetensors.torch import load_file
from torch import nn

from fbnetv3_zoo.cli import main
from fbnetv3_zoo.data import digits_arrays, load_data


def tiny_recipe(**changes) -> Recipe:
    """The proxy recipe with every stochastic part on, shrunk to seconds."""
    base = Recipe.load("fbnetv3_proxy")
    extra = dict(resolution=16, batch_size=16, epochs=2, drop_path=0.1, random_erasing=0.25)
    return dataclasses.replace(base, **{**extra, **changes})


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> Path:
    """One 2-epoch CLI training run of a tiny zoo network (an ArchSpec YAML) on digits."""
    root = tmp_path_factory.mktemp("cli")
    (root / "tiny.yaml").write_text(TINY_ARCH)
    out = root / "run"
    argv = ["train", "--model", str(root / "tiny.yaml"), "--recipe", "fbnetv3_proxy"]
    argv += ["--data", "digits:10", "--epochs", "2", "--resolution", "16", "--batch-size", "16"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    return out


def test_digits_split_is_fixed_and_documented():
    xt, yt, xv, yv = digits_arrays()
    assert (len(xt), len(xv)) == (1198, 599) and xt.shape[1:] == (8, 8)
    xs, ys, xv2, _ = digits_arrays(train_per_class=20)
    assert len(xs) == 200 and sorted(set(ys.tolist())) == list(range(10))
    assert (xv2 == xv).all()  # the validation set does not depend on the low-data cut
    splits = load_data("digits:3", resolution=24)
    img, label = splits.train[0]
    assert img.size == (24, 24) and img.mode == "RGB" and splits.num_classes == 10


def test_cli_train_writes_a_complete_run(cli_run, capsys):
    lines = (cli_run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]
    summary = json.loads((cli_run / "summary.json").read_text())
    for key in (
        "final_top1",
        "final_top5",
        "ema_top1",
        "ema_top5",
        "best_top1",
        "images_per_s",
        "wall_s",
    ):
        assert isinstance(summary[key], float), key
    assert summary["skipped_files"] == 0 and summary["epochs_done"] == 2
    assert (cli_run / "curves.png").stat().st_size > 0
    state = torch.load(cli_run / "state.pt", weights_only=True)
    assert state["epoch"] == 2 and state["settings"]["epochs"] == 2
    assert load_file(cli_run / "model_ema.safetensors")
    assert not list(cli_run.glob(".*.tmp*"))  # atomic writes leave no temporaries


def test_cli_refuses_to_overwrite_a_run_and_resume_of_a_finished_run_is_a_no_op(cli_run, capsys):
    argv = [
        "train",
        "--model",
        str(cli_run.parent / "tiny.yaml"),
        "--recipe",
        "fbnetv3_proxy",
        "--data",
        "digits:10",
    ]
    argv += [
        "--epochs",
        "2",
        "--resolution",
        "16",
        "--batch-size",
        "16",
        "--out",
        str(cli_run),
        "--no-progress",
    ]
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err
    before = (cli_run / "model.safetensors").read_bytes()
    summary = (cli_run / "summary.json").read_bytes()
    assert main([*argv, "--resume"]) == 0
    assert (cli_run / "model.safetensors").read_bytes() == before
    assert (cli_run / "summary.json").read_bytes() == summary  # wall_s included


def test_validate_an_engine_checkpoint(cli_run, capsys):
    summary = json.loads((cli_run / "summary.json").read_text())
    argv = [
        "validate",
        "--model",
        str(cli_run.parent / "tiny.yaml"),
        "--data",
        "digits",
        "--no-progress",
    ]
    argv += [
        "--checkpoint",
        str(cli_run / "model.safetensors"),
        "--input-size",
        "16",
        "--crop-pct",
        "1.0",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"top-1 {summary['final_top1']:.2f}" in out and "images/s" in out


def test_summary_records_the_recipe_as_run_and_how_it_was_made(cli_run):
    summary = json.loads((cli_run / "summary.json").read_text())
    given, ran = summary["recipe_given"], summary["recipe"]
    assert given["warmup_epochs"] > ran["warmup_epochs"] == 0.5  # shrunk to a quarter of 2
    assert any(n.startswith("warmup_epochs:") for n in summary["recipe_notes"])
    assert summary["command"].startswith("fbnetv3 train --model ")
    assert summary["processes"] == 1 and summary["device"] == "cpu"
    assert {"python", "torch", "timm", "fbnetv3-zoo"} <= set(summary["versions"])
    assert len(summary["sessions"]) == 1
    assert summary["weights"] == ["model.safetensors", "model_ema.safetensors"]
    ev = summary["evaluation"]
    assert (ev["input_size"], ev["image_resolution"], ev["crop_pct"]) == (16, 16, ran["crop_pct"])


@pytest.mark.slow
def test_validate_reproduces_train_for_raw_and_ema_weights(tmp_path, capsys):
    """No transform flags: a run's checkpoint is measured with the run's own evaluation."""
    out = tmp_path / "run"
    argv = ["train", "--model", "test_resnet", "--recipe", "fbnetv3", "--data", "digits:10"]
    argv += ["--epochs", "1", "--resolution", "16", "--batch-size", "16", "--no-progress"]
    argv += ["--set", "crop_pct=0.6", "--set", "interpolation=bicubic", "--set", "ema_decay=0.9"]
    assert main([*argv, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    capsys.readouterr()
    for name, key in (("model.safetensors", "final"), ("model_ema.safetensors", "ema")):
        val = ["validate", "--model", "test_resnet", "--data", "digits", "--no-progress"]
        assert main([*val, "--checkpoint", str(out / name)]) == 0
        text = capsys.readouterr().out
        assert str(out / "summary.json") in text and "crop 0.6, bicubic" in text
        assert f"top-1 {summary[f'{key}_top1']:.2f}, top-5 {summary[f'{key}_top5']:.2f}" in text
    from fbnetv3_zoo.recipes import validate

    for name, key in (("model.safetensors", "final"), ("model_ema.safetensors", "ema")):
        r = validate("test_resnet", "digits", checkpoint=out / name)
        assert (r["top1"], r["top5"]) == (summary[f"{key}_top1"], summary[f"{key}_top5"])
    own = validate(
        "test_resnet", "digits", checkpoint=out / "model.safetensors", run_transform=False
    )
    assert own["transform_from"] == "the model's pretrained config" and own["crop_pct"] != 0.6


@pytest.mark.slow
def test_resume_matches_an_uninterrupted_run(tmp_path):
    recipe = tiny_recipe()
    args = dict(data="digits:8", seed=3, progress=False, eval_every=2)
    full = train("test_resnet", recipe, out_dir=tmp_path / "full", **args)
    part = train("test_resnet", recipe, out_dir=tmp_path / "part", stop_after_epochs=1, **args)
    assert part["epochs_done"] == 1
    resumed = train("test_resnet", recipe, out_dir=tmp_path / "part", resume=True, **args)
    assert resumed["epochs_done"] == 2
    for name in ("model.safetensors", "model_ema.safetensors"):
        a, b = load_file(tmp_path / "full" / name), load_file(tmp_path / "part" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert resumed["final_top1"] == full["final_top1"]
    assert [e["train_loss"] for e in resumed["epochs"]] == [e["train_loss"] for e in full["epochs"]]


def test_same_seed_repeats_in_memory_run():
    recipe = tiny_recipe(epochs=1)
    a = train("test_resnet", recipe, data="digits:4", seed=1, progress=False)
    b = train("test_resnet", recipe, data="digits:4", seed=1, progress=False)
    assert a["epochs"][0]["train_loss"] == b["epochs"][0]["train_loss"]


class NaNAfter(nn.Module):
    """A tiny classifier whose training output turns NaN after ``steps`` forward passes."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 16 * 16, 10)
        self.steps = steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x.flatten(1))
        if self.training:
            self.steps -= 1
            if self.steps < 0:
                out = out * float("nan")
        return out


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    recipe = tiny_recipe(dropout=0.0, drop_path=0.0)
    steps_per_epoch = 80 // 16
    with pytest.raises(TrainingDiverged, match=r"epoch 2.*model.safetensors \(epoch 1\)"):
        train(
            NaNAfter(steps_per_epoch + 1), recipe, data="digits:8", out_dir=tmp_path, progress=False
        )
    with open(tmp_path / "model.safetensors", "rb") as f:
        assert b'"epoch":"1"' in f.read(400)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def _png(path: Path, value: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 12), (value, value, value)).save(path)


def test_image_folder_skips_unreadable_files(tmp_path):
    for split, n in (("train", 6), ("val", 3)):
        for c, value in (("dark", 20), ("light", 230)):
            for i in range(n):
                _png(tmp_path / split / c / f"{i}.png", value)
    (tmp_path / "train" / "dark" / "broken.png").write_bytes(b"not an image")
    result = train(
        "test_resnet", tiny_recipe(epochs=1, batch_size=4), data=tmp_path, progress=False
    )
    assert result["skipped_files"] == 1 and result["skipped_paths"][0].endswith("broken.png")
    assert result["final_top1"] is not None


def test_bad_data_and_names_exit_2_with_a_clear_message(tmp_path, capsys):
    base = ["train", "--recipe", "fbnetv3_proxy", "--epochs", "1", "--no-progress"]
    assert main([*base, "--model", "test_resnet", "--data", str(tmp_path / "missing")]) == 2
    assert "dataset directory not found" in capsys.readouterr().err
    _png(tmp_path / "folder" / "a" / "0.png", 0)
    (tmp_path / "folder" / "empty").mkdir()
    assert main([*base, "--model", "test_resnet", "--data", str(tmp_path / "folder")]) == 2
    assert "empty" in capsys.readouterr().err
    assert main([*base, "--model", "tes_resnet", "--data", "digits:2"]) == 2
    assert "test_resnet" in capsys.readouterr().err
    assert main([*base, "--model", "test_resnet", "--recipe", "fbnetv4"]) == 2
    assert "did you mean fbnetv3" in capsys.readouterr().err
    assert main([*base, "--model", "test_resnet", "--set", "dropot=0.1"]) == 2
    assert "did you mean dropout" in capsys.readouterr().err
    assert (
        main([*base, "--model", "test_resnet", "--data", "cifar10", "--data-root", str(tmp_path)])
        == 2
    )
    assert "--download" in capsys.readouterr().err


def test_a_folder_made_by_one_tool_is_refused_by_the_other(cli_run, tmp_path, capsys):
    """`search --out <train run>` and `train --out <search run>`: one line, nothing changed."""
    from search_result import write_search_run

    from fbnetv3_zoo.files.outputs import write_marker

    search_run = tmp_path / "s1"
    write_search_run(search_run)
    write_marker(search_run, "search")  # as `fbnetv3 search` leaves it

    def snapshot(folder: Path) -> dict[str, bytes]:
        return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    for folder, argv in (
        (cli_run, ["search", "--out", str(cli_run), "--budget", "8", "--quiet"]),
        (
            search_run,
            ["train", "--model", "test_resnet", "--epochs", "1", "--out", str(search_run)],
        ),
    ):
        before = snapshot(folder)
        assert main([*argv, "--no-progress"] if argv[0] == "train" else argv) == 2
        err = capsys.readouterr().err.strip()
        other = "train" if argv[0] == "search" else "search"
        assert len(err.splitlines()) == 1 and f"made by `fbnetv3 {other}`" in err, err
        assert snapshot(folder) == before


def test_search_result_recipe_is_the_schedule_it_was_trained_on(tmp_path):
    import yaml
    from search_result import write_search_run

    doc = yaml.safe_load(write_search_run(tmp_path / "s").read_text())
    assert doc["recipe"]["epochs"] == doc["measured"]["schedule_epochs"] == 1


@pytest.mark.slow
def test_a_search_records_the_command_and_versions_that_started_it(tmp_path, capsys):
    import yaml

    out = tmp_path / "s"
    argv = ["search", "--out", str(out), "--budget", "2", "--initial", "1", "--epochs", "1"]
    argv += ["--constraint", "macs<=1M", "--strategy", "random", "--data", "digits:2"]
    assert main([*argv, "--quiet"]) == 0, capsys.readouterr().err
    (best,) = (out / "best").glob("*.yaml")
    made_by = yaml.safe_load(best.read_text())["search"]["made_by"]
    assert made_by["command"].startswith("fbnetv3 search --out ") and "torch" in made_by["versions"]
    before = best.read_bytes()
    assert main(["search-report", str(out)]) == 0
    assert best.read_bytes() == before  # re-rendering keeps the file as the search wrote it
