"""``digits-det`` and ``digits-seg``: a deterministic detection / segmentation set from the bundled digits.

Each canvas (black, ``canvas`` px square) gets 1..``max_digits`` digits of
scikit-learn's 8x8 digits (``fbnetv3_zoo.data.digits_arrays``), each upsampled
to a random size in ``[min_size, max_size]`` px and pasted at a random place
where it does not overlap an earlier one.  A digit's mask is its upsampled
strokes above ``MASK_THRESHOLD``; its box is the mask's extent.  Every choice
comes from ``numpy.random.default_rng(seed)``, so a seed gives the same bytes.

Training canvases use only the digits' training split and validation
canvases only its validation split, so no validation image shows a digit a
model trained on.

The set is written as users keep real data, so the same loaders read it:
COCO detection (``annotations/instances_{train,val}.json``, PNGs under
``train/`` and ``val/``; masks as uncompressed RLE) and VOC segmentation
(``JPEGImages/``, palette PNGs in ``SegmentationClass/``,
``ImageSets/Segmentation/{train,val}.txt``).  Class ids: 1..10 for digits
0..9 (COCO category ids and VOC mask values); 0 is background.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fbnetv3_zoo.errors import UserError

MASK_THRESHOLD = 64  # of 255: a stroke pixel (the digits' ink is 0..255 after scaling)
FORMAT_VERSION = 1
SETTINGS_FILE = "digits_settings.json"
CLASS_NAMES = [str(d) for d in range(10)]


@dataclass(frozen=True)
class DigitsSetSettings:
    """What fixes the set's bytes: change one and it is another set (another folder)."""

    seed: int = 0
    train_images: int = 400
    val_images: int = 100
    canvas: int = 96
    min_size: int = 20
    max_size: int = 44
    max_digits: int = 3

    def check(self) -> None:
        """One clear error for settings that cannot make a set."""
        if not 16 <= self.canvas <= 1024:
            raise UserError(f"digits set: canvas must be in [16, 1024] px, got {self.canvas}")
        if not 8 <= self.min_size <= self.max_size <= self.canvas:
            raise UserError(
                "digits set: need 8 <= min_size <= max_size <= canvas, got "
                f"{self.min_size}, {self.max_size}, {self.canvas}"
            )
        if self.train_images < 1 or self.val_images < 1 or self.max_digits < 1:
            raise UserError("digits set: train_images, val_images and max_digits must be >= 1")


@dataclass(frozen=True)
class Placed:
    """One pasted digit: its class (0..9), box (x0, y0, x1, y1, exclusive) and mask."""

    digit: int
    box: tuple[int, int, int, int]
    mask: np.ndarray  # bool, canvas-sized


