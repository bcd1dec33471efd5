"""SSDLite (the mobile detector) on an FBNetV3 trunk, from torchvision's SSD and SSDLite head.

As torchvision's ``ssdlite320_mobilenet_v3_large``: six feature maps (the
stride-16 and stride-32 stages plus four depthwise-separable extra blocks of
512, 256, 256 and 128 channels), default boxes with ratios 2 and 3 from 0.2 to
0.95 of the image, BatchNorm with eps 0.001 / momentum 0.03 and never frozen.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

from fbnetv3_zoo.detection.backbone import stage_features
from fbnetv3_zoo.errors import UserError

__all__ = ["SSDLiteFeatures", "ssdlite"]

EXTRA_CHANNELS = (512, 256, 256, 128)
DEFAULTS = dict(score_thresh=0.001, nms_thresh=0.55, detections_per_img=300, topk_candidates=300)


def _extra_block(cin: int, cout: int, norm_layer: Any) -> nn.Module:
    """1x1 down to half, 3x3 depthwise with stride 2, 1x1 up: halves the map cheaply."""
    mid = cout // 2
    layer = partial(Conv2dNormActivation, norm_layer=norm_layer, activation_layer=nn.ReLU6)
    return nn.Sequential(
        layer(cin, mid, kernel_size=1),
        layer(mid, mid, kernel_size=3, stride=2, groups=mid),
        layer(mid, cout, kernel_size=1),
    )


class SSDLiteFeatures(nn.Module):
    """Stage outputs, then extra blocks each halving the last map: SSD's multi-scale maps."""

    def __init__(self, body: nn.Module, extra_channels: Sequence[int], norm_layer: Any) -> None:
        super().__init__()
        self.body = body
        blocks, cin = [], body.channels[-1]
        for cout in extra_channels:
            blocks.append(_extra_block(cin, int(cout), norm_layer))
            cin = int(cout)
        self.extra = nn.ModuleList(blocks)
        self.channels = [*body.channels, *(int(c) for c in extra_channels)]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = list(self.body(x).values())
        for block in self.extra:
            maps.append(block(maps[-1]))
        return OrderedDict((str(i), m) for i, m in enumerate(maps))


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and s >= 32 for s in pair):
        raise UserError(f"size must be an int or (height, width) of ints >= 32, got {size!r}")
    return pair  # type: ignore[return-value]


def ssdlite(
    spec: dict[str, Any],
    num_classes: int,
    size: int | Sequence[int] = 320,
    returned_layers: Sequence[int] | None = None,
    extra_channels: Sequence[int] = EXTRA_CHANNELS,
    **kwargs: Any,
) -> nn.Module:
    """SSDLite at a fixed input ``size`` (images are resized to it); ``kwargs`` go to SSD."""
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD
    from torchvision.models.detection.ssdlite import SSDLiteHead

    resizing = sorted({"min_size", "max_size"} & set(kwargs))
    if resizing:
        raise UserError(
            f"SSDLite resizes every image to its fixed size; pass size=<int or (h, w)>, "
            f"not {', '.join(resizing)}"
        )
    norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    trunk = stage_features(spec, False, returned_layers, 2, by_index=False)
    body = SSDLiteFeatures(trunk, extra_channels, norm_layer)
    anchors = DefaultBoxGenerator([[2, 3]] * len(body.channels), min_ratio=0.2, max_ratio=0.95)
    head = SSDLiteHead(body.channels, anchors.num_anchors_per_location(), num_classes, norm_layer)
    return SSD(body, anchors, _pair(size), num_classes, head=head, **{**DEFAULTS, **kwargs})
