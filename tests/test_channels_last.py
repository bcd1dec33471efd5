"""``--channels-last``: NHWC training gives the NCHW run's numbers, resumes exactly, reaches the search."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import yaml
from bench_script import load_script
from conftest import TINY_ARCH
from fbnetv3_zoo.recipes import Recipe
from fbnetv3_zoo.recipes.engine import train
from fbnetv3_zoo.search.config import ConfigError, SearchConfig
from fbnetv3_zoo.search.driver import run_search
from fbnetv3_zoo.search.objective import Trial
from fbnetv3_zoo.search.trainer import EvalTask, evaluate
from safetensors.torch import load_file
from test_recipe_search import _config, fake_evaluate

from fbnetv3_zoo import ArchSpec, create_model
from fbnetv3_zoo.cli import main


def tiny_recipe(**changes) -> Recipe:
    """Mixup, EMA, drop path and RMSProp on (every part that touches the weights), in seconds."""
    base = Recipe.load("fbnetv3_proxy")
    extra = dict(resolution=16, batch_size=16, epochs=2, drop_path=0.1)
    return dataclasses.replace(base, **{**extra, **changes})


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(ArchSpec.from_dict(yaml.safe_load(TINY_ARCH)["arch"]), num_classes=10)


@pytest.mark.slow
def test_nhwc_training_matches_nchw_up_to_rounding_and_records_its_format(tmp_path):
    args = dict(data="digits:8", seed=2, progress=False)
    nchw = train(tiny_model(), tiny_recipe(), out_dir=tmp_path / "nchw", **args)
    model = tiny_model()
    nhwc = train(model, tiny_recipe(), out_dir=tmp_path / "nhwc", channels_last=True, **args)
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    for a, b in zip(nchw["epochs"], nhwc["epochs"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)
    for key in ("final_top1", "ema_top1"):  # 599 validation images: at most one flips
        assert abs(nchw[key] - nhwc[key]) <= 100 / 599 + 1e-9, key
    a, b = (load_file(tmp_path / run / "model.safetensors") for run in ("nchw", "nhwc"))
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-3, rtol=1e-3) for k in a)
    summary = json.loads((tmp_path / "nhwc" / "summary.json").read_text())
    assert [s["memory_format"] for s in summary["sessions"]] == ["channels_last"]
    summary = json.loads((tmp_path / "nchw" / "summary.json").read_text())
    assert [s["memory_format"] for s in summary["sessions"]] == ["contiguous"]


@pytest.mark.slow
def test_a_killed_nhwc_run_resumes_bit_identical(tmp_path):
    args = dict(data="digits:8", seed=3, progress=False, channels_last=True)
    full = train("test_resnet", tiny_recipe(), out_dir=tmp_path / "full", **args)
    train("test_resnet", tiny_recipe(), out_dir=tmp_path / "part", stop_after_epochs=1, **args)
    resumed = train("test_resnet", tiny_recipe(), out_dir=tmp_path / "part", resume=True, **args)
    for name in ("model.safetensors", "model_ema.safetensors"):
        a, b = load_file(tmp_path / "full" / name), load_file(tmp_path / "part" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert [e["train_loss"] for e in resumed["epochs"]] == [e["train_loss"] for e in full["epochs"]]


@pytest.mark.slow
def test_cli_train_flag_and_its_checkpoint_validates_in_nchw(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(TINY_ARCH)
    out = tmp_path / "run"
    argv = ["train", "--model", str(tmp_path / "tiny.yaml"), "--recipe", "fbnetv3_proxy"]
    argv += ["--data", "digits:10", "--epochs", "1", "--resolution", "16", "--batch-size", "16"]
    assert main([*argv, "--channels-last", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sessions"][-1]["memory_format"] == "channels_last"
    capsys.readouterr()
    val = ["validate", "--checkpoint", str(out / "model.safetensors"), "--data", "digits"]
    assert main([*val, "--no-progress"]) == 0
    top1 = float(capsys.readouterr().out.split("top-1 ")[1].split(",")[0])
    assert abs(top1 - summary["final_top1"]) <= 100 / 599 + 0.01


def test_search_setting_is_checked_and_reaches_the_trial():
    with pytest.raises(ConfigError, match="channels_last"):
        SearchConfig(channels_last="yes")
    task = EvalTask(1, {"model": "test_resnet", "input_size": 16}, {}, "baseline", "digits:3", 1)
    assert Trial.from_task(task).channels_last is False
    assert Trial.from_task(dataclasses.replace(task, channels_last=True)).channels_last is True


@pytest.mark.slow
def test_every_training_of_a_search_gets_the_flag(tmp_path, monkeypatch):
    import fbnetv3_zoo.recipes.engine as engine

    seen = []
    real = engine.train

    def spy(*args, **kw):
        seen.append(kw.get("channels_last"))
        return real(*args, **kw)

    monkeypatch.setattr(engine, "train", spy)
    task = EvalTask(1, {"model": "test_resnet", "input_size": 16}, {}, "baseline", "digits:3", 1)
    assert evaluate(dataclasses.replace(task, channels_last=True))["status"] == "done"
    assert seen == [True]

    tasks = []

    def recording(task: EvalTask) -> dict:
        tasks.append(task.channels_last)
        return fake_evaluate(task)

    run_search(_config(channels_last=True), tmp_path / "s", evaluator=recording, progress=False)
    assert tasks and set(tasks) == {True}  # the proxy check's full-length trainings included


def test_search_cli_flag(monkeypatch, tmp_path):
    import fbnetv3_zoo.search.driver as driver

    class Stop(Exception):
        pass

    def seen(config, out, progress=True):
        raise Stop(config.channels_last)

    monkeypatch.setattr(driver, "run_search", seen)
    for flags, expected in (([], False), (["--channels-last"], True)):
        with pytest.raises(Stop) as stop:
            main(["search", "--out", str(tmp_path / "x"), "--quiet", *flags])
        assert stop.value.args == (expected,)


@pytest.mark.slow
def test_memory_format_benchmark_tiny(tmp_path):
    out = tmp_path / "memory_format.md"
    argv = ["--models", "test_resnet@16", "--rounds", "1", "--epochs", "1"]
    assert load_script("memory_format").main([*argv, "--out", str(out)]) == 0
    text = out.read_text()
    assert f"`python benchmarks/memory_format.py {' '.join(argv)} --out {out}`" in text
    row = next(line for line in text.splitlines() if line.startswith("| test_resnet |"))
    nchw, nhwc, ratio = (float(c) for c in row.strip("|").split("|")[2:])
    rounding = nchw / nhwc * (0.0005 / nchw + 0.0005 / nhwc) + 0.005  # cells are rounded
    assert abs(ratio - nchw / nhwc) <= rounding
