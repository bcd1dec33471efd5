"""Crash-safe epoch commits: a kill at any point of a commit leaves a run that resumes exactly."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from fbnetv3_zoo.recipes import Recipe
from fbnetv3_zoo.recipes import checkpoints as ckpt
from fbnetv3_zoo.recipes.engine import train
from safetensors.torch import load_file
from torch import nn

STAGES = ("model.safetensors", "model_ema.safetensors", "state.pt", "manifest", "published")
ARGS = dict(data="digits:8", seed=5, progress=False)


def tiny_recipe(**changes) -> Recipe:
    """The proxy recipe (mixup, EMA, drop path, random erasing on) shrunk to seconds."""
    base = Recipe.load("fbnetv3_proxy")
    extra = dict(resolution=16, batch_size=16, epochs=2, drop_path=0.1, random_erasing=0.25)
    return dataclasses.replace(base, **{**extra, **changes})


def same_weights(a: Path, b: Path) -> None:
    for name in (ckpt.WEIGHTS_FILE, ckpt.EMA_FILE):
        x, y = load_file(a / name), load_file(b / name)
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), name


def timeless(epochs: list[dict]) -> list[dict]:
    """Epoch records without their timings (the only values a resume may change)."""
    return [{k: v for k, v in e.items() if k not in ("images_per_s", "epoch_s")} for e in epochs]


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory) -> tuple[Path, dict[str, Path], dict]:
    """One uninterrupted 2-epoch run, with a copy of its folder after each step of epoch 2's commit.

    Each copy is exactly what ``kill -9`` at that moment leaves on disk: the commit
    writes every file (and fsyncs it) before the hook runs.
    """
    root = tmp_path_factory.mktemp("commit")
    copies: dict[str, Path] = {}

    def snapshot(stage: str, epoch: int) -> None:
        if epoch == 2:
            copies[stage] = root / f"killed-after-{stage}"
            shutil.copytree(root / "run", copies[stage], symlinks=True)

    summary = train(
        "test_resnet", tiny_recipe(), out_dir=root / "run", commit_hook=snapshot, **ARGS
    )
    return root / "run", copies, summary


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_a_kill_inside_the_commit_resumes_bit_identical(snapshots, stage):
    full, copies, summary = snapshots
    killed = copies[stage]
    committed = json.loads((killed / ckpt.MANIFEST).read_text())["epoch"]
    assert committed == (1 if STAGES.index(stage) < STAGES.index("manifest") else 2)
    resumed = train("test_resnet", tiny_recipe(), out_dir=killed, resume=True, **ARGS)
    assert resumed["epochs_done"] == 2
    same_weights(full, killed)
    assert timeless(resumed["epochs"]) == timeless(summary["epochs"])
    folders = sorted(p.name for p in (killed / ckpt.FOLDER).iterdir())
    assert folders == ["epoch-0002"]  # older epochs cleaned after the commit
    assert not list(killed.glob(".*.tmp*"))
    state = torch.load(killed / ckpt.STATE_FILE, weights_only=True)
    assert state["epoch"] == 2


@pytest.mark.slow
def test_a_real_kill_between_the_writes_resumes(tmp_path, snapshots):
    """A subprocess dies (os._exit) after writing epoch 2's weights, before its state."""
    full, _, _ = snapshots
    out = tmp_path / "run"
    script = textwrap.dedent(
        f"""
        import dataclasses, os, torch
        torch.set_num_threads(1)
        from fbnetv3_zoo.recipes import Recipe
        from fbnetv3_zoo.recipes.engine import train
        def die(stage, epoch):
            if (stage, epoch) == ("model_ema.safetensors", 2):
                os._exit(9)
        base = Recipe.load("fbnetv3_proxy")
        recipe = dataclasses.replace(base, resolution=16, batch_size=16, epochs=2,
                                     drop_path=0.1, random_erasing=0.25)
        train("test_resnet", recipe, out_dir={str(out)!r}, data="digits:8", seed=5,
              progress=False, commit_hook=die)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr[-2000:]
    assert (out / ckpt.FOLDER / "epoch-0002" / ckpt.EMA_FILE).exists()  # died mid-commit
    assert json.loads((out / ckpt.MANIFEST).read_text())["epoch"] == 1
    with pytest.raises(ValueError, match="--resume"):
        train("test_resnet", tiny_recipe(), out_dir=out, **ARGS)
    resumed = train("test_resnet", tiny_recipe(), out_dir=out, resume=True, **ARGS)
    assert resumed["epochs_done"] == 2
    same_weights(full, out)


def test_metrics_are_strict_json_when_evaluation_gives_nan(tmp_path):
    class NaNInEval(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3 * 16 * 16, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.fc(x.flatten(1))
            return out if self.training else out * float("nan")

    recipe = tiny_recipe(epochs=1, dropout=0.0, drop_path=0.0, ema_decay=None)
    summary = train(NaNInEval(), recipe, out_dir=tmp_path, **ARGS)

    def refuse(token: str) -> None:
        raise AssertionError(f"{token} in strict JSON")

    (line,) = (tmp_path / "metrics.jsonl").read_text().splitlines()
    record = json.loads(line, parse_constant=refuse)
    assert record["val_loss"] is None and record["diverged"] is True and record["train_loss"] > 0
    json.loads((tmp_path / "summary.json").read_text(), parse_constant=refuse)
    assert summary["final_top1"] is not None


def test_state_loads_without_pickle_code(tmp_path, snapshots):
    full, _, _ = snapshots
    state = torch.load(full / ckpt.STATE_FILE, weights_only=True)
    assert state["settings"]["seed"] == 5 and state["world_size"] == 1
    assert os.path.samefile(full / ckpt.STATE_FILE, full / ckpt.FOLDER / "epoch-0002" / "state.pt")


def test_resume_refuses_another_selection_split(tmp_path, snapshots):
    """A run validated on held-out training images cannot continue on the validation split, or back."""
    _, copies, _ = snapshots
    killed = tmp_path / "killed"
    shutil.copytree(copies["published"], killed, symlinks=True)
    with pytest.raises(ckpt.ResumeError, match=r"holdout was 0.0, now 0.2"):
        train("test_resnet", tiny_recipe(), out_dir=killed, resume=True, holdout=0.2, **ARGS)
