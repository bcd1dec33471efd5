"""Latency-limited picks that honour the limit when measured, not only when predicted.

The per-block table's prediction of a whole network is off by some margin on
a busy machine (measured in ``benchmarks/results/latency.md``), and a search's
best candidate sits right at its limit, so the best *predicted* pick often
measures over the limit.  At the end of a search every finished candidate (up to
``MAX_MEASURED``, best scores first) is therefore timed end to end on the
limit's backend, and a latency limit's pick is the best-scoring candidate
whose **measured** latency is within the limit plus the table's noise:

- measured: the median of the candidate's 3 pass medians (:func:`typical`).
  The table keeps each entry's fastest pass, but a single lucky pass of a
  candidate on a shared machine is not evidence that it meets a limit;
- noise: how far a table entry's median pass sits above its kept, fastest
  one (with 3 passes: ``second fastest / fastest - 1``), median over the
  table's entries: the allowance between the table's units and the judged
  median, and how reproducible a timing is on this machine (the demo tables'
  figure is in ``benchmarks/results/latency.md``).  The run's own
  end-of-search timings give the same statistic, recorded beside it, and
  ``measured_over_predicted`` (median over the timed candidates) says
  whether the machine is slower now than when the table was built;
- a candidate the table predicted over the limit is taken only when no
  predicted-feasible one measures within the limit; when none does at all,
  the predicted pick stays and is flagged ``over_limit_beyond_noise``.

Everything measured is kept in the run's store (``latency_measured/...``,
``latency/<slug>``), so a re-rendered report or a resume does not re-measure
and the report's accuracy-against-measured-latency plot has its points.  The
pick depends on this machine's timings; the candidates and their scores do
not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from fbnetv3_zoo.search.report.summaries import best_per_constraint, with_repeats
from fbnetv3_zoo.search.space.constraints import Constraint, row_stats

if TYPE_CHECKING:  # torch is imported only when something is timed
    from fbnetv3_zoo.latency.table import LatencyTable
    from fbnetv3_zoo.latency.timing import Timing

MAX_MEASURED = 48  # candidates timed end to end per backend (a few seconds each at most)
CHUNK = 16  # runners alive at once (ONNX Runtime sessions hold memory)


def measured_key(backend: str, threads: int) -> str:
    """Store key of the end-of-search measurements for one backend and thread count."""
    return f"latency_measured/{backend}_t{threads}"


def typical(net: dict[str, Any]) -> float:
    """A timed network's judged latency: the median of its pass medians (its fastest, if none)."""
    passes = net.get("passes") or []
    return float(np.median(passes)) if passes else float(net["ms"])


def retest_noise(passes: list[list[float]]) -> float:
    """Median over timed things of ``second fastest pass / fastest pass - 1``; 0 if none.

    The fastest pass is the value kept (``measure_many``); the gap to the
    next one is how much that value could move on a second try.
    """
    ordered = [sorted(p) for p in passes if len(p) >= 2]
    gaps = [p[1] / p[0] - 1 for p in ordered if p[0] > 0]
    return float(np.median(gaps)) if gaps else 0.0


def table_noise(table: LatencyTable) -> float:
    """How far two timings of one block disagree on this machine (see :func:`retest_noise`)."""
    return retest_noise([e.get("passes") or [] for e in table.entries.values()])


def _order(done: list[dict[str, Any]], limits: list[Constraint]) -> list[dict[str, Any]]:
    """Candidates predicted within one of ``limits`` first, each group by score, best first."""

    def inside(row: dict[str, Any]) -> bool:
        return any(bool(c.ok(*row_stats(row))[0]) for c in limits)

    return sorted(done, key=lambda r: (not inside(r), -r["score"], r["id"]))


def measure_candidates(
    rows: list[dict[str, Any]],
    backend: str,
    threads: int,
    num_classes: int,
    log: Callable[[str], None] = print,
) -> dict[int, Timing]:
    """End-to-end batch-1 timing of each row's network, in passes over chunks (as the table)."""
    from fbnetv3_zoo.latency.table import network_runner
    from fbnetv3_zoo.latency.timing import measure_many
    from fbnetv3_zoo.models.spec import ArchSpec

    out: dict[int, Timing] = {}
    for start in range(0, len(rows), CHUNK):
        part = rows[start : start + CHUNK]
        fns = [
            network_runner(ArchSpec.from_dict(r["arch"]), backend, threads, num_classes)
            for r in part
        ]
        for row, t in zip(part, measure_many(fns, threads), strict=True):
            out[row["id"]] = t
        log(f"latency on {backend}: {len(out)}/{len(rows)} candidates timed end to end")
    return out


