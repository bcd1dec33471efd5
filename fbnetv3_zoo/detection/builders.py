"""Faster R-CNN, Mask R-CNN, RetinaNet and SSDLite: torchvision's detectors on an FBNetV3 trunk.

Each builder takes torchvision's arguments (``num_classes`` with background,
``weights_backbone``, ``trainable_backbone_layers``, and the detector class's
own keywords such as ``min_size``/``max_size``, ``box_score_thresh``...) plus two
conveniences for small images: ``anchor_sizes`` (one base size per feature
level) and ``returned_layers`` (which backbone stages feed the heads).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from fbnetv3_zoo.detection.backbone import WithFPN, stage_features
from fbnetv3_zoo.detection.names import DETECTION_FAMILIES, split_name
from fbnetv3_zoo.errors import UserError

__all__ = ["create_detector"]

FPN_CHANNELS = 256  # torchvision's FPN width
ASPECT_RATIOS = (0.5, 1.0, 2.0)


def _level_sizes(anchor_sizes: Sequence[int] | None, levels: int) -> list[int]:
    """One base anchor size per feature level: given, else torchvision's 32, 64, ... doubling."""
    sizes = [32 * 2**i for i in range(levels)] if anchor_sizes is None else list(anchor_sizes)
    if len(sizes) != levels or not all(isinstance(s, int | float) and s > 0 for s in sizes):
        raise UserError(
            f"anchor_sizes must hold {levels} positive sizes (one per feature level of this "
            f"detector), got {anchor_sizes!r}"
        )
    return sizes


def _anchors(sizes: Sequence[Sequence[float]]) -> nn.Module:
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    return AnchorGenerator(tuple(tuple(s) for s in sizes), (ASPECT_RATIOS,) * len(sizes))


def _fpn(spec: dict[str, Any], returned_layers: Any, last: int, extra: nn.Module) -> WithFPN:
    body = stage_features(spec, True, returned_layers, last, by_index=True)
    return WithFPN(body, FPN_CHANNELS, extra)


def rcnn(
    spec: dict[str, Any],
    num_classes: int,
    mask: bool = False,
    returned_layers: Sequence[int] | None = None,
    anchor_sizes: Sequence[int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Faster R-CNN (or Mask R-CNN) with FPN on stages 1..4 plus max-pool, as resnet50_fpn."""
    from torchvision.models.detection import FasterRCNN, MaskRCNN
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    fpn = _fpn(spec, returned_layers, 4, LastLevelMaxPool())
    names = fpn.body.names
    sizes = _level_sizes(anchor_sizes, len(names) + 1)
    kwargs.setdefault("rpn_anchor_generator", _anchors([(s,) for s in sizes]))
    kwargs.setdefault("box_roi_pool", MultiScaleRoIAlign(names, output_size=7, sampling_ratio=2))
    if not mask:
        return FasterRCNN(fpn, num_classes, **kwargs)
    kwargs.setdefault("mask_roi_pool", MultiScaleRoIAlign(names, output_size=14, sampling_ratio=2))
    return MaskRCNN(fpn, num_classes, **kwargs)


def retinanet(
    spec: dict[str, Any],
    num_classes: int,
    returned_layers: Sequence[int] | None = None,
    anchor_sizes: Sequence[int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """RetinaNet with FPN on stages 2..4 plus P6/P7, three scales per level, as torchvision's."""
    from torchvision.models.detection import RetinaNet
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    fpn = _fpn(spec, returned_layers, 3, LastLevelP6P7(FPN_CHANNELS, FPN_CHANNELS))
    sizes = _level_sizes(anchor_sizes, len(fpn.body.names) + 2)
    per_level = [(s, s * 2 ** (1 / 3), s * 2 ** (2 / 3)) for s in sizes]
    kwargs.setdefault("anchor_generator", _anchors(per_level))
    return RetinaNet(fpn, num_classes, **kwargs)


def _family_builder(family: str) -> Any:
    if family == "ssdlite":
        from fbnetv3_zoo.detection.ssdlite import ssdlite

        return ssdlite
    return {
        "fasterrcnn": rcnn,
        "maskrcnn": lambda spec, n, **kw: rcnn(spec, n, mask=True, **kw),
        "retinanet": retinanet,
    }[family]


def create_detector(
    name: str,
    num_classes: int = 91,
    weights_backbone: str | Path | None = None,
    trainable_backbone_layers: int | None = None,
    backbone: Any = None,
    drop_path_rate: float = 0.0,
    **kwargs: Any,
) -> nn.Module:
    """Build detector ``name`` (``fbnetv3_zoo.detection.DETECTORS``, or a generic name such as
    ``fasterrcnn_fpn`` with ``backbone=`` any zoo reference: an ArchSpec, a search result YAML).

    ``num_classes`` counts the background (classes + 1) as torchvision does.  With
    ``weights_backbone`` (``"fb_in1k"`` or a checkpoint file) the backbone's
    BatchNorm is frozen (not SSDLite's, as torchvision) and only the top
    ``trainable_backbone_layers`` stages train (default 3 of 5).  ``kwargs`` go to
    the torchvision detector class (``min_size``, ``max_size``, ...; SSDLite: ``size``).
    """
    family, ref = split_name(name, DETECTION_FAMILIES, backbone, "detector")
    _check_classes(num_classes)
    spec = dict(
        backbone=ref,
        weights_backbone=weights_backbone,
        trainable_backbone_layers=trainable_backbone_layers,
        drop_path_rate=drop_path_rate,
    )
    return _family_builder(family)(spec, num_classes, **kwargs)


def _check_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise UserError(
            f"num_classes must be an integer >= 2 (object classes + 1 for the background), "
            f"got {num_classes!r}"
        )
