"""The early-stopping epoch: the first epoch whose accuracies already rank candidates like the last.

The paper's early stopping, measured on the search's own first batch: with
enough complete curves, later candidates train only up to that epoch and
every candidate is scored there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fbnetv3_zoo.search.predictor.fit import rank_quality
from fbnetv3_zoo.search.trainer import epoch_accuracy


def choose_stop_epoch(
    curves: list[list[float]], threshold: float, min_curves: int = 16
) -> tuple[int, list[float]]:
    """Smallest epoch whose accuracies rank-correlate with the final ones at >= ``threshold``.

    Returns (epoch, tau per epoch).  With fewer than ``min_curves`` complete
    curves (``SearchConfig.min_stop_curves``: below it a tau is too rough to
    bet the ranking on) the taus are still reported but the answer is the
    final epoch (no early stopping); with fewer than three there are no taus.
    """
    curves = [c for c in curves if c and all(v is not None for v in c)]
    if not curves:
        return 1, []
    final_epoch = min(len(c) for c in curves)
    if len(curves) < 3:
        return final_epoch, []
    acc = np.array([c[:final_epoch] for c in curves], dtype=float)
    taus = [rank_quality(acc[:, e], acc[:, -1])[0] for e in range(final_epoch)]
    if len(curves) < min_curves:
        return final_epoch, taus
    for e, tau in enumerate(taus):
        if tau == tau and tau >= threshold - 1e-9:  # Kendall's 0.8 on 5 items is 0.7999...
            return e + 1, taus
    return final_epoch, taus


def score_at(metrics: list[dict[str, Any]], epoch: int, window: int = 1) -> float | None:
    """The candidate's mean top-1 over the ``window`` epochs ending at ``epoch`` (its last if it trained fewer).

    One epoch's top-1 on a small validation split swings with the seed by
    more than the gap between good candidates; averaging the last few epochs
    of the same training (``SearchConfig.score_epochs``) ranks them better at
    no extra cost.  None when the training reported no accuracy at its last
    epoch (a failed run); epochs inside the window without one are skipped.
    """
    if not metrics:
        return None
    end = min(epoch, len(metrics))
    if epoch_accuracy(metrics[end - 1]) is None:
        return None
    values = [epoch_accuracy(m) for m in metrics[max(0, end - window) : end]]
    return float(np.mean([v for v in values if v is not None]))
