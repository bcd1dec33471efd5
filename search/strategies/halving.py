"""``successive-halving``: multi-fidelity without a predictor (ASHA's promotion rule)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from fbnetv3_zoo.search.space.constraints import batch_stats, row_stats
from fbnetv3_zoo.search.store import vector_key
from fbnetv3_zoo.search.strategies.base import Context, Proposal, Strategy, draw_unseen
from fbnetv3_zoo.search.strategy_settings import HalvingSettings
from fbnetv3_zoo.search.trainer import epoch_accuracy


class SuccessiveHalvingStrategy(Strategy):
    """Asynchronous successive halving (ASHA's promotion rule), no predictor.

    Rung schedule: the top rung is the epoch the driver scores at (the
    early-stopping epoch, the full proxy ``epochs`` when there is none); each
    lower rung is the one above divided by ``eta`` and rounded up, while that
    is at least ``min_epochs``.  The CLI's 5-epoch proxy with ``eta=3`` gives
    rungs 2 and 5: new pairs train 2 epochs, the best third go on to 5.

    Each ``ask`` first promotes, from the highest rung down: a pair measured
    at rung ``r`` moves to the next rung when its accuracy at epoch ``r`` is
    among the best ``floor(N / eta)`` of the ``N`` pairs measured at that
    epoch and it has not reached the next rung yet.  Every measured curve
    counts at every epoch it covers, so the driver's first batch (trained in
    full) is part of every rung.  The rest of the batch is new feasible draws
    from the source (seeded like ``random``: ``seed + 1000 * iteration``) at
    the lowest rung.  Ties are broken by candidate id; nothing is random
    beyond the draws.  The fine step promotes, per constraint, the pair inside
    it that reached the highest rung below the top with the best accuracy
    there, straight to the top rung (a fresh draw at the top when none is left).

    Accounting: the driver's budget counts trainings, so a 2-epoch training
    costs one unit like a full one, and a promoted pair is a new row that the
    driver trains from scratch for its rung's epochs (its curve is the same
    prefix-then-continuation as the shorter run, the schedule being that of
    the full proxy).  Every row records the epochs it trained; use
    :func:`epochs_spent` for equal-epochs comparisons.  A lower rung's
    epochs travel with the proposal (``Proposal.epochs``) and the driver stores
    them with each row, so a resumed run trains pending rows as planned.
    """

    name = "successive-halving"
    Settings = HalvingSettings
    settings: HalvingSettings

    @property
    def eta(self) -> int:
        return self.settings.eta

    @property
    def min_epochs(self) -> int:
        return self.settings.min_epochs

    def rungs(self, ctx: Context) -> list[int]:
        """Epochs of each rung, lowest first; the last is the epoch the driver scores at."""
        return rung_epochs(scoring_epoch(ctx), self.eta, self.min_epochs)

    def _ladder(self, ctx: Context, top: int) -> tuple[dict, dict]:
        return ladder(ctx, top)

    def _ranked(self, curves: dict, epoch: int) -> list[tuple[float, int, tuple]]:
        return ranked(curves, epoch)

    def _proposal(
        self, ctx: Context, iteration: int, picks: list[tuple[np.ndarray, int]], label: str
    ) -> Proposal:
        """The batch; a pick below the top rung carries its epochs (the top: the driver's rule)."""
        rungs = self.rungs(ctx)
        if not picks:
            return Proposal.empty(ctx.space, label)
        u = np.array([v for v, _ in picks])
        macs, params, _ = batch_stats(ctx.space, u, ctx.num_classes)
        epochs = [int(e) if e < rungs[-1] else None for _, e in picks]
        return Proposal(u, macs, params, label, epochs=epochs, notes={"rungs": rungs})

    def ask(self, ctx: Context, iteration: int, n: int) -> Proposal:
        rungs = self.rungs(ctx)
        if len(rungs) == 1 and iteration == 1:
            ctx.log(
                f"successive-halving: candidates are scored at epoch {rungs[0]}, so a lower rung "
                f"(epoch / {self.eta}) would be under {self.min_epochs} epochs: one rung, no halving"
            )
        reached, curves = self._ladder(ctx, rungs[-1])
        picks: list[tuple[np.ndarray, int]] = []
        chosen: set[tuple[float, ...]] = set()
        for low, high in reversed(list(zip(rungs[:-1], rungs[1:], strict=True))):
            ranked = self._ranked(curves, low)
            for _, _, key in ranked[: len(ranked) // self.eta]:
                if len(picks) < n and reached[key] < high and key not in chosen:
                    chosen.add(key)
                    picks.append((np.array(curves[key]["vector"], dtype=float), high))
        if len(picks) < n:
            seed = ctx.config.seed + 1000 * iteration
            u, _, _ = draw_unseen(ctx, n - len(picks), ctx.constraints, seed)
            picks += [(v, rungs[0]) for v in u]
        return self._proposal(ctx, iteration, picks, "halving")

    def fine(self, ctx: Context, iteration: int) -> Proposal:
        rungs = self.rungs(ctx)
        top = rungs[-1]
        reached, curves = self._ladder(ctx, top)
        picks: list[tuple[np.ndarray, int]] = []
        chosen: set[tuple[float, ...]] = set()
        for k, c in enumerate(ctx.constraints):
            best = None
            for epoch in reversed(rungs[:-1]):
                for _, _, key in self._ranked(curves, epoch):
                    row = curves[key]
                    inside = bool(c.ok(*row_stats(row))[0])
                    if inside and reached[key] == epoch and key not in chosen:
                        best = key
                        break
                if best is not None:
                    break
            if best is not None:
                chosen.add(best)
                picks.append((np.array(curves[best]["vector"], dtype=float), top))
                continue
            seed = ctx.config.seed + 1000 * iteration + 500 + k
            u, _, _ = draw_unseen(ctx, len(picks) + 1, [c], seed)
            fresh = [v for v in u if vector_key(v) not in chosen]
            if fresh:
                chosen.add(vector_key(fresh[0]))
                picks.append((fresh[0], top))
        return self._proposal(ctx, iteration, picks, "halving-final")


def scoring_epoch(ctx: Context) -> int:
    """The epoch the driver scores at: its early-stopping epoch, else the proxy's epochs."""
    return int(min(ctx.store.get("stop_epoch") or ctx.config.epochs, ctx.config.epochs))


def rung_epochs(top: int, eta: int, min_epochs: int) -> list[int]:
    """Rung epochs, lowest first, ending at ``top``: each is the next divided by ``eta``, rounded up.

    Stops before a rung would fall under ``min_epochs`` (or stop shrinking).
    """
    out = [int(top)]
    while min_epochs <= math.ceil(out[0] / eta) < out[0]:
        out.insert(0, math.ceil(out[0] / eta))
    return out


def ladder(ctx: Context, top: int) -> tuple[dict, dict]:
    """Per pair (vector key): the epochs it reached (or is planned to), and its longest done row.

    Re-measurements (``repeat_of``) are left out: they are another seed's
    training of a pair already on the ladder, not a longer curve of it.
    """
    reached: dict[tuple[float, ...], int] = {}
    curves: dict[tuple[float, ...], dict[str, Any]] = {}
    for row in ctx.store.candidates():
        if row.get("repeat_of") is not None:
            continue
        key = vector_key(row["vector"])
        if row["status"] == "done":
            epochs = len(row["metrics"])
            if key not in curves or epochs > len(curves[key]["metrics"]):
                curves[key] = row
        else:  # failed or pending: counts as reached, so it is never proposed again
            epochs = row.get("planned_epochs") or top
        reached[key] = max(reached.get(key, 0), min(epochs, top))
    return reached, curves


def ranked(curves: dict, epoch: int) -> list[tuple[float, int, tuple]]:
    """(accuracy at ``epoch``, id, key) of every curve covering it, best first (ties: lower id)."""
    out = []
    for key, row in curves.items():
        if len(row["metrics"]) >= epoch:
            acc = epoch_accuracy(row["metrics"][epoch - 1])
            if acc is not None:
                out.append((acc, row["id"], key))
    return sorted(out, key=lambda t: (-t[0], t[1]))
