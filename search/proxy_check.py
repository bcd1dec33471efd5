"""How well does the proxy rank?  The first batch trained again on the full schedule.

A search ranks candidates by a short proxy (for a recipe search: the user's
full run with its epochs, and so its learning-rate schedule, compressed).
That is only useful if the short ranking agrees with the full one, so when a
run names its full length (``SearchConfig.full_epochs``) the first batch's
candidates are also trained at that length, once, and the rank correlation
of proxy and full top-1 (Kendall and Spearman) goes to the store and the
report.  Cost: ``initial`` trainings of ``full_epochs`` epochs, on top of the
budget; ``proxy_check=False`` skips it.  Each finished training is committed
at once (``full/<candidate id>``), so a killed run resumes where it stopped.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from fbnetv3_zoo.search.config import MF_STRATEGY
from fbnetv3_zoo.search.trainer import EvalTask, epoch_accuracy


def full_key(cid: int) -> str:
    return f"full/{cid}"


def check_proxy(search: Any) -> dict[str, Any]:
    """Train the first batch for ``full_epochs`` (the ones not done yet); store and return the summary."""
    c, store, space = search.config, search.store, search.space
    first = [r for r in store.candidates("done") if r["iteration"] == 0]
    todo = [r for r in first if store.get(full_key(r["id"])) is None]
    if todo:
        search.log(
            f"proxy check: training the first batch's {len(todo)} candidates for the full "
            f"{c.full_epochs} epochs, to measure how well the {c.epochs}-epoch proxy ranks them"
        )
    tasks = [
        EvalTask(
            r["id"],
            r["arch"],
            r["recipe"],
            space.recipe_base,
            c.data,
            c.full_epochs,
            None,
            c.seed,
            c.threads,
            dict(space.recipe_overrides),
            holdout=c.holdout,
            device=c.device,
            channels_last=c.channels_last,
        )
        for r in todo
    ]
    from tqdm.auto import tqdm

    start = time.perf_counter()
    with tqdm(
        total=len(tasks),
        desc="proxy check",
        unit="full run",
        disable=not search.progress or not tasks,
        leave=False,
        file=sys.stderr,
    ) as bar:
        for finished in search.executor.map(search.evaluator, tasks):
            curve = finished.curve
            top1 = epoch_accuracy(curve[-1]) if curve else None
            store.set(
                full_key(finished.number),
                dict(top1=top1, epochs=len(curve), wall_s=finished.wall_s, error=finished.error),
            )
            bar.update(1)
    summary = summarise(store, first, c.epochs, c.full_epochs)
    summary["session_s"] = time.perf_counter() - start
    store.set("proxy_check", summary)
    search.log(proxy_sentence(summary))
    return summary


def summarise(store: Any, first: list[dict[str, Any]], epochs: int, full: int) -> dict[str, Any]:
    """Proxy and full top-1 per first-batch candidate, their rank correlations and the cost."""
    import numpy as np
    from fbnetv3_zoo.search.predictor.fit import rank_quality

    pairs = []
    cost = 0.0
    for r in first:
        f = store.get(full_key(r["id"])) or {}
        cost += f.get("wall_s") or 0.0
        if f.get("top1") is not None and r["score"] is not None:
            pairs.append(dict(candidate=r["id"], proxy=r["score"], full=f["top1"]))
    tau, rho = rank_quality(
        np.array([p["proxy"] for p in pairs]), np.array([p["full"] for p in pairs])
    )
    nan = tau != tau
    return dict(
        proxy_epochs=epochs,
        full_epochs=full,
        n=len(pairs),
        kendall=None if nan else tau,
        spearman=None if rho != rho else rho,
        pairs=pairs,
        train_s=cost,
    )


def proxy_sentence(summary: dict[str, Any] | None, strategy: str | None = None) -> str:
    """One line for the log and the report (``strategy``: the run's, when it has no proxy)."""
    if not summary and strategy == MF_STRATEGY:
        return (
            f"**Proxy check:** none needed: {MF_STRATEGY} trains candidates on prefixes of the full "
            "schedule, nothing compressed, and its finalists at full length."
        )
    if not summary:
        return (
            "**Proxy check:** not run (no full length given, or turned off with --no-proxy-check)."
        )
    s = summary

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    return (
        f"**Proxy check:** on the first batch's {s['n']} candidates, the {s['proxy_epochs']}-epoch proxy "
        f"(the {s['full_epochs']}-epoch schedule compressed) ranks like the full schedule at "
        f"Spearman {fmt(s['spearman'])}, Kendall tau {fmt(s['kendall'])} (1: the same order; 0: "
        f"unrelated); the full-length trainings cost {s['train_s']:.0f} s of training on top of the budget."
    )
