"""The detection task: torchvision-style detectors on COCO folders, scored by COCO's AP.

Models are this package's detectors (``fbnetv3_zoo.detection``) or any of
torchvision's (``fasterrcnn_mobilenet_v3_large_fpn``, ``torchvision/<name>``),
built without published weights.  The loss is the model's own (RPN and box
head, plus masks for Mask R-CNN); the evaluation is pycocotools' box AP (and
mask AP when the model predicts masks).
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
from .datasets import collate_detection, detection_transform, load_detection
from .metrics import COCO_KEYS, coco_evaluate, detections_to_coco

# for small sets of small images (digits-det: 96 px canvases, <= 3 digits each): far
# fewer proposals and sampled RoIs than torchvision's COCO defaults, which were made for
# ~7 objects in 800 px images; the box head's cost falls with them (a training step of
# fasterrcnn_fbnetv3_a_fpn about halves), and they still leave many proposals per object
SMALL_SET_OPTIONS = dict(
    rpn_pre_nms_top_n_train=200,
    rpn_post_nms_top_n_train=100,
    rpn_pre_nms_top_n_test=200,
    rpn_post_nms_top_n_test=100,
    box_batch_size_per_image=32,
)
OPTION_NAMES = frozenset({"min_size", "max_size", *SMALL_SET_OPTIONS})


def detector_names() -> list[str]:
    """Every detector name ``create_any_detector`` takes (ours first, then torchvision's)."""
    from torchvision.models import detection, list_models

    ours = sorted(_our_detectors())
    return ours + [f"torchvision/{n}" for n in list_models(module=detection)]


def _our_detectors() -> set[str]:
    try:
        from fbnetv3_zoo.detection import DETECTORS
    except ImportError:  # the detection models are not part of this checkout yet
        return set()
    return set(DETECTORS)


def _is_ours(name: str) -> bool:
    """A name ``fbnetv3_zoo.detection.create_detector`` takes alone (FBNetV3 or timm backbone)."""
    try:
        from fbnetv3_zoo.detection.names import is_detector
    except ImportError:  # an older detection package: its named detectors only
        return name in _our_detectors()
    return is_detector(name)


def create_any_detector(
    name: str,
    num_classes: int,
    drop_path: float = 0.0,
    weights_backbone: str | None = None,
    **options: Any,
) -> nn.Module:
    """Our detector ``name`` or torchvision's (``torchvision/<name>`` or a bare torchvision name).

    ``weights_backbone="DEFAULT"``: the backbone's published ImageNet weights
    (ours, timm's or torchvision's: each builder knows that name).
    """
    from torchvision.models import detection, get_model, list_models

    if _is_ours(name):
        from fbnetv3_zoo.detection import create_detector

        if drop_path:  # our builders take it (stochastic depth in the backbone)
            options["drop_path_rate"] = drop_path
        return create_detector(
            name, num_classes=num_classes, weights_backbone=weights_backbone, **options
        )
    plain = name.removeprefix("torchvision/")
    if plain in list_models(module=detection):
        return get_model(
            plain,
            weights=None,
            weights_backbone=weights_backbone,
            num_classes=num_classes,
            **options,
        )
    raise UserError(
        f"--model {name!r} is not a detector; choose one of: {', '.join(detector_names())}"
    )


def to_plain(target: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A target with tv_tensors turned into plain tensors on ``device`` (what torchvision's models take)."""
    return {
        k: v.as_subclass(torch.Tensor).to(device) if isinstance(v, torch.Tensor) else v
        for k, v in target.items()
    }


class DetectionTask:
    """Detection through torchvision's detector API (``fbnetv3_zoo.tasks.base.Task``)."""

    name = "detection"
    headline = "AP"
    collate = staticmethod(collate_detection)

    def __init__(self, model_options: dict[str, Any] | None = None) -> None:
        self.model_options = dict(model_options or {})
        self.masks = False

    def metric_keys(self) -> tuple[str, ...]:
        masks = tuple(f"mask_{k}" for k in COCO_KEYS) if self.masks else ()
        return COCO_KEYS + masks

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
        splits = load_detection(data, data_root, train)
        if splits.image_size and not self.model_options:  # small equal images: their own size
            size = splits.image_size
            self.model_options = dict(min_size=size, max_size=size, **SMALL_SET_OPTIONS)
        return splits

    def build_model(
        self, model: Any, recipe: Any, num_classes: int, pretrained: bool
    ) -> tuple[nn.Module, str]:
        if not isinstance(model, str | Path):
            raise UserError("--task detection takes a detector name (see fbnetv3 train --help)")
        name = str(model)
        weights = "DEFAULT" if pretrained else None  # the backbone's ImageNet weights
        net = create_any_detector(
            name, num_classes, recipe.drop_path, weights, **self.model_options
        )
        roi = getattr(net, "roi_heads", None)
        self.masks = bool(roi is not None and roi.has_mask())
        return net, name

    def check_model(
        self, model: nn.Module, name: str, recipe: Any, local_batch: int, device: torch.device
    ) -> None:
        size = int(self.model_options.get("min_size", 224))
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                model([torch.zeros(3, size, size, device=device)])
        except (RuntimeError, AssertionError, ValueError) as err:
            raise UserError(
                f"model {name} cannot take a {size}x{size} image: {first_line(err)}"
            ) from None
        finally:
            model.train(was)

    def prepare_eval(self, splits: Any) -> None:
        """Validation data as ``evaluate`` needs it (masks for Mask R-CNN, no flips)."""
        for split in (splits.train, splits.val):
            if split is not None:
                split.masks = self.masks
        splits.set_transforms(None, detection_transform(0.0))

    def configure(self, parts: Any, splits: Any, recipe: Any) -> Any:
        self.prepare_eval(splits)
        splits.set_transforms(detection_transform(recipe.hflip), detection_transform(0.0))
        unused = not_applied_fields(recipe, CLASSIFICATION_ONLY + ("label_smoothing",))
        notes = [f"{k} not applied: it has no meaning for detection" for k in unused]
        return dataclasses.replace(
            parts,
            mixup=None,
            not_applied=[*parts.not_applied, *unused],
            notes=[*parts.notes, *notes],
            eval_config=dict(task=self.name, **self.options()),
        )

    def to_device(self, x: Any, y: Any, device: torch.device) -> tuple[Any, Any]:
        return [img.as_subclass(torch.Tensor).to(device) for img in x], [
            to_plain(t, device) for t in y
        ]

    def loss(self, net: nn.Module, x: Any, y: Any, parts: Any) -> torch.Tensor:
        losses = net(x, y)
        return sum(losses.values())

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
        data = loader.dataset
        results, n = [], 0
        t0 = time.perf_counter()
        for x, y, _ in tqdm(loader, desc=desc, disable=not progress, leave=False):
            images, _ = self.to_device(x, [], device)
            outputs = model(images)
            results += detections_to_coco(outputs, [t["image_id"] for t in y], data.category_ids)
            n += len(images)
        elapsed = time.perf_counter() - t0
        scores = coco_evaluate(data.coco, results, "bbox")
        if self.masks:
            scores.update(coco_evaluate(data.coco, results, "segm"))
        return dict(**scores, images=n, images_per_s=n / elapsed if elapsed > 0 else 0.0)

    def options(self) -> dict[str, Any]:
        return dict(model_options=dict(self.model_options))


def checked_options(value: Any, source: str) -> dict[str, Any]:
    """Detector options read back from a run's files: known names, positive integers only."""
    if not isinstance(value, dict):
        raise UserError(f"{source}: field 'evaluation.model_options' is not a mapping")
    for key, v in value.items():
        if (
            key not in OPTION_NAMES
            or isinstance(v, bool)
            or not isinstance(v, int)
            or not 0 < v <= 100_000
        ):
            raise UserError(
                f"{source}: field 'evaluation.model_options.{key}' is not a known detector option with a positive integer value"
            )
    return dict(value)
