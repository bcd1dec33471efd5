"""Folding BatchNorm into the preceding convolution for inference.

In eval mode a BatchNorm is a fixed per-channel affine map, so it can be
absorbed into the convolution's weight and bias: one op less per layer, the
same outputs up to rounding.  The folded copy still scripts and exports.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from fbnetv3_zoo.models.blocks import ConvBnAct

__all__ = ["ConvAct", "fold_conv_bn", "fuse_bn"]


class ConvAct(nn.Module):
    """A ConvBnAct after folding: conv (with bias) then activation.

    The ``conv``/``act`` names are kept so the folded state dict reads like the original.
    """

    def __init__(self, conv: nn.Conv2d, act: nn.Module) -> None:
        super().__init__()
        self.conv = conv
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Return a new conv equal to ``bn(conv(x))`` with ``bn`` in eval mode."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics")
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    bias = (bias - bn.running_mean.double()) * scale
    if bn.bias is not None:
        bias = bias + bn.bias.double()
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    weight = conv.weight.double() * scale.reshape(-1, 1, 1, 1)
    fused.weight.copy_(weight.to(conv.weight.dtype))
    fused.bias.copy_(bias.to(conv.weight.dtype))
    return fused


def fuse_bn(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy of ``model`` with every ConvBnAct's BN folded into its conv.

    Each ConvBnAct becomes a ConvAct (the BN module is gone, the conv gains a
    bias).  ``model`` itself is left untouched; the copy is for inference only,
    since training would need the BN back.
    """
    fused = copy.deepcopy(model).eval()
    targets = [
        (name, module)
        for name, module in fused.named_modules()
        if isinstance(module, ConvBnAct) and isinstance(module.bn, nn.BatchNorm2d)
    ]
    for name, module in targets:
        replacement = ConvAct(fold_conv_bn(module.conv, module.bn), module.act)
        if name:
            parent_name, _, attr = name.rpartition(".")
            setattr(fused.get_submodule(parent_name), attr, replacement)
        else:
            fused = replacement
    return fused
