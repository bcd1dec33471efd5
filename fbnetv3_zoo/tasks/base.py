"""The one plug-in point through which the training engine learns a task.

The engine (``fbnetv3_zoo.recipes``: train, resume, validate, summary) asks a
``Task`` for everything that differs between classification, detection and
segmentation: the data, the model, one batch's loss, the evaluation and its
metric names.  Everything else (optimizer, schedule, warmup, EMA, weight
decay, checkpoints, locking, provenance, DDP) is the engine's and is the same
for every task.  A task object is made fresh for each run
(``recipes.tasks.make_task``) and may remember what it learned while setting
the run up (e.g. whether the detector predicts masks).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

# recipe fields that only make sense for image classification (mixing labels,
# whole-image crops and colour policies); a task that does not use one lists it
# in the run summary's ``not_applied`` when the recipe sets it
CLASSIFICATION_ONLY = ("mixup", "cutmix", "auto_augment", "random_erasing", "color_jitter")


class Task(Protocol):
    """What the engine needs from a task (see the module docstring)."""

    name: str
    headline: str  # the metric a run is judged by (``final_<headline>`` in summary.json)

    def metric_keys(self) -> tuple[str, ...]:
        """The evaluation's keys, recorded per epoch as ``val_<key>`` (and ``ema_<key>``)."""
        ...

    def load(
        self,
        data: str | Path,
        recipe: Any,
        *,
        data_root: Any,
        download: bool,
        train: bool,
        holdout: float,
        num_classes: int | None,
    ) -> Any:
        """Train/validation splits with ``num_classes``, ``train``, ``val`` and ``name``."""
        ...

    def build_model(
        self, model: Any, recipe: Any, num_classes: int, pretrained: bool
    ) -> tuple[nn.Module, str]:
        """The module to train and the name runs record it under."""
        ...

    def check_model(
        self, model: nn.Module, name: str, recipe: Any, local_batch: int, device: torch.device
    ) -> None:
        """Refuse a model that cannot take the data's input, before anything is written."""
        ...

    def configure(self, parts: Any, splits: Any, recipe: Any) -> Any:
        """The recipe's parts fitted to the task (transforms, dropped mixup, ``not_applied``)."""
        ...

    def prepare_eval(self, splits: Any) -> None:
        """Set the validation transform alone (``validate`` builds no recipe parts)."""
        ...

    collate: Callable[[Any], tuple[Any, Any, list[str]]]

    def to_device(self, x: Any, y: Any, device: torch.device) -> tuple[Any, Any]: ...

    def loss(self, net: nn.Module, x: Any, y: Any, parts: Any) -> torch.Tensor:
        """The training loss of one batch (the model's own losses for detectors)."""
        ...

    def evaluate(
        self,
        model: nn.Module,
        loader: Any,
        device: torch.device,
        skipped: set[str] | None,
        progress: bool,
        desc: str,
    ) -> dict[str, Any]:
        """The task's metrics on ``loader`` plus ``images`` and ``images_per_s``."""
        ...

    def options(self) -> dict[str, Any]:
        """What ``validate`` needs to rebuild the model and data as training had them."""
        ...


def not_applied_fields(recipe: Any, unused: tuple[str, ...]) -> list[str]:
    """The ``unused`` recipe fields this recipe actually sets (non-zero, not None)."""
    return [k for k in unused if getattr(recipe, k, None) not in (None, 0, 0.0, False, "")]
