"""Detection and segmentation for the training engine: data, metrics and the task plug-ins.

``digits_det`` writes the embedded synthetic sets (``digits-det``,
``digits-seg``); ``coco`` and ``voc`` read COCO detection and VOC
segmentation folders as untrusted input; ``metrics`` scores them (COCO AP
through pycocotools, mIoU); ``detection`` and ``segmentation`` are the two
``Task`` plug-ins (``base``) the engine in ``fbnetv3_zoo.recipes`` trains
through, beside classification.
"""

from __future__ import annotations

from .base import CLASSIFICATION_ONLY, Task, not_applied_fields
from .coco import CocoDetection, CocoError
from .datasets import DIGITS_DET, DIGITS_SEG, TaskSplits, load_detection, load_segmentation
from .detection import DetectionTask, create_any_detector, detector_names
from .digits_det import DigitsSetSettings, digits_sets_folder, write_digits_sets
from .metrics import coco_evaluate, confusion_matrix, detections_to_coco, segmentation_scores
from .segmentation import SegmentationTask, create_any_segmenter, segmenter_names
from .voc import VocError, VocSegmentation

__all__ = [
    "CLASSIFICATION_ONLY",
    "DIGITS_DET",
    "DIGITS_SEG",
    "CocoDetection",
    "CocoError",
    "DetectionTask",
    "DigitsSetSettings",
    "SegmentationTask",
    "Task",
    "TaskSplits",
    "VocError",
    "VocSegmentation",
    "coco_evaluate",
    "confusion_matrix",
    "create_any_detector",
    "create_any_segmenter",
    "detections_to_coco",
    "detector_names",
    "digits_sets_folder",
    "load_detection",
    "load_segmentation",
    "not_applied_fields",
    "segmentation_scores",
    "segmenter_names",
    "write_digits_sets",
]