def verify_picks(
    store: Any,
    constraints: list[Constraint],
    num_classes: int,
    log: Callable[[str], None] = print,
    measure: Callable[..., dict[int, Timing]] | None = None,
) -> None:
    """Time the candidates end to end and store each latency limit's verified pick.

    ``measure`` replaces :func:`measure_candidates` (tests pass recorded timings).  Done
    once per set of finished candidates: a resume or re-render that finds the
    same candidates reuses what is stored.
    """
    lat = [c for c in constraints if c.metric == "latency_ms"]
    done = with_repeats(store.candidates("done"))  # a re-measured pair once, at its mean
    if not lat or not done:
        return
    ids = sorted(r["id"] for r in done)
    config = store.get("config") or {}
    scoring = store.get("stop_epoch") or config.get("epochs")
    predicted_best = best_per_constraint(done, lat, scoring)
    for backend, threads in dict.fromkeys((c.backend, c.threads) for c in lat):
        limits = [c for c in lat if (c.backend, c.threads) == (backend, threads)]
        key = measured_key(backend, threads)
        saved = store.get(key) or {}
        if saved.get("done") != ids:
            chosen = _order(done, limits)[:MAX_MEASURED]
            log(
                f"timing {len(chosen)} finished candidates end to end on {backend} "
                f"({threads} thread{'s' if threads > 1 else ''}) to check the latency picks"
            )
            timings = (measure or measure_candidates)(
                chosen, backend, threads, num_classes, log=log
            )
            from fbnetv3_zoo.latency.table import LatencyTable

            table = LatencyTable.for_machine(backend, threads)
            saved = dict(
                done=ids,
                table_noise=round(table_noise(table), 4),
                run_noise=round(retest_noise([list(t.passes) for t in timings.values()]), 4),
                table=str(table.path),
                networks={
                    str(cid): dict(
                        ms=round(t.ms, 4),
                        low=round(t.low, 4),
                        spread=round(t.spread, 4),
                        passes=[round(p, 4) for p in t.passes],
                    )
                    for cid, t in timings.items()
                },
            )
            store.set(key, saved)
        for c in limits:
            doc = choose_pick(c, done, saved, predicted_best[c.text], scoring)
            if doc is None:
                continue
            store.set(f"latency/{c.slug}", doc)
            flag = (
                " - OVER the limit by more than the noise: no timed candidate fits"
                if doc["over_limit_beyond_noise"]
                else ""
            )
            swap = (
                f" (the best predicted pick, {doc['predicted_pick']}, measured "
                f"{_ms(doc['predicted_pick_measured_ms'])})"
                if doc["predicted_pick"] != doc["candidate"]
                else ""
            )
            log(
                f"{c.text}: pick {doc['candidate']} predicted {doc['predicted_ms']:.3f} ms, "
                f"measured {_ms(doc['measured_ms'])} (limit {c.limit:g} ms + noise "
                f"{100 * doc['noise']:.1f} %){swap}{flag}"
            )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} ms"


def choose_pick(
    c: Constraint,
    done: list[dict[str, Any]],
    saved: dict[str, Any],
    predicted_best: dict[str, Any] | None,
    scoring: int | None = None,
) -> dict[str, Any] | None:
    """The ``latency:`` section of limit ``c``'s pick from the stored measurements.

    Best score among candidates predicted within the limit whose measured
    latency is within ``limit * (1 + noise)``; then any timed candidate that
    measures within it; else the predicted pick, flagged.
    """
    nets = saved.get("networks") or {}
    noise = float(saved.get("table_noise") or 0.0)
    bound = c.limit * (1 + noise)

    def predicted(row: dict[str, Any]) -> float:
        return float(c.predict(np.array([row["vector"]], dtype=float))[0])

    def full(row: dict[str, Any]) -> bool:
        return scoring is None or (row["epochs"] or 0) >= scoring

    timed = [r for r in done if str(r["id"]) in nets]
    fits = [r for r in timed if typical(nets[str(r["id"])]) <= bound]
    inside = [r for r in fits if bool(c.ok(*row_stats(r))[0])]
    pool = inside or fits
    pool = [r for r in pool if full(r)] or pool
    pool = [r for r in pool if r.get("repeat_ids")] or pool  # re-measured finalists first
    pick = max(pool, key=lambda r: (r["score"], -r["id"])) if pool else predicted_best
    if pick is None:
        return None
    m = nets.get(str(pick["id"]))
    ref = predicted_best or pick
    ref_m = nets.get(str(ref["id"]))
    # all timed candidates: far from 1, the machine is not as it was when the table was built
    ratio = [typical(nets[str(r["id"])]) / predicted(r) for r in timed]
    return dict(
        candidate=pick["id"],
        backend=c.backend,
        threads=c.threads,
        limit_ms=c.limit,
        predicted_ms=round(predicted(pick), 4),
        measured_ms=None if m is None else round(typical(m), 4),
        fastest_pass_ms=None if m is None else m["ms"],
        measured_spread=None if m is None else m["spread"],
        noise=round(noise, 4),
        run_noise=saved.get("run_noise"),
        over_limit_beyond_noise=bool(m is None or typical(m) > bound),
        chosen_by="measured" if pool else "predicted (no timed candidate fits)",
        timed_candidates=len(timed),
        predicted_pick=ref["id"],
        predicted_pick_measured_ms=None if ref_m is None else round(typical(ref_m), 4),
        measured_over_predicted=round(float(np.median(ratio)), 4) if ratio else None,
        table=saved.get("table"),
    )


def verified_best(
    store: Any, constraints: list[Constraint], best: dict[str, dict[str, Any] | None]
) -> dict[str, dict[str, Any] | None]:
    """``best`` with each latency limit's row replaced by its verified pick, where one is stored."""
    by_id = {r["id"]: r for r in store.candidates("done")}
    out = dict(best)
    for c in constraints:
        if c.metric != "latency_ms":
            continue
        doc = store.get(f"latency/{c.slug}") or {}
        if doc.get("chosen_by") and doc.get("candidate") in by_id:
            out[c.text] = by_id[doc["candidate"]]
    return out
