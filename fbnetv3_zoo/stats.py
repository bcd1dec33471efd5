"""Parameters and MACs of an ArchSpec, computed from the spec alone.

The search filters hundreds of thousands of candidates by these numbers, so
no module is built: one pass over the resolved blocks with integer arithmetic.
Conventions follow the FBNet authors' model table:

* ``params``: convolution (and classifier) weights only, no biases, no BN;
* ``macs``: per convolution, weight count x output positions, plus for each
  global average pool the number of elements it reads (``pool_macs``);
* ``torch_params``: what ``sum(p.numel() for p in model.parameters())`` gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .spec import (
    DEFAULT_NUM_CLASSES,
    ArchSpec,
    SpecError,
    check_input_size,
    check_num_classes,
    load_arch_file,
    spatial_size,
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
    k = spec.stem_kernel
    c = spec.stem_channels
    size = spatial_size(size, k, spec.stem_stride, k // 2)
    weights = in_chans * c * k * k
    conv_macs = weights * size * size
    pool_macs = 0
    extra = 3 * c  # stem conv bias + BN weight/bias
    for cin, mid, cout, k, stride, pad, se, has_pw in spec.block_geometry():
        pos = size * size
        if has_pw:
            w = cin * mid
            weights += w
            conv_macs += w * pos
            extra += 2 * mid
        size = (size + 2 * pad - k) // stride + 1
        pos = size * size
        w = mid * k * k + mid * cout
        weights += w
        conv_macs += w * pos
        extra += 2 * mid + 2 * cout
        if se:
            w = 2 * mid * se
            weights += w
            conv_macs += w
            pool_macs += mid * pos
            extra += mid + se
    hin, hmid, feat = spec.head_in_channels, spec.head_mid_channels, spec.feature_width
    w = hin * hmid
    weights += w
    conv_macs += w * size * size
    extra += 2 * hmid
    pool_macs += hmid * size * size
    w = hmid * feat + feat * num_classes
    weights += w
    conv_macs += w
    pool_macs += feat  # the official classifier pools its 1x1 input once more
    extra += num_classes
    return ArchStats(
        params=weights, conv_macs=conv_macs, pool_macs=pool_macs, torch_params=weights + extra
    )
