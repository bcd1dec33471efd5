"""``jointnas-mf``: JointNAS judged on the schedule it will be used with (multi-fidelity).

The paper's search ranks candidates with a predictor fitted on proxy
scores.  Here the proxy is replaced by rungs of the full schedule itself:

* **rungs**: the full schedule (the epoch the driver scores at) divided by
  ``rung_factor`` repeatedly, rounded up, while a rung stays at least
  ``min_share`` of the full schedule (``halving.rung_epochs``, the same rule
  as ``successive-halving``).  40 epochs with the defaults (factor 5, share
  0.2): rungs 8 and 40; factor 3 and share 0.1: rungs 5, 14 and 40.
* **predictor with the fidelity as input** (``predictor/fidelity.py``):
  every curve contributes one point per rung epoch it covers, ``(pair,
  fidelity) -> top-1 at that epoch``, so the driver's full-length first batch
  and every short rung train the same model.
* **starts**: after the driver's random first batch, new pairs are the best
  unmeasured ones by the acquisition at full fidelity (predicted full-length
  mean + ``kappa`` x spread), trained for the lowest rung.
* **promotions** (ASHA's rule: a pair measured at rung r goes on when it is
  among the best ``floor(N / rung_factor)`` of the N curves covering r)
  rank pairs by ``promote``: the predictor's full-length prediction (fitted
  on the rung measurement too), the rung measurement plus the predicted gap
  to full length, or the rung measurement alone (also the fallback while the
  predictor has too few points).  ``ask`` promotes only below the full
  schedule; the full schedule is for finalists.
* **finalists** (``fine``): per constraint, the best pair on a rung below the
  full schedule by the same ranking, trained at full length; the driver then
  re-measures the best full-length ones with another seed (``remeasure``, its
  ``repeat_of`` rows) and ``best/`` prefers re-measured, full-length pairs.
* **dropped**: a pair whose top-1 at its latest rung is at most
  ``near_chance`` x chance, or whose training diverged, is never promoted;
  each iteration's notes count them (``dropped``) and list them.

Nothing is random beyond the seeded draws of the candidate pool, and the
predictor's fit is exact, so the same seed gives the same proposals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fbnetv3_zoo.search.predictor.fidelity import FidelityPredictor, fit_fidelity
from fbnetv3_zoo.search.space.constraints import batch_stats, row_stats
from fbnetv3_zoo.search.store import diverged, vector_key
from fbnetv3_zoo.search.strategies.base import Context, Proposal, Strategy, draw_unseen
from fbnetv3_zoo.search.strategies.halving import ladder, rung_epochs, scoring_epoch
from fbnetv3_zoo.search.strategy_settings import JointNASMFSettings
from fbnetv3_zoo.search.trainer import epoch_accuracy

Key = tuple[float, ...]


@dataclass
class Ladder:
    """What the run has measured, as the rungs see it."""

    rungs: list[int]
    reached: dict[Key, int]  # epochs each pair reached (or is planned to)
    curves: dict[Key, dict[str, Any]]  # each pair's longest done row
    dropped: dict[Key, dict[str, Any]] = field(default_factory=dict)  # why each was dropped
    model: FidelityPredictor | None = None
    points: int = 0  # training points of the predictor (one per rung epoch of each curve)

    @property
    def top(self) -> int:
        return self.rungs[-1]


def rung_accuracy(row: dict[str, Any], epoch: int) -> float | None:
    """Top-1 of a done row after ``epoch`` epochs (None if it did not train that far)."""
    metrics = row["metrics"]
    return epoch_accuracy(metrics[epoch - 1]) if len(metrics) >= epoch else None


def last_rung(row: dict[str, Any], rungs: list[int]) -> int | None:
    """The highest rung epoch a done row covers."""
    return max((r for r in rungs if r <= len(row["metrics"])), default=None)


def fidelity_points(ctx: Context, lad: Ladder, chance: float) -> tuple:
    """(vectors, epochs, top-1): one point per rung epoch each curve covers; diverged: chance."""
    u, epochs, y = [], [], []
    for row in lad.curves.values():
        for r in lad.rungs:
            acc = rung_accuracy(row, r)
            if acc is not None:
                u.append(row["vector"])
                epochs.append(r)
                y.append(acc)
    for row in ctx.store.candidates("failed"):
        if diverged(row) and row.get("repeat_of") is None:
            u.append(row["vector"])
            epochs.append(row.get("planned_epochs") or lad.top)
            y.append(chance)
    return np.array(u, dtype=float), np.array(epochs, dtype=float), np.array(y, dtype=float)


def dropped_pairs(ctx: Context, lad: Ladder, chance: float, near: float) -> dict[Key, dict]:
    """Pairs below the full schedule that sit near chance at their latest rung, or diverged."""
    out: dict[Key, dict[str, Any]] = {}
    for key, row in lad.curves.items():
        epoch = last_rung(row, lad.rungs)
        if epoch is None or epoch >= lad.top:
            continue
        acc = rung_accuracy(row, epoch)
        if acc is not None and acc <= near * chance:
            out[key] = dict(id=row["id"], epoch=epoch, top1=acc, why="near chance")
    for row in ctx.store.candidates("failed"):
        key = vector_key(row["vector"])
        if diverged(row) and row.get("repeat_of") is None and key not in lad.curves:
            epoch = row.get("planned_epochs") or lad.top
            out[key] = dict(id=row["id"], epoch=epoch, top1=None, why="diverged")
    return out


class JointNASMFStrategy(Strategy):
    """Multi-fidelity JointNAS; see the module docstring.

    Settings: :class:`~fbnetv3_zoo.search.strategy_settings.JointNASMFSettings`.
    """

    name = "jointnas-mf"
    Settings = JointNASMFSettings
    settings: JointNASMFSettings

    def rungs(self, ctx: Context) -> list[int]:
        """Rung epochs, lowest first; the last is the epoch the driver scores at."""
        top = scoring_epoch(ctx)
        lowest = max(1, math.ceil(self.settings.min_share * top))
        return rung_epochs(top, self.settings.rung_factor, lowest)

    def chance(self, ctx: Context) -> float:
        return 100.0 / ctx.num_classes

    def ladder(self, ctx: Context) -> Ladder:
        """The rungs, every pair's progress, the dropped pairs and the fitted predictor."""
        rungs = self.rungs(ctx)
        lad = Ladder(rungs, *ladder(ctx, rungs[-1]))
        chance = self.chance(ctx)
        lad.dropped = dropped_pairs(ctx, lad, chance, self.settings.near_chance)
        u, epochs, y = fidelity_points(ctx, lad, chance)
        lad.points = len(y)
        if len(y) >= 3 and len({vector_key(v) for v in u}) >= 2:
            lad.model = fit_fidelity(u, epochs, y, lad.top, ctx.space)
        return lad

    def scores(self, lad: Ladder, keys: list[Key], epochs: list[int]) -> np.ndarray:
        """Promotion scores of pairs ``keys`` measured at ``epochs`` (higher: promote first)."""
        measured = np.array(
            [rung_accuracy(lad.curves[k], e) for k, e in zip(keys, epochs, strict=True)]
        )
        rule = self.settings.promote
        if lad.model is None or rule == "measured" or not keys:
            return measured
        u = np.array([lad.curves[k]["vector"] for k in keys], dtype=float)
        full = lad.model.predict(u)[0]
        if rule == "predicted":
            return full
        return measured + full - lad.model.predict_at(u, np.array(epochs))[0]

    def promotions(self, lad: Ladder, n: int) -> list[tuple[np.ndarray, int]]:
        """ASHA's promotions below the full schedule, highest rung first, ranked by ``scores``."""
        picks: list[tuple[np.ndarray, int]] = []
        for low, high in reversed(list(zip(lad.rungs[:-2], lad.rungs[1:-1], strict=True))):
            covering = [k for k, row in lad.curves.items() if rung_accuracy(row, low) is not None]
            scores = self.scores(lad, covering, [low] * len(covering))
            order = sorted(
                range(len(covering)), key=lambda i: (-scores[i], lad.curves[covering[i]]["id"])
            )
            for i in order[: len(covering) // self.settings.rung_factor]:
                key = covering[i]
                if len(picks) < n and lad.reached[key] < high and key not in lad.dropped:
                    picks.append((np.array(lad.curves[key]["vector"], dtype=float), high))
        return picks

    def starts(self, ctx: Context, lad: Ladder, k: int, seed: int, constraints: list) -> np.ndarray:
        """``k`` new pairs: the acquisition's best at full fidelity (seeded draws without a model)."""
        if k <= 0:
            return np.zeros((0, ctx.space.size))
        u, _, _ = draw_unseen(ctx, self.settings.pool, constraints, seed)
        if lad.model is None or not len(u):
            return u[:k]
        return u[lad.model.pick_batch(u, k, self.settings.kappa)]

    def proposal(self, ctx: Context, lad: Ladder, picks: list, label: str) -> Proposal:
        """The batch; a pick below the full schedule carries its epochs; notes count the dropped."""
        notes: dict[str, Any] = dict(
            rungs=lad.rungs,
            promote=self.settings.promote if lad.model is not None else "measured",
            dropped=len(lad.dropped),
            dropped_pairs=sorted(lad.dropped.values(), key=lambda d: d["id"]),
        )
        if lad.model is not None:
            diagnostics = lad.model.diagnostics()
            notes["fidelity_fit"] = dict(
                points=lad.points, loss=lad.model.train_loss, **diagnostics
            )
        if not picks:
            proposal = Proposal.empty(ctx.space, label)
            proposal.notes = notes
            return proposal
        u = np.array([v for v, _ in picks])
        macs, params, _ = batch_stats(ctx.space, u, ctx.num_classes)
        epochs = [int(e) if e < lad.top else None for _, e in picks]
        mean = std = None
        if lad.model is not None:
            mean, std = lad.model.predict(u)
            mean = np.clip(mean, 0.0, 100.0)
        return Proposal(u, macs, params, label, mean, std, epochs=epochs, notes=notes)

    def ask(self, ctx: Context, iteration: int, n: int) -> Proposal:
        lad = self.ladder(ctx)
        picks = self.promotions(lad, n)
        seed = ctx.config.seed + 1000 * iteration
        fresh = self.starts(ctx, lad, n - len(picks), seed, ctx.constraints)
        picks += [(v, lad.rungs[0]) for v in fresh]
        return self.proposal(ctx, lad, picks, "mf-rung")

    def finalist(self, lad: Ladder, constraint: Any, chosen: set) -> Key | None:
        """The best pair inside ``constraint`` on a rung below the full schedule, by ``scores``."""
        keys = [
            k
            for k, row in lad.curves.items()
            if lad.reached[k] < lad.top
            and k not in lad.dropped
            and k not in chosen
            and last_rung(row, lad.rungs) is not None
            and bool(constraint.ok(*row_stats(row))[0])
        ]
        epochs = [int(last_rung(lad.curves[k], lad.rungs)) for k in keys]
        scores = self.scores(lad, keys, epochs)
        if self.settings.promote == "measured" or lad.model is None:
            scores = [(e, s) for e, s in zip(epochs, scores, strict=True)]  # highest rung first
        order = sorted(range(len(keys)), key=lambda i: (scores[i], -lad.curves[keys[i]]["id"]))
        return keys[order[-1]] if keys else None

    def fine(self, ctx: Context, iteration: int) -> Proposal:
        lad = self.ladder(ctx)
        picks: list[tuple[np.ndarray, int]] = []
        chosen: set[Key] = set()
        for k, c in enumerate(ctx.constraints):
            key = self.finalist(lad, c, chosen)
            if key is not None:
                vector = np.array(lad.curves[key]["vector"], dtype=float)
            else:  # nothing on a rung: the acquisition's best new pair, trained in full
                # (without a model: the draw ``random`` makes at this iteration)
                seed = ctx.config.seed + 1000 * iteration + 7919 * k
                fresh = [
                    v
                    for v in self.starts(ctx, lad, len(picks) + 1, seed, [c])
                    if vector_key(v) not in chosen
                ]
                if not fresh:
                    continue
                vector = fresh[0]
            chosen.add(vector_key(vector))
            picks.append((vector, lad.top))
        return self.proposal(ctx, lad, picks, "mf-final")
