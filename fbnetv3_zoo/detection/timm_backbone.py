"""Any timm model with feature levels (``features_only``) as a detector trunk, for comparisons.

The benchmark compares backbones inside one detector (same FPN, heads and
schedule): ``create_detector("fasterrcnn_fpn", backbone="efficientnet_b0")`` or
the name ``fasterrcnn_efficientnet_b0_fpn`` put FBNetV3's rivals into the very
builders FBNetV3 uses.  Their stages train whole (freezing stages is defined for
FBNetV3's stage layout only) and keep timm's norm layers (its BatchNormAct2d
holds the activation, so it cannot be swapped for FrozenBatchNorm2d).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fbnetv3_zoo.errors import UserError

__all__ = ["TimmFeatures", "timm_features"]


class TimmFeatures(nn.Module):
    """A timm ``features_only`` model giving ``{name: level}`` for the levels asked for."""

    def __init__(self, net: nn.Module, stages: Sequence[int], names: Sequence[str]) -> None:
        super().__init__()
        self.net = net
        self.stages = list(stages)
        self.names = [str(n) for n in names]
        self.channels = list(net.feature_info.channels())
        self.strides = list(net.feature_info.reduction())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return OrderedDict(zip(self.names, self.net(x), strict=True))


def _weights(name: str, weights_backbone: Any) -> dict[str, Any]:
    """timm's ``pretrained`` arguments for ``weights_backbone`` (None, "DEFAULT" or a file)."""
    if weights_backbone is None:
        return {"pretrained": False}
    if str(weights_backbone) == "DEFAULT":
        return {"pretrained": True}
    if Path(weights_backbone).is_file():
        return {"pretrained": True, "pretrained_cfg_overlay": {"file": str(weights_backbone)}}
    raise UserError(
        f"weights_backbone={str(weights_backbone)!r} for {name}: accepted are None, 'DEFAULT' "
        "(timm's pretrained weights) or a weights file"
    )


def timm_features(
    name: str,
    spec: dict[str, Any],
    returned_layers: Sequence[int] | None,
    last: int,
    by_index: bool,
) -> TimmFeatures:
    """timm model ``name`` cut after the last level read (so no parameter goes unused).

    ``returned_layers`` as for FBNetV3 (level indices), default the ``last`` deepest;
    ``by_index`` names the outputs 0, 1, ... (FPN) instead of by level.
    """
    import timm

    if spec.get("trainable_backbone_layers") is not None:
        raise UserError(
            f"trainable_backbone_layers: freezing stages is defined for FBNetV3 backbones; "
            f"{name} trains whole (leave it unset)"
        )
    with torch.device("meta"):  # count the levels without allocating anything
        levels = len(timm.create_model(name, features_only=True).feature_info)
    stages = (
        list(range(levels - last, levels)) if returned_layers is None else list(returned_layers)
    )
    if not stages or sorted(set(stages)) != stages or not 0 <= stages[0] <= stages[-1] < levels:
        raise UserError(
            f"backbone levels must be increasing indices in 0..{levels - 1}, got {stages}"
        )
    extra = {"drop_path_rate": spec["drop_path_rate"]} if spec.get("drop_path_rate") else {}
    net = timm.create_model(
        name,
        features_only=True,
        out_indices=stages,
        **_weights(name, spec.get("weights_backbone")),
        **extra,
    )
    names = range(len(stages)) if by_index else stages
    return TimmFeatures(net, stages, list(names))
