"""Resource constraints and the vectorised MACs/params of whole batches of encodings.

Filtering 100,000 Sobol candidates one ArchSpec at a time would spend most of
the time building Python objects, so the statistics are recomputed here with
numpy over the decoded columns, block slot by block slot.  The arithmetic is
the one of :func:`fbnetv3_zoo.stats.arch_stats` (the tests check they agree).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .encoding import decode_columns
from .space import SearchSpace

_UNITS = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}
_PATTERN = re.compile(r"^\s*(macs|params)\s*(<=|<)\s*([0-9]*\.?[0-9]+)\s*([kKMG]?)\s*$")


@dataclass(frozen=True)
class Constraint:
    """An upper limit on analytic ``macs`` or ``params``, e.g. ``macs<=400M``."""

    metric: str
    op: str
    limit: float
    text: str

    def ok(self, macs: np.ndarray, params: np.ndarray) -> np.ndarray:
        value = np.asarray(macs if self.metric == "macs" else params, dtype=float)
        return value <= self.limit if self.op == "<=" else value < self.limit

    @property
    def slug(self) -> str:
        """A file-name-safe form: ``macs<=400M`` -> ``macs_le_400M``."""
        return self.text.replace("<=", "_le_").replace("<", "_lt_").replace(" ", "")


def parse_constraint(text: str) -> Constraint:
    """Parse ``macs<=400M`` / ``params<5M``; the error shows the accepted form."""
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(
            f"invalid constraint {text!r}; expected METRIC<=VALUE with METRIC macs or params and an optional K/M/G suffix, e.g. 'macs<=400M'"
        )
    metric, op, number, unit = match.groups()
    return Constraint(metric, op, float(number) * _UNITS[unit], text.replace(" ", ""))


def feasible(constraints: list[Constraint], macs: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Mask of candidates meeting at least one constraint (all when there are none)."""
    if not constraints:
        return np.ones(len(np.asarray(macs)), dtype=bool)
    return np.any([c.ok(macs, params) for c in constraints], axis=0)


def _make_divisible(value: np.ndarray, divisor: int = 8) -> np.ndarray:
    rounded = np.maximum(
        divisor, np.floor(value + divisor / 2).astype(np.int64) // divisor * divisor
    )
    return np.where(rounded < 0.95 * value, rounded + divisor, rounded)


def _spatial(size: np.ndarray, kernel: np.ndarray, stride: int, pad: np.ndarray) -> np.ndarray:
    return (size + 2 * pad - kernel) // stride + 1


def batch_stats(
    space: SearchSpace, u: np.ndarray, num_classes: int = 1000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(macs, params, valid) for every row of ``u``; ``valid`` is False where a feature map vanishes."""
    cols = decode_columns(space, u)

    def col(name: str, dtype: type = np.int64) -> np.ndarray:
        return cols[name].astype(dtype)

    n = len(cols["resolution"])
    valid = np.ones(n, dtype=bool)
    k = space.stem_kernel
    cin = col("stem_channels")
    size = _spatial(col("resolution"), np.full(n, k), 2, np.full(n, k // 2))
    weights = 3 * cin * k * k
    macs = weights * size * size
    pool = np.zeros(n, dtype=np.int64)
    for i, stage in enumerate(space.stages):
        cout = None
        for j, row in enumerate(stage):
            name = f"stages[{i}][{j}]."
            kern, exp = col(name + "kernel"), col(name + "expansion", float)
            cout = col(name + "channels") if row.channels is not None else cout
            pad = kern // 2 - col(name + "pad_trim")
            repeats = col(name + "repeats")
            for r in range(int(repeats.max())):
                on = r < repeats
                stride = row.stride if r == 0 else 1
                mid = np.where(exp == 1, cin, _make_divisible(cin * exp))  # e=1: no expansion
                pw = np.where(exp != 1, cin * mid, 0)
                w_pw = pw * size * size
                new = _spatial(size, kern, stride, pad)
                pos = new * new
                w_dw = mid * kern * kern
                se_w = 0
                se_pool = 0
                if row.se:
                    se_ch = _make_divisible(np.floor(mid * space.se_ratio / exp))
                    se_w = 2 * mid * se_ch
                    se_pool = mid * pos
                w_pwl = mid * cout
                weights = np.where(on, weights + pw + w_dw + se_w + w_pwl, weights)
                macs = np.where(on, macs + w_pw + (w_dw + w_pwl) * pos + se_w, macs)
                pool = np.where(on, pool + se_pool, pool)
                valid &= ~on | (new >= 1)
                size = np.where(on, new, size)
                cin = np.where(on, cout, cin)
    hmid = _make_divisible(cin * space.head_expansion)
    w = cin * hmid
    weights = weights + w
    macs = macs + w * size * size
    pool = pool + hmid * size * size + space.feature_width
    w = hmid * space.feature_width + space.feature_width * num_classes
    weights = weights + w
    macs = macs + w + pool
    return macs, weights, valid
