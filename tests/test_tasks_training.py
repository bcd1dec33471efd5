"""Detection and segmentation through the training engine (issue 39).

Tiny canvases and few proposals keep each training to seconds; a run stopped
after its first epoch and resumed ends byte-identical to an uninterrupted
one, and ``validate`` of its checkpoint prints train's own numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fbnetv3_zoo.recipes import Recipe
from fbnetv3_zoo.recipes.engine import train

from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.tasks import DigitsSetSettings, write_digits_sets

pytest.importorskip("pycocotools")

TINY = DigitsSetSettings(train_images=4, val_images=2, canvas=48, min_size=14, max_size=22)
DETECTOR = dict(
    min_size=48,
    max_size=48,
    rpn_pre_nms_top_n_train=100,
    rpn_post_nms_top_n_train=30,
    rpn_pre_nms_top_n_test=100,
    rpn_post_nms_top_n_test=20,
    box_batch_size_per_image=16,
)
# Mask R-CNN pastes a 28 px mask through four 256-channel convolutions per detection: two
# proposals per image (up to 20 detections over its 10 classes) keep its evaluations short
MASK_DETECTOR = {**DETECTOR, "rpn_post_nms_top_n_test": 2}
CASES = {
    "detection": ("fasterrcnn_fbnetv3_a_fpn", "det", {"model_options": DETECTOR}, "AP"),
    "segmentation": ("lraspp_fbnetv3_a", "seg", {"size": 64}, "miou"),
}


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_digits_sets(tmp_path_factory.mktemp("tasks") / "digits", TINY)


def _recipe() -> Recipe:
    base = Recipe.load("fbnetv3").to_dict()  # EMA, warmup, RMSProp, mixup (not applied), ...
    return Recipe.from_dict({**base, "epochs": 2, "batch_size": 4, "lr": 0.05}, source="test")


def _train(task: str, sets: Path, out: Path, **kw) -> dict:
    model, sub, options, _ = CASES[task]
    return train(
        model,
        _recipe(),
        data=sets / sub,
        out_dir=out,
        task=task,
        task_options=options,
        progress=False,
        **kw,
    )


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(CASES))
def test_resume_equals_uninterrupted_and_validate_equals_train(
    task: str, sets: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from fbnetv3_zoo.cli import main

    whole = _train(task, sets, tmp_path / "whole")
    _train(task, sets, tmp_path / "cut", stop_after_epochs=1)
    resumed = _train(task, sets, tmp_path / "cut", resume=True)
    for name in ("model.safetensors", "model_ema.safetensors"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "cut" / name).read_bytes()
    head = CASES[task][3]
    assert resumed[f"final_{head}"] == whole[f"final_{head}"] is not None
    assert whole["task"] == task and whole["headline"] == head
    assert {"mixup", "auto_augment"} <= set(whole["not_applied"])  # the fbnetv3 preset's
    assert ("label_smoothing" in whole["not_applied"]) == (task == "detection")
    assert len(whole["epochs"]) == 2 and whole["epochs"][0][f"ema_{head}"] is not None

    checkpoint = tmp_path / "whole" / "model.safetensors"
    data = str(sets / CASES[task][1])
    assert main(["validate", "--task", task, "--checkpoint", str(checkpoint), "--data", data]) == 0
    out = capsys.readouterr().out
    assert f"{head} {whole[f'final_{head}']:.2f}" in out and "summary.json" in out
    from fbnetv3_zoo.recipes.task_validate import validate_task

    again = validate_task(task, None, data, checkpoint=checkpoint)
    assert again[head] == whole[f"final_{head}"]  # the same numbers, not just the same digits
    assert validate_task(task, None, None, checkpoint=checkpoint)[head] == again[head]  # run's data


@pytest.mark.slow
def test_a_run_refuses_resuming_as_another_task_and_validate_checks_the_task(
    sets: Path, tmp_path: Path
) -> None:
    from fbnetv3_zoo.recipes.task_validate import validate_task

    _train("segmentation", sets, tmp_path / "seg", stop_after_epochs=1)
    summary = json.loads((tmp_path / "seg" / "summary.json").read_text())
    assert summary["evaluation"]["task"] == "segmentation"
    with pytest.raises(UserError, match="--task was 'segmentation', now 'detection'"):
        _train("detection", sets, tmp_path / "seg", resume=True)
    with pytest.raises(UserError, match="was a segmentation run, not --task detection"):
        validate_task(
            "detection", None, sets / "det", checkpoint=tmp_path / "seg" / "model.safetensors"
        )


def test_unknown_task_and_non_detector_are_one_line_errors(sets: Path, tmp_path: Path) -> None:
    from fbnetv3_zoo.recipes.tasks import make_task

    with pytest.raises(UserError, match="--task 'pose': choose one of classification"):
        make_task("pose")
    with pytest.raises(UserError, match="'resnet18' is not a detector; choose one of"):
        train("resnet18", _recipe(), data=sets / "det", task="detection", progress=False)
    with pytest.raises(UserError, match="evaluation.model_options.min_size"):
        make_task("detection", {"model_options": {"min_size": "big"}})
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
def test_detection_benchmark_smoke(tmp_path: Path) -> None:
    """benchmarks/detection.py --smoke: one tiny training, the cost columns, the table."""
    from bench_script import load_script

    out = tmp_path / "detection.md"
    argv = ["--smoke", "--out", str(out), "--data-root", str(tmp_path)]
    assert load_script("detection").main(argv) == 0  # in this process: no second torch import
    text = out.read_text()
    assert "| fasterrcnn_fbnetv3_a_fpn | fbnetv3 |" in text and "backbone+FPN MMACs" in text
    assert "Paired difference" in text


def test_embedded_set_defaults_yield_to_flags() -> None:
    """The demo's epochs/batch apply only where no flag was given, and never to classification."""
    import argparse

    from fbnetv3_zoo.recipes.task_cli import DEMO_DEFAULTS, demo_changes

    args = argparse.Namespace(task="detection", data="digits-det", epochs=None, batch_size=2)
    changes = demo_changes(args)
    assert (
        changes["epochs"] == DEMO_DEFAULTS["digits-det"]["epochs"] and "batch_size" not in changes
    )
    assert demo_changes(argparse.Namespace(task="detection", data="/my/coco", epochs=None)) == {}
    seg = argparse.Namespace(task="segmentation", data="digits-seg", epochs=None, batch_size=None)
    assert demo_changes(seg)["lr"] == DEMO_DEFAULTS["digits-seg"]["lr"]
    seg.recipe = "baseline"  # another recipe keeps its own learning rate
    assert "lr" not in demo_changes(seg)
    assert demo_changes(argparse.Namespace(task="classification", data="digits-det")) == {}


@pytest.mark.slow
def test_mask_rcnn_trains_on_masks_and_reports_mask_ap(sets: Path, tmp_path: Path) -> None:
    """A detector with a mask head gets the masks as targets and is scored on them too."""
    from fbnetv3_zoo.recipes.task_validate import validate_task

    recipe = Recipe.from_dict({**_recipe().to_dict(), "epochs": 1}, source="test")
    s = train(
        "maskrcnn_fbnetv3_a_fpn",
        recipe,
        data=sets / "det",
        out_dir=tmp_path / "mask",
        task="detection",
        task_options={"model_options": MASK_DETECTOR},
        progress=False,
    )
    assert s["final_mask_AP"] is not None and s["final_AP"] is not None
    again = validate_task(
        "detection", None, sets / "det", checkpoint=tmp_path / "mask" / "model.safetensors"
    )
    assert again["mask_AP"] == s["final_mask_AP"] and again["AP"] == s["final_AP"]