def make_canvas(
    rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, s: DigitsSetSettings
) -> tuple[np.ndarray, list[Placed]]:
    """One canvas (uint8 HxW) and the digits placed on it, drawn from ``rng``."""
    canvas = np.zeros((s.canvas, s.canvas), np.uint8)
    taken = np.zeros_like(canvas, bool)
    placed: list[Placed] = []
    for _ in range(int(rng.integers(1, s.max_digits + 1))):
        k = int(rng.integers(len(images)))
        size = int(rng.integers(s.min_size, s.max_size + 1))
        digit = np.asarray(
            Image.fromarray(images[k]).resize((size, size), Image.Resampling.BILINEAR)
        )
        for _try in range(20):  # a free place, else the digit is left out
            x, y = (int(v) for v in rng.integers(0, s.canvas - size + 1, size=2))
            if not taken[y : y + size, x : x + size].any():
                break
        else:
            continue
        ink = digit > MASK_THRESHOLD
        if not ink.any():
            continue
        taken[y : y + size, x : x + size] = True
        canvas[y : y + size, x : x + size] = np.maximum(canvas[y : y + size, x : x + size], digit)
        mask = np.zeros_like(taken)
        mask[y : y + size, x : x + size] = ink
        rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
        box = (x + int(cols[0]), y + int(rows[0]), x + int(cols[-1]) + 1, y + int(rows[-1]) + 1)
        placed.append(Placed(int(labels[k]), box, mask))
    return canvas, placed


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE of a bool mask (column-major runs, starting with zeros)."""
    flat = mask.T.reshape(-1).astype(np.uint8)
    change = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(edges).tolist()
    if flat.size and flat[0] == 1:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def _annotation(ann_id: int, image_id: int, p: Placed) -> dict[str, Any]:
    x0, y0, x1, y1 = p.box
    return dict(
        id=ann_id,
        image_id=image_id,
        category_id=p.digit + 1,
        bbox=[x0, y0, x1 - x0, y1 - y0],
        area=int(p.mask.sum()),
        iscrowd=0,
        segmentation=rle_encode(p.mask),
    )


def _palette() -> list[int]:
    """Background black, one distinct colour per digit, the rest grey (VOC keeps 255 for 'void')."""
    colours = [(0, 0, 0)] + [
        (int(40 + 21 * i), int((97 * i) % 256), int(255 - 23 * i)) for i in range(10)
    ]
    flat = [c for rgb in colours for c in rgb]
    return flat + [128] * (768 - len(flat))


def write_split(
    root: Path,
    split: str,
    seed_offset: int,
    digits: tuple[np.ndarray, np.ndarray],
    n: int,
    s: DigitsSetSettings,
) -> None:
    """Write one split's canvases in both layouts (COCO under ``det/``, VOC under ``seg/``)."""
    rng = np.random.default_rng([s.seed, seed_offset])
    images, labels = digits
    det, seg = root / "det", root / "seg"
    (det / split).mkdir(parents=True, exist_ok=True)
    coco: dict[str, Any] = dict(
        images=[],
        annotations=[],
        categories=[
            dict(id=i + 1, name=n_, supercategory="digit") for i, n_ in enumerate(CLASS_NAMES)
        ],
    )
    names = []
    for i in range(n):
        canvas, placed = make_canvas(rng, images, labels, s)
        name = f"{split}_{i:06d}"
        Image.fromarray(canvas).convert("RGB").save(det / split / f"{name}.png", optimize=False)
        Image.fromarray(canvas).convert("RGB").save(seg / "JPEGImages" / f"{name}.jpg", quality=95)
        classes = np.zeros(canvas.shape, np.uint8)
        for p in placed:
            classes[p.mask] = p.digit + 1
        png = Image.fromarray(classes, mode="P")
        png.putpalette(_palette())
        png.save(seg / "SegmentationClass" / f"{name}.png")
        coco["images"].append(
            dict(id=i + 1, file_name=f"{name}.png", width=s.canvas, height=s.canvas)
        )
        first = len(coco["annotations"]) + 1
        coco["annotations"] += [_annotation(first + j, i + 1, p) for j, p in enumerate(placed)]
        names.append(name)
    (det / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    (seg / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")


def write_digits_sets(root: str | Path, settings: DigitsSetSettings | None = None) -> Path:
    """Write both layouts of the set into ``root`` (``root/det`` COCO, ``root/seg`` VOC).

    ``root`` must not exist yet; the set is built in a temporary sibling and
    renamed into place, so a killed writer never leaves half a set behind.
    """
    from fbnetv3_zoo.data import digits_arrays

    s = settings or DigitsSetSettings()
    s.check()
    root = Path(root)
    if os.path.lexists(root):
        raise UserError(f"{root} already exists; the digits set is written only into a new folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for sub in (
            "det/annotations",
            "seg/JPEGImages",
            "seg/SegmentationClass",
            "seg/ImageSets/Segmentation",
        ):
            (tmp / sub).mkdir(parents=True)
        xt, yt, xv, yv = digits_arrays()
        write_split(tmp, "train", 0, (xt, yt), s.train_images, s)
        write_split(tmp, "val", 1, (xv, yv), s.val_images, s)
        doc = dict(format=FORMAT_VERSION, **asdict(s))
        (tmp / SETTINGS_FILE).write_text(json.dumps(doc, indent=2))
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def digits_sets_folder(
    data_root: str | Path | None, settings: DigitsSetSettings | None = None
) -> Path:
    """The cached set for ``settings`` under ``data_root``, written on first use."""
    from fbnetv3_zoo.data import DEFAULT_DATA_ROOT

    s = settings or DigitsSetSettings()
    tag = "-".join(f"{v}" for v in asdict(s).values())
    folder = Path(data_root or DEFAULT_DATA_ROOT) / f"digits-sets-v{FORMAT_VERSION}-{tag}"
    if not (folder / SETTINGS_FILE).is_file():
        try:
            write_digits_sets(folder, s)
        except UserError:
            if not (folder / SETTINGS_FILE).is_file():  # another process won the race: use it
                raise
    return folder
