"""The predictor as the search uses it: a head fitted on measured pairs and scored on held-out ones.

Which head fits is a name in the registry (``heads/``) or a head instance; the
encoder it may build on comes from ``encoder.py``.  This module adds only
what is the same for every head: the held-out rank correlation that the store
and the report keep per fit.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from fbnetv3_zoo.search.predictor.encoder import Pretrained
from fbnetv3_zoo.search.predictor.heads import AccuracyModel, FitContext, Head, make_head
from fbnetv3_zoo.search.space.definition import SearchSpace


def rank_quality(predicted: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    """(Kendall tau, Spearman rho); NaN when fewer than three pairs or no variation."""
    from fbnetv3_zoo.optional import require

    stats = require("scipy.stats", "the search's rank correlations")
    if len(predicted) < 3 or np.ptp(predicted) == 0 or np.ptp(measured) == 0:
        return float("nan"), float("nan")
    tau = stats.kendalltau(predicted, measured)[0]
    return float(tau), float(stats.spearmanr(predicted, measured)[0])


def fit_with_holdout(
    u: np.ndarray,
    y: np.ndarray,
    pretrained: Pretrained | None = None,
    holdout: float = 0.25,
    seed: int = 0,
    head: str | Head = "network",
    space: SearchSpace | None = None,
    members: int = 5,
    steps: int = 300,
) -> tuple[AccuracyModel, dict[str, Any]]:
    """Score a fit on held-out pairs, then refit on everything; returns (model, quality).

    ``head`` is a registered name (``heads.HEADS``) or a head instance (a
    variant built with other constructor arguments); ``members`` and ``steps``
    reach it through ``heads.FitContext``.
    """
    start = time.perf_counter()
    model_of = make_head(head)
    ctx = FitContext(space, pretrained, seed, members, steps)
    u = np.asarray(u, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(u)
    quality: dict[str, Any] = {
        "n": float(n),
        "tau": float("nan"),
        "rho": float("nan"),
        "n_heldout": 0.0,
    }
    n_out = max(3, int(round(holdout * n)))
    if n - n_out >= 3:
        order = np.random.default_rng(seed + 17).permutation(n)
        test, train = order[:n_out], order[n_out:]
        probe = model_of.fit(u[train], y[train], ctx)
        tau, rho = rank_quality(probe.predict(u[test])[0], y[test])
        quality.update(tau=tau, rho=rho, n_heldout=float(n_out))
    model = model_of.fit(u, y, ctx)
    quality["head"] = model_of.name
    quality["train_loss"] = model.train_loss
    quality.update(model.diagnostics())
    quality["wall_s"] = time.perf_counter() - start
    return model, quality
