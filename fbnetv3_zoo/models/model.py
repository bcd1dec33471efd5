"""The FBNetV3 network built from an ArchSpec, speaking timm's model interface.

No ``from __future__ import annotations`` here: torch.fx copies ``forward``'s
annotations into the code it generates, and string annotations make that code
fail to script (``Unknown type name '_torch_Tensor_'``).
"""

from collections.abc import Callable

import torch
from timm.layers import SelectAdaptivePool2d, get_device_dtype
from timm.models import checkpoint_seq
from timm.models._features import feature_take_indices
from torch import nn

from fbnetv3_zoo.models.blocks import ConvBnAct, IRFBlock, get_act_layer
from fbnetv3_zoo.models.spec import ArchSpec


class FBNetV3(nn.Module):
    """Stem -> stages of IRF blocks -> IRPool head -> linear classifier.

    ``forward_features`` returns the head's 1x1-expanded map (``num_features``
    channels) before pooling; ``forward_head`` pools, applies the 1984-wide
    feature layer, dropout and the classifier.  The intermediate features
    (``forward_intermediates``, ``features_only``) are the stage outputs.
    """

    def __init__(
        self,
        arch: ArchSpec,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: str = "avg",
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[..., nn.Module] | None = None,
        se_layer: Callable[..., nn.Module] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """``norm_layer``/``act_layer``/``se_layer`` replace the published BatchNorm2d, the
        spec's activations and the hard-sigmoid squeeze-excite everywhere (timm's block
        arguments); left at their defaults they build the published networks."""
        super().__init__()
        if not isinstance(arch, ArchSpec):
            raise TypeError(f"arch must be an ArchSpec, got {type(arch).__name__}")
        dd = {"device": device, "dtype": dtype}
        self.arch = arch
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        k = arch.stem_kernel
        self.stem = ConvBnAct(
            in_chans,
            arch.stem_channels,
            k,
            arch.stem_stride,
            k // 2,
            bias=True,
            act=arch.stem_act,
            norm_layer=norm_layer,
            act_layer=act_layer,
            **dd,
        )
        blocks = arch.blocks()
        stages: list[list[nn.Module]] = [[] for _ in arch.stages]
        for i, block in enumerate(blocks):
            rate = drop_path_rate * i / len(blocks)  # deeper blocks drop more often
            stages[block.stage].append(IRFBlock(block, rate, norm_layer, act_layer, se_layer, **dd))
        self.blocks = nn.Sequential(*[nn.Sequential(*stage) for stage in stages])
        self.feature_info = [
            dict(num_chs=chs, reduction=red, module=f"blocks.{i}")
            for i, (chs, red) in enumerate(
                zip(arch.stage_channels(), arch.stage_reductions(), strict=True)
            )
        ]

        self.conv_expand = ConvBnAct(
            arch.head_in_channels,
            arch.head_mid_channels,
            act=arch.head_act,
            norm_layer=norm_layer,
            act_layer=act_layer,
            **dd,
        )
        self.num_features = arch.head_mid_channels
        self.head_hidden_size = arch.feature_width
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool)
        self.conv_head = nn.Conv2d(self.num_features, arch.feature_width, 1, bias=False, **dd)
        self.act_head = (act_layer or get_act_layer(arch.head_act))()
        self.flatten = nn.Flatten(1) if global_pool else nn.Identity()
        self.classifier = self._make_classifier(num_classes, **dd)

    def _make_classifier(self, num_classes: int, **dd) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        return nn.Linear(self.head_hidden_size, num_classes, **dd)

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
        """New classifier (and optionally pooling) on the device/dtype and mode of the model."""
        dd = get_device_dtype(self)
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool)
            self.flatten = nn.Flatten(1) if global_pool else nn.Identity()
        self.classifier = self._make_classifier(num_classes, **dd)
        for module in (self.global_pool, self.flatten, self.classifier):
            module.train(self.training)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs (``feature_info`` order) and, unless ``intermediates_only``, the features.

        ``indices``: the last n stages if an int, all if None, else those listed.
        ``norm`` is accepted for timm's interface; FBNetV3 has no final norm layer.
        ``stop_early`` skips the stages after the last one asked for.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', not {output_fmt!r}")
        if stop_early and not intermediates_only:
            raise ValueError("stop_early=True needs intermediates_only=True")
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        intermediates: list[torch.Tensor] = []
        x = self.stem(x)
        last = max_index if stop_early else len(self.blocks) - 1
        for i, stage in enumerate(self.blocks):
            if i > last:
                break
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint_seq(stage, x)
            else:
                x = stage(x)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return self.conv_expand(x), intermediates

    def prune_intermediate_layers(
        self,
        indices: int | list[int] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Drop the stages after the last kept tap (and the head); return the kept indices.

        When stages are dropped, ``forward_features`` ends at the last kept tap
        (the 1x1 expansion is sized for the final stage, so it goes too).
        """
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        prune_end = max_index < len(self.blocks) - 1
        self.blocks = self.blocks[: max_index + 1]
        if prune_end:
            self.conv_expand = nn.Identity()
            self.num_features = self.feature_info[max_index]["num_chs"]
        if prune_end or prune_head:
            self.conv_head = nn.Identity()
            self.act_head = nn.Identity()
            self.head_hidden_size = self.num_features
            self.reset_classifier(0, "")
        return take_indices

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
