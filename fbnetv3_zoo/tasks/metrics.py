"""The tasks' metrics: COCO's AP through pycocotools, mIoU and pixel accuracy from a confusion matrix.

Detection numbers are pycocotools' own (``COCOeval.stats``), in percent like
the classification top-1: AP (IoU 0.50:0.95), AP50, AP75, APs, APm, APl;
a category or size range with no ground truth gives -1 there, recorded as
None.  Mask R-CNN outputs add the same six for masks (``mask_AP``...).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import torch

COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _pycocotools() -> tuple[Any, Any, Any]:
    from fbnetv3_zoo.optional import require

    coco = require("pycocotools.coco", "COCO evaluation")
    cocoeval = require("pycocotools.cocoeval", "COCO evaluation")
    return coco.COCO, cocoeval.COCOeval, require("pycocotools.mask", "COCO evaluation")


def detections_to_coco(
    outputs: list[dict[str, torch.Tensor]], image_ids: list[int], category_ids: list[int]
) -> list[dict[str, Any]]:
    """torchvision detector outputs (XYXY boxes, labels 1..K) as COCO result records.

    ``category_ids[label - 1]`` is the COCO id of label ``label``; masks
    (probabilities, N x 1 x H x W) are thresholded at 0.5 and RLE-encoded.
    """
    records = []
    for out, image_id in zip(outputs, image_ids, strict=True):
        boxes = out["boxes"].detach().float().cpu().numpy()
        scores = out["scores"].detach().float().cpu().numpy()
        labels = out["labels"].detach().cpu().numpy()
        rles = _encode_masks(out["masks"]) if "masks" in out else None
        for k in range(len(boxes)):
            x0, y0, x1, y1 = (float(v) for v in boxes[k])
            rec: dict[str, Any] = dict(
                image_id=int(image_id),
                category_id=int(category_ids[int(labels[k]) - 1]),
                bbox=[x0, y0, x1 - x0, y1 - y0],
                score=float(scores[k]),
            )
            if rles is not None:
                rec["segmentation"] = rles[k]
            records.append(rec)
    return records


def _encode_masks(masks: torch.Tensor) -> list[dict[str, Any]]:
    _, _, mask_utils = _pycocotools()
    binary = (masks.detach().float().cpu()[:, 0] > 0.5).numpy().astype(np.uint8)
    rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def coco_evaluate(
    ground_truth: dict[str, Any], results: list[dict[str, Any]], iou_type: str = "bbox"
) -> dict[str, float | None]:
    """COCO's six AP numbers (percent) of ``results`` against the ``ground_truth`` annotation dict.

    No detection at all scores 0 (pycocotools cannot load an empty result
    list); pycocotools' console output is kept off the console.
    """
    COCO, COCOeval, _ = _pycocotools()
    prefix = "" if iou_type == "bbox" else "mask_"
    if not results:
        return {prefix + k: 0.0 for k in COCO_KEYS}
    gt = COCO()
    gt.dataset = ground_truth
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iou_type)
        ev.params.imgIds = sorted(img["id"] for img in ground_truth["images"])
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {
        prefix + k: (None if v < 0 else 100.0 * float(v))
        for k, v in zip(COCO_KEYS, ev.stats[:6], strict=True)
    }


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore: int = 255
) -> torch.Tensor:
    """``num_classes`` x ``num_classes`` counts (rows: truth, columns: prediction), void pixels left out."""
    keep = target != ignore
    t, p = target[keep].long(), pred[keep].long()
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def segmentation_scores(matrix: torch.Tensor) -> dict[str, float | None]:
    """mIoU (mean over classes present in truth or prediction) and pixel accuracy, in percent."""
    m = matrix.double()
    total = m.sum()
    if total == 0:
        return dict(miou=None, pixel_acc=None)
    inter = m.diag()
    union = m.sum(0) + m.sum(1) - inter
    present = union > 0
    miou = (inter[present] / union[present]).mean().item()
    return dict(miou=100.0 * miou, pixel_acc=100.0 * (inter.sum() / total).item())
