"""Datasets for training, validation and int8 calibration: embedded digits, any ImageFolder, CIFAR-10/100.

``digits`` is scikit-learn's bundled 8x8 handwritten digits (1797 images, no
download).  Its split is fixed and documented: with ``numpy.random
.default_rng(0)`` each class's images are shuffled, the first third of each
class is the validation set (599 images), the rest is training (1198).
``digits:N`` keeps only the first N training images of each class (a
low-data regime); the validation set does not change.  Images are scaled to
0..255, upsampled (bilinear) to the training resolution and made 3-channel
(when the resolution is only known once the model is built, ``load_data`` takes
None and ``DataSplits.set_transforms`` gives it).

``holdout`` (a search's selection split) sets a seeded share of each class's
*training* images aside and validates on them instead of the validation set,
so a search that ranks candidates never sees the images ``fbnetv3 train``
reports on; the rest of the training images are trained on.

Unreadable image files in a folder (decompression bombs included) are skipped
and counted, not fatal; a dataset with no readable image or fewer than two
classes is refused with a ``DataError`` naming it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision.datasets import ImageFolder

from fbnetv3_zoo.errors import UserError

DIGITS_SPLIT_SEED = 0
DIGITS_VAL_FRACTION = 1 / 3
FOLDER_VAL_FRACTION = 0.2  # for an ImageFolder without train/ and val/ subfolders
HOLDOUT_SEED = 1  # the selection split's own seed (the validation split uses DIGITS_SPLIT_SEED)
MAX_HOLDOUT = 0.5
DEFAULT_DATA_ROOT = Path(
    os.environ.get("FBNETV3_DATA", Path.home() / ".cache" / "fbnetv3_zoo" / "data")
)


class DataError(UserError):
    """The ``--data`` argument or the dataset it names cannot be used."""


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

    def set_transforms(
        self, train: Callable | None, val: Callable, resolution: int | None = None
    ) -> None:
        """Set the transforms; ``resolution`` sizes in-memory images loaded without one."""
        train_base, val_base = self._bases
        for base, transform in ((train_base, train), (val_base, val)):
            if base is None:
                continue
            base.transform = transform
            if resolution is not None and isinstance(base, ImageArrayDataset):
                base.upsample(resolution)


class ImageArrayDataset(Dataset):
    """Grayscale uint8 images held in memory, upsampled once to ``resolution`` RGB.

    ``resolution`` None keeps them at their size until ``upsample`` is called.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, resolution: int | None) -> None:
        self.arrays = images
        self.resolution: int | None = None
        self.images = [Image.fromarray(img).convert("RGB") for img in images]
        if resolution is not None:
            self.upsample(resolution)
        self.labels = [int(y) for y in labels]
        self.transform: Callable | None = None

    def upsample(self, resolution: int) -> None:
        if resolution == self.resolution:
            return
        size = (resolution, resolution)
        self.images = [
            Image.fromarray(img).resize(size, Image.Resampling.BILINEAR).convert("RGB")
            for img in self.arrays
        ]
        self.resolution = resolution

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        img = self.images[i]
        return (self.transform(img) if self.transform else img), self.labels[i]


MAX_FOLDER_FILES = 2_000_000  # a walk that lists more is a mistake (or a link loop), not data


def _identity(path: str | Path) -> tuple[int, int]:
    """A directory's real identity (device, inode), whatever links led to it."""
    info = os.stat(path)
    return info.st_dev, info.st_ino


