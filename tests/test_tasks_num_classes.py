"""``fbnetv3 train --num-classes``: a VOC folder with its own class count, checked before training."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_tasks_training import TINY

from fbnetv3_zoo.cli import main
from fbnetv3_zoo.tasks import write_digits_sets

pytest.importorskip("pycocotools")


@pytest.mark.slow
def test_segmentation_with_more_classes_trains_and_validates_with_them(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    seg = write_digits_sets(tmp_path / "digits", TINY) / "seg"  # a VOC folder of 11 classes
    out = tmp_path / "run"
    common = ["--task", "segmentation", "--model", "lraspp_fbnetv3_a", "--data", str(seg)]
    flags = ["--epochs", "1", "--batch-size", "4", "--no-progress", "--out", str(out)]
    assert main(["train", *common, *flags, "--num-classes", "12"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evaluation"]["num_classes"] == 12
    capsys.readouterr()
    checkpoint = str(out / "model.safetensors")
    assert main(["validate", "--task", "segmentation", "--checkpoint", checkpoint]) == 0
    assert f"miou {summary['final_miou']:.2f}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("task", "sub", "model", "count", "message"),
    [
        ("segmentation", "seg", "lraspp_fbnetv3_a", "5", "class index .* is >= the 5 classes"),
        ("detection", "det", "fasterrcnn_fbnetv3_a_fpn", "3", "num_classes=3: the data .* has 11"),
        ("classification", None, "resnet18", "0", "--num-classes"),
    ],
)
def test_too_few_classes_is_one_line_before_anything_is_written(
    task: str, sub: str | None, model: str, count: str, message: str, tmp_path: Path, capsys
) -> None:
    data = str(write_digits_sets(tmp_path / "digits", TINY) / sub) if sub else "digits"
    out = tmp_path / "never"
    args = ["train", "--task", task, "--model", model, "--data", data, "--out", str(out)]
    assert main([*args, "--num-classes", count, "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err
    assert not out.exists()
