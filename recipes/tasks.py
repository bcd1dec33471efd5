"""The engine's tasks: classification (this module) plus detection and segmentation.

``make_task(name)`` gives a fresh ``fbnetv3_zoo.tasks.base.Task`` for one run;
the engine (``prepare.py``, ``loop.py``, ``summary.py``, ``validate.py``)
talks to nothing task-specific but it.  Classification is the engine's
original behaviour moved behind the same interface: timm's transforms,
mixup, top-1/top-5 (``evaluation.py``), unreadable files skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from fbnetv3_zoo.data import collate_skipping, load_data
from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.models.spec import ArchSpec
from fbnetv3_zoo.models.stats import check_forward_cost

from .apply import create_model
from .evaluation import check_input_size, evaluate

CLASSIFICATION = "classification"
TASKS = (CLASSIFICATION, "detection", "segmentation")


class ClassificationTask:
    """Image classification (the engine's original task)."""

    name = CLASSIFICATION
    headline = "top1"
    collate = staticmethod(collate_skipping)

    def metric_keys(self) -> tuple[str, ...]:
        return ("loss", "top1", "top5")

    def load(
        self,
        data: str | Path,
        recipe: Any,
        *,
        data_root: Any = None,
        download: bool = False,
        train: bool = True,
        holdout: float = 0.0,
        num_classes: int | None = None,
    ) -> Any:
        return load_data(
            data,
            recipe.resolution,
            data_root=data_root,
            download=download,
            train=train,
            holdout=holdout,
        )

    def build_model(
        self, model: Any, recipe: Any, num_classes: int, pretrained: bool
    ) -> tuple[nn.Module, str]:
        if isinstance(model, nn.Module):
            return model, type(model).__name__
        # an ArchSpec, or a name / ArchSpec YAML path
        name = (model.name or "ArchSpec") if isinstance(model, ArchSpec) else str(model)
        return create_model(recipe, model, num_classes=num_classes, pretrained=pretrained), name

    def check_model(
        self, model: nn.Module, name: str, recipe: Any, local_batch: int, device: torch.device
    ) -> None:
        """An absurd whole network or a too-small input fails here, before it allocates or writes."""
        sizes = (recipe.resolution, recipe.test_resolution)
        arch = getattr(model, "arch", None)
        if isinstance(arch, ArchSpec):
            check_forward_cost(arch, max(sizes), local_batch, where=f"model {name}")
        check_input_size(model, name, sizes, device, "resolution")

    def configure(self, parts: Any, splits: Any, recipe: Any) -> Any:
        splits.set_transforms(parts.train_transform, parts.eval_transform, parts.resolution)
        return parts

    def to_device(self, x: Any, y: Any, device: torch.device) -> tuple[Any, Any]:
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def loss(self, net: nn.Module, x: Any, y: Any, parts: Any) -> torch.Tensor:
        return parts.train_loss(net(x), y)

    def evaluate(
        self,
        model: nn.Module,
        loader: Any,
        device: torch.device,
        skipped: set[str] | None = None,
        progress: bool = False,
        desc: str = "eval",
    ) -> dict[str, Any]:
        return evaluate(model, loader, device, skipped, progress, desc)

    def options(self) -> dict[str, Any]:
        return {}


def make_task(name: str = CLASSIFICATION, options: dict[str, Any] | None = None) -> Any:
    """A fresh task object for one run; ``options`` are a run's recorded ones (``validate``)."""
    if name == CLASSIFICATION:
        return ClassificationTask()
    if name == "detection":
        from fbnetv3_zoo.tasks.detection import DetectionTask, checked_options

        raw = (options or {}).get("model_options")
        return DetectionTask(checked_options(raw, "the run's evaluation") if raw else None)
    if name == "segmentation":
        from fbnetv3_zoo.tasks.segmentation import SegmentationTask

        size = (options or {}).get("size")
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 4096
        ):
            raise UserError(
                f"the run's evaluation: field 'size' is {size!r}, not an int in [8, 4096]"
            )
        return SegmentationTask(size)
    raise UserError(f"--task {name!r}: choose one of {', '.join(TASKS)}")
