"""Datasets the engine trains on: embedded digits, any ImageFolder, CIFAR-10/100.

``digits`` is scikit-learn's bundled 8x8 handwritten digits (1797 images, no
download).  Its split is fixed and documented: with ``numpy.random
.default_rng(0)`` each class's images are shuffled, the first third of each
class is the validation set (599 images), the rest is training (1198).
``digits:N`` keeps only the first N training images of each class (a
low-data regime); the validation set does not change.  Images are scaled to
0..255, upsampled (bilinear) to the recipe's resolution and made 3-channel.

Unreadable image files in a folder are skipped and counted, not fatal.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision.datasets import ImageFolder

DIGITS_SPLIT_SEED = 0
DIGITS_VAL_FRACTION = 1 / 3
FOLDER_VAL_FRACTION = 0.2  # for an ImageFolder without train/ and val/ subfolders
DEFAULT_DATA_ROOT = Path(
    os.environ.get("FBNETV3_DATA", Path.home() / ".cache" / "fbnetv3_zoo" / "data")
)


@dataclass(frozen=True)
class Skipped:
    """Stands in for an image file that could not be read."""

    path: str


@dataclass
class DataSplits:
    """Train and validation datasets whose transforms are set once the recipe is built."""

    name: str
    train: Dataset | None
    val: Dataset
    classes: list[str]
    _bases: tuple[Any, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def set_transforms(self, train: Callable | None, val: Callable) -> None:
        train_base, val_base = self._bases
        if train_base is not None:
            train_base.transform = train
        val_base.transform = val


class ImageArrayDataset(Dataset):
    """Grayscale uint8 images held in memory, upsampled once to ``resolution`` RGB."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, resolution: int) -> None:
        size = (resolution, resolution)
        self.images = [
            Image.fromarray(img).resize(size, Image.Resampling.BILINEAR).convert("RGB")
            for img in images
        ]
        self.labels = [int(y) for y in labels]
        self.transform: Callable | None = None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        img = self.images[i]
        return (self.transform(img) if self.transform else img), self.labels[i]


class SafeImageFolder(ImageFolder):
    """An ImageFolder whose unreadable files yield ``Skipped`` instead of raising."""

    def __getitem__(self, i: int) -> tuple[Any, int] | Skipped:
        path, target = self.samples[i]
        try:
            img = self.loader(path)
        except (OSError, ValueError, SyntaxError):  # what PIL raises on broken files
            return Skipped(path)
        return (self.transform(img) if self.transform else img), target


def _safe_folder(root: Path) -> SafeImageFolder:
    return SafeImageFolder(str(root))


def collate_skipping(batch: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Stack the readable samples; return the paths of the skipped ones too."""
    skipped = [b.path for b in batch if isinstance(b, Skipped)]
    good = [b for b in batch if not isinstance(b, Skipped)]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), skipped
    x = torch.stack([b[0] for b in good])
    y = torch.tensor([b[1] for b in good], dtype=torch.long)
    return x, y, skipped


def digits_arrays(train_per_class: int | None = None) -> tuple[np.ndarray, ...]:
    """The documented fixed split of scikit-learn's digits: (x_train, y_train, x_val, y_val)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255 / 16)).astype(np.uint8)
    rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    train_idx, val_idx = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(d.target == c))
        n_val = int(round(len(idx) * DIGITS_VAL_FRACTION))
        val_idx.extend(idx[:n_val])
        train_idx.extend(idx[n_val:][:train_per_class] if train_per_class else idx[n_val:])
    tr, va = np.array(train_idx), np.array(val_idx)
    return images[tr], d.target[tr], images[va], d.target[va]


def load_data(
    data: str | Path,
    resolution: int,
    data_root: str | Path | None = None,
    download: bool = False,
    train: bool = True,
) -> DataSplits:
    """``digits``/``digits:N``, ``cifar10``/``cifar100`` or an ImageFolder directory.

    A directory with ``train/`` and ``val/`` (or ``validation/``) subfolders uses
    them; otherwise a fixed seeded 80/20 split of the directory is made.
    """
    text = str(data)
    if text == "digits" or text.startswith("digits:"):
        per_class = int(text.split(":", 1)[1]) if ":" in text else None
        if per_class is not None and per_class < 1:
            raise ValueError(f"digits:N needs N >= 1, got {per_class}")
        xt, yt, xv, yv = digits_arrays(per_class)
        tr = ImageArrayDataset(xt, yt, resolution) if train else None
        va = ImageArrayDataset(xv, yv, resolution)
        return DataSplits("digits", tr, va, [str(i) for i in range(10)], (tr, va))
    if text in ("cifar10", "cifar100"):
        return _cifar(text, Path(data_root or DEFAULT_DATA_ROOT), download, train)
    return _folder(Path(text), train)


def _cifar(name: str, root: Path, download: bool, train: bool) -> DataSplits:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        tr = cls(str(root), train=True, download=download) if train else None
        va = cls(str(root), train=False, download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise FileNotFoundError(
            f"{name} not found under {root}: pass --download to fetch it ({err})"
        ) from None
    return DataSplits(name, tr, va, list(va.classes), (tr, va))


def _folder(root: Path, train: bool) -> DataSplits:
    if not root.is_dir():
        raise FileNotFoundError(
            f"dataset directory not found: {root} (or use 'digits', 'cifar10', 'cifar100')"
        )
    val_dir = next((root / n for n in ("val", "validation") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and val_dir is not None:
        tr = _safe_folder(root / "train") if train else None
        va = _safe_folder(val_dir)
        if tr is not None and tr.classes != va.classes:
            raise ValueError(f"{root}: train/ and {val_dir.name}/ have different class folders")
        return DataSplits(str(root), tr, va, list(va.classes), (tr, va))
    if not train:  # evaluate on everything
        va = _safe_folder(root)
        return DataSplits(str(root), None, va, list(va.classes), (None, va))
    tr_base, va_base = _safe_folder(root), _safe_folder(root)
    n = len(tr_base)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED)).tolist()
    n_val = max(1, int(n * FOLDER_VAL_FRACTION))
    if n - n_val < 1:
        raise ValueError(f"{root}: {n} image(s) are too few to split into train and validation")
    tr, va = Subset(tr_base, order[n_val:]), Subset(va_base, order[:n_val])
    return DataSplits(str(root), tr, va, list(tr_base.classes), (tr_base, va_base))
