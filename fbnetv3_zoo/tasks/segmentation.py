"""The segmentation task: torchvision-style segmenters on VOC folders, scored by mIoU.

Models are this package's segmenters (``fbnetv3_zoo.segmentation``) or
torchvision's (``lraspp_mobilenet_v3_large``, ``deeplabv3_*``,
``torchvision/<name>``) without published weights.  The loss is per-pixel
cross-entropy on ``out`` (void pixels, 255, ignored; the recipe's label
smoothing applies, as it is still a per-pixel classification); the metrics
are mIoU and pixel accuracy from a confusion matrix.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fbnetv3_zoo.errors import UserError, first_line

from .base import CLASSIFICATION_ONLY, not_applied_fields
from .datasets import (
    DEFAULT_SEG_SIZE,
    collate_segmentation,
    load_segmentation,
    segmentation_transform,
)
from .metrics import confusion_matrix, segmentation_scores
from .voc import VOID


def segmenter_names() -> list[str]:
    """Every segmenter name ``create_any_segmenter`` takes (ours first, then torchvision's)."""
    from torchvision.models import list_models, segmentation

    return sorted(_our_segmenters()) + [
        f"torchvision/{n}" for n in list_models(module=segmentation)
    ]


def _our_segmenters() -> set[str]:
    try:
        from fbnetv3_zoo.segmentation import SEGMENTERS
    except ImportError:  # the segmentation models are not part of this checkout yet
        return set()
    return set(SEGMENTERS)


def create_any_segmenter(
    name: str, num_classes: int, drop_path: float = 0.0, weights_backbone: str | None = None
) -> nn.Module:
    """Our segmenter ``name`` or torchvision's (``torchvision/<name>`` or a bare torchvision name).

    ``weights_backbone="DEFAULT"``: the backbone's published ImageNet weights.
    """
    from torchvision.models import get_model, list_models, segmentation

    if name in _our_segmenters():
        from fbnetv3_zoo.segmentation import create_segmenter

        kw: dict[str, Any] = {}
        if drop_path:  # our builders take it (stochastic depth in the backbone)
            kw["drop_path_rate"] = drop_path
        return create_segmenter(
            name, num_classes=num_classes, weights_backbone=weights_backbone, **kw
        )
    plain = name.removeprefix("torchvision/")
    if plain in list_models(module=segmentation):
        return get_model(
            plain, weights=None, weights_backbone=weights_backbone, num_classes=num_classes
        )
    raise UserError(
        f"--model {name!r} is not a segmenter; choose one of: {', '.join(segmenter_names())}"
    )


class SegmentationTask:
    """Semantic segmentation through torchvision's segmenter API (``fbnetv3_zoo.tasks.base.Task``)."""

    name = "segmentation"
    headline = "miou"
    collate = staticmethod(collate_segmentation)

    def __init__(self, size: int | None = None) -> None:
        self.size = size
        self.num_classes = 0
        self.label_smoothing = 0.0

    def metric_keys(self) -> tuple[str, ...]:
        return ("loss", "miou", "pixel_acc")

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
        if holdout:
            raise UserError("holdout: only classification runs hold out a selection split")
        splits = load_segmentation(data, data_root, train, num_classes)
        self.size = self.size or splits.image_size or DEFAULT_SEG_SIZE
        return splits

    def build_model(
        self, model: Any, recipe: Any, num_classes: int, pretrained: bool
    ) -> tuple[nn.Module, str]:
        if not isinstance(model, str | Path):
            raise UserError("--task segmentation takes a segmenter name (see fbnetv3 train --help)")
        self.num_classes = num_classes
        weights = "DEFAULT" if pretrained else None  # the backbone's ImageNet weights
        net = create_any_segmenter(str(model), num_classes, recipe.drop_path, weights)
        return net, str(model)

    def check_model(
        self, model: nn.Module, name: str, recipe: Any, local_batch: int, device: torch.device
    ) -> None:
        size = int(self.size or DEFAULT_SEG_SIZE)
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model(torch.zeros(1, 3, size, size, device=device))["out"]
        except (RuntimeError, AssertionError, ValueError, KeyError) as err:
            raise UserError(
                f"model {name} cannot take a {size}x{size} image: {first_line(err)}"
            ) from None
        finally:
            model.train(was)
        if out.shape[1] != self.num_classes:
            raise UserError(
                f"model {name} predicts {out.shape[1]} classes, the data has {self.num_classes}"
            )

    def prepare_eval(self, splits: Any) -> None:
        """Validation data as ``evaluate`` needs it (resized, normalised, no flips)."""
        splits.set_transforms(None, segmentation_transform(int(self.size or DEFAULT_SEG_SIZE), 0.0))

    def configure(self, parts: Any, splits: Any, recipe: Any) -> Any:
        size = int(self.size or DEFAULT_SEG_SIZE)
        splits.set_transforms(
            segmentation_transform(size, recipe.hflip), segmentation_transform(size, 0.0)
        )
        self.label_smoothing = float(recipe.label_smoothing)
        unused = not_applied_fields(recipe, CLASSIFICATION_ONLY)
        notes = [f"{k} not applied: it has no meaning for segmentation" for k in unused]
        return dataclasses.replace(
            parts,
            mixup=None,
            not_applied=[*parts.not_applied, *unused],
            notes=[*parts.notes, *notes],
            eval_config=dict(task=self.name, **self.options()),
        )

    def to_device(self, x: Any, y: Any, device: torch.device) -> tuple[Any, Any]:
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def loss(self, net: nn.Module, x: Any, y: Any, parts: Any) -> torch.Tensor:
        out = net(x)
        loss = nn.functional.cross_entropy(
            out["out"], y, ignore_index=VOID, label_smoothing=self.label_smoothing
        )
        if "aux" in out:  # DeepLabV3 with aux_loss: torchvision's reference weighs it 0.5
            loss = loss + 0.5 * nn.functional.cross_entropy(out["aux"], y, ignore_index=VOID)
        return loss

    @torch.no_grad()
    def evaluate(
        self,
        model: nn.Module,
        loader: Any,
        device: torch.device,
        skipped: set[str] | None = None,
        progress: bool = False,
        desc: str = "eval",
    ) -> dict[str, Any]:
        from tqdm import tqdm

        model.eval()
        matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)
        loss_sum, n, pixels = 0.0, 0, 0
        t0 = time.perf_counter()
        for x, y, _ in tqdm(loader, desc=desc, disable=not progress, leave=False):
            x, y = self.to_device(x, y, device)
            logits = model(x)["out"].float()
            loss_sum += nn.functional.cross_entropy(
                logits, y, ignore_index=VOID, reduction="sum"
            ).item()
            pixels += int((y != VOID).sum())
            matrix += confusion_matrix(logits.argmax(1).cpu(), y.cpu(), self.num_classes, VOID)
            n += len(x)
        elapsed = time.perf_counter() - t0
        return dict(
            loss=loss_sum / pixels if pixels else float("nan"),
            **segmentation_scores(matrix),
            images=n,
            images_per_s=n / elapsed if elapsed > 0 else 0.0,
        )

    def options(self) -> dict[str, Any]:
        return dict(size=int(self.size or DEFAULT_SEG_SIZE), num_classes=self.num_classes)
