"""Evaluate a model on a dataset with its own eval transform: ``fbnetv3 validate`` from Python.

The model is any name ``Recipe.create_model`` takes; weights come from
``pretrained`` or a checkpoint file.  Checkpoints are read by
``fbnetv3_zoo.checkpoint.read_checkpoint`` (safetensors or weights-only torch
files; EMA weights preferred), the one unwrapping rule of the package.
"""

from __future__ import annotations

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
    batch_size: int = 64,
    input_size: int | None = None,
    crop_pct: float | None = None,
    data_root: str | Path | None = None,
    download: bool = False,
    workers: int = 0,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Top-1/top-5 of ``model`` on ``data``'s validation split; returns a JSON-ready dict.

    The class count is the data's when a checkpoint is loaded (our own runs), else
    1000 (published weights) unless ``num_classes`` is given.  The data is checked
    before any weights are downloaded.
    """
    from timm.data import create_transform, resolve_data_config
    from torch.utils.data import DataLoader

    from .data import collate_skipping, load_data
    from .engine import _auto_device, evaluate, resolve_device

    resolve_device(device)  # a bad --device fails before anything is loaded
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    if input_size is not None and not 8 <= input_size <= 4096:
        raise UserError(f"input size must be in [8, 4096] px, got {input_size}")
    if crop_pct is not None and not 0 < crop_pct <= 1:
        raise UserError(f"crop fraction must be in (0, 1], got {crop_pct}")
    splits = load_data(data, None, data_root, download, train=False)  # fails before downloads
    if num_classes is None:
        num_classes = splits.num_classes if checkpoint else DEFAULT_CLASSES
    net = load_model(model, num_classes=num_classes, pretrained=pretrained, checkpoint=checkpoint)
    cfg_args: dict[str, Any] = {}
    if input_size:
        cfg_args["input_size"] = (3, input_size, input_size)
    if crop_pct:
        cfg_args["crop_pct"] = crop_pct
    cfg = resolve_data_config(cfg_args, model=net)
    size = cfg["input_size"][-1]
    dev = resolve_device(device) or _auto_device()
    net = net.to(dev)
    check_input_size(net, str(model), size, dev)
    splits.set_transforms(None, create_transform(**cfg, is_training=False), size)
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
        num_classes=num_classes,
        **result,
        skipped_files=len(skipped),
        skipped_paths=sorted(skipped)[:100],
    )


def load_model(
    name: str | Path | Any,
    num_classes: int = DEFAULT_CLASSES,
    pretrained: bool = False,
    checkpoint: str | Path | None = None,
) -> nn.Module:
    """The model in eval mode, with published weights or the checkpoint's (checked to fit)."""
    import fbnetv3_zoo

    from .recipe import Recipe

    model = Recipe().create_model(name, num_classes=num_classes, pretrained=pretrained)
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise UserError(f"checkpoint not found: {checkpoint}")
        if isinstance(model, fbnetv3_zoo.FBNetV3):  # official or our layout, adapts the head
            fbnetv3_zoo.load_weights(model, checkpoint)
        else:
            load_state(model, fbnetv3_zoo.read_checkpoint(checkpoint), str(checkpoint))
    return model.eval()


def load_state(model: nn.Module, state: dict[str, Any], source: str) -> None:
    """``model.load_state_dict(state)``, refusing a mismatch with one line naming the first key."""
    from fbnetv3_zoo.checkpoint import CheckpointError

    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shaped = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or shaped:
        if shaped:
            key = shaped[0]
            what = (
                f"key {key!r} has shape {tuple(state[key].shape)}, "
                f"the model expects {tuple(own[key].shape)}"
            )
        elif missing:
            what = f"key {missing[0]!r} is missing ({len(missing)} missing in all)"
        else:
            what = f"unexpected key {extra[0]!r} ({len(extra)} unexpected in all)"
        raise CheckpointError(
            f"{source} does not fit {type(model).__name__}: {what}; is it for another "
            "architecture or class count?"
        )
    model.load_state_dict(state)


def check_input_size(model: nn.Module, name: str, size: int, device: Any) -> None:
    """One forward pass on a blank image, so an input too small for the model fails in one line."""
    import torch

    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=device))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"model {name} cannot take a {size}x{size} input (--input-size): {first}"
        ) from None
