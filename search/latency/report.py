"""The latency part of a search's report: measured picks, flags, accuracy against latency.

Read from what :mod:`.latency_picks` stored at the end of the search, so a
re-render never times anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fbnetv3_zoo.search.latency.picks import measured_key, typical
from fbnetv3_zoo.search.report.summaries import pareto_front
from fbnetv3_zoo.search.space.constraints import Constraint

PLOT = "acc_vs_latency.png"


def _verdict(doc: dict[str, Any]) -> str:
    ms, limit = doc.get("measured_ms"), doc["limit_ms"]
    if ms is None:
        return "not measured"
    if doc.get("over_limit_beyond_noise"):
        return f"**over the limit by more than the noise** ({100 * (ms / limit - 1):+.1f} %)"
    if ms > limit:
        return f"within the noise ({100 * (ms / limit - 1):+.1f} %)"
    return "within the limit"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def latency_lines(store: Any, constraints: list[Constraint]) -> list[str]:
    """Markdown: per latency limit, its pick's predicted and measured latency and a verdict."""
    lat = [c for c in constraints if c.metric == "latency_ms"]
    docs = [(c, store.get(f"latency/{c.slug}")) for c in lat]
    docs = [(c, d) for c, d in docs if d]
    if not docs:
        return []
    scores = {r["id"]: r["score"] for r in store.candidates("done")}
    lines = [
        "",
        "## Latency limits, measured at the end of the search",
        "",
        "Each latency limit's pick is the best-scoring candidate whose latency, timed end to end "
        "on this machine at the end of the search (batch 1, the limit's backend and threads, "
        "timed as the table's entries; the median of 3 passes), is within the limit plus the "
        "table's noise: how far an entry's median pass sits above its kept, fastest one, median "
        "over the table. *Measured / predicted* is the median over every timed candidate: far "
        "from 1, this machine is not as it was when the table was built. The "
        "table's prediction alone can be off on a busy machine (measured in "
        "`benchmarks/results/latency.md`), so the best *predicted* pick is shown beside it. "
        f"Plot: `{PLOT}`.",
        "",
        "| limit | pick | proxy top-1 | predicted (ms) | measured (ms) | noise | verdict "
        "| best predicted pick: measured (ms) | timed | measured / predicted |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c, d in docs:
        ref = d.get("predicted_pick")
        ref_text = (
            "-"  # a run from before picks were verified
            if ref is None
            else "same"
            if ref == d["candidate"]
            else f"{ref}: {_ms(d.get('predicted_pick_measured_ms'))}"
        )
        score = scores.get(d["candidate"])
        lines.append(
            f"| `{c.text}` | {d['candidate']} | {'-' if score is None else f'{score:.2f}'} | "
            f"{_ms(d.get('predicted_ms'))} | {_ms(d.get('measured_ms'))} | "
            f"{100 * float(d.get('noise') or 0):.1f} % | {_verdict(d)} | {ref_text} | "
            f"{d.get('timed_candidates', '-')} | {_ratio(d.get('measured_over_predicted'))} |"
        )
    for c, d in docs:
        ratio, noise = d.get("measured_over_predicted"), float(d.get("noise") or 0.0)
        if ratio is not None and abs(ratio - 1) > 2 * noise:
            lines += [
                "",
                f"`{c.text}`: the timed candidates measured a median {ratio:.2f}x their predicted "
                f"latency, more than twice the noise away from 1: this machine ran "
                f"{'slower' if ratio > 1 else 'faster'} at the end of the search than when its "
                "table was built (other load, frequency), so the verdict says as much about the "
                "machine as about the network. Time the pick again on a quiet machine: "
                f"`fbnetv3 info best/{c.slug}.yaml --latency {c.backend}`.",
            ]
    return lines


def write_latency_plot(out: Path, store: Any, constraints: list[Constraint]) -> Path | None:
    """Proxy top-1 against measured latency per backend, with the Pareto front and the limits."""
    lat = [c for c in constraints if c.metric == "latency_ms"]
    groups = []
    for key in dict.fromkeys((c.backend, c.threads) for c in lat):
        saved = (store.get(measured_key(*key)) or {}).get("networks") or {}
        if saved:
            groups.append((key, saved, [c for c in lat if (c.backend, c.threads) == key]))
    if not groups:
        return None
    from fbnetv3_zoo.search.report.plots import _save, pyplot

    plt = pyplot()

    scores = {r["id"]: r["score"] for r in store.candidates("done")}
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4), squeeze=False)
    for ax, ((backend, threads), saved, limits) in zip(axes[0], groups, strict=True):
        ids = [int(i) for i in saved if int(i) in scores]
        ms = np.array([typical(saved[str(i)]) for i in ids])
        acc = np.array([scores[i] for i in ids])
        ax.scatter(ms, acc, s=18, alpha=0.7, label="timed candidates")
        front = pareto_front(ms, acc)
        ax.plot(ms[front], acc[front], "k--", lw=1, label="Pareto front")
        for n, c in enumerate(limits):
            doc = store.get(f"latency/{c.slug}") or {}
            color = f"C{n + 1}"
            ax.axvline(c.limit, color=color, lw=1, label=f"limit {c.limit:g} ms")
            noise = float(doc.get("noise") or 0.0)
            ax.axvline(c.limit * (1 + noise), color=color, lw=1, ls=":", label="+ noise")
            if doc.get("measured_ms") is not None and doc["candidate"] in scores:
                ax.scatter(
                    [doc["measured_ms"]],
                    [scores[doc["candidate"]]],
                    marker="*",
                    s=160,
                    color=color,
                    edgecolor="k",
                    zorder=3,
                    label="pick",
                )
            ref, ref_ms = doc.get("predicted_pick"), doc.get("predicted_pick_measured_ms")
            if ref in scores and ref != doc.get("candidate") and ref_ms is not None:
                ax.scatter(
                    [ref_ms],
                    [scores[ref]],
                    marker="X",
                    s=90,
                    color=color,
                    edgecolor="k",
                    zorder=3,
                    label="best predicted pick",
                )
        ax.set(
            xlabel=f"measured latency (ms, median of 3 passes; {backend}, {threads} thread"
            f"{'s' if threads > 1 else ''})",
            ylabel="proxy top-1 (%)",
            title="accuracy vs measured latency",
        )
        ax.legend(fontsize=7)
    return _save(fig, out / PLOT)
