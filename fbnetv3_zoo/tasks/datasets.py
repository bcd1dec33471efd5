"""``--data`` for detection and segmentation: the embedded digits sets or a user's folder.

``digits-det`` (COCO layout) and ``digits-seg`` (VOC layout) are the
deterministic synthetic sets of ``digits_det.py``, written once under the data
root (``--data-root``, ``$FBNETV3_DATA`` or ``~/.cache/fbnetv3_zoo/data``)
and then read by the same loaders as any user folder.  Transforms are
``torchvision.transforms.v2`` so boxes and masks follow the image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from fbnetv3_zoo.data import DataError

from .coco import CocoDetection
from .digits_det import CLASS_NAMES, DigitsSetSettings, digits_sets_folder
from .voc import VOC_CLASSES, VocSegmentation

DIGITS_DET = "digits-det"
DIGITS_SEG = "digits-seg"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SEG_SIZE = 512  # square training/evaluation size for a user's VOC folder
SMALL_IMAGES = 512  # equal square COCO images up to this side keep their size (``_small_size``)


@dataclass
class TaskSplits:
    """Train and validation sets of a detection or segmentation task.

    ``classes`` excludes the background; ``num_classes`` counts it (what
    torchvision's detectors and segmenters take).  ``image_size`` is the
    canvas of an embedded set (None for a user's folder).
    """

    name: str
    train: Dataset | None
    val: Dataset
    classes: list[str]
    image_size: int | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes) + 1

    def set_transforms(self, train: Callable | None, val: Callable) -> None:
        if self.train is not None:
            self.train.transform = train
        self.val.transform = val


def _embedded(data: str, name: str, data_root: str | Path | None) -> Path | None:
    if data != name:
        return None
    return digits_sets_folder(data_root, DigitsSetSettings()) / (
        "det" if name == DIGITS_DET else "seg"
    )


def load_detection(
    data: str | Path, data_root: str | Path | None = None, train: bool = True, masks: bool = False
) -> TaskSplits:
    """``digits-det`` or a COCO folder (``coco.py``) as train/val splits."""
    text = str(data)
    root = _embedded(text, DIGITS_DET, data_root) or Path(text)
    if not root.is_dir():
        raise DataError(f"--data {text!r}: not {DIGITS_DET!r} and no such COCO folder")
    val = CocoDetection(root, "val", masks=masks)
    tr = CocoDetection(root, "train", masks=masks) if train else None
    if tr is not None and tr.category_ids != val.category_ids:
        raise DataError(f"{root}: train and val annotation files list different categories")
    return TaskSplits(
        text if text == DIGITS_DET else str(root), tr, val, val.classes, _small_size(val)
    )


def _small_size(val: CocoDetection) -> int | None:
    """The side of a set of equal square images of at most ``SMALL_IMAGES`` px (e.g. digits-det).

    Such images are trained and evaluated at their own size; any other set at
    the detector's own (torchvision: shorter side 800).
    """
    sizes = {(img["width"], img["height"]) for img in val.images}
    if len(sizes) == 1:
        w, h = sizes.pop()
        if w == h <= SMALL_IMAGES:
            return w
    return None


def load_segmentation(
    data: str | Path,
    data_root: str | Path | None = None,
    train: bool = True,
    num_classes: int | None = None,
) -> TaskSplits:
    """``digits-seg`` (11 classes with the background) or a VOC folder (21 unless ``num_classes``)."""
    text = str(data)
    embedded = _embedded(text, DIGITS_SEG, data_root)
    root = embedded or Path(text)
    if not root.is_dir():
        raise DataError(f"--data {text!r}: not {DIGITS_SEG!r} and no such VOC segmentation folder")
    n = num_classes or (len(CLASS_NAMES) + 1 if embedded else VOC_CLASSES)
    names = ["background", *CLASS_NAMES] if embedded else None
    val = VocSegmentation(root, "val", n, classes=names)
    tr = VocSegmentation(root, "train", n, classes=names) if train else None
    size = DigitsSetSettings().canvas if embedded else None
    return TaskSplits(text if embedded else str(root), tr, val, val.classes[1:], size)


def detection_transform(hflip: float) -> Callable:
    """PIL image + target -> float image in [0, 1] + target (detectors normalise inside)."""
    from torchvision.transforms import v2

    steps: list[Any] = [v2.ToImage()]
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(hflip))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps)


def segmentation_transform(size: int, hflip: float) -> Callable:
    """PIL image + Mask -> normalised ``size`` x ``size`` image + Mask (nearest-resized)."""
    from torchvision.transforms import v2

    steps: list[Any] = [v2.ToImage(), v2.Resize((size, size), antialias=True)]
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(hflip))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return v2.Compose(steps)


def collate_detection(batch: Sequence[Any]) -> tuple[list[Any], list[dict[str, Any]], list[str]]:
    """Images and targets as lists (detectors take images of any size), no skipped files."""
    return [b[0] for b in batch], [b[1] for b in batch], []


def collate_segmentation(batch: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Stacked images and masks (all resized to one size), no skipped files."""
    x = torch.stack([torch.as_tensor(b[0]) for b in batch])
    y = torch.stack([torch.as_tensor(b[1]).long() for b in batch])
    return x, y, []
