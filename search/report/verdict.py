"""The first lines of ``report.md``: did the strategy add anything over its random start?

A newcomer's question after a search is whether the predictor (or any
strategy) beat the Sobol-sampled first batch.  Answered from the run's own
measurements: per limit, the best first-batch pair against the final pick;
how many of the strategy's picks beat the first batch's median; and the
prospective rank correlation of the predictions with what training then
measured, only when enough pairs make it mean something (with an interval).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fbnetv3_zoo.search.predictor.fit import rank_quality
from fbnetv3_zoo.search.report.summaries import first_measurements, with_repeats
from fbnetv3_zoo.search.space.constraints import NO_LIMIT, Constraint, row_stats

MIN_TAU_PAIRS = 10  # below this a Kendall tau's interval spans most of [-1, 1]
RESAMPLES = 1000  # bootstrap resamples of the predicted/measured pairs


def _inside(rows: list[dict[str, Any]], c: Constraint) -> list[dict[str, Any]]:
    return [r for r in rows if bool(c.ok(*row_stats(r))[0])]


def _label(c: Constraint) -> str:
    """How a verdict line names its limit (a recipe-only search has none)."""
    return "Best recipe" if c.metric == NO_LIMIT else f"`{c.text}`"


def tau_interval(predicted: np.ndarray, measured: np.ndarray) -> tuple[float, float, float]:
    """Kendall tau with a 95 % bootstrap interval over the pairs (seeded: same run, same text)."""
    tau = rank_quality(predicted, measured)[0]
    rng = np.random.default_rng(0)
    picks = np.stack([rng.integers(0, len(predicted), len(predicted)) for _ in range(RESAMPLES)])
    taus = kendall_taus(np.asarray(predicted)[picks], np.asarray(measured)[picks])
    draws = taus[taus == taus]  # a resample without variation has no tau
    if not len(draws):
        return tau, float("nan"), float("nan")
    low, high = np.percentile(draws, [2.5, 97.5])
    return tau, float(low), float(high)


def kendall_taus(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row pair, as ``scipy.stats.kendalltau`` gives it, all at once.

    The bootstrap needs a thousand taus of a few dozen pairs; one scipy call each
    (with a p-value nobody reads) cost a search's report over a second.  Same
    arithmetic as scipy (concordant minus discordant over the square roots of the
    untied pair counts), so the same numbers; NaN for a row without variation or
    fewer than three pairs, as ``rank_quality`` gives.
    """
    rows, n = predicted.shape
    if n < 3:
        return np.full(rows, np.nan)
    first, second = np.triu_indices(n, 1)
    out = np.empty(rows)
    step = max(1, 2_000_000 // len(first))  # bounds the (rows, pairs) arrays for large runs
    for start in range(0, rows, step):
        x, y = predicted[start : start + step], measured[start : start + step]
        sx = np.sign(x[:, second] - x[:, first])
        sy = np.sign(y[:, second] - y[:, first])
        untied_x, untied_y = (sx != 0).sum(1), (sy != 0).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            tau = (sx * sy).sum(1) / np.sqrt(untied_x) / np.sqrt(untied_y)
        tau[(untied_x == 0) | (untied_y == 0)] = np.nan
        out[start : start + step] = np.clip(tau, -1.0, 1.0)
    return out


def top1_text(row: dict[str, Any]) -> str:
    """A candidate's measured top-1; a re-measured one's as the mean of its trainings."""
    scores = row.get("scores") or [row["score"]]
    if len(scores) == 1:
        return f"{row['score']:.2f}"
    shown = [f"{v:.2f}" for v in scores]
    if len(set(shown)) == 1:  # a tie, said as one: two equal numbers read like a seeding bug
        return (
            f"{row['score']:.2f} ({len(scores)} trainings with different seeds tied at {shown[0]})"
        )
    return f"{row['score']:.2f} (mean of {len(scores)} trainings: {', '.join(shown)})"


def verdict_lines(
    done: list[dict[str, Any]],
    constraints: list[Constraint],
    best: dict[str, Any],
    failed: list[dict[str, Any]] = (),
) -> list[str]:
    """Markdown lines of the verdict (a heading, then one bullet per finding).

    Re-measured pairs are quoted with the mean of their trainings; the counts
    of picks above the first batch's median use each pair's first training.
    """
    own = first_measurements(done)
    first = [r for r in own if r["iteration"] == 0]
    later = [r for r in own if r["iteration"] > 0]
    scored = {r["id"]: r for r in with_repeats(done)}
    lines = ["## Verdict", ""]
    if not first:
        tried = [r for r in failed if r["iteration"] == 0]
        if tried:  # trained and failed is not the same as not trained yet
            return lines + [
                f"- Every pair of the first batch that was trained failed ({len(tried)}); "
                "see Failed candidates below.",
                "",
            ]
        return lines + ["- No pair of the first batch has been trained yet.", ""]
    for c in constraints:
        start = max(_inside(first, c), key=lambda r: r["score"], default=None)
        start = None if start is None else scored[start["id"]]
        pick = best.get(c.text)
        if pick is None:
            lines.append(f"- {_label(c)}: no measured pair fits this limit yet.")
        elif start is None:
            lines.append(
                f"- {_label(c)}: no first-batch pair fits; the final pick (candidate {pick['id']}, "
                f"{pick['source']}) measured {top1_text(pick)} % top-1."
            )
        elif pick["id"] == start["id"]:
            lines.append(
                f"- {_label(c)}: the best pair is still the first batch's best (candidate "
                f"{start['id']}, {top1_text(start)} % top-1): the strategy's picks did not beat it."
            )
        else:
            gain = pick["score"] - start["score"]
            lines.append(
                f"- {_label(c)}: final pick candidate {pick['id']} ({pick['source']}) measured "
                f"{top1_text(pick)} % top-1 against {top1_text(start)} % for the first batch's "
                f"best ({gain:+.2f} points)."
            )
    median = float(np.median([r["score"] for r in first]))
    above = sum(r["score"] > median for r in later)
    lines.append(
        f"- {above} of the {len(later)} pairs the strategy chose after the first batch beat the "
        f"first batch's median ({median:.2f} % top-1)."
    )
    chosen = [r for r in later if r["predicted"] is not None]
    if len(chosen) < MIN_TAU_PAIRS:
        lines.append(
            f"- Prospective Kendall tau (predictions made when each pair was chosen vs its "
            f"measured top-1): too few pairs to judge ({len(chosen)}, fewer than {MIN_TAU_PAIRS})."
        )
    else:
        predicted = np.array([r["predicted"] for r in chosen])
        measured = np.array([r["score"] for r in chosen])
        tau, low, high = tau_interval(predicted, measured)
        lines.append(
            f"- Prospective Kendall tau over {len(chosen)} chosen pairs: {tau:.2f} "
            f"(95 % bootstrap interval {low:.2f} to {high:.2f})."
        )
    return lines + [""]
