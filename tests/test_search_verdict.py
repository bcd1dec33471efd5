"""report.md's verdict and progress.png's curve, on hand-made rows (issue 18)."""

from __future__ import annotations

import numpy as np
from fbnetv3_zoo.search.report.summaries import progress_curve
from fbnetv3_zoo.search.report.verdict import MIN_TAU_PAIRS, verdict_lines
from fbnetv3_zoo.search.space.constraints import parse_constraint

LIMIT = parse_constraint("macs<=1M")


def row(cid, iteration, score, macs=500_000, predicted=None, epochs=5, status="done"):
    return dict(
        id=cid,
        iteration=iteration,
        score=score,
        macs=macs,
        params=100_000,
        predicted=predicted,
        epochs=epochs,
        status=status,
        source="sobol" if iteration == 0 else "acquisition",
    )


def test_verdict_compares_the_final_pick_with_the_first_batch():
    rows = [row(1, 0, 80.0), row(2, 0, 70.0), row(3, 0, 60.0), row(4, 1, 85.0, predicted=84.0)]
    text = "\n".join(verdict_lines(rows, [LIMIT], {LIMIT.text: rows[3]}))
    assert "final pick candidate 4 (acquisition) measured 85.00 % top-1 against 80.00 %" in text
    assert "(+5.00 points)" in text
    assert "1 of the 1 pairs the strategy chose after the first batch beat" in text
    assert f"too few pairs to judge (1, fewer than {MIN_TAU_PAIRS})" in text


def test_verdict_says_when_the_first_batch_still_wins():
    rows = [row(1, 0, 80.0), row(2, 1, 50.0, predicted=90.0)]
    text = "\n".join(verdict_lines(rows, [LIMIT], {LIMIT.text: rows[0]}))
    assert "still the first batch's best (candidate 1, 80.00 % top-1)" in text
    assert "0 of the 1 pairs" in text


def test_verdict_gives_a_tau_interval_only_with_enough_pairs():
    rng = np.random.default_rng(0)
    truth = rng.uniform(60, 90, MIN_TAU_PAIRS + 2)
    rows = [row(1, 0, 70.0)] + [
        row(i + 2, 1, float(t), predicted=float(t + rng.normal(0, 2))) for i, t in enumerate(truth)
    ]
    lines = verdict_lines(rows, [LIMIT], {LIMIT.text: max(rows, key=lambda r: r["score"])})
    (tau_line,) = [line for line in lines if "Prospective Kendall tau over" in line]
    tau = float(tau_line.split(": ")[1].split(" ")[0])
    low, high = (float(x) for x in tau_line.split("interval ")[1].rstrip(").").split(" to "))
    assert tau > 0.5 and low < tau < high <= 1.0  # predictions close to the truth rank well


def test_bootstrap_taus_are_scipys_kendall_tau_b_exactly():
    """The vectorised bootstrap gives scipy's numbers bit for bit: ties, no variation, NaN."""
    from fbnetv3_zoo.search.predictor.fit import rank_quality
    from fbnetv3_zoo.search.report.verdict import kendall_taus, tau_interval

    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, (300, 12)).astype(float)  # many ties, as resampling makes
    y = x + rng.integers(-3, 4, x.shape)
    x[0], y[1], x[2, 4] = 7.0, -1.0, np.nan  # no variation in x; in y; a NaN
    want = np.array([rank_quality(a, b)[0] for a, b in zip(x, y, strict=True)])
    got = kendall_taus(x, y)
    assert np.isnan(got[:3]).all() and np.isnan(want[:3]).all()
    assert got[3:].tolist() == want[3:].tolist()
    assert np.isnan(kendall_taus(x[:, :2], y[:, :2])).all()  # fewer than three pairs
    # the interval is the percentiles of the same draws the per-resample loop made
    p, m = rng.normal(size=15), rng.normal(size=15)
    draws_rng, draws = np.random.default_rng(0), []
    for _ in range(1000):
        pick = draws_rng.integers(0, 15, 15)
        value = rank_quality(p[pick], m[pick])[0]
        draws += [value] if value == value else []
    low, high = np.percentile(draws, [2.5, 97.5])
    assert tau_interval(p, m) == (rank_quality(p, m)[0], float(low), float(high))


def test_progress_counts_epochs_spent_and_marks_the_first_batch():
    rows = [
        row(1, 0, 60.0),
        row(2, 0, 70.0),
        row(3, 1, 65.0, epochs=2),
        row(4, 1, None, epochs=1, status="failed"),
        row(5, 2, 75.0, epochs=3),
        row(6, 3, None, status="pending"),
    ]
    spent, best, first_end = progress_curve(rows)
    assert spent == [5, 10, 12, 13, 16] and best == [60.0, 70.0, 70.0, 70.0, 75.0]
    assert first_end == 10


def test_verdict_quotes_a_re_measured_pick_as_the_mean_of_its_trainings():
    from fbnetv3_zoo.search.report.summaries import best_per_constraint

    rows = [row(1, 0, 80.0), row(2, 0, 70.0), row(3, 1, 90.0, predicted=84.0)]
    rows += [dict(row(4, 2, 84.0), repeat_of=3), dict(row(5, 2, 78.0), repeat_of=1)]
    best = best_per_constraint(rows, [LIMIT], 5)
    text = "\n".join(verdict_lines(rows, [LIMIT], best))
    assert "measured 87.00 (mean of 2 trainings: 90.00, 84.00) % top-1" in text
    assert "against 79.00 (mean of 2 trainings: 80.00, 78.00) %" in text
    assert "1 of the 1 pairs the strategy chose" in text  # a re-measurement is not a new pick


def test_verdict_tells_failed_from_not_trained_yet():
    failed = [row(1, 0, None, status="failed"), row(2, 0, None, status="failed")]
    text = "\n".join(verdict_lines([], [LIMIT], {}, failed))
    assert "Every pair of the first batch that was trained failed (2)" in text
    assert "not trained yet" not in text
    assert "No pair of the first batch has been trained yet" in "\n".join(
        verdict_lines([], [LIMIT], {})
    )


def test_a_tie_between_two_trainings_prints_as_a_tie():
    from fbnetv3_zoo.search.report.verdict import top1_text

    tie = top1_text(dict(score=88.59, scores=[88.59, 88.59]))
    assert tie == "88.59 (2 trainings with different seeds tied at 88.59)"
    assert "mean of" not in tie
    assert top1_text(dict(score=87.0, scores=[90.0, 84.0])) == (
        "87.00 (mean of 2 trainings: 90.00, 84.00)"
    )
