"""The FBNetV3 network built from an ArchSpec, speaking timm's model interface."""

from __future__ import annotations

import torch
from timm.layers import SelectAdaptivePool2d
from timm.models import checkpoint_seq
from torch import nn

from .blocks import ConvBnAct, IRFBlock, act_layer
from .spec import ArchSpec


class FBNetV3(nn.Module):
    """Stem -> stages of IRF blocks -> IRPool head -> linear classifier.

    ``forward_features`` returns the head's 1x1-expanded map (``num_features``
    channels) before pooling; ``forward_head`` pools, applies the 1984-wide
    feature layer, dropout and the classifier.
    """

    def __init__(
        self,
        arch: ArchSpec,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        if not isinstance(arch, ArchSpec):
            raise TypeError(f"arch must be an ArchSpec, got {type(arch).__name__}")
        self.arch = arch
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        k = arch.stem_kernel
        self.stem = ConvBnAct(
            in_chans, arch.stem_channels, k, arch.stem_stride, k // 2, bias=True, act=arch.stem_act
        )
        blocks = arch.blocks()
        stages: list[list[nn.Module]] = [[] for _ in arch.stages]
        for i, block in enumerate(blocks):
            rate = drop_path_rate * i / len(blocks)  # deeper blocks drop more often
            stages[block.stage].append(IRFBlock(block, rate))
        self.blocks = nn.Sequential(*[nn.Sequential(*stage) for stage in stages])
        self.feature_info = [
            dict(num_chs=chs, reduction=red, module=f"blocks.{i}")
            for i, (chs, red) in enumerate(
                zip(arch.stage_channels(), arch.stage_reductions(), strict=True)
            )
        ]

        self.conv_expand = ConvBnAct(
            arch.head_in_channels, arch.head_mid_channels, act=arch.head_act
        )
        self.num_features = arch.head_mid_channels
        self.head_hidden_size = arch.feature_width
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool)
        self.conv_head = nn.Conv2d(self.num_features, arch.feature_width, 1, bias=False)
        self.act_head = act_layer(arch.head_act)()
        self.flatten = nn.Flatten(1) if global_pool else nn.Identity()
        self.classifier = self._make_classifier(num_classes)

    def _make_classifier(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    # ------------------------------------------------------- timm interface
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^stem",
            blocks=r"^blocks\.(\d+)" if coarse else r"^blocks\.(\d+)\.(\d+)",
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool)
            self.flatten = nn.Flatten(1) if global_pool else nn.Identity()
        self.classifier = self._make_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x, flatten=True)
        else:
            x = self.blocks(x)
        return self.conv_expand(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        x = self.act_head(self.conv_head(x))
        x = self.flatten(x)
        if pre_logits:
            return x
        if self.drop_rate > 0.0:
            x = nn.functional.dropout(x, p=self.drop_rate, training=self.training)
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
