"""Building blocks of FBNetV3: conv-BN-act, the IRF block and its squeeze-excite.

Plain modules (``conv``/``bn``/``act`` attributes) keep the official key names
recognisable, keep BN folding trivial and script cleanly.  Every constructor
takes timm's ``device``/``dtype`` factory arguments (e.g. ``device="meta"``).

No ``from __future__ import annotations`` here: torch.fx copies ``forward``'s
annotations into the code it generates, and string annotations break
TorchScript on that code.
"""

import torch
from timm.layers import DropPath, SEModule
from torch import nn

from .spec import ResolvedBlock

_ACT_LAYERS: dict[str, type[nn.Module]] = {
    "hswish": nn.Hardswish,  # x * relu6(x + 3) / 6, as in the official code
    "relu": nn.ReLU,
    "swish": nn.SiLU,
    "identity": nn.Identity,
}


def act_layer(name: str) -> type[nn.Module]:
    try:
        return _ACT_LAYERS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; allowed: {', '.join(_ACT_LAYERS)}"
        ) from None


class ConvBnAct(nn.Module):
    """Conv2d, BatchNorm2d and an activation (``act=None`` for none)."""

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
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.conv = nn.Conv2d(
            in_chs, out_chs, kernel, stride, padding, groups=groups, bias=bias, **dd
        )
        self.bn = nn.BatchNorm2d(out_chs, **dd)
        self.act = act_layer(act)() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class IRFBlock(nn.Module):
    """Inverted residual: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project (+ skip)."""

    def __init__(
        self,
        block: ResolvedBlock,
        drop_path_rate: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        cin, mid, cout = block.in_channels, block.mid_channels, block.out_channels
        act = block.act
        self.pw = ConvBnAct(cin, mid, act=act, **dd) if block.has_pw else nn.Identity()
        self.dw = ConvBnAct(
            mid, mid, block.kernel, block.stride, block.padding, groups=mid, act=act, **dd
        )
        if block.se_channels is not None:
            self.se = SEModule(
                mid,
                rd_channels=block.se_channels,
                act_layer=act_layer(act),
                gate_layer="hard_sigmoid",
                **dd,
            )
        else:
            self.se = nn.Identity()
        self.pwl = ConvBnAct(mid, cout, act=None, **dd)
        self.has_skip = block.residual
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pwl(self.se(self.dw(self.pw(x))))
        if self.has_skip:
            out = self.drop_path(out) + x
        return out
