"""COCO-format detection folders, read as untrusted input.

A folder holds ``annotations/instances_<split>.json`` (``<split>`` is
``train``/``val``, or ``train2017``/``val2017`` as COCO ships them) and the
images under ``<split>/``, ``<split>2017/``, ``images/<split>/`` or
``images/`` (the first that exists).  Every field used is checked: a
missing key, a wrong type, a box outside its image, an unknown category or
image id, or an image file that is missing or unreadable is one error naming
the file and the field (``CocoError``).

Samples come out as ``(image, target)`` through ``torchvision.transforms.v2``:
boxes are ``tv_tensors.BoundingBoxes`` (XYXY) and masks ``tv_tensors.Mask``,
so flips and resizes move them with the image.  Category ids are mapped to
contiguous labels 1..K in id order (0 is the background torchvision's
detectors reserve); ``CocoDetection.category_ids[label - 1]`` maps back.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from fbnetv3_zoo.data import UNREADABLE, DataError
from fbnetv3_zoo.files.untrusted import UntrustedFileError, field, inner_name, read_json

MAX_ANNOTATION_BYTES = 2 << 30  # COCO 2017's train file is ~450 MB
SPLIT_NAMES = {"train": ("train", "train2017"), "val": ("val", "val2017")}


class CocoError(DataError):
    """A COCO folder, annotation file or image that cannot be used (names the file and field)."""


def annotation_file(root: Path, split: str) -> Path:
    """``annotations/instances_<split>.json`` (or its ``2017`` name) of a COCO folder."""
    for name in SPLIT_NAMES[split]:
        path = root / "annotations" / f"instances_{name}.json"
        if path.is_file():
            return path
    names = " or ".join(f"annotations/instances_{n}.json" for n in SPLIT_NAMES[split])
    raise CocoError(f"{root}: no {names} (a COCO detection folder holds one per split)")


def image_folder(root: Path, split: str) -> Path:
    """Where the split's images are (see the module docstring)."""
    candidates = [root / n for n in SPLIT_NAMES[split]]
    candidates += [root / "images" / n for n in SPLIT_NAMES[split]] + [root / "images"]
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise CocoError(
        f"{root}: no image folder for {split} (tried {', '.join(c.name for c in candidates)})"
    )


def _number_list(value: Any, length: int, path: Path, where: str) -> list[float]:
    ok = isinstance(value, list) and len(value) == length
    ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    if not ok or not all(np.isfinite(value)):
        raise CocoError(
            f"{path}: field {where!r} must be a list of {length} finite numbers, got {str(value)[:80]}"
        )
    return [float(v) for v in value]


def check_coco(doc: Any, path: Path, folder: Path) -> dict[str, Any]:
    """The parsed annotation file with every field this package uses checked.

    Returns ``doc`` (unchanged) so pycocotools can evaluate against it.
    """
    try:
        images = field(doc, "images", list, path)
        anns = field(doc, "annotations", list, path)
        cats = field(doc, "categories", list, path)
        cat_ids = {field(c, "id", int, path) for c in cats}
        sizes = {}
        for i, img in enumerate(images):
            image_id = field(img, "id", int, path)
            inner_name(
                folder,
                field(img, "file_name", str, path),
                source=path,
                where=f"images[{i}].file_name",
            )
            w, h = field(img, "width", int, path), field(img, "height", int, path)
            if not (0 < w <= 1 << 16 and 0 < h <= 1 << 16):
                raise CocoError(f"{path}: images[{i}] has size {w}x{h}, outside 1..65536 px")
            sizes[image_id] = (w, h)
        for i, ann in enumerate(anns):
            _check_annotation(ann, i, path, sizes, cat_ids)
    except UntrustedFileError as err:
        raise CocoError(str(err)) from None
    if len(sizes) != len(images):
        raise CocoError(f"{path}: field 'images' repeats an image id")
    if not cat_ids:
        raise CocoError(f"{path}: field 'categories' is empty; a detector needs at least one")
    return doc


def _check_annotation(
    ann: Any, i: int, path: Path, sizes: dict[int, tuple[int, int]], cat_ids: set[int]
) -> None:
    """One annotation: a known image and category, a box inside the image, an optional mask."""
    where = f"annotations[{i}]"
    image_id = field(ann, "image_id", int, path)
    if image_id not in sizes:
        raise CocoError(f"{path}: field '{where}.image_id' is {image_id}, no image has that id")
    if field(ann, "category_id", int, path) not in cat_ids:
        raise CocoError(
            f"{path}: field '{where}.category_id' is {ann['category_id']}, not in 'categories'"
        )
    field(ann, "id", int, path)
    x, y, w, h = _number_list(ann.get("bbox"), 4, path, f"{where}.bbox")
    iw, ih = sizes[image_id]
    if w < 0 or h < 0 or x < 0 or y < 0 or x + w > iw + 1 or y + h > ih + 1:
        raise CocoError(
            f"{path}: field '{where}.bbox' {[x, y, w, h]} is not inside its {iw}x{ih} image"
        )
    if "segmentation" in ann:
        _check_segmentation(ann["segmentation"], path, where, (ih, iw))


