"""Latency of every architecture of a search space, predicted from a per-block table.

``space_keys`` lists every block configuration a space can produce (stem at
each resolution, every row's choices at each input shape it can meet, the
head), :func:`build_table` measures them into the machine's
:class:`~fbnetv3_zoo.latency.table.LatencyTable` and then measures a seeded set of
whole networks to fit a correction, and :class:`LatencyPredictor` predicts
whole batches of encodings with numpy (the search's filter calls it on
100k-candidate pools).

Why a correction: a block timed alone pays the runtime's per-call overhead
(a Python call, an ONNX Runtime ``run``) once per block, the network once in
all, and blocks run in sequence share caches.  The fit is
``measured ~ a + b * sum(blocks) + c * n_blocks``, by least squares on
relative errors; how well it predicts unseen networks is measured by
``benchmarks/latency.py`` (``benchmarks/results/latency.md``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from fbnetv3_zoo.search.space.constraints import STEM_STRIDE
from fbnetv3_zoo.search.space.definition import SearchSpace
from fbnetv3_zoo.search.space.encoding import decode, decode_columns

from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.latency.table import (
    LatencyTable,
    block_key,
    correction_name,
    head_key,
    network_runner,
    spec_keys,
    stem_key,
)
from fbnetv3_zoo.latency.timing import measure_many
from fbnetv3_zoo.models.spec import make_divisible, mid_channels, se_channels, spatial_size

CALIBRATION_NETWORKS = 24
CALIBRATION_SEED = 424242  # far from the benchmark's seeds, so its test networks are unseen
STATISTICS = ("ms", "low")  # median of calls, 20th percentile of calls (Timing)


def _choices(dim: Any) -> tuple:
    return tuple(dim.choices) if dim.choices is not None else ()


def space_keys(space: SearchSpace, num_classes: int, in_chans: int = 3) -> list[str]:
    """Every table key an architecture of ``space`` can need, in network order.

    States (input side, input channels) are propagated row by row, so a
    ``channels: same`` row only pairs equal widths and a row's repeats see
    the sizes its padding really leaves.
    """
    keys: dict[str, None] = {}
    k = space.stem_kernel
    states = set()
    for res in _choices(space.resolution):
        for c in _choices(space.stem_channels):
            keys[stem_key(res, in_chans, c, k, STEM_STRIDE, space.stem_act)] = None
            states.add((spatial_size(res, k, STEM_STRIDE, k // 2), c))
    for stage in space.stages:
        for row in stage:
            new = set()
            reps = _choices(row.repeats)
            for size, cin in sorted(states):
                couts = _choices(row.channels) if row.channels is not None else (cin,)
                for cout in couts:
                    for kern in _choices(row.kernel):
                        for exp in _choices(row.expansion):
                            for trim in _choices(row.pad_trim):
                                pad = kern // 2 - trim
                                s, c = size, cin
                                for r in range(max(reps)):
                                    stride = row.stride if r == 0 else 1
                                    mid = mid_channels(c, exp)
                                    se = se_channels(mid, exp, space.se_ratio) if row.se else 0
                                    keys[
                                        block_key(
                                            s,
                                            c,
                                            mid,
                                            cout,
                                            kern,
                                            stride,
                                            pad,
                                            se,
                                            row.act,
                                            exp != 1,
                                        )
                                    ] = None
                                    s, c = spatial_size(s, kern, stride, pad), cout
                                    if s < 1:
                                        break
                                    if r + 1 in reps:
                                        new.add((s, c))
            states = new
    for size, cin in sorted(states):
        keys[_head(space, size, cin, num_classes)] = None
    return list(keys)


def _pack(columns: list[np.ndarray]) -> np.ndarray:
    """One int64 code per row of equal-length non-negative integer columns (mixed radix)."""
    code = np.zeros(len(columns[0]), dtype=np.int64)
    total = 1
    for col in columns:
        base = int(col.max()) + 1 if len(col) else 1
        total *= base
        if total >= 2**62:
            raise OverflowError("too many distinct block configurations to pack")
        code = code * base + col
    return code


@dataclass
class LatencyPredictor:
    """Whole-network milliseconds for encodings of ``space`` from ``table`` plus its correction."""

    space: SearchSpace
    table: LatencyTable
    num_classes: int
    statistic: str = "ms"
    in_chans: int = 3

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise UserError(
                f"unknown latency statistic {self.statistic!r}; choose from {STATISTICS}"
            )

    @property
    def correction(self) -> dict[str, Any] | None:
        return self.table.corrections.get(self.correction_name)

    @property
    def correction_name(self) -> str:
        space = self.space
        return correction_name(space.name, space.fingerprint(), self.num_classes, self.statistic)

    def _value(self, key: str) -> float:
        try:
            return float(self.table.entries[key][self.statistic])
        except KeyError:
            raise UserError(
                f"latency table {self.table.path} has no entry {key!r}; build it for space "
                f"{self.space.name!r}: fbnetv3 latency build --backend {self.table.backend} "
                f"--threads {self.table.threads} --space {self.space.name}"
            ) from None

    def _lookup(self, codes_cols: list[np.ndarray], make_key: Callable[..., str]) -> np.ndarray:
        """Table values for each row, looking each distinct configuration up once."""
        codes = _pack(codes_cols)
        uniq, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
        values = np.array([self._value(make_key(*(int(c[i]) for c in codes_cols))) for i in first])
        return values[inverse]

    def block_sums(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sum of table entries, number of entries) per encoding, vectorised over the batch."""
        space, cols = self.space, decode_columns(self.space, u)

        def col(name: str) -> np.ndarray:
            return cols[name].astype(np.int64)

        n = len(cols["resolution"])
        k = space.stem_kernel
        res, cin = col("resolution"), col("stem_channels")
        stem = self._lookup(
            [res, cin],
            lambda r, c: stem_key(r, self.in_chans, c, k, STEM_STRIDE, space.stem_act),
        )
        total, count = stem.copy(), np.ones(n)
        valid = np.ones(n, dtype=bool)
        size = spatial_size(res, k, STEM_STRIDE, k // 2)
        for i, stage in enumerate(space.stages):
            cout = None
            for j, row in enumerate(stage):
                name = f"stages[{i}][{j}]."
                kern = col(name + "kernel")
                exps = row.expansion.choices
                exp_col = cols[name + "expansion"]
                exp_i = np.zeros(n, dtype=np.int64)
                for t, value in enumerate(exps):
                    exp_i[exp_col == value] = t
                cout = col(name + "channels") if row.channels is not None else cout
                pad = kern // 2 - col(name + "pad_trim")
                repeats = col(name + "repeats")
                for r in range(int(repeats.max())):
                    on = r < repeats
                    stride = row.stride if r == 0 else 1

                    def key(s, c, o, kk, e, p, stride=stride, row=row, exps=exps) -> str:
                        exp = exps[e]
                        mid = mid_channels(c, exp)
                        se = se_channels(mid, exp, space.se_ratio) if row.se else 0
                        return block_key(s, c, mid, o, kk, stride, p, se, row.act, exp != 1)

                    live = np.flatnonzero(on & valid)
                    vals = np.zeros(n)
                    if len(live):
                        parts = [a[live] for a in (size, cin, cout, kern, exp_i, pad)]
                        vals[live] = self._lookup(parts, key)
                    total += vals
                    count += on
                    new = spatial_size(size, kern, stride, pad)
                    valid &= ~on | (new >= 1)
                    size = np.where(on, new, size)
                    cin = np.where(on, cout, cin)
        head = np.full(n, np.inf)  # a network whose feature map vanishes cannot run
        live = np.flatnonzero(valid)
        if len(live):
            head[live] = self._lookup(
                [size[live], cin[live]], lambda s, c: _head(space, s, c, self.num_classes)
            )
        return total + head, count + 1

    def predict(self, u: np.ndarray) -> np.ndarray:
        """Predicted whole-network milliseconds for each row of ``u``."""
        s, n = self.block_sums(u)
        corr = self.correction
        if corr is None:
            return s
        a, b, c = corr["coef"]
        return a + b * s + c * n


def _head(space: SearchSpace, size: int, cin: int, num_classes: int) -> str:
    mid = make_divisible(cin * space.head_expansion)
    return head_key(size, cin, mid, space.feature_width, num_classes, space.head_act)


def fit_correction(sums: np.ndarray, counts: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """``measured ~ a + b * sum + c * count`` by least squares on relative errors."""
    x = np.stack([np.ones_like(sums), sums, counts], axis=1) / measured[:, None]
    coef, *_ = np.linalg.lstsq(x, np.ones_like(measured), rcond=None)
    return coef


def calibration_vectors(space: SearchSpace, n: int, seed: int = CALIBRATION_SEED) -> np.ndarray:
    """Seeded uniform architectures of ``space`` whose feature maps never vanish."""
    from fbnetv3_zoo.search.space.constraints import batch_stats
    from fbnetv3_zoo.search.space.sampling import sample

    u = sample(space, 4 * n + 16, "uniform", seed=seed)
    valid = batch_stats(space, u, 10)[2]
    return u[valid][:n]


def build_table(
    space: SearchSpace,
    backend: str,
    threads: int = 1,
    num_classes: int = 1000,
    limit: int | None = None,
    calibrate: int = CALIBRATION_NETWORKS,
    progress: bool = True,
    log: Callable[[str], None] = print,
    table: LatencyTable | None = None,
) -> LatencyTable:
    """Measure the space's missing entries (at most ``limit``), then fit the correction once complete."""
    table = table or LatencyTable.for_machine(backend, threads)
    keys = space_keys(space, num_classes)
    missing = table.missing(keys)
    log(
        f"latency table {table.path}: {len(keys)} block configurations for space {space.name!r} "
        f"({len(keys) - len(missing)} already measured)"
    )
    start = time.perf_counter()
    done = table.measure(missing, limit=limit, progress=progress)
    left = len(missing) - done
    if done:
        log(f"measured {done} entries in {time.perf_counter() - start:.0f} s; {left} left")
    if left:
        log(f"run the same command again to measure the remaining {left}")
        return table
    names = [LatencyPredictor(space, table, num_classes, s).correction_name for s in STATISTICS]
    if calibrate and any(name not in table.corrections for name in names):
        calibrate_table(space, table, num_classes, calibrate, progress, log)
    u = calibration_vectors(space, 2048, seed=CALIBRATION_SEED + 1)
    q = np.quantile(LatencyPredictor(space, table, num_classes).predict(u), [0.05, 0.5, 0.95])
    log(
        f"predicted latency of the space's networks on {table.backend}: 5th percentile "
        f"{q[0]:.3g} ms, median {q[1]:.3g} ms, 95th percentile {q[2]:.3g} ms (a guide for "
        f"--constraint 'latency_ms<=...@{table.backend}')"
    )
    return table


def calibrate_table(
    space: SearchSpace,
    table: LatencyTable,
    num_classes: int,
    n: int = CALIBRATION_NETWORKS,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure ``n`` seeded whole networks and store the fitted correction for each statistic."""
    from tqdm.auto import tqdm

    u = calibration_vectors(space, n)
    fns = [
        network_runner(decode(space, row)[0], table.backend, table.threads, num_classes)
        for row in tqdm(u, desc="whole networks (calibration)", unit="net", disable=not progress)
    ]
    timings = measure_many(fns, table.threads)
    measured = {"ms": [t.ms for t in timings], "low": [t.low for t in timings]}
    out = {}
    for stat in STATISTICS:
        pred = LatencyPredictor(space, table, num_classes, stat)
        sums, counts = pred.block_sums(u)
        y = np.asarray(measured[stat])
        coef = fit_correction(sums, counts, y)
        fit = coef[0] + coef[1] * sums + coef[2] * counts
        out[stat] = dict(
            coef=[float(c) for c in coef],
            networks=len(y),
            fit_mape=float(np.mean(np.abs(fit / y - 1))),
            raw_mape=float(np.mean(np.abs(sums / y - 1))),
        )
        table.set_correction(pred.correction_name, out[stat])
        log(
            f"correction ({stat}): {len(y)} networks, fit error {100 * out[stat]['fit_mape']:.1f} % "
            f"(block sum alone {100 * out[stat]['raw_mape']:.1f} %)"
        )
    return out


def predict_spec(
    table: LatencyTable,
    spec: Any,
    num_classes: int,
    space: SearchSpace | None = None,
    statistic: str = "ms",
) -> float:
    """Milliseconds of one ArchSpec: its block sum, corrected when ``space`` has a correction."""
    keys = spec_keys(spec, num_classes)
    s = table.block_sum(keys, statistic)
    if space is not None:
        corr = LatencyPredictor(space, table, num_classes, statistic).correction
        if corr is not None:
            a, b, c = corr["coef"]
            return a + b * s + c * len(keys)
    return s


# ------------------------------------------------------------------ search hooks
