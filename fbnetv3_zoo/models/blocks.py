"""Building blocks of FBNetV3: conv-BN-act, the IRF block and its squeeze-excite.

Plain modules (``conv``/``bn``/``act`` attributes) keep the official key names
recognisable, keep BN folding trivial and script cleanly.  Like timm's blocks,
each takes ``norm_layer``/``act_layer``/``se_layer`` (defaults: BatchNorm2d,
the spec's activation, hard-sigmoid squeeze-excite: the published networks)
and timm's ``device``/``dtype`` factory arguments (e.g. ``device="meta"``).

No ``from __future__ import annotations`` here: torch.fx copies ``forward``'s
annotations into the code it generates, and string annotations break
TorchScript on that code.
"""

from collections.abc import Callable
from functools import partial

import torch
from timm.layers import DropPath, SEModule
from torch import nn

from fbnetv3_zoo.models.spec import ResolvedBlock

_ACT_LAYERS: dict[str, type[nn.Module]] = {
    "hswish": nn.Hardswish,  # x * relu6(x + 3) / 6, as in the official code
    "relu": nn.ReLU,
    "swish": nn.SiLU,
    "identity": nn.Identity,
}


def get_act_layer(name: str) -> type[nn.Module]:
    """The activation class a spec names (``hswish``, ``relu``, ``swish``, ``identity``)."""
    try:
        return _ACT_LAYERS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; allowed: {', '.join(_ACT_LAYERS)}"
        ) from None


# the published squeeze-excite: the block's activation inside, a hard-sigmoid gate
default_se_layer = partial(SEModule, gate_layer="hard_sigmoid")


class ConvBnAct(nn.Module):
    """Conv2d, a norm layer and an activation (``act=None`` for none).

    ``act_layer``, when given, replaces the activation named by ``act``.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bias: bool = False,
        act: str | None = "hswish",
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[..., nn.Module] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.conv = nn.Conv2d(
            in_chs, out_chs, kernel, stride, padding, groups=groups, bias=bias, **dd
        )
        self.bn = norm_layer(out_chs, **dd)
        if act is None:
            self.act = nn.Identity()
        else:
            self.act = (act_layer or get_act_layer(act))()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class IRFBlock(nn.Module):
    """Inverted residual: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project (+ skip)."""

    def __init__(
        self,
        block: ResolvedBlock,
        drop_path_rate: float = 0.0,
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[..., nn.Module] | None = None,
        se_layer: Callable[..., nn.Module] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        cin, mid, cout = block.in_channels, block.mid_channels, block.out_channels
        act_layer = act_layer or get_act_layer(block.act)
        layers = {"norm_layer": norm_layer, "act_layer": act_layer, **dd}
        self.pw = ConvBnAct(cin, mid, **layers) if block.has_pw else nn.Identity()
        self.dw = ConvBnAct(
            mid, mid, block.kernel, block.stride, block.padding, groups=mid, **layers
        )
        if block.se_channels is not None:
            se_layer = se_layer or default_se_layer
            self.se = se_layer(mid, rd_channels=block.se_channels, act_layer=act_layer, **dd)
        else:
            self.se = nn.Identity()
        self.pwl = ConvBnAct(mid, cout, act=None, norm_layer=norm_layer, **dd)
        self.has_skip = block.residual
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pwl(self.se(self.dw(self.pw(x))))
        if self.has_skip:
            out = self.drop_path(out) + x
        return out
