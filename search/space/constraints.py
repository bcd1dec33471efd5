"""Resource constraints and the vectorised MACs/params of whole batches of encodings.

Filtering 100,000 Sobol candidates one ArchSpec at a time would spend most of
the time building Python objects, so the statistics are computed here with
numpy over the decoded columns, block slot by block slot, by the very formulas
:func:`fbnetv3_zoo.models.stats.arch_stats` uses (``mid_channels``, ``se_channels``,
``stem_cost``, ``block_terms``, ``head_cost``) with numpy operations plugged in.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from fbnetv3_zoo.search.space.definition import SearchSpace
from fbnetv3_zoo.search.space.encoding import decode_columns

from fbnetv3_zoo.deploy.runtimes import LATENCY_BACKENDS
from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.models.spec import ArchSpec, mid_channels, se_channels, spatial_size
from fbnetv3_zoo.models.stats import block_terms, head_cost, stem_cost

# a space fixes no stem stride: its candidates get ArchSpec's default, as decode() builds them
STEM_STRIDE = ArchSpec.__dataclass_fields__["stem_stride"].default

_UNITS = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}
_PATTERN = re.compile(r"^\s*(macs|params)\s*(<=|<)\s*([0-9]*\.?[0-9]+)\s*([kKMG]?)\s*$")
# latency_ms<=8@onnxruntime, optionally :THREADS (default 1); see search/latency/table.py
_LATENCY = re.compile(
    r"^\s*latency_ms\s*(<=|<)\s*([0-9]*\.?[0-9]+)\s*@\s*([a-z_]+)\s*(?::\s*([0-9]+))?\s*$"
)
# the one "limit" of a recipe-only search: a fixed model has one MACs/params value, so the
# search keeps a single final pick, written to best/recipe.yaml
NO_LIMIT = "none"


@dataclass(frozen=True)
class Constraint:
    """An upper limit: analytic ``macs``/``params`` (``macs<=400M``) or ``latency_ms`` on a backend.

    A latency limit (``latency_ms<=8@onnxruntime``) is judged by a predictor
    from this machine's latency table, attached with
    :func:`fbnetv3_zoo.search.latency.table.bind_latency`; it needs the encodings.
    """

    metric: str
    op: str
    limit: float
    text: str
    backend: str | None = None  # latency only
    threads: int = 1  # latency only
    predict: Callable[[np.ndarray], np.ndarray] | None = field(
        default=None, compare=False, repr=False
    )

    def ok(self, macs: np.ndarray, params: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
        """Mask of the candidates inside the limit (``u``: their encodings, for latency)."""
        if self.metric == NO_LIMIT:
            return np.ones(len(np.atleast_1d(np.asarray(macs))), dtype=bool)
        if self.metric == "latency_ms":
            if self.predict is None:
                raise UserError(f"constraint {self.text}: no latency table is attached to it")
            if u is None:
                raise ValueError(f"constraint {self.text} needs the candidates' encodings")
            value = self.predict(np.atleast_2d(np.asarray(u, dtype=float)))
        else:
            value = np.asarray(macs if self.metric == "macs" else params, dtype=float)
        return value <= self.limit if self.op == "<=" else value < self.limit

    @property
    def slug(self) -> str:
        """A file-name-safe form: ``macs<=400M`` -> ``macs_le_400M``."""
        text = self.text.replace("<=", "_le_").replace("<", "_lt_").replace(" ", "")
        return text.replace("@", "_").replace(":", "_t")


def parse_constraint(text: str) -> Constraint:
    """Parse ``macs<=400M`` / ``params<5M`` / ``latency_ms<=8@onnxruntime`` / ``none``; errors show the forms."""
    if text.strip() == NO_LIMIT:
        return Constraint(NO_LIMIT, "<=", float("inf"), NO_LIMIT)
    if text.isprintable() and text.strip().startswith("latency"):
        match = _LATENCY.fullmatch(text)
        if not match:
            raise UserError(
                f"invalid constraint {text!r}; expected latency_ms<=MILLISECONDS@BACKEND[:THREADS] "
                f"with BACKEND one of {', '.join(LATENCY_BACKENDS)}, e.g. 'latency_ms<=8@onnxruntime'"
            )
        op, number, backend, threads = match.groups()
        if backend not in LATENCY_BACKENDS:
            raise UserError(
                f"constraint {text!r}: unknown latency backend {backend!r}; choose from "
                + ", ".join(LATENCY_BACKENDS)
            )
        if threads is not None and int(threads) < 1:
            raise UserError(f"constraint {text!r}: threads must be >= 1")
        return Constraint(
            "latency_ms", op, float(number), text.replace(" ", ""), backend, int(threads or 1)
        )
    match = _PATTERN.fullmatch(text) if text.isprintable() else None
    if not match:
        raise UserError(
            f"invalid constraint {text!r}; expected METRIC<=VALUE with METRIC macs or params and an "
            "optional K/M/G suffix, e.g. 'macs<=400M', or latency_ms<=MILLISECONDS@BACKEND, e.g. "
            "'latency_ms<=8@onnxruntime'"
        )
    metric, op, number, unit = match.groups()
    return Constraint(metric, op, float(number) * _UNITS[unit], text.replace(" ", ""))


def feasible(
    constraints: list[Constraint],
    macs: np.ndarray,
    params: np.ndarray,
    u: np.ndarray | None = None,
) -> np.ndarray:
    """Mask of candidates meeting at least one constraint (all when there are none)."""
    if not constraints:
        return np.ones(len(np.asarray(macs)), dtype=bool)
    return np.any([c.ok(macs, params, u) for c in constraints], axis=0)


def row_stats(row: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(macs, params, u)`` of one stored candidate, shaped for :meth:`Constraint.ok`."""
    vector = row.get("vector")  # rows made by hand (tests, benchmarks) may carry stats only
    u = None if vector is None else np.array([vector], dtype=float)
    return np.array([row["macs"]]), np.array([row["params"]]), u


