"""FBNetV3 detectors in torchvision's API: Faster R-CNN / Mask R-CNN / RetinaNet with FPN, SSDLite.

``create_detector("fasterrcnn_fbnetv3_a_fpn", num_classes=11)`` returns a torchvision
``FasterRCNN``: train mode takes ``(images, targets)`` and returns its loss dict,
eval mode returns ``boxes``/``labels``/``scores`` (``masks`` for Mask R-CNN).
``DETECTORS`` lists the named models; for comparisons a timm backbone may take the
variant's place (``fasterrcnn_efficientnet_b0_fpn``, see ``is_detector``).  Importing
this package imports no torch (``create_detector`` loads the builders on first call).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbnetv3_zoo.detection.names import DETECTION_FAMILIES, DETECTORS, generic_names, is_detector

if TYPE_CHECKING:
    from torch import nn

GENERIC_DETECTORS: tuple[str, ...] = generic_names(DETECTION_FAMILIES)

__all__ = ["DETECTORS", "GENERIC_DETECTORS", "create_detector", "is_detector"]


def create_detector(
    name: str,
    num_classes: int = 91,
    weights_backbone: str | Path | None = None,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a detector by name; see ``fbnetv3_zoo.detection.builders.create_detector``."""
    from fbnetv3_zoo.detection.builders import create_detector as build

    return build(name, num_classes, weights_backbone, trainable_backbone_layers, **kwargs)
