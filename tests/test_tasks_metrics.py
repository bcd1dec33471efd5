"""Task metrics (issue 39): COCO AP through pycocotools on hand-made cases with known values, mIoU."""

from __future__ import annotations

import pytest
import torch

from fbnetv3_zoo.tasks import (
    coco_evaluate,
    confusion_matrix,
    detections_to_coco,
    segmentation_scores,
)

pytest.importorskip("pycocotools")

GT = dict(
    images=[dict(id=1, width=100, height=100, file_name="a.png")],
    categories=[dict(id=5, name="a"), dict(id=9, name="b")],
    annotations=[
        dict(id=1, image_id=1, category_id=5, bbox=[10, 10, 20, 20], area=400, iscrowd=0),
        dict(id=2, image_id=1, category_id=5, bbox=[50, 50, 30, 30], area=900, iscrowd=0),
    ],
)


def _det(bbox: list[float], score: float, category: int = 5) -> dict:
    return dict(image_id=1, category_id=category, bbox=bbox, score=score)


def test_perfect_predictions_score_100() -> None:
    ap = coco_evaluate(GT, [_det([10, 10, 20, 20], 0.9), _det([50, 50, 30, 30], 0.8)])
    assert ap["AP"] == ap["AP50"] == ap["AP75"] == ap["APs"] == 100.0
    assert ap["APm"] is None and ap["APl"] is None  # no ground truth of that size: not measured


def test_one_of_two_boxes_found_scores_51_of_101_recall_points() -> None:
    # precision 1 up to recall 0.5 (51 of COCO's 101 recall thresholds), nothing after it
    ap = coco_evaluate(GT, [_det([10, 10, 20, 20], 0.9)])
    assert ap["AP"] == pytest.approx(100 * 51 / 101)
    assert ap["AP50"] == ap["AP75"] == pytest.approx(100 * 51 / 101)


def test_wrong_class_misplaced_box_or_nothing_score_0() -> None:
    assert coco_evaluate(GT, [_det([10, 10, 20, 20], 0.9, category=9)])["AP"] == 0.0
    assert coco_evaluate(GT, [_det([70, 0, 20, 20], 0.9)])["AP"] == 0.0
    assert coco_evaluate(GT, []) == dict(AP=0.0, AP50=0.0, AP75=0.0, APs=0.0, APm=0.0, APl=0.0)


def test_a_box_at_iou_0_6_counts_for_ap50_not_ap75() -> None:
    # 20x20 ground truth at (10, 10); a 20x15 box at (10, 10) overlaps 300/400 = 0.75;
    # a 20x12 box: IoU 240/400 = 0.6 (above 0.5, below 0.75)
    ap = coco_evaluate(GT, [_det([10, 10, 20, 12], 0.9), _det([50, 50, 30, 30], 0.8)])
    assert ap["AP50"] == pytest.approx(100.0)
    # at IoU 0.75 the first-ranked box is a false positive: precision 1/2 up to recall 0.5
    assert ap["AP75"] == pytest.approx(100 * 0.5 * 51 / 101)


def test_detector_outputs_become_coco_records() -> None:
    out = dict(
        boxes=torch.tensor([[10.0, 10, 30, 30]]),
        scores=torch.tensor([0.7]),
        labels=torch.tensor([2]),
    )
    (rec,) = detections_to_coco([out], [1], [5, 9])
    assert rec == dict(
        image_id=1, category_id=9, bbox=[10.0, 10.0, 20.0, 20.0], score=pytest.approx(0.7)
    )


def test_mask_ap_of_perfect_masks_is_100() -> None:
    import numpy as np
    from pycocotools import mask as mask_utils

    gt_mask = np.zeros((100, 100), np.uint8)
    gt_mask[10:30, 10:30] = 1
    rle = mask_utils.encode(np.asfortranarray(gt_mask))
    rle["counts"] = rle["counts"].decode("ascii")
    gt = dict(GT, annotations=[dict(GT["annotations"][0], segmentation=rle)])
    out = dict(
        boxes=torch.tensor([[10.0, 10, 30, 30]]),
        scores=torch.tensor([0.9]),
        labels=torch.tensor([1]),
        masks=torch.from_numpy(gt_mask).float()[None, None],
    )
    records = detections_to_coco([out], [1], [5, 9])
    assert coco_evaluate(gt, records, "segm")["mask_AP"] == pytest.approx(100.0)


def test_confusion_matrix_miou_and_pixel_accuracy() -> None:
    target = torch.tensor([0, 0, 1, 0, 255])
    pred = torch.tensor([0, 0, 1, 1, 2])  # the void pixel is not counted
    m = confusion_matrix(pred, target, 3)
    assert m.tolist() == [[2, 1, 0], [0, 1, 0], [0, 0, 0]]
    scores = segmentation_scores(m)
    # IoU: background 2/3, class 1 1/2; class 2 is absent from truth and prediction
    assert scores["miou"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)
    assert scores["pixel_acc"] == pytest.approx(75.0)
    assert segmentation_scores(torch.zeros(3, 3, dtype=torch.long)) == dict(
        miou=None, pixel_acc=None
    )
