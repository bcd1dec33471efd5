"""The ``--task`` parts of ``fbnetv3 train`` and ``fbnetv3 validate`` (detection, segmentation).

Standard library only at import time, like ``cli.py``.
"""

from __future__ import annotations

import argparse
from typing import Any

TASK_CHOICES = ("classification", "detection", "segmentation")

# The embedded sets' defaults where --epochs / --batch-size / --set lr are not given (a
# recipe's own epochs, 400 for fbnetv3, are for ImageNet), chosen by measuring the demo
# commands: benchmarks/results/task_demos.md.  Segmentation raises the fbnetv3 preset's
# RMSProp rate 4x: at the preset's own rate its first epochs stayed at the background-only
# predictor's mIoU; the change is recorded in the run's recipe like any --set.
DEMO_DEFAULTS: dict[str, dict[str, float]] = {
    "digits-det": dict(epochs=5, batch_size=8),
    "digits-seg": dict(epochs=12, batch_size=16, lr=0.064),
}


def add_task_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--task",
        choices=TASK_CHOICES,
        default="classification",
        help="what the model does (default: classification). detection: a detector name "
        "(fasterrcnn_fbnetv3_a_fpn, torchvision/<name>) on digits-det or a COCO folder "
        "(annotations/instances_{train,val}.json + images), scored by COCO AP; segmentation: "
        "a segmenter (lraspp_fbnetv3_a, torchvision/<name>) on digits-seg or a VOC folder, "
        "scored by mIoU",
    )


def demo_changes(args: argparse.Namespace) -> dict[str, Any]:
    """Recipe changes for an embedded set's measured defaults (flags given by the user win)."""
    if args.task == "classification":
        return {}
    found = dict(DEMO_DEFAULTS.get(str(args.data), {}))
    if getattr(args, "recipe", None) is not None:  # the lr was measured for the default preset
        found.pop("lr", None)
    return {k: v for k, v in found.items() if getattr(args, k, None) is None}


def print_train(s: dict[str, Any], recipe_name: str) -> None:
    """The one-line result of a detection / segmentation run."""
    head = s["headline"]
    final, ema = s.get(f"final_{head}"), s.get(f"ema_{head}")
    ema_text = f", EMA {head} {ema:.2f}" if ema is not None else ""
    final_text = f"{final:.2f}" if final is not None else "-"
    print(
        f"{s['model']} / {recipe_name} on {s['data']} ({s['task']}): epoch {s['epochs_done']}/"
        f"{s['epochs_planned']}, {head} {final_text}{ema_text}, {s['images_per_s']:.1f} images/s, "
        f"{s['wall_s']:.1f} s"
    )
    if s.get("not_applied"):
        print(f"recipe fields not applied: {', '.join(s['not_applied'])}")


def cmd_validate_task(args: argparse.Namespace) -> int:
    from .task_validate import validate_task

    r = validate_task(
        args.task,
        args.model,
        None if args.data == "digits" else args.data,  # the classification default: the run's
        checkpoint=args.checkpoint,
        batch_size=args.batch_size,
        data_root=args.data_root,
        workers=args.workers,
        device=args.device,
        progress=not args.no_progress,
    )
    print(f"settings: {r['settings_from']}")
    keys = [k for k in r if k.startswith(("AP", "mask_AP")) or k in ("miou", "pixel_acc")]
    numbers = ", ".join(f"{k} {r[k]:.2f}" if r[k] is not None else f"{k} -" for k in keys)
    print(
        f"{r['model']} on {r['data']} ({r['images']} images): {numbers}, {r['images_per_s']:.1f} images/s"
    )
    return 0
