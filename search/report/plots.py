"""The search's plots: accuracy against MACs, predicted against measured, progress.

``progress.png`` shows what a run bought: the best measured top-1 against the
proxy epochs spent (short and early-stopped trainings count what they
trained), with the first, Sobol-sampled batch shaded, so a reader sees how
much the strategy's picks added over the random start.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from fbnetv3_zoo.search.report.summaries import (
    pareto_front,
    predictor_fits,
    progress_curve,
    with_repeats,
)
from fbnetv3_zoo.search.space.constraints import Constraint
from fbnetv3_zoo.search.store import Store

from fbnetv3_zoo.files.outputs import refuse_link
from fbnetv3_zoo.optional import require

PLOTS = "the search's plots"  # what needs matplotlib, in a missing extra's one line


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend; a missing matplotlib is one line
    naming the [search] extra (the one a search is installed with; it brings matplotlib)."""
    require("matplotlib", PLOTS, extra="search").use("Agg")  # before pyplot is imported
    return require("matplotlib.pyplot", PLOTS, extra="search")


def write_plots(
    out: Path,
    store: Store,
    picks: dict[str, dict[str, Any] | None] | None = None,
    constraints: list[Constraint] | None = None,
) -> list[Path]:
    """Accuracy vs MACs with the Pareto front, predicted vs measured, progress per iteration.

    ``picks`` (limit -> its pick, as ``best_per_constraint`` returns) are marked
    on the accuracy plot and added at the end of the progress curve: the curve
    follows single measurements, and the pick's mean is what ``best/`` reports.
    ``constraints``: their MACs limits are drawn on the accuracy plot.
    """
    pyplot()  # a missing matplotlib fails here, before any plot is started

    done = with_repeats(store.candidates("done"))  # a re-measured pair once, at its mean
    if not done:
        return []
    return [
        _plot_acc_vs_macs(out, done, picks or {}, constraints or []),
        _plot_predicted_vs_measured(out, done),
        _plot_progress(out, store, picks),
    ]


def _plot_acc_vs_macs(
    out: Path,
    done: list[dict[str, Any]],
    picks: dict[str, dict[str, Any] | None],
    constraints: list[Constraint],
) -> Path:
    """``acc_vs_macs.png``: measured top-1 against MACs per source, the Pareto front, limits, picks."""
    plt = pyplot()

    macs = np.array([r["macs"] for r in done]) / 1e6
    acc = np.array([r["score"] for r in done])
    fig, ax = plt.subplots(figsize=(6, 4))
    for source, marker in (("sobol", "o"), ("acquisition", "s"), ("genetic", "*")):
        mask = np.array([r["source"] == source for r in done])
        if mask.any():
            ax.scatter(macs[mask], acc[mask], marker=marker, label=source, alpha=0.8)
    front = pareto_front(macs, acc)
    ax.plot(macs[front], acc[front], "k--", lw=1, label="Pareto front")
    _draw_limits_and_picks(ax, picks, constraints)
    ax.set(xlabel="MACs (M)", ylabel="proxy top-1 (%)", title="measured accuracy vs MACs")
    ax.legend(fontsize=8)
    return _save(fig, out / "acc_vs_macs.png")


def _draw_limits_and_picks(
    ax: Any, picks: dict[str, dict[str, Any] | None], constraints: list[Constraint]
) -> None:
    """Each MACs limit as a vertical line, each limit's pick ringed and labelled with the limit."""
    colours = ("tab:red", "tab:purple", "tab:brown", "tab:olive", "tab:cyan")
    for i, c in enumerate(constraints):
        colour = colours[i % len(colours)]
        if c.metric == "macs":
            ax.axvline(c.limit / 1e6, color=colour, ls=":", lw=1, label=f"limit {c.text}")
        pick = picks.get(c.text)
        if pick is not None:
            ax.scatter(
                [pick["macs"] / 1e6],
                [pick["score"]],
                s=160,
                facecolors="none",
                edgecolors=colour,
                linewidths=1.5,
                label=f"pick for {c.text} ({pick['score']:.1f} %)",
            )


def _plot_predicted_vs_measured(out: Path, done: list[dict[str, Any]]) -> Path:
    """``predicted_vs_measured.png``: the predictor's guess (with its std) against the score."""
    plt = pyplot()

    pred = [
        (r["predicted"], r["predicted_std"] or 0.0, r["score"])
        for r in done
        if r["predicted"] is not None
    ]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    if pred:
        p, s, m = (np.array(v) for v in zip(*pred, strict=True))
        ax.errorbar(p, m, xerr=s, fmt="o", alpha=0.8)
        lo, hi = min(p.min(), m.min()), max(p.max(), m.max())
        ax.plot([lo, hi], [lo, hi], "k:", lw=1)
    ax.set(xlabel="predicted top-1 (%)", ylabel="measured top-1 (%)", title="predicted vs measured")
    return _save(fig, out / "predicted_vs_measured.png")


def _plot_progress(out: Path, store: Store, picks: dict[str, dict[str, Any] | None] | None) -> Path:
    """``progress.png``: best top-1 against epochs spent, and the predictor's tau per iteration."""
    plt = pyplot()

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    _draw_progress(a1, store, picks)
    _draw_predictor_quality(a2, store)
    return _save(fig, out / "progress.png")


def _draw_progress(a1: Any, store: Store, picks: dict[str, dict[str, Any] | None] | None) -> None:
    """The best single measurement so far, the first batch shaded, each re-measured pick."""
    spent, best, first_end = progress_curve(store.candidates())
    if spent:
        a1.step(spent, best, "r-", where="post", label="best single measurement so far")
        a1.axvspan(0, first_end, color="0.85", label="first batch (Sobol)")
        repeated = [(t, r) for t, r in (picks or {}).items() if r and r.get("repeat_ids")]
        for k, (text, row) in enumerate(repeated):
            a1.plot(
                [spent[-1]],
                [row["score"]],
                "Dv^<>"[k % 5],
                label=f"{text}: pick, mean of {len(row['scores'])} trainings",
            )
    a1.set(xlabel="proxy epochs spent", ylabel="proxy top-1 (%)", title="progress")
    a1.legend(fontsize=8)


def _draw_predictor_quality(a2: Any, store: Store) -> None:
    """Held-out and prospective Kendall tau of each predictor fit, or a note that none was."""
    MaxNLocator = require("matplotlib.ticker", PLOTS, extra="search").MaxNLocator

    drawn = False
    for key, style, label in (
        ("tau", "o-", "held-out tau"),
        ("prospective_tau", "s-", "prospective tau"),
    ):
        points = [
            (f["iteration"], f[key])
            for f in predictor_fits(store.notes())
            if f.get(key) is not None
        ]
        if points:
            x, y = zip(*points, strict=True)
            a2.plot(x, y, style if len(points) > 1 else style[0], label=label)
            drawn = True
    if drawn:
        a2.axhline(0.0, color="k", lw=0.5)
        a2.set_ylim(-1.05, 1.05)
        a2.legend(fontsize=8)
    else:
        a2.text(
            0.5,
            0.5,
            "no predictor quality measured",
            ha="center",
            va="center",
            transform=a2.transAxes,
        )
    a2.set(xlabel="iteration", ylabel="Kendall tau", title="predictor quality")
    a2.xaxis.set_major_locator(MaxNLocator(integer=True))


def _save(fig: Any, path: Path) -> Path:
    """Save a plot under a temporary name and rename it into place (never through a link)."""
    plt = pyplot()

    refuse_link(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    if os.path.lexists(tmp):
        tmp.unlink()
    fig.tight_layout()
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path
