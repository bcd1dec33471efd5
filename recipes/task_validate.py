"""``fbnetv3 validate --task detection|segmentation``: a run's checkpoint measured as training measured it.

The run folder's ``summary.json`` (or the committed ``state.pt`` of a
stopped run) records the task, the model and the options the model and data
were built with (detector sizes and proposal counts, the segmentation size);
they are read back as untrusted input and the checkpoint is evaluated by the
task's own ``evaluate``, so the numbers equal the run's ``final_*``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.files.untrusted import field

from .tasks import CLASSIFICATION, make_task


def run_model_name(checkpoint: str | Path, key: str = "model") -> str | None:
    """The ``--model`` (or another ``key``: ``data``) of the run holding ``checkpoint``.

    None outside a run folder.
    """
    from . import checkpoints as ckpt
    from .summary import SUMMARY_FILE, read_summary
    from .validate import run_folder_of

    folder = run_folder_of(checkpoint)
    if folder is None:
        return None
    doc = read_summary(folder)
    if doc is not None:
        return field(doc, key, str, folder / SUMMARY_FILE)
    try:
        state, _ = ckpt.read_committed(folder)
    except UserError:
        return None
    value = (state.get("settings") or {}).get(key)
    return value if isinstance(value, str) else None


def run_model_for(checkpoint: str | Path | None) -> str:
    """``--model`` when it was not given: the model of the run holding ``checkpoint``."""
    model = run_model_name(checkpoint) if checkpoint is not None else None
    if model is None:
        raise UserError(
            "--model is required (unless --checkpoint is inside a training run folder, "
            "whose model is then used)"
        )
    return model


def validate_task(
    task: str,
    model: str | None,
    data: str | Path | None,
    *,
    checkpoint: str | Path | None,
    batch_size: int | None = None,
    num_classes: int | None = None,
    data_root: str | Path | None = None,
    workers: int = 0,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The task's metrics of ``checkpoint`` on ``data``'s validation split (JSON-ready)."""
    from torch.utils.data import DataLoader

    from fbnetv3_zoo.weights.checkpoint import read_checkpoint

    from .devices import auto_device, resolve_device
    from .recipe import Recipe
    from .validate import load_state, run_evaluation

    dev = resolve_device(device) or auto_device()
    if checkpoint is None or not Path(checkpoint).is_file():
        raise UserError(f"--task {task}: --checkpoint must name a weights file, got {checkpoint}")
    found = run_evaluation(checkpoint)
    cfg, source = found if found else ({}, "the task's defaults")
    if found and cfg.get("task", CLASSIFICATION) != task:
        raise UserError(
            f"{source}: the run was a {cfg.get('task', CLASSIFICATION)} run, not --task {task}"
        )
    model = model or run_model_for(checkpoint)
    data = data or run_model_name(checkpoint, "data")
    if data is None:
        raise UserError(
            f"--task {task}: --data is required (a COCO or VOC folder, or digits-det / digits-seg)"
        )
    plugin = make_task(task, cfg)
    splits = plugin.load(
        data,
        Recipe(),
        data_root=data_root,
        train=False,
        num_classes=cfg.get("num_classes") or num_classes,
    )
    net, _ = plugin.build_model(model, Recipe(), num_classes or splits.num_classes, False)
    load_state(net, read_checkpoint(checkpoint), str(checkpoint))
    net = net.to(dev).eval()
    plugin.prepare_eval(splits)
    batch = batch_size or int(cfg.get("batch_size", 8))
    if batch < 1:
        raise UserError(f"batch size must be >= 1, got {batch}")
    loader = DataLoader(splits.val, batch, num_workers=workers, collate_fn=plugin.collate)
    result = plugin.evaluate(net, loader, dev, None, progress, "validate")
    return dict(
        task=task,
        model=str(model),
        data=splits.name,
        checkpoint=str(checkpoint),
        settings_from=source,
        headline=plugin.headline,
        num_classes=num_classes or splits.num_classes,
        **result,
    )
