"""Facts derived from a run's rows and notes, shared by the report and the plots."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .constraints import Constraint, row_stats


def pareto_front(macs: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Indices of points no other point beats on both fewer MACs and higher accuracy, by MACs."""
    order = np.lexsort((-acc, macs))
    front, best = [], -math.inf
    for i in order:
        if acc[i] > best:
            front.append(i)
            best = acc[i]
    return np.array(front, dtype=int)


def predictor_fits(notes: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """The predictor's fit quality per iteration (a strategy's ``fit`` notes), in order."""
    fits = [dict(n["fit"], iteration=it) for it, n in sorted(notes.items()) if "fit" in n]
    for f in fits:  # counts, stored as the head reported them (floats)
        f["n"], f["n_heldout"] = int(f["n"]), int(f.get("n_heldout") or 0)
    return fits


def progress_curve(rows: list[dict[str, Any]]) -> tuple[list[int], list[float], int]:
    """(epochs spent after each training, best top-1 so far, epochs the first batch spent).

    Rows in id order (the order they were proposed); failed rows cost the
    epochs they trained and add no score.
    """
    spent: list[int] = []
    best: list[float] = []
    total, first_end, top = 0, 0, -np.inf
    for row in rows:
        if row["status"] == "pending":
            continue
        total += int(row.get("epochs") or 0)
        if row["status"] == "done" and row["score"] is not None:
            top = max(top, float(row["score"]))
        if row["iteration"] == 0:
            first_end = total
        if np.isfinite(top):
            spent.append(total)
            best.append(top)
    return spent, best, first_end


def best_per_constraint(
    done: list[dict[str, Any]], constraints: list[Constraint], scoring_epoch: int | None = None
) -> dict[str, dict[str, Any] | None]:
    """The measured-best candidate within each constraint (None when none fits).

    Candidates trained to ``scoring_epoch`` come first: a short rung of
    successive halving scores lower epochs, which are not comparable with the
    rest; a limit that only such candidates meet still gets its best one.
    """
    out = {}
    for c in constraints:
        fits = [r for r in done if bool(c.ok(*row_stats(r))[0])]
        full = [r for r in fits if scoring_epoch is None or (r["epochs"] or 0) >= scoring_epoch]
        out[c.text] = max(full or fits, key=lambda r: r["score"]) if fits else None
    return out
