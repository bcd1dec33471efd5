"""Parameters and MACs of an ArchSpec, computed from the spec alone.

The search filters hundreds of thousands of candidates by these numbers, so
no module is built: one pass over the resolved blocks with integer arithmetic.
The per-part formulas (``stem_cost``, ``block_terms``, ``head_cost``) also
serve the search's vectorised ``batch_stats`` on numpy columns.
Conventions follow the FBNet authors' model table:

* ``params``: convolution (and classifier) weights only, no biases, no BN;
* ``macs``: per convolution, weight count x output positions, plus for each
  global average pool the number of elements it reads (``pool_macs``);
* ``torch_params``: what ``sum(p.numel() for p in model.parameters())`` gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fbnetv3_zoo.models.formulas import (  # noqa: F401  (block_terms, head_cost, stem_cost: this module's interface)
    SCALAR,
    block_terms,
    head_cost,
    make_divisible,
    spatial_size,
    spec_terms,
    stem_cost,
)
from fbnetv3_zoo.models.spec import (
    DEFAULT_NUM_CLASSES,
    ArchSpec,
    SpecError,
    check_input_size,
    check_num_classes,
    load_arch_file,
)


@dataclass(frozen=True)
class ArchStats:
    params: int
    conv_macs: int
    pool_macs: int
    torch_params: int

    @property
    def macs(self) -> int:
        return self.conv_macs + self.pool_macs

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def macs_m(self) -> float:
        return self.macs / 1e6


def arch_stats(
    spec: ArchSpec | str | Path,
    input_size: int | None = None,
    num_classes: int | None = None,
    in_chans: int = 3,
) -> ArchStats:
    """Count params and MACs of ``spec`` at ``input_size`` (default: the spec's own).

    ``spec`` may be a YAML path; for a search result file the class count
    defaults to the file's ``num_classes`` (the one its ``stats:`` used), so
    this agrees with the file, ``fbnetv3 info`` and ``fbnetv3 export``.
    Otherwise ``num_classes`` defaults to 1000.
    """
    if not isinstance(spec, ArchSpec):
        spec, file_classes = load_arch_file(spec)
        if num_classes is None:
            num_classes = file_classes
    num_classes = check_num_classes(DEFAULT_NUM_CLASSES if num_classes is None else num_classes)
    size = spec.input_size if input_size is None else check_input_size(input_size)
    if input_size is not None and spec.final_size(size) < 1:
        raise SpecError(
            f"input_size: {size} px is too small for this network (a feature map vanishes)"
        )
    weights, conv_macs, pool_macs, extra, size = stem_cost(
        in_chans, spec.stem_channels, spec.stem_kernel, spec.stem_stride, size
    )
    block_weights, block_extra, block_fixed, walk = spec_terms(spec)
    for k, stride, pad, per_in, per_out, pool_out in walk:
        conv_macs += per_in * size * size
        size = spatial_size(size, k, stride, pad)
        pos = size * size
        conv_macs += per_out * pos
        pool_macs += pool_out * pos
    w, m, p, e = head_cost(
        spec.head_in_channels, spec.head_expansion, spec.feature_width, num_classes, size
    )
    params = weights + block_weights + w
    return ArchStats(
        params=params,
        conv_macs=conv_macs + block_fixed + m,
        pool_macs=pool_macs + p,
        torch_params=params + extra + block_extra + e,
    )


def in_millions(count: float, min_decimals: int = 2) -> str:
    """``count`` in millions with at least 3 significant digits (0.430, 8.54, 356.6).

    Every table of the package (``models``, ``benchmark``, search reports) prints
    params and MACs through this, so a 0.43M network never shows as "0.4".
    """
    value = count / 1e6
    if value == 0 or not math.isfinite(value):
        return f"{value:.{min_decimals}f}"
    decimals = max(min_decimals, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def conv_linear_weights(model: Any) -> int:
    """The official params convention for any torch model: Conv2d and Linear weights only.

    No biases, no BN: for the zoo's networks it equals ``arch_stats(...).params``
    (tested), and it counts timm's other models the same way.
    """
    from torch import nn

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


MAX_FORWARD_MACS = 10**12  # ~500 forward passes of FBNetV3-G at 320 px: beyond it is a mistake


def check_forward_cost(
    spec: ArchSpec, input_size: int, batch: int = 1, where: str = "this network"
) -> None:
    """Refuse a forward pass whose analytic cost is absurd, before any memory is allocated.

    Every per-field limit of a spec can hold while the whole is enormous (a
    4096-channel stride-1 stem at 4096 px needs hundreds of GB); each output
    element costs at least one MAC, so bounding MACs also bounds activations.
    """
    if spec.final_size(input_size) < 1:
        return  # too small, not too big: the caller's own check says so in its words
    macs = arch_stats(spec, input_size=input_size).macs * batch
    if macs > MAX_FORWARD_MACS:
        raise SpecError(
            f"{where}: one forward pass of batch {batch} at {input_size} px needs "
            f"{macs / 1e12:.1f} TMACs (limit {MAX_FORWARD_MACS / 1e12:.0f}); lower the input "
            "size, the batch or the widths"
        )