class SafeImageFolder(ImageFolder):
    """An ImageFolder whose unreadable files yield ``Skipped`` instead of raising.

    Its walk visits each real directory once per class (by device and inode),
    so a symbolic-link loop cannot make it run forever or count images twice,
    and it stops with a clear error past ``MAX_FOLDER_FILES`` files.
    """

    @staticmethod
    def make_dataset(
        directory: str | Path,
        class_to_idx: dict[str, int],
        extensions: tuple[str, ...] | None = None,
        is_valid_file: Callable[[str], bool] | None = None,
        allow_empty: bool = False,
    ) -> list[tuple[str, int]]:
        if extensions is not None:

            def is_valid_file(path: str) -> bool:
                return path.lower().endswith(extensions)

        samples: list[tuple[str, int]] = []
        empty = []
        listed = 0
        roots = [directory] + [os.path.join(directory, name) for name in class_to_idx]
        seen = {_identity(root) for root in roots}  # a link back to these is not followed
        for name in sorted(class_to_idx):
            folders: list[tuple[str, list[str]]] = []
            class_root = os.path.join(directory, name)
            stack = [class_root]
            while stack:
                folder = stack.pop()
                if folder != class_root:
                    key = _identity(folder)
                    if key in seen:
                        continue  # reached again through a link
                    seen.add(key)
                files = []
                with os.scandir(folder) as entries:
                    for entry in entries:
                        listed += 1
                        if listed > MAX_FOLDER_FILES:
                            raise DataError(
                                f"{directory}: more than {MAX_FOLDER_FILES} files listed; "
                                "is a symbolic link pointing back up the tree?"
                            )
                        if entry.is_dir():
                            stack.append(entry.path)
                        elif is_valid_file is not None and is_valid_file(entry.path):
                            files.append(entry.name)
                folders.append((folder, sorted(files)))
            found = [
                (os.path.join(root, f), class_to_idx[name])
                for root, fs in sorted(folders)
                for f in fs
            ]
            if not found:
                empty.append(name)
            samples.extend(found)
        if empty and not allow_empty:
            raise FileNotFoundError(f"Found no valid file for the classes {', '.join(empty)}.")
        return samples

    def __getitem__(self, i: int) -> tuple[Any, int] | Skipped:
        path, target = self.samples[i]
        img = read_image(path, self.loader)
        if img is None:
            return Skipped(path)
        return (self.transform(img) if self.transform else img), target

    def first_readable(self) -> str | None:
        """Path of the first image that opens (scans on only while images fail to open)."""
        for path, _ in self.samples:
            if read_image(path, self.loader) is not None:
                return path
        return None


# what PIL raises on broken, truncated or oversized files
UNREADABLE = (
    OSError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


def read_image(path: str, loader: Callable[[str], Any]) -> Any | None:
    """The image, or None when PIL cannot read it or it is a decompression bomb."""
    try:
        with warnings.catch_warnings():
            # PIL warns above MAX_IMAGE_PIXELS and raises above twice that: skip both
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return loader(path)
    except UNREADABLE:
        return None


def _safe_folder(root: Path) -> SafeImageFolder:
    """An ImageFolder of ``root``, refused with one line when it is empty or has one class."""
    try:
        folder = SafeImageFolder(str(root))
    except FileNotFoundError as err:  # torchvision: no class folder, or no image file
        raise DataError(f"{root}: {' '.join(str(err).split())}") from None
    if len(folder.classes) < 2:
        raise DataError(
            f"{root}: {len(folder.classes)} class folder(s) found ({', '.join(folder.classes)}); "
            "a classifier needs at least two (one subfolder of images per class)"
        )
    if folder.first_readable() is None:
        raise DataError(
            f"{root}: none of its {len(folder.samples)} image file(s) could be read "
            f"(e.g. {folder.samples[0][0]})"
        )
    return folder


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
    from fbnetv3_zoo.optional import require

    load_digits = require("sklearn.datasets", "the digits data set").load_digits

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
    resolution: int | None,
    data_root: str | Path | None = None,
    download: bool = False,
    train: bool = True,
    holdout: float = 0.0,
) -> DataSplits:
    """``digits``/``digits:N``, ``cifar10``/``cifar100`` or an ImageFolder directory.

    A directory with ``train/`` and ``val/`` (or ``validation/``) subfolders uses
    them; otherwise a fixed seeded 80/20 split of the directory is made.
    ``holdout`` > 0 validates on that share of the training images instead
    (the module docstring says why).
    """
    if not 0.0 <= holdout <= MAX_HOLDOUT:
        raise DataError(
            f"holdout: expected a share of the training images in [0, {MAX_HOLDOUT}], got {holdout}"
        )
    text = str(data)
    if text == "digits" or text.startswith("digits:"):
        xt, yt, xv, yv = digits_arrays(_per_class(text))
        if holdout and train:
            bases = ImageArrayDataset(xt, yt, resolution), ImageArrayDataset(xt, yt, resolution)
            return _held_out(
                text, bases, np.arange(len(yt)), yt, holdout, [str(i) for i in range(10)]
            )
        tr = ImageArrayDataset(xt, yt, resolution) if train else None
        va = ImageArrayDataset(xv, yv, resolution)
        return DataSplits("digits", tr, va, [str(i) for i in range(10)], (tr, va))
    if text in ("cifar10", "cifar100"):
        return _cifar(text, Path(data_root or DEFAULT_DATA_ROOT), download, train, holdout)
    return _folder(Path(text), train, holdout)


