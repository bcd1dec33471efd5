"""Loading the FBNetV3 trunk of a d2go (Detectron2) detector checkpoint into our backbone.

d2go builds its FBNet trunk with the same mobile-vision block builder as the
FBNet authors' ImageNet models, so its blocks carry the same inner names; only
the path differs.  d2go writes ``backbone.bottom_up.trunk<T>.fbnetv2_<S>_<J>.<rest>``
(FPN models; ``backbone.body.`` for C4 ones), where ``<S>_<J>`` is the stage and
block index of the whole network, as the ImageNet files' ``xif<S>_<J>``.  Those
keys are renamed to the ImageNet layout and converted by the same
``official_to_ours``; FPN, RPN and RoI-head weights are left out (torchvision's
heads differ), and stages the checkpoint does not hold (a C4 model keeps its
last stage in the RoI head) stay as built, named in a warning.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping

import torch
from torch import nn

from fbnetv3_zoo.weights.checkpoint import CheckpointError, check_tensors, official_to_ours

__all__ = ["d2go_trunk_to_official", "is_d2go_layout", "load_d2go_trunk"]

_D2GO_TRUNK = re.compile(r"^backbone\.(?:bottom_up|body)\.trunk\d+\.fbnetv2_(\d+)_(\d+)\.(.+)$")


def is_d2go_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True when the keys name a d2go FBNet trunk (``...trunk<T>.fbnetv2_<S>_<J>...``)."""
    return any(_D2GO_TRUNK.match(_strip(k)) for k in state_dict)


def _strip(key: str) -> str:
    return key[len("module.") :] if key.startswith("module.") else key


def d2go_trunk_to_official(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The trunk's tensors under the ImageNet checkpoints' names (``backbone.stages.xif<S>_<J>``)."""
    out = {}
    for key, value in state_dict.items():
        match = _D2GO_TRUNK.match(_strip(key))
        if match:
            stage, block, rest = match.groups()
            out[f"backbone.stages.xif{stage}_{block}.{rest}"] = value
    return out


def load_d2go_trunk(
    net: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> list[str]:
    """Load the trunk held in a d2go ``state_dict`` into FBNetV3 ``net``; return the stem/stage
    keys of ``net`` it did not hold.  A key that does not fit (shape, name) raises, naming it."""
    official = d2go_trunk_to_official(check_tensors(state_dict, source))
    if not official:
        raise CheckpointError(
            f"{source}: no d2go FBNet trunk keys (backbone.*.trunk<T>.fbnetv2_<S>_<J>.*)"
        )
    ours = official_to_ours(official, len(net.arch.stages), source)
    own = net.state_dict()
    for key, value in ours.items():
        if key not in own or tuple(own[key].shape) != tuple(value.shape):
            want = tuple(own[key].shape) if key in own else "no such key"
            raise CheckpointError(
                f"{source}: d2go trunk tensor for {key} has shape {tuple(value.shape)}, the "
                f"backbone has {want}; is the checkpoint another FBNet architecture?"
            )
    net.load_state_dict(ours, strict=False)
    trunk = [k for k in own if k.startswith(("stem.", "blocks."))]
    missing = [k for k in trunk if k not in ours and not k.endswith("num_batches_tracked")]
    if missing:
        units = sorted(
            {".".join(k.split(".")[:2]) if k.startswith("blocks.") else "stem" for k in missing}
        )
        warnings.warn(
            f"{source}: the d2go checkpoint holds no weights for {', '.join(units)} "
            f"({len(missing)} tensors); they keep their initial values",
            stacklevel=2,
        )
    return missing
