"""VOC-style segmentation folders, read as untrusted input.

A folder holds ``JPEGImages/<name>.jpg``, ``SegmentationClass/<name>.png``
(a palette or grayscale PNG whose pixel values are class indices; 255 is
'void', left out of the loss and the metrics) and
``ImageSets/Segmentation/<split>.txt`` (one name a line).  A listed name that
is not a plain file name, a missing or unreadable image or mask, a mask of
another size than its image, or a class index >= the class count is one
error naming the file (``VocError``).  Samples are ``(image, mask)``
through ``torchvision.transforms.v2`` with the mask a ``tv_tensors.Mask``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from fbnetv3_zoo.data import UNREADABLE, DataError
from fbnetv3_zoo.files.untrusted import read_regular

from .coco import load_rgb

VOID = 255
VOC_CLASSES = 21  # PASCAL VOC: background + 20 classes
MAX_LIST_BYTES = 64 << 20
NAME = re.compile(r"[A-Za-z0-9_.\-]{1,200}")


class VocError(DataError):
    """A VOC folder, list or mask that cannot be used (names the file)."""


def read_names(root: Path, split: str) -> list[str]:
    """The image names of ``ImageSets/Segmentation/<split>.txt``, each a plain name."""
    path = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not path.is_file():
        raise VocError(
            f"{root}: {path.relative_to(root)} not found (a VOC segmentation folder lists each split there)"
        )
    try:
        text = read_regular(path, MAX_LIST_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise VocError(f"{path} cannot be read as text ({err})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    for k, name in enumerate(names, 1):
        if not NAME.fullmatch(name) or name in (".", ".."):
            raise VocError(f"{path}: line {k} holds {name[:80]!r}, not a plain image name")
    if not names:
        raise VocError(f"{path} lists no image")
    return names


def load_mask(path: Path, size: tuple[int, int], num_classes: int) -> np.ndarray:
    """A class-index mask (uint8 HxW), checked against its image's size and the class count."""
    if not path.is_file():
        raise VocError(f"{path}: mask file not found")
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise VocError(
                    f"{path}: mask mode is {img.mode}; expected a palette (P) or grayscale (L) PNG of class indices"
                )
            mask = np.asarray(img, np.uint8)
    except UNREADABLE as err:
        raise VocError(f"{path}: mask cannot be read ({err})") from None
    if mask.shape[::-1] != size:
        raise VocError(
            f"{path}: mask is {mask.shape[1]}x{mask.shape[0]}, its image {size[0]}x{size[1]}"
        )
    bad = mask[(mask != VOID) & (mask >= num_classes)]
    if bad.size:
        raise VocError(
            f"{path}: class index {int(bad[0])} is >= the {num_classes} classes (255 is void)"
        )
    return mask


class VocSegmentation(Dataset):
    """One split of a VOC segmentation folder: ``(image, mask)`` samples.

    ``num_classes`` counts the background; ``classes`` names them when known.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        num_classes: int = VOC_CLASSES,
        transform: Callable | None = None,
        classes: list[str] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise VocError(f"--data {root}: VOC segmentation folder not found")
        self.names = read_names(self.root, split)
        self.num_classes = num_classes
        self.classes = classes or [str(i) for i in range(num_classes)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        from torchvision import tv_tensors

        name = self.names[index]
        image = load_rgb(self.root / "JPEGImages" / f"{name}.jpg")
        mask = load_mask(
            self.root / "SegmentationClass" / f"{name}.png", image.size, self.num_classes
        )
        target = tv_tensors.Mask(torch.from_numpy(mask.astype(np.int64)))
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target