def _held_out(
    name: str,
    bases: tuple[Dataset, Dataset],
    indices: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    share: float,
    classes: list[str],
) -> DataSplits:
    """Train on ``indices`` minus a seeded ``share`` of each class, validate on that share.

    ``bases`` are two copies of the training data (one gets the training
    transform, one the evaluation transform); ``labels[k]`` is the class of
    ``indices[k]``.  A class with a single image keeps it for training.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(HOLDOUT_SEED)
    keep, held = [], []
    for c in np.unique(labels):
        mine = rng.permutation(indices[labels == c])
        n = min(len(mine) - 1, max(1, int(round(len(mine) * share))))
        held.extend(mine[:n].tolist())
        keep.extend(mine[n:].tolist())
    if not held:
        raise DataError(
            f"{name}: too few training images to hold out {share:.0%} of them for selection"
        )
    fit, check = bases
    return DataSplits(
        f"{name} (holdout {share:g})",
        Subset(fit, sorted(keep)),
        Subset(check, sorted(held)),
        classes,
        bases,
    )


def _per_class(text: str) -> int | None:
    """N of ``digits:N``; a clear error for anything that is not a positive integer."""
    if ":" not in text:
        return None
    value = text.split(":", 1)[1]
    if not value.strip().isdigit() or int(value) < 1:
        raise DataError(
            f"--data {text!r}: expected 'digits' or 'digits:N' with N a positive integer "
            "(training images per class), e.g. digits:20"
        )
    return int(value)


def _cifar(name: str, root: Path, download: bool, train: bool, holdout: float = 0.0) -> DataSplits:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        tr = cls(str(root), train=True, download=download) if train else None
        va = cls(str(root), train=False, download=download)
        if holdout and tr is not None:
            bases = tr, cls(str(root), train=True, download=False)
            return _held_out(name, bases, np.arange(len(tr)), tr.targets, holdout, list(va.classes))
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise DataError(
            f"{name} not found under {root}: pass --download to fetch it ({err})"
        ) from None
    return DataSplits(name, tr, va, list(va.classes), (tr, va))


def _folder(root: Path, train: bool, holdout: float = 0.0) -> DataSplits:
    if not root.is_dir():
        raise DataError(
            f"--data {str(root)!r}: dataset directory not found (or use 'digits', 'digits:N', "
            "'cifar10', 'cifar100')"
        )
    val_dir = next((root / n for n in ("val", "validation") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and val_dir is not None:
        tr = _safe_folder(root / "train") if train else None
        va = _safe_folder(val_dir)
        if tr is not None and tr.classes != va.classes:
            raise DataError(f"{root}: train/ and {val_dir.name}/ have different class folders")
        if holdout and tr is not None:
            bases = tr, _safe_folder(root / "train")
            return _held_out(
                str(root), bases, np.arange(len(tr)), tr.targets, holdout, list(va.classes)
            )
        return DataSplits(str(root), tr, va, list(va.classes), (tr, va))
    if not train:  # evaluate on everything
        va = _safe_folder(root)
        return DataSplits(str(root), None, va, list(va.classes), (None, va))
    tr_base, va_base = _safe_folder(root), _safe_folder(root)
    n = len(tr_base)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED)).tolist()
    n_val = max(1, int(n * FOLDER_VAL_FRACTION))
    if n - n_val < 1:
        raise DataError(f"{root}: {n} image(s) are too few to split into train and validation")
    if holdout:
        kept = np.array(order[n_val:])
        labels = [tr_base.targets[i] for i in kept]
        return _held_out(
            str(root), (tr_base, va_base), kept, labels, holdout, list(tr_base.classes)
        )
    tr, va = Subset(tr_base, order[n_val:]), Subset(va_base, order[:n_val])
    return DataSplits(str(root), tr, va, list(tr_base.classes), (tr_base, va_base))
