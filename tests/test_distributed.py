"""Multi-process training for real: torchrun, 2 CPU processes on gloo, against 1 process.

The model has no batch norm and the recipe no random augmentation, so one
process and two processes with the same global batch compute the same
updates up to floating-point summation order (gradients are averaged over the
same images): the test holds them to 1e-4 relative, not to "roughly".
"""

from __future__ import annotations

import dataclasses
import json
import os
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

DATA = "digits"  # 1198 training images: 37 updates of 32 per epoch


def recipe() -> Recipe:
    """SGD with EMA and label smoothing; every per-image random draw switched off."""
    return dataclasses.replace(
        Recipe.load("baseline"),
        optimizer="sgd",
        lr=1.6,
        lr_batch_size=256,
        batch_size=32,
        epochs=3,
        warmup_epochs=0.0,
        resolution=16,
        eval_resolution=None,
        crop_pct=1.0,
        train_crop_scale=(1.0, 1.0),  # RandomResizedCrop falls back to the whole image
        hflip=0.0,
        color_jitter=0.0,
        auto_augment=None,
        random_erasing=0.0,
        interpolation="bilinear",
        mixup=0.0,
        cutmix=0.0,
        dropout=0.0,
        drop_path=0.0,
        label_smoothing=0.1,
        ema_decay=0.9,
    )


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


SCRIPT = """
import os, sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from fbnetv3_zoo.recipes.engine import train
from test_distributed import DATA, recipe, small_net

out, die_at = sys.argv[1], sys.argv[2]
def die(stage, epoch):
    if f"{{stage}}@{{epoch}}" == die_at:
        os._exit(9)
train(small_net(), recipe(), data=DATA, out_dir=out, seed=0, progress=False, commit_hook=die)
"""


def torchrun(tmp_path: Path, out: Path, die_at: str) -> subprocess.CompletedProcess:
    script = tmp_path / "run_train.py"
    script.write_text(textwrap.dedent(SCRIPT.format(tests=str(Path(__file__).parent))))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    return subprocess.run(
        [*cmd, str(script), str(out), die_at], capture_output=True, text=True, env=env, timeout=300
    )


def close_weights(a: Path, b: Path, rtol: float = 1e-4, atol: float = 1e-6) -> None:
    for name in (ckpt.WEIGHTS_FILE, ckpt.EMA_FILE):
        x, y = load_file(a / name), load_file(b / name)
        assert x.keys() == y.keys()
        for k in x:
            assert torch.allclose(x[k], y[k], rtol=rtol, atol=atol), (name, k)


@pytest.mark.slow
def test_a_killed_two_process_run_matches_one_process_and_resumes_on_one(tmp_path):
    """One torchrun launch: 2 processes train epoch 1, rank 0 dies inside epoch 2's commit.

    Epoch 1 must match a 1-process run with the same global batch; resuming the
    killed run on 1 process must end where the uninterrupted 1-process run ends.
    """
    one = train(small_net(), recipe(), data=DATA, out_dir=tmp_path / "one", seed=0, progress=False)
    out = tmp_path / "two"
    proc = torchrun(tmp_path, out, die_at="state.pt@2")
    assert proc.returncode != 0  # rank 0 died (os._exit(9)) and torchrun reported it
    assert json.loads((out / ckpt.MANIFEST).read_text())["epoch"] == 1, proc.stderr[-3000:]
    assert torch.load(out / ckpt.STATE_FILE, weights_only=True)["world_size"] == 2
    (first,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    a = one["epochs"][0]
    assert first["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
    assert first["lr"] == pytest.approx(a["lr"], rel=1e-9)  # lr follows the global batch
    assert abs(first["val_top1"] - a["val_top1"]) <= 1.0
    assert abs(first["ema_top1"] - a["ema_top1"]) <= 1.0

    resumed = train(
        small_net(), recipe(), data=DATA, out_dir=out, seed=0, progress=False, resume=True
    )
    assert resumed["epochs_done"] == 3 and one["final_top1"] > 40  # it learns: a real comparison
    assert torch.load(out / ckpt.STATE_FILE, weights_only=True)["world_size"] == 1
    for x, y in zip(one["epochs"], resumed["epochs"], strict=True):
        assert y["train_loss"] == pytest.approx(x["train_loss"], rel=1e-4)
        assert abs(y["val_top1"] - x["val_top1"]) <= 1.0
    close_weights(tmp_path / "one", out)
