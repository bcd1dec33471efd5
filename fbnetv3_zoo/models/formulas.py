"""The width and cost formulas, written once for one spec and for numpy batches.

``ScalarOps`` gives Python-number versions of the three operations the
arithmetic needs; numpy's (``fbnetv3_zoo.search.space.constraints.ARRAY_OPS``)
resolve a batch of candidates column by column with the very same formulas, so
the two can never disagree.  The spec (widths, its size limit) and the
analytic statistics both import from here, and neither imports the other.
"""

from __future__ import annotations

import math
from typing import Any


class ScalarOps:
    """Python-number versions of the three operations the width arithmetic needs.

    The width and cost formulas below (and in ``stats.py``) are written once
    against such an ``ops`` namespace: with these they resolve one spec, with
    numpy's (``fbnetv3_zoo.search.space.constraints.ARRAY_OPS``) a batch of
    candidates column by column, so the two can never disagree.
    """

    @staticmethod
    def where(cond: Any, a: Any, b: Any) -> Any:
        return a if cond else b

    @staticmethod
    def floor_int(value: Any) -> Any:
        return math.floor(value)

    maximum = staticmethod(max)


SCALAR = ScalarOps()


def make_divisible(value: float, divisor: int = 8, ops: Any = SCALAR) -> int:
    """Round to the nearest multiple of ``divisor`` (halves up), never dropping below 95 %."""
    rounded = ops.maximum(divisor, ops.floor_int(value + divisor / 2) // divisor * divisor)
    return ops.where(rounded < 0.95 * value, rounded + divisor, rounded)


def mid_channels(cin: Any, expansion: Any, ops: Any = SCALAR) -> Any:
    """Width of a block's depthwise conv; expansion 1 keeps the input width (no 1x1 conv)."""
    return ops.where(expansion == 1, cin, make_divisible(cin * expansion, ops=ops))


def se_channels(mid: Any, expansion: Any, se_ratio: float, ops: Any = SCALAR) -> Any:
    """Squeeze-excite bottleneck width: a fraction of the block's *input* width."""
    return make_divisible(ops.floor_int(mid * se_ratio / expansion), ops=ops)


def spatial_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution along one axis (integers or integer arrays)."""
    return (size + 2 * padding - kernel) // stride + 1


# The cost formulas, shared by ``arch_stats`` (Python numbers, one spec) and the
# search's ``batch_stats`` (numpy columns, 100k candidates): written once, they
# take integers or integer arrays alike (``ops`` supplies where/max/floor).
def stem_cost(in_chans: Any, channels: Any, kernel: int, stride: int, size: Any) -> tuple:
    """(weights, conv MACs, pool MACs, extra torch params, output size) of the stem conv."""
    size = spatial_size(size, kernel, stride, kernel // 2)
    weights = in_chans * channels * kernel * kernel
    return weights, weights * size * size, 0, 3 * channels, size  # extra: conv bias + BN


def block_terms(cin: Any, mid: Any, cout: Any, kernel: Any, se: Any, has_pw: Any) -> tuple:
    """The input-size-free parts of one IRF block's cost.

    Returns ``(weights, extra torch params, MACs per input position, MACs per
    output position, fixed MACs, pool reads per output position)``: a block's
    MACs are ``per_in * in_side**2 + per_out * out_side**2 + fixed``.  ``se`` is
    the squeeze-excite width (0: none), ``has_pw`` whether the 1x1 expansion
    conv exists; any argument may be an array (then so are the results).
    """
    pw = cin * mid * has_pw  # 1x1 expansion, at the input resolution
    w = mid * kernel * kernel + mid * cout  # depthwise + 1x1 projection, at the output's
    se_w = 2 * mid * se  # SE: two 1x1 convs on the pooled vector
    has_se = se > 0
    extra = 2 * mid * has_pw + 2 * mid + 2 * cout + mid * has_se + se  # BN affine, SE biases
    return pw + w + se_w, extra, pw, w, se_w, mid * has_se  # the SE squeeze reads the map


def head_cost(
    cin: Any, expansion: float, features: int, num_classes: int, size: Any, ops: Any = SCALAR
) -> tuple:
    """(weights, conv MACs, pool MACs, extra torch params) of the IRPool head and classifier."""
    mid = make_divisible(cin * expansion, ops=ops)
    w = cin * mid
    weights = w + mid * features + features * num_classes
    conv_macs = w * size * size + mid * features + features * num_classes
    # global pool of the expanded map, plus one read of the 1x1 feature vector by the
    # official classifier's pool
    pool = mid * size * size + features
    return weights, conv_macs, pool, 2 * mid + num_classes


def spec_terms(spec: Any) -> tuple:
    """Per-spec sums of ``block_terms`` plus the per-block walk, computed once per spec.

    Like the resolved widths, they depend on the spec alone (not on the input
    size or class count), so they are kept on the spec after the first call.
    """
    cached = getattr(spec, "_stats_terms", None)
    if cached is not None:
        return cached
    weights = extra = fixed = 0
    walk = []
    for cin, mid, cout, k, stride, pad, se, has_pw in spec.block_geometry():
        w, e, per_in, per_out, f, pool_out = block_terms(cin, mid, cout, k, se, has_pw)
        weights += w
        extra += e
        fixed += f
        walk.append((k, stride, pad, per_in, per_out, pool_out))
    terms = (weights, extra, fixed, tuple(walk))
    object.__setattr__(spec, "_stats_terms", terms)
    return terms
