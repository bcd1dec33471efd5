"""FBNetV3 segmenters in torchvision's API: LR-ASPP and DeepLabV3.

``create_segmenter("lraspp_fbnetv3_a", num_classes=11)`` returns a torchvision
``LRASPP`` whose forward gives ``{"out": logits}`` at the input's size.
``SEGMENTERS`` lists the named models; importing this package imports no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbnetv3_zoo.detection.names import SEGMENTATION_FAMILIES, SEGMENTERS, generic_names

if TYPE_CHECKING:
    from torch import nn

GENERIC_SEGMENTERS: tuple[str, ...] = generic_names(SEGMENTATION_FAMILIES)

__all__ = ["GENERIC_SEGMENTERS", "SEGMENTERS", "create_segmenter"]


def create_segmenter(
    name: str,
    num_classes: int = 21,
    weights_backbone: str | Path | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a segmenter by name; see ``fbnetv3_zoo.segmentation.builders.create_segmenter``."""
    from fbnetv3_zoo.segmentation.builders import create_segmenter as build

    return build(name, num_classes, weights_backbone, **kwargs)
