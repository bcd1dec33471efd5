"""Evaluate a model on a dataset: ``fbnetv3 validate`` from Python.

The model is any name ``Recipe.create_model`` takes; weights come from
``pretrained`` or a checkpoint file.  Checkpoints are read by
``fbnetv3_zoo.weights.checkpoint.read_checkpoint`` (safetensors or weights-only torch
files; EMA weights preferred), the one unwrapping rule of the package.

A checkpoint inside a training run folder is measured with the evaluation
transform that run recorded (crop, resize, interpolation, mean/std, input
size), so ``validate`` prints the run's own final numbers; any other model
uses its pretrained config's transform.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbnetv3_zoo.errors import UserError

if TYPE_CHECKING:
    from torch import nn

DEFAULT_CLASSES = 1000  # the class count of published (ImageNet) weights


def validate(
    model: str | Path | Any,
    data: str | Path = "digits",
    *,
    checkpoint: str | Path | None = None,
    pretrained: bool = False,
    num_classes: int | None = None,
    batch_size: int | None = None,
    input_size: int | None = None,
    crop_pct: float | None = None,
    data_root: str | Path | None = None,
    download: bool = False,
    workers: int = 0,
    device: str | None = None,
    progress: bool = False,
    run_transform: bool = True,
) -> dict[str, Any]:
    """Top-1/top-5 of ``model`` on ``data``'s validation split; returns a JSON-ready dict.

    The class count is the data's when a checkpoint is loaded (our own runs), else
    1000 (published weights) unless ``num_classes`` is given.  The data is checked
    before any weights are downloaded.  With ``run_transform`` a checkpoint in a
    training run folder is evaluated as that run evaluated it (``input_size`` and
    ``crop_pct`` still override); ``batch_size`` None is the run's or 64.
    """
    from torch.utils.data import DataLoader

    from fbnetv3_zoo.data import collate_skipping, load_data

    from .devices import auto_device, resolve_device
    from .evaluation import check_input_size, evaluate

    resolve_device(device)  # a bad --device fails before anything is loaded
    run_eval = run_evaluation(checkpoint) if checkpoint is not None and run_transform else None
    if batch_size is None:
        batch_size = int(run_eval[0].get("batch_size", 64)) if run_eval else 64
    _check_options(batch_size, input_size, crop_pct)
    splits = load_data(data, None, data_root, download, train=False)  # fails before downloads
    if num_classes is None:
        num_classes = splits.num_classes if checkpoint else DEFAULT_CLASSES
    net = load_model(model, num_classes=num_classes, pretrained=pretrained, checkpoint=checkpoint)
    cfg, size, image_size, transform = _eval_transform(
        net, run_eval[0] if run_eval else None, input_size, crop_pct
    )
    dev = resolve_device(device) or auto_device()
    net = net.to(dev)
    check_input_size(net, str(model), [size], dev, "--input-size")
    splits.set_transforms(None, transform, image_size)
    loader = DataLoader(splits.val, batch_size, num_workers=workers, collate_fn=collate_skipping)
    skipped: set[str] = set()
    result = evaluate(net, loader, dev, skipped, progress, "validate")
    if result["images"] == 0:
        raise UserError(f"{splits.name}: no readable image in the validation data")
    return dict(
        model=str(model),
        data=splits.name,
        input_size=size,
        crop_pct=cfg.get("crop_pct"),
        interpolation=cfg.get("interpolation"),
        transform_from=run_eval[1] if run_eval else "the model's pretrained config",
        num_classes=num_classes,
        **result,
        skipped_files=len(skipped),
        skipped_paths=sorted(skipped)[:100],
    )


def _check_options(batch_size: int, input_size: int | None, crop_pct: float | None) -> None:
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    if input_size is not None and not 8 <= input_size <= 4096:
        raise UserError(f"input size must be in [8, 4096] px, got {input_size}")
    if crop_pct is not None and not 0 < crop_pct <= 1:
        raise UserError(f"crop fraction must be in (0, 1], got {crop_pct}")


def _eval_transform(
    net: nn.Module, run_cfg: dict[str, Any] | None, input_size: int | None, crop_pct: float | None
) -> tuple[dict[str, Any], int, int, Callable]:
    """(config, input size, size of in-memory images, transform) to evaluate ``net`` with.

    ``run_cfg`` is a training run's recorded evaluation (the transform its numbers
    were measured with); without one, the model's pretrained config.
    """
    if run_cfg is not None:
        from .apply import eval_transform_from

        cfg = dict(run_cfg)
        cfg["input_size"] = input_size or cfg["input_size"]
        cfg["crop_pct"] = crop_pct or cfg["crop_pct"]
        size = int(cfg["input_size"])
        return cfg, size, int(cfg.get("image_resolution") or size), eval_transform_from(cfg)
    from timm.data import create_transform, resolve_data_config

    cfg_args: dict[str, Any] = {}
    if input_size:
        cfg_args["input_size"] = (3, input_size, input_size)
    if crop_pct:
        cfg_args["crop_pct"] = crop_pct
    cfg = resolve_data_config(cfg_args, model=net)
    size = cfg["input_size"][-1]
    return cfg, size, size, create_transform(**cfg, is_training=False)


def run_folder_of(checkpoint: str | Path) -> Path | None:
    """The training run folder holding ``checkpoint`` (top level or ``checkpoints/epoch-N/``)."""
    from fbnetv3_zoo.files.outputs import read_marker

    folder = Path(checkpoint).parent
    if folder.parent.name == "checkpoints":
        folder = folder.parent.parent
    try:
        marker = read_marker(folder)
    except UserError:  # a marker we cannot trust: the folder's records are not used
        return None
    if marker is not None and marker["tool"] != "train":
        return None
    if marker is None and not (folder / "checkpoint.json").is_file():
        return None
    return folder


def run_evaluation(checkpoint: str | Path) -> tuple[dict[str, Any], str] | None:
    """(evaluation settings, where they were read) of the run holding ``checkpoint``, if any.

    ``summary.json`` of a finished run, else the committed ``state.pt`` of a run
    that was stopped; None for a file outside a run folder or a run recorded
    before runs kept their evaluation settings.
    """
    from . import checkpoints as ckpt
    from .summary import SUMMARY_FILE, read_summary

    folder = run_folder_of(checkpoint)
    if folder is None:
        return None
    doc = read_summary(folder)
    if doc is not None and isinstance(doc.get("evaluation"), dict):
        return doc["evaluation"], str(folder / SUMMARY_FILE)
    try:
        state, _ = ckpt.read_committed(folder)
    except UserError:
        return None
    found = (state.get("settings") or {}).get("evaluation")
    return (found, str(folder / ckpt.STATE_FILE)) if isinstance(found, dict) else None


def load_model(
    name: str | Path | Any,
    num_classes: int = DEFAULT_CLASSES,
    pretrained: bool = False,
    checkpoint: str | Path | None = None,
) -> nn.Module:
    """The model in eval mode, with published weights or the checkpoint's (checked to fit)."""
    import fbnetv3_zoo

    from .apply import create_model
    from .recipe import Recipe

    model = create_model(Recipe(), name, num_classes=num_classes, pretrained=pretrained)
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise UserError(f"checkpoint not found: {checkpoint}")
        if isinstance(model, fbnetv3_zoo.FBNetV3):  # official or our layout, adapts the head
            fbnetv3_zoo.load_weights(model, checkpoint)
        else:
            load_state(model, fbnetv3_zoo.read_checkpoint(checkpoint), str(checkpoint))
    return model.eval()


def load_state(model: nn.Module, state: dict[str, Any], source: str) -> None:
    """``model.load_state_dict(state)``, refusing a misfit in one line (``check_fits``)."""
    from fbnetv3_zoo.weights.checkpoint import check_fits

    check_fits(state, model, source)
    model.load_state_dict(state)