class _ArrayOps:
    """numpy versions of the operations the shared width/cost formulas need."""

    where = staticmethod(np.where)
    maximum = staticmethod(np.maximum)

    @staticmethod
    def floor_int(value: np.ndarray) -> np.ndarray:
        return np.floor(value).astype(np.int64)


ARRAY_OPS = _ArrayOps()


def batch_stats(
    space: SearchSpace, u: np.ndarray, num_classes: int = 1000, in_chans: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(macs, params, valid) for every row of ``u``; ``valid`` is False where a feature map vanishes.

    The formulas are ``fbnetv3_zoo.models.spec``'s and ``fbnetv3_zoo.models.stats``'s own, applied to
    numpy columns: block slot by block slot, a slot beyond a row's repeats is masked out.
    """
    cols = decode_columns(space, u)
    if space.model is not None:  # a recipe-only space: every candidate is the same model
        n = len(cols["resolution"])
        macs, params = space.model_stats
        return np.full(n, macs, np.int64), np.full(n, params, np.int64), np.ones(n, dtype=bool)

    def col(name: str, dtype: type = np.int64) -> np.ndarray:
        return cols[name].astype(dtype)

    n = len(cols["resolution"])
    valid = np.ones(n, dtype=bool)
    cin = col("stem_channels")
    weights, macs, pool, _, size = stem_cost(
        in_chans, cin, space.stem_kernel, STEM_STRIDE, col("resolution")
    )
    pool = np.zeros(n, dtype=np.int64)
    for i, stage in enumerate(space.stages):
        cout = None
        for j, row in enumerate(stage):
            name = f"stages[{i}][{j}]."
            kern, exp = col(name + "kernel"), col(name + "expansion", float)
            cout = col(name + "channels") if row.channels is not None else cout
            pad = kern // 2 - col(name + "pad_trim")
            repeats = col(name + "repeats")
            has_pw = (exp != 1).astype(np.int64)
            for r in range(int(repeats.max())):
                on = r < repeats
                mid = mid_channels(cin, exp, ARRAY_OPS)
                se = se_channels(mid, exp, space.se_ratio, ARRAY_OPS) if row.se else 0
                stride = row.stride if r == 0 else 1
                w, _, per_in, per_out, fixed, pool_out = block_terms(
                    cin, mid, cout, kern, se, has_pw
                )
                new = spatial_size(size, kern, stride, pad)
                weights = np.where(on, weights + w, weights)
                macs = np.where(on, macs + per_in * size * size + per_out * new * new + fixed, macs)
                pool = np.where(on, pool + pool_out * new * new, pool)
                valid &= ~on | (new >= 1)
                size = np.where(on, new, size)
                cin = np.where(on, cout, cin)
    w, m, p, _ = head_cost(
        cin, space.head_expansion, space.feature_width, num_classes, size, ARRAY_OPS
    )
    return macs + m + pool + p, weights + w, valid
