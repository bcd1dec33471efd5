"""Uniform and Sobol sampling of encodings, kept inside the resource constraints.

Sobol (scrambled, from ``scipy.stats.qmc``) covers the cube more evenly than
uniform draws, which matters for the first batch that anchors the predictor.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from fbnetv3_zoo.search.space.constraints import Constraint, batch_stats, feasible
from fbnetv3_zoo.search.space.definition import SearchSpace
from fbnetv3_zoo.search.space.encoding import snap

from fbnetv3_zoo.errors import UserError


def sample(space: SearchSpace, n: int, method: str = "sobol", seed: int = 0) -> np.ndarray:
    """``n`` snapped encodings drawn by ``method`` (``sobol`` or ``uniform``)."""
    if method == "uniform":
        u = np.random.default_rng(seed).random((n, space.size))
    elif method == "sobol":
        from fbnetv3_zoo.optional import require

        qmc = require("scipy.stats.qmc", "Sobol sampling")
        engine = qmc.Sobol(space.size, scramble=True, seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # balance warning: we take a power-of-two prefix
            u = engine.random_base2(max(0, math.ceil(math.log2(max(n, 1)))))[:n]
    else:
        raise UserError(f"unknown sampling method {method!r}; choose sobol or uniform")
    return snap(space, u)


def sample_feasible(
    space: SearchSpace,
    n: int,
    constraints: list[Constraint],
    num_classes: int = 1000,
    method: str = "sobol",
    seed: int = 0,
    max_draws: int = 100_000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to ``n`` encodings meeting at least one constraint, with their MACs and params.

    Draws in growing chunks until ``n`` are found or ``max_draws`` is spent;
    raises UserError when not a single draw was feasible, quoting the
    smallest MACs/params seen so the user can see how far off the limit is.
    """
    kept, drawn, chunk, attempt = [], 0, max(1024, 4 * n), 0
    found = 0
    lowest = (math.inf, math.inf)
    while found < n and drawn < max_draws:
        size = min(chunk, max_draws - drawn)
        u = sample(space, size, method, seed=seed * 1009 + attempt)
        macs, params, valid = batch_stats(space, u, num_classes)
        ok = valid & feasible(constraints, macs, params, u)
        if valid.any():
            lowest = (min(lowest[0], macs[valid].min()), min(lowest[1], params[valid].min()))
        kept.append((u[ok], macs[ok], params[ok]))
        found += int(ok.sum())
        drawn += size
        attempt += 1
        chunk *= 2
    if found == 0:
        limits = ", ".join(c.text for c in constraints) or "(none)"
        raise UserError(
            f"no sampled pair satisfies any constraint of {limits} after {drawn} draws from space {space.name!r}; smallest seen: macs={lowest[0] / 1e6:.3f}M, params={lowest[1] / 1e6:.3f}M"
        )
    u, macs, params = (np.concatenate(parts) for parts in zip(*kept, strict=True))
    return u[:n], macs[:n], params[:n]