def _check_segmentation(seg: Any, path: Path, where: str, hw: tuple[int, int]) -> None:
    if isinstance(seg, list):  # polygons
        if not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in seg):
            raise CocoError(
                f"{path}: field '{where}.segmentation' polygons need >= 3 (x, y) pairs each"
            )
        for p in seg:
            _number_list(p, len(p), path, f"{where}.segmentation")
        return
    if isinstance(seg, dict) and isinstance(seg.get("counts"), list):
        counts = seg["counts"]
        size = seg.get("size")
        if (
            size != list(hw)
            or not all(isinstance(c, int) and c >= 0 for c in counts)
            or sum(counts) != hw[0] * hw[1]
        ):
            raise CocoError(
                f"{path}: field '{where}.segmentation' is not an uncompressed RLE of its {hw[1]}x{hw[0]} image"
            )
        return
    if isinstance(seg, dict) and isinstance(seg.get("counts"), str) and seg.get("size") == list(hw):
        return  # compressed RLE: decoded by pycocotools
    raise CocoError(
        f"{path}: field '{where}.segmentation' must be polygons or an RLE of the image's size"
    )


def decode_mask(seg: Any, height: int, width: int) -> np.ndarray:
    """An annotation's mask (uint8 HxW): polygons drawn with PIL, RLE decoded."""
    if isinstance(seg, list):
        from PIL import ImageDraw

        img = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(img)
        for poly in seg:
            draw.polygon([(poly[k], poly[k + 1]) for k in range(0, len(poly), 2)], fill=1)
        return np.asarray(img, np.uint8)
    if isinstance(seg["counts"], list):
        values = np.zeros(height * width, np.uint8)
        pos = 0
        for k, run in enumerate(seg["counts"]):
            if k % 2:
                values[pos : pos + run] = 1
            pos += run
        return values.reshape(width, height).T.copy()
    from fbnetv3_zoo.optional import require

    return require("pycocotools.mask", "compressed COCO masks").decode(seg).astype(np.uint8)


def load_rgb(path: Path) -> Image.Image:
    """The image at ``path`` as RGB; one ``CocoError`` naming it when missing or unreadable."""
    if not os.path.isfile(path):
        raise CocoError(f"{path}: image file not found")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except UNREADABLE as err:
        raise CocoError(f"{path}: image cannot be read ({err})") from None


class CocoDetection(Dataset):
    """One split of a COCO folder: ``(image, target)`` samples for torchvision's detectors.

    ``target`` holds ``boxes`` (BoundingBoxes XYXY), ``labels`` (1..K),
    ``image_id`` and, with ``masks=True``, ``masks`` (Mask, N x H x W).
    Crowd annotations are left out of training targets (pycocotools still
    sees them when evaluating).
    """

    def __init__(
        self, root: str | Path, split: str, transform: Callable | None = None, masks: bool = False
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise CocoError(f"--data {root}: COCO folder not found")
        self.path = annotation_file(self.root, split)
        self.images_dir = image_folder(self.root, split)
        try:
            doc = read_json(self.path, MAX_ANNOTATION_BYTES)
        except UntrustedFileError as err:
            raise CocoError(str(err)) from None
        self.coco = check_coco(doc, self.path, self.images_dir)
        self.category_ids = sorted(c["id"] for c in self.coco["categories"])
        names = {c["id"]: str(c.get("name", c["id"])) for c in self.coco["categories"]}
        self.classes = [names[i] for i in self.category_ids]
        self.label_of = {cid: k + 1 for k, cid in enumerate(self.category_ids)}
        self.images = list(self.coco["images"])
        self.anns: dict[int, list[dict[str, Any]]] = {img["id"]: [] for img in self.images}
        for ann in self.coco["annotations"]:
            self.anns[ann["image_id"]].append(ann)
        self.transform = transform
        self.masks = masks

    def __len__(self) -> int:
        return len(self.images)

    def target(self, index: int, image: Image.Image) -> dict[str, Any]:
        """The annotations of image ``index`` as tv_tensors (crowd ones left out)."""
        from torchvision import tv_tensors

        info = self.images[index]
        w, h = image.size
        if (w, h) != (info["width"], info["height"]):
            raise CocoError(
                f"{self.images_dir / info['file_name']}: image is {w}x{h}, {self.path} says "
                f"{info['width']}x{info['height']} (fields 'width', 'height')"
            )
        anns = [a for a in self.anns[info["id"]] if not a.get("iscrowd", 0)]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        target: dict[str, Any] = dict(
            boxes=tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
            labels=torch.tensor([self.label_of[a["category_id"]] for a in anns], dtype=torch.int64),
            image_id=int(info["id"]),
        )
        if self.masks:
            found = [decode_mask(a["segmentation"], h, w) for a in anns if "segmentation" in a]
            if len(found) != len(anns):
                raise CocoError(
                    f"{self.path}: image {info['id']} has an annotation without 'segmentation' (Mask R-CNN needs one on each)"
                )
            stack = np.stack(found) if found else np.zeros((0, h, w), np.uint8)
            target["masks"] = tv_tensors.Mask(torch.from_numpy(stack))
        return target

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        info = self.images[index]
        image = load_rgb(self.images_dir / info["file_name"])
        target = self.target(index, image)
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target
