"""The seam every strategy plugs into: what it may read (``Context``), what it returns (``Proposal``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from fbnetv3_zoo.search.config import SearchConfig
from fbnetv3_zoo.search.finished import FinishedTrial
from fbnetv3_zoo.search.sources import CandidateSource
from fbnetv3_zoo.search.space.constraints import Constraint, feasible
from fbnetv3_zoo.search.space.definition import SearchSpace
from fbnetv3_zoo.search.store import Store, vector_key
from fbnetv3_zoo.search.strategy_settings import NoSettings, StrategySettings


@dataclass
class Context:
    """What a strategy may use: the space, the source, the limits, the settings and the store."""

    space: SearchSpace
    source: CandidateSource
    constraints: list[Constraint]
    num_classes: int
    config: SearchConfig
    store: Store
    log: Callable[[str], None] = field(default=lambda message: None)
    progress: bool = False
    # how the driver trains a stored row (its EvalTask), so rows can be read back typed
    task_of: Callable[[dict[str, Any]], Any] | None = None

    def trials(self, status: str | None = None) -> list[FinishedTrial]:
        """The run's finished candidates (``done``, ``failed`` or both) as frozen FinishedTrials, in id order.

        The typed view of ``store.candidates()`` for a strategy of your own;
        ``store.measured()`` stays the fast path for numpy arrays.
        """
        if self.task_of is None:
            raise RuntimeError("this Context has no task_of: the driver sets it")
        rows = self.store.candidates(status)
        return [
            FinishedTrial.from_row(r, self.task_of(r)) for r in rows if r["status"] != "pending"
        ]


@dataclass
class Proposal:
    """Vectors to train next, labelled with where they came from (and predictions, if any).

    ``epochs``: per vector, the epochs to train it for (None: the driver's
    rule, the early-stopping epoch); multi-fidelity strategies set it and the
    driver stores it with the row, so a resumed run trains it as planned.
    ``notes``: JSON facts about how the batch was chosen (timings, predictor
    quality, versions), kept with the iteration (``Store.notes``) for the report.
    ``repeat_of``: per vector, the candidate id it trains again with another
    seed (the driver's re-measurement of finalists), else None.
    """

    u: np.ndarray
    macs: np.ndarray
    params: np.ndarray
    label: str
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    epochs: list[int | None] | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    repeat_of: list[int | None] | None = None

    def __len__(self) -> int:
        return len(self.u)

    @classmethod
    def empty(cls, space: SearchSpace, label: str) -> Proposal:
        """Nothing to train (every pair inside the limits is taken)."""
        return cls(np.zeros((0, space.size)), np.zeros(0, int), np.zeros(0, int), label)


def unseen(ctx: Context, u: np.ndarray, macs: np.ndarray, params: np.ndarray) -> tuple:
    """Drop vectors already in the store (and repeats within ``u``), keeping order."""
    known = ctx.store.known_vectors()
    keep = []
    for i, v in enumerate(u):
        key = vector_key(v)
        if key not in known:
            known.add(key)
            keep.append(i)
    keep = np.array(keep, dtype=int)
    return u[keep], macs[keep], params[keep]


def draw_unseen(ctx: Context, n: int, constraints: list[Constraint], seed: int) -> tuple:
    """Up to ``n`` feasible vectors the run has not proposed yet, in the source's seeded order."""
    if ctx.source.finite:
        u, m, p = ctx.source.all()
        ok = feasible(constraints, m, p, u)
        order = np.random.default_rng(seed).permutation(np.flatnonzero(ok))
        u, m, p = unseen(ctx, u[order], m[order], p[order])
        return u[:n], m[:n], p[:n]
    extra = ctx.store.count() + n  # enough spare draws to survive every collision
    u, m, p = unseen(ctx, *ctx.source.draw(n + extra, constraints, seed))
    return u[:n], m[:n], p[:n]


class Strategy:
    """Base class: ``ask`` proposes a coarse batch; ``fine`` the final picks (default: more asks).

    ``tell`` hears each batch's results once trained (in iteration order; a
    resumed run tells every finished batch again first, so a strategy that
    keeps state can rebuild it).  The shipped strategies keep none: they
    read ``ctx.store`` when asked.  A strategy's settings are its
    ``Settings`` dataclass (``strategy_settings.py``): pass an instance, or
    its fields as keywords; the driver pins them for resume.
    """

    name = "strategy"
    Settings: ClassVar[type[StrategySettings]] = NoSettings

    def __init__(self, settings: StrategySettings | None = None, **fields: Any) -> None:
        if settings is not None and fields:
            raise TypeError("pass either a settings object or its fields, not both")
        self.settings = settings if settings is not None else self.Settings(**fields)

    def ask(self, ctx: Context, iteration: int, n: int) -> Proposal:
        raise NotImplementedError

    def fine(self, ctx: Context, iteration: int) -> Proposal:
        """One candidate per constraint by default, proposed like a coarse batch."""
        return self.ask(ctx, iteration, len(ctx.constraints))

    def tell(self, ctx: Context, iteration: int, trials: list[FinishedTrial]) -> None:
        """The finished candidates (done or failed) of iteration ``iteration``; default: nothing.

        Each is a frozen :class:`~fbnetv3_zoo.search.finished.FinishedTrial`: ``trial``
        (what was trained), ``status``, ``score``, ``curve``, ``error``, ``vector``...
        """


def epochs_spent(rows: list[dict[str, Any]], resume_promoted: bool = False) -> int:
    """Epochs a run's trainings cost, from the store's rows (``Store.candidates()``, id order).

    The driver trains every row from scratch, so the cost is the sum of the
    ``epochs`` column (what each row trained).  With ``resume_promoted`` a row
    whose pair was trained before counts only the epochs beyond that pair's
    longest earlier training: what a trainer resuming from a checkpoint would
    spend, the usual accounting for successive halving.  Budgets themselves
    count trainings (rows), not epochs.
    """
    longest: dict[tuple[float, ...], int] = {}
    total = 0
    for row in rows:
        trained = int(row.get("epochs") or 0)
        vector = row["vector"]
        key = vector_key(json.loads(vector) if isinstance(vector, str) else vector)
        before = longest.get(key, 0) if resume_promoted else 0
        total += max(0, trained - before)
        longest[key] = max(longest.get(key, 0), trained)
    return total
