"""Detection/segmentation data (issue 39): the synthetic digits sets, the COCO and VOC loaders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fbnetv3_zoo.tasks import (
    CocoDetection,
    CocoError,
    DigitsSetSettings,
    VocError,
    load_detection,
    load_segmentation,
    write_digits_sets,
)
from fbnetv3_zoo.tasks.coco import decode_mask
from fbnetv3_zoo.tasks.datasets import detection_transform, segmentation_transform
from fbnetv3_zoo.tasks.digits_det import rle_encode

TINY = DigitsSetSettings(train_images=6, val_images=3, canvas=48, min_size=12, max_size=20)


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_digits_sets(tmp_path_factory.mktemp("sets") / "tiny", TINY)


def test_same_seed_same_bytes_other_seed_other_bytes(tiny_set: Path, tmp_path: Path) -> None:
    again = _files(write_digits_sets(tmp_path / "again", TINY))
    assert again == _files(tiny_set)
    other = _files(
        write_digits_sets(tmp_path / "other", DigitsSetSettings(**{**TINY.__dict__, "seed": 1}))
    )
    assert other.keys() == again.keys() and other != again


def test_writer_refuses_an_existing_folder(tiny_set: Path) -> None:
    with pytest.raises(Exception, match="already exists"):
        write_digits_sets(tiny_set, TINY)


def test_boxes_are_the_masks_extent_and_segmentation_matches_detection(tiny_set: Path) -> None:
    det = CocoDetection(tiny_set / "det", "train", masks=True)
    seg = load_segmentation(tiny_set / "seg", num_classes=11)
    assert len(det) == TINY.train_images and len(seg.train) == TINY.train_images
    for i in range(len(det)):
        image, target = det[i]
        assert image.size == (48, 48)
        classes = np.zeros((48, 48), np.int64)
        for box, label, mask in zip(
            target["boxes"], target["labels"], target["masks"], strict=True
        ):
            ys, xs = np.nonzero(mask.numpy())
            assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == box.tolist()
            classes[mask.numpy().astype(bool)] = int(label)
        _, seg_mask = seg.train[i]
        assert torch.equal(torch.as_tensor(seg_mask), torch.from_numpy(classes))


def test_uncompressed_rle_round_trips() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((7, 5)) > 0.5
    assert np.array_equal(decode_mask(rle_encode(mask), 7, 5), mask.astype(np.uint8))
    mask[0, 0] = True  # a mask starting with ones begins with a zero-length run
    assert rle_encode(mask)["counts"][0] == 0
    assert np.array_equal(decode_mask(rle_encode(mask), 7, 5), mask.astype(np.uint8))


def _hand_coco(root: Path, annotations: list[dict] | None = None, images: int = 2) -> Path:
    (root / "annotations").mkdir(parents=True)
    for split in ("train", "val"):
        (root / split).mkdir()
        for k in range(images):
            Image.new("RGB", (40, 30), (k * 50, 0, 0)).save(root / split / f"{k}.png")
        doc = dict(
            images=[
                dict(id=10 + k, file_name=f"{k}.png", width=40, height=30) for k in range(images)
            ],
            categories=[dict(id=7, name="cat"), dict(id=3, name="dog")],
            annotations=annotations
            if annotations is not None
            else [
                dict(
                    id=1,
                    image_id=10,
                    category_id=7,
                    bbox=[2, 3, 10, 8],
                    area=80,
                    iscrowd=0,
                    segmentation=[[2, 3, 12, 3, 12, 11, 2, 11]],
                ),
                dict(
                    id=2,
                    image_id=10,
                    category_id=3,
                    bbox=[20, 5, 15, 20],
                    area=300,
                    iscrowd=0,
                    segmentation=[[20, 5, 35, 5, 35, 25, 20, 25]],
                ),
            ],
        )
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    return root


def test_hand_written_coco_folder(tmp_path: Path) -> None:
    splits = load_detection(_hand_coco(tmp_path / "coco"))
    assert (
        splits.classes == ["dog", "cat"] and splits.num_classes == 3
    )  # category ids 3, 7 in order
    image, target = splits.val[0]
    assert image.size == (40, 30) and target["image_id"] == 10
    assert target["boxes"].tolist() == [[2, 3, 12, 11], [20, 5, 35, 25]]
    assert target["labels"].tolist() == [2, 1]
    assert splits.val[1][1]["boxes"].shape == (0, 4)  # an image without objects
    masked = CocoDetection(tmp_path / "coco", "val", masks=True)[0][1]["masks"]
    assert masked.shape == (2, 30, 40) and masked[0, 5, 5] == 1 and masked[0, 20, 30] == 0


def test_flip_moves_boxes_and_masks_with_the_image(tmp_path: Path) -> None:
    data = CocoDetection(_hand_coco(tmp_path / "coco"), "val", detection_transform(1.0), masks=True)
    image, target = data[0]
    assert image.dtype == torch.float32 and image.shape == (3, 30, 40)
    assert target["boxes"].tolist() == [[28, 3, 38, 11], [5, 5, 20, 25]]
    plain = CocoDetection(tmp_path / "coco", "val", masks=True)[0][1]["masks"]
    assert torch.equal(target["masks"], plain.flip(-1))


def test_segmentation_transform_resizes_masks_nearest(tiny_set: Path) -> None:
    seg = load_segmentation(tiny_set / "seg", num_classes=11)
    seg.set_transforms(None, segmentation_transform(24, 0.0))
    image, mask = seg.val[0]
    assert image.shape == (3, 24, 24) and mask.shape == (24, 24)
    assert set(mask.unique().tolist()) <= set(range(11))  # nearest: no blended class ids


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["annotations"][0].update(bbox=[30, 3, 20, 8]),
            r"annotations\[0\].bbox.*not inside",
        ),
        (
            lambda d: d["annotations"][0].update(bbox=[1, 2, "x", 4]),
            r"annotations\[0\].bbox.*4 finite numbers",
        ),
        (
            lambda d: d["annotations"][0].update(category_id=99),
            r"annotations\[0\].category_id.*not in 'categories'",
        ),
        (lambda d: d["annotations"][0].update(image_id=5), r"annotations\[0\].image_id.*no image"),
        (lambda d: d["annotations"][0].pop("category_id"), r"'category_id' is missing"),
        (lambda d: d["images"][0].update(file_name="../x.png"), r"images\[0\].file_name"),
        (
            lambda d: d["annotations"][0].update(segmentation={"counts": [1, 2], "size": [30, 40]}),
            "uncompressed RLE",
        ),
        (lambda d: d.pop("categories"), "'categories' is missing"),
    ],
)
def test_bad_annotations_are_one_error_naming_file_and_field(
    tmp_path: Path, change, message: str
) -> None:
    root = _hand_coco(tmp_path / "coco")
    path = root / "annotations" / "instances_val.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(CocoError, match=message) as err:
        CocoDetection(root, "val")
    assert "instances_val.json" in str(err.value)


def test_missing_and_unreadable_images_name_the_file(tmp_path: Path) -> None:
    root = _hand_coco(tmp_path / "coco")
    (root / "val" / "0.png").unlink()
    with pytest.raises(CocoError, match=r"val/0.png: image file not found"):
        CocoDetection(root, "val")[0]
    (root / "val" / "1.png").write_bytes(b"not a png")
    with pytest.raises(CocoError, match=r"val/1.png: image cannot be read"):
        CocoDetection(root, "val")[1]
    (root / "annotations" / "instances_train.json").write_text("{nope")
    with pytest.raises(CocoError, match="instances_train.json is not valid JSON"):
        load_detection(root)
    with pytest.raises(CocoError, match="no annotations/instances_val.json"):
        CocoDetection(tmp_path, "val")


def test_bad_voc_files_name_the_file(tiny_set: Path, tmp_path: Path) -> None:
    import shutil

    root = Path(shutil.copytree(tiny_set / "seg", tmp_path / "voc"))
    with pytest.raises(VocError, match=r"class index \d+ is >= the 5 classes"):
        load_segmentation(root, num_classes=5).train[0]
    lst = root / "ImageSets" / "Segmentation" / "val.txt"
    lst.write_text("../../etc/passwd\n")
    with pytest.raises(VocError, match=r"val.txt: line 1 holds '../../etc/passwd'"):
        load_segmentation(root)
    lst.write_text("train_000000\n")
    (root / "SegmentationClass" / "train_000000.png").unlink()
    with pytest.raises(VocError, match="train_000000.png: mask file not found"):
        load_segmentation(root, num_classes=11).val[0]


def test_embedded_names_write_once_under_the_data_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fbnetv3_zoo.tasks.datasets as datasets

    small = DigitsSetSettings(train_images=2, val_images=2, canvas=32, min_size=10, max_size=14)
    monkeypatch.setattr(datasets, "DigitsSetSettings", lambda: small)
    det = load_detection("digits-det", data_root=tmp_path)
    seg = load_segmentation("digits-seg", data_root=tmp_path)
    assert det.name == "digits-det" and det.num_classes == 11 and det.image_size == 32
    assert seg.num_classes == 11 and seg.classes[0] == "0"
    assert len(list(tmp_path.iterdir())) == 1  # one cached folder holds both layouts
