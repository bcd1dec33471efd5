"""Weight initialisation for from-scratch training: PyTorch's default or EfficientNet's.

timm's EfficientNet/MobileNetV3 family (and the TensorFlow code it follows)
draws conv weights from N(0, 2 / fan_out) with fan_out = k * k * out / groups,
sets BatchNorm to identity and draws linear layers from U(+-1 / sqrt(out)).
PyTorch's default (Kaiming-uniform on fan_in with a = sqrt(5)) is what the
search's ground-truth pools were trained with, so it stays the proxy's
choice; which one from-scratch ``recipes`` use is measured in
``benchmarks/results/init.md``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads when weights are drawn: recipes read INIT_SCHEMES without it
    from torch import nn

INIT_SCHEMES = ("torch", "efficientnet")  # "torch": leave the constructors' draws as they are


def check_init(scheme: object, where: str = "init") -> str:
    """The scheme's name, or a one-line error naming the accepted ones."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(
            f"{where}: unknown weight init {scheme!r}; allowed: {', '.join(INIT_SCHEMES)}"
        )
    return scheme  # type: ignore[return-value]


def _efficientnet_(module: nn.Module) -> None:
    from torch import nn

    if isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
        fan_out //= module.groups  # a depthwise conv's fan-out is k * k, as in TensorFlow
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm | nn.GroupNorm | nn.LayerNorm):
        if module.weight is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        bound = 1.0 / math.sqrt(module.weight.shape[0])
        nn.init.uniform_(module.weight, -bound, bound)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def init_weights(model: nn.Module, scheme: str = "efficientnet") -> nn.Module:
    """Re-draw ``model``'s weights in place with ``scheme`` (torch's global RNG); returns it.

    Any ``nn.Module`` works: convolutions, norms and linear layers are redrawn,
    anything else keeps its values.  ``"torch"`` changes nothing.
    """
    import torch

    if check_init(scheme) == "efficientnet":
        with torch.no_grad():
            for module in model.modules():
                _efficientnet_(module)
    return model
