"""Any FBNetV3 the zoo builds, as the trunk of a detector or segmenter.

The trunk is our own model, cut after the last stage a head reads and fed
through ``forward_intermediates``: the stage outputs are what torchvision's
FPN and heads take (an ordered dict of feature maps).  Weights, frozen stages
and frozen BatchNorm follow torchvision's detection builders, so a user of
``fasterrcnn_mobilenet_v3_large_fpn`` meets the same arguments here.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.models.variants import OFFICIAL_TAG

__all__ = [
    "StageFeatures",
    "WithFPN",
    "build_backbone_net",
    "freeze_batchnorm",
    "freeze_stages",
    "prepared_net",
    "stage_features",
    "trainable_layers",
]

# weights_backbone values that mean "the published ImageNet weights of this variant"
OFFICIAL_WEIGHTS = (OFFICIAL_TAG, "DEFAULT")
WEIGHTS_FORMS = (
    f"None, {OFFICIAL_TAG!r} (a published variant's ImageNet weights) or a checkpoint file "
    "(.pth/.pt/.safetensors: ours, the official ImageNet layout, or a d2go detector's trunk)"
)
DEFAULT_TRAINABLE = 3  # torchvision's default for a backbone with weights


def build_backbone_net(
    backbone: Any, weights_backbone: str | Path | None = None, drop_path_rate: float = 0.0
) -> nn.Module:
    """The full classification network of ``backbone`` (any zoo reference), with its weights.

    ``weights_backbone``: see ``WEIGHTS_FORMS``; a file goes through the same safe
    loader as classification (official or our layout, classifier size free); a d2go
    detector checkpoint gives its trunk (``fbnetv3_zoo.detection.d2go``).
    """
    from fbnetv3_zoo.detection.d2go import is_d2go_layout, load_d2go_trunk
    from fbnetv3_zoo.weights.checkpoint import load_weights, read_checkpoint
    from fbnetv3_zoo.weights.resolve import parse_ref

    facts = parse_ref(backbone)
    if facts.spec is None:
        raise UserError(
            f"backbone {facts.text!r} is not an FBNetV3 network; give a zoo name (fbnetv3_a..g), "
            "an ArchSpec, its mapping, or an ArchSpec / search result YAML path"
        )
    kwargs = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
    if weights_backbone is None:
        return facts.create(pretrained=False, **kwargs)
    if str(weights_backbone) in OFFICIAL_WEIGHTS:
        if facts.variant is None:
            raise UserError(
                f"weights_backbone={weights_backbone!r}: backbone {facts.text!r} has no published "
                "weights; give a checkpoint file of it"
            )
        ref = parse_ref(f"{facts.variant.name}.{OFFICIAL_TAG}")
        return ref.create(pretrained=True, **kwargs)
    path = Path(weights_backbone)
    if not path.is_file():
        raise UserError(
            f"weights_backbone={str(weights_backbone)!r}: no such file; accepted: {WEIGHTS_FORMS}"
        )
    net = facts.create(pretrained=False, **kwargs)
    state_dict = read_checkpoint(path)
    if is_d2go_layout(state_dict):  # a d2go detector's checkpoint: its trunk only
        load_d2go_trunk(net, state_dict, str(path))
        return net
    return load_weights(net, path)


def trainable_layers(
    is_trained: bool, value: int | None, max_value: int, default: int | None = DEFAULT_TRAINABLE
) -> int:
    """How many stages (from the top) train, as torchvision decides it.

    Without backbone weights everything trains and a value given is ignored
    with a warning (torchvision's rule); with weights the default is ``default`` (3 for
    detectors; None: all, as torchvision's segmenters train every stage).
    """
    if not is_trained:
        if value is not None:
            warnings.warn(
                "trainable_backbone_layers has no effect without weights_backbone; "
                f"all {max_value} backbone stages train",
                stacklevel=3,
            )
        return max_value
    if value is None:
        value = max_value if default is None else min(default, max_value)
    if not isinstance(value, int) or not 0 <= value <= max_value:
        raise UserError(
            f"trainable_backbone_layers must be an integer in 0..{max_value}, got {value!r}"
        )
    return value


def freeze_stages(net: nn.Module, trainable: int) -> None:
    """Stop gradients to every stage but the last ``trainable`` (the stem goes with stage 0)."""
    num = len(net.arch.stages)
    frozen = (
        [] if trainable >= num else ["stem.", *(f"blocks.{i}." for i in range(num - trainable))]
    )
    for name, param in net.named_parameters():
        if name.startswith(tuple(frozen)):
            param.requires_grad_(False)


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by torchvision's FrozenBatchNorm2d holding the same statistics."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                for key in ("weight", "bias", "running_mean", "running_var"):
                    getattr(frozen, key).copy_(getattr(child, key))
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


class StageFeatures(nn.Module):
    """The stem and stages of ``net`` up to the last one read, returning ``{name: stage output}``.

    The classification head and the final 1x1 expansion are dropped, so no
    parameter goes unused (DDP would need ``find_unused_parameters`` otherwise).
    """

    def __init__(self, net: nn.Module, stages: Sequence[int], names: Sequence[str]) -> None:
        super().__init__()
        num = len(net.blocks)
        stages = [int(s) for s in stages]
        if not stages or sorted(set(stages)) != stages or not 0 <= stages[0] <= stages[-1] < num:
            raise UserError(
                f"backbone stages must be increasing indices in 0..{num - 1}, got {stages}"
            )
        if len(names) != len(stages):
            raise ValueError(f"{len(stages)} stages but {len(names)} names")
        info = net.feature_info
        net.prune_intermediate_layers(stages, prune_head=True)
        net.conv_expand = nn.Identity()
        self.net = net
        self.stages = stages
        self.names = [str(n) for n in names]
        self.channels = [int(info[i]["num_chs"]) for i in stages]
        self.strides = [int(info[i]["reduction"]) for i in stages]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.net.forward_intermediates(
            x, indices=self.stages, intermediates_only=True, stop_early=True
        )
        return OrderedDict(zip(self.names, feats, strict=True))


class WithFPN(nn.Module):
    """Stage features through torchvision's FeaturePyramidNetwork (``out_channels`` as
    torchvision's detectors read it)."""

    def __init__(self, body: StageFeatures, out_channels: int, extra_blocks: nn.Module) -> None:
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork

        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(body.channels, out_channels, extra_blocks=extra_blocks)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.fpn(self.body(x))


def prepared_net(
    backbone: Any,
    weights_backbone: str | Path | None,
    trainable_backbone_layers: int | None,
    frozen_bn: bool,
    drop_path_rate: float = 0.0,
    default_trainable: int | None = DEFAULT_TRAINABLE,
) -> nn.Module:
    """Build, load, freeze (BN and stages as torchvision would) the backbone network."""
    net = build_backbone_net(backbone, weights_backbone, drop_path_rate)
    is_trained = weights_backbone is not None
    trainable = trainable_layers(
        is_trained, trainable_backbone_layers, len(net.arch.stages), default_trainable
    )
    if is_trained and frozen_bn:
        freeze_batchnorm(net)
    freeze_stages(net, trainable)
    return net


def stage_features(
    spec: dict[str, Any],
    frozen_bn: bool,
    returned_layers: Sequence[int] | None,
    last: int,
    by_index: bool,
) -> nn.Module:
    """The trunk a detector's heads read: the FBNetV3 stages ``returned_layers`` (default the
    ``last`` deepest), or, for a timm name, that model's feature levels (``timm_backbone``).

    ``by_index`` names the outputs 0, 1, ... (what the FPN heads expect), else by stage.
    """
    from fbnetv3_zoo.weights.resolve import parse_ref

    facts = parse_ref(spec["backbone"])
    if facts.spec is None and facts.kind == "timm":
        from fbnetv3_zoo.detection.timm_backbone import timm_features

        return timm_features(facts.name, spec, returned_layers, last, by_index)
    net = prepared_net(**spec, frozen_bn=frozen_bn)
    num = len(net.arch.stages)
    stages = list(range(num - last, num)) if returned_layers is None else list(returned_layers)
    return StageFeatures(net, stages, range(len(stages)) if by_index else stages)
