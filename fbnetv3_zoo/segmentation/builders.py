"""LR-ASPP and DeepLabV3: torchvision's segmentation heads on an FBNetV3 trunk.

As torchvision's MobileNetV3 segmenters, with one difference said plainly: the
high-level features come at stride 32 by default; ``dilated=True`` makes them
stride 16 as torchvision's (the last stage's depthwise convolutions lose their
stride and dilate by 2: the same weights, but that stage then runs on four times
as many positions, so it is opt-in for small CPU runs).  LR-ASPP reads the stride-8
stage (``low``) and the last stage (``high``); DeepLabV3 reads the last stage
(``out``) and, with ``aux_loss=True``, the stride-8 stage for its FCN aux head.
BatchNorm stays trainable and every stage trains (torchvision freezes nothing here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from fbnetv3_zoo.detection.backbone import StageFeatures, prepared_net
from fbnetv3_zoo.detection.builders import _check_classes
from fbnetv3_zoo.detection.names import SEGMENTATION_FAMILIES, split_name

__all__ = ["create_segmenter"]

LOW_STRIDE = 8  # the stage LR-ASPP's low branch and DeepLabV3's aux head read


def _low_stage(net: nn.Module) -> int:
    """The last stage at stride 8 (the first deeper one if a spec has none at 8)."""
    strides = [int(info["reduction"]) for info in net.feature_info]
    at_most = [i for i, s in enumerate(strides) if s <= LOW_STRIDE]
    return at_most[-1] if at_most else 0


def dilate_last_stage(net: nn.Module) -> nn.Module:
    """Output stride 16 (torchvision's ``dilated=True``): the last stage's depthwise convs run
    at stride 1 with dilation 2 and "same" padding; weights are unchanged."""
    for block in net.blocks[-1]:
        conv = block.dw.conv
        k = conv.kernel_size[0]
        conv.stride, conv.dilation, conv.padding = (1, 1), (2, 2), (k - 1, k - 1)
    if net.feature_info[-1]["reduction"] > 1:
        net.feature_info[-1]["reduction"] //= 2
    return net


def lraspp(net: nn.Module, num_classes: int, inter_channels: int = 128, **kwargs: Any) -> nn.Module:
    """LR-ASPP: a 1x1 branch gated by global context on ``high``, plus a linear ``low`` branch."""
    from torchvision.models.segmentation.lraspp import LRASPP

    last = len(net.arch.stages) - 1
    body = StageFeatures(net, [_low_stage(net), last], ["low", "high"])
    low, high = body.channels
    return LRASPP(body, low, high, num_classes, inter_channels, **kwargs)


def deeplabv3(net: nn.Module, num_classes: int, aux_loss: bool = False, **kwargs: Any) -> nn.Module:
    """DeepLabV3: ASPP (rates 12, 24, 36) on the last stage; optional FCN aux head."""
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3
    from torchvision.models.segmentation.fcn import FCNHead

    last = len(net.arch.stages) - 1
    if aux_loss:
        body = StageFeatures(net, [_low_stage(net), last], ["aux", "out"])
        aux = FCNHead(body.channels[0], num_classes)
    else:
        body, aux = StageFeatures(net, [last], ["out"]), None
    return DeepLabV3(body, DeepLabHead(body.channels[-1], num_classes, **kwargs), aux)


def create_segmenter(
    name: str,
    num_classes: int = 21,
    weights_backbone: str | Path | None = None,
    backbone: Any = None,
    drop_path_rate: float = 0.0,
    dilated: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build segmenter ``name`` (``fbnetv3_zoo.segmentation.SEGMENTERS``, or ``lraspp`` /
    ``deeplabv3`` with ``backbone=`` any zoo reference).

    ``num_classes`` counts the background class as torchvision does (VOC: 21).
    The model returns ``{"out": logits}`` at the input's size (DeepLabV3 with
    ``aux_loss=True`` adds ``"aux"``).  ``weights_backbone``: ``"fb_in1k"`` or a
    checkpoint file.  ``dilated=True``: high-level features at stride 16 (module docstring).
    ``kwargs`` go to the head (LR-ASPP: ``inter_channels``;
    DeepLabV3: ``aux_loss``, ``atrous_rates``).
    """
    family, ref = split_name(name, SEGMENTATION_FAMILIES, backbone, "segmenter")
    _check_classes(num_classes)
    net = prepared_net(ref, weights_backbone, None, False, drop_path_rate, default_trainable=None)
    if dilated:
        dilate_last_stage(net)
    build = lraspp if family == "lraspp" else deeplabv3
    return build(net, num_classes, **kwargs)
