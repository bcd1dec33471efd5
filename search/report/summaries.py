"""Facts derived from a run's rows and notes, shared by the report and the plots."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from fbnetv3_zoo.search.space.constraints import Constraint, row_stats


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
    epochs they trained and add no score; a re-measurement costs its epochs
    and leaves the best single measurement as it was.
    """
    spent: list[int] = []
    best: list[float] = []
    total, first_end, top = 0, 0, -np.inf
    for row in rows:
        if row["status"] == "pending":
            continue
        total += int(row.get("epochs") or 0)
        if row["status"] == "done" and row["score"] is not None and row.get("repeat_of") is None:
            top = max(top, float(row["score"]))
        if row["iteration"] == 0:
            first_end = total
        if np.isfinite(top):
            spent.append(total)
            best.append(top)
    return spent, best, first_end


def _full(rows: list[dict[str, Any]], scoring_epoch: int | None) -> list[dict[str, Any]]:
    return [r for r in rows if scoring_epoch is None or (r["epochs"] or 0) >= scoring_epoch]


def first_measurements(done: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows that are a candidate's own training, not a re-measurement of another one."""
    return [r for r in done if r.get("repeat_of") is None]


def finalists(
    done: list[dict[str, Any]],
    constraints: list[Constraint],
    scoring_epoch: int | None,
    count: int,
) -> list[dict[str, Any]]:
    """Up to ``count`` candidates to train once more, best measured first, shared fairly among limits.

    Round by round, each limit adds its best candidate (by its one
    measurement, trained to the scoring epoch) that no limit has chosen yet,
    so with ``count = k x limits`` each limit's own top ``k`` is re-measured
    (a pair two limits share counts for both).  Candidates already
    re-measured are skipped.
    """
    repeated = {r["repeat_of"] for r in done if r.get("repeat_of") is not None}
    ranked = []
    for c in constraints:
        fits = [r for r in _full(first_measurements(done), scoring_epoch) if c.ok(*row_stats(r))[0]]
        ranked.append(sorted(fits, key=lambda r: (-r["score"], r["id"])))
    chosen: list[dict[str, Any]] = []
    taken = set(repeated)
    while len(chosen) < count:
        added = False
        for rows in ranked:  # each limit adds its best candidate nobody has chosen yet
            pick = next((r for r in rows if r["id"] not in taken), None)
            if pick is not None and len(chosen) < count:
                chosen.append(pick)
                taken.add(pick["id"])
                added = True
        if not added:
            break
    return chosen


def with_repeats(done: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each candidate's row, scored on the mean of all its trainings (``scores`` lists them).

    Rows that were re-measured also get ``repeat_ids``; a row measured once
    keeps its score, with ``scores`` holding that one value.
    """
    extra: dict[int, list[dict[str, Any]]] = {}
    for r in done:
        if r.get("repeat_of") is not None:
            extra.setdefault(r["repeat_of"], []).append(r)
    out = []
    for r in first_measurements(done):
        if "scores" in r:  # already combined (with_repeats is idempotent)
            out.append(r)
            continue
        again = extra.get(r.get("id"), [])
        scores = [float(r["score"])] + [float(x["score"]) for x in again]
        out.append(
            dict(
                r, score=float(np.mean(scores)), scores=scores, repeat_ids=[x["id"] for x in again]
            )
        )
    return out


def best_per_constraint(
    done: list[dict[str, Any]], constraints: list[Constraint], scoring_epoch: int | None = None
) -> dict[str, dict[str, Any] | None]:
    """The measured-best candidate within each constraint (None when none fits).

    Re-measured candidates (the finalists) compete on the mean of their
    trainings and come first: a single measurement that was never repeated
    carries the winner's curse.  Then candidates trained to ``scoring_epoch``
    come before shorter ones: a short rung of successive halving scores lower
    epochs, which are not comparable with the rest; a limit that only such
    candidates meet still gets its best one.
    """
    rows = with_repeats(done)
    out = {}
    for c in constraints:
        fits = [r for r in rows if bool(c.ok(*row_stats(r))[0])]
        full = _full(fits, scoring_epoch)
        repeated = [r for r in full if r["repeat_ids"]]
        out[c.text] = max(repeated or full or fits, key=lambda r: r["score"]) if fits else None
    return out
