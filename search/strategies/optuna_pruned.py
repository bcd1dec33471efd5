"""``optuna-tpe-pruned``: Optuna's TPE sampler with its Hyperband or successive-halving pruner.

The multi-fidelity baseline a user would set up with Optuna: every trial
reports its validation top-1 after each epoch (``trial.report``) and stops when
``trial.should_prune()`` says so.  The driver trains whole rows, not open-ended
trials, so a trial is trained in chunks that end where a pruner can act:
Optuna's pruners only compare trials at ``min_resource * reduction_factor**k``
epochs (both ``SuccessiveHalvingPruner`` and each Hyperband bracket), so a
chunk ending there wastes nothing the pruner would have saved.  A trial that
survives a chunk is proposed again for the next chunk end (a new row, like a
``successive-halving`` promotion; the driver retrains it from scratch, and
``epochs_spent(resume_promoted=True)`` counts it as resumed).

Nothing lives outside the store: every ``ask`` replays the run into a fresh
study, pair by pair in the order they were first proposed, exactly as a
sequential Optuna loop would have met them (enqueue the pair's parameters,
``ask``, report its longest curve epoch by epoch, prune or complete).  The
study name is fixed, so Hyperband assigns each trial number the same bracket
on every replay; the sampler is seeded with ``seed + 1000 * iteration``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from fbnetv3_zoo.search.space.constraints import batch_stats
from fbnetv3_zoo.search.store import vector_key
from fbnetv3_zoo.search.strategies.base import Context, Proposal
from fbnetv3_zoo.search.strategies.optuna_tpe import (
    OptunaTPEStrategy,
    optuna_distributions,
    params_of,
    vector_of,
)
from fbnetv3_zoo.search.strategy_settings import OptunaPrunedSettings
from fbnetv3_zoo.search.trainer import epoch_accuracy

STUDY_NAME = "optuna-tpe-pruned"  # fixed: Hyperband's bracket of a trial hashes the study name


def checkpoints(min_resource: int, reduction_factor: int, full: int) -> list[int]:
    """Epochs where an Optuna pruner may stop a trial, below ``full``, then ``full``."""
    out, step = [], min_resource
    while step < full:
        out.append(step)
        step *= reduction_factor
    return out + [full]


class OptunaPrunedStrategy(OptunaTPEStrategy):
    """TPE proposes, an Optuna pruner stops trials at rung epochs; see the module docstring.

    ``ask`` first continues every trial the pruner let through to its next
    chunk end (oldest first), then fills the batch with new TPE asks trained
    for the first chunk.  ``fine`` trains the running trial with the best
    latest report to the full schedule (a new TPE ask at full length when no
    trial is running).
    """

    name = "optuna-tpe-pruned"
    Settings = OptunaPrunedSettings
    settings: OptunaPrunedSettings

    def full(self, ctx: Context) -> int:
        """The epoch candidates are scored at (the driver's early-stopping epoch, else its epochs)."""
        return int(min(ctx.store.get("stop_epoch") or ctx.config.epochs, ctx.config.epochs))

    def pruner(self, full: int) -> Any:
        """The configured Optuna pruner over a schedule of ``full`` epochs."""
        pruners, s = self.optuna.pruners, self.settings
        if s.pruner == "hyperband":
            return pruners.HyperbandPruner(
                min_resource=s.min_resource, max_resource=full, reduction_factor=s.reduction_factor
            )
        if s.pruner == "halving":
            return pruners.SuccessiveHalvingPruner(
                min_resource=s.min_resource, reduction_factor=s.reduction_factor
            )
        return pruners.NopPruner()

    def fresh_study(self, ctx: Context, iteration: int) -> Any:
        """An empty study with the seeded TPE sampler and the pruner."""
        optuna = self.optuna
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=ctx.config.seed + 1000 * iteration,
                n_startup_trials=self.settings.n_startup_trials,
                constant_liar=True,
            )
        return optuna.create_study(
            study_name=STUDY_NAME,
            direction="maximize",
            sampler=sampler,
            pruner=self.pruner(self.full(ctx)),
        )

    def pairs(self, ctx: Context) -> list[dict[str, Any]]:
        """Per pair, in first-proposed order: its vector, longest done row, and whether it failed."""
        out: dict[tuple[float, ...], dict[str, Any]] = {}
        for row in ctx.store.candidates():
            key = vector_key(row["vector"])
            pair = out.setdefault(key, dict(vector=row["vector"], row=None, failed=False))
            if row["status"] == "failed":
                pair["failed"] = True
            elif row["status"] == "done" and (
                pair["row"] is None or len(row["metrics"]) > len(pair["row"]["metrics"])
            ):
                pair["row"] = row
        return list(out.values())

    def replay(self, ctx: Context, iteration: int) -> tuple[Any, dict, list[tuple]]:
        """The study as a sequential Optuna loop would hold it, and the running trials.

        Running: (vector, epochs trained, latest report) of every trial neither
        pruned nor trained to the full schedule, in first-proposed order.
        """
        optuna = self.optuna
        study = self.fresh_study(ctx, iteration)
        distributions = optuna_distributions(ctx.space)
        full, running = self.full(ctx), []
        for pair in self.pairs(ctx):
            study.enqueue_trial(params_of(ctx.space, pair["vector"]))
            trial = study.ask(distributions)
            row = pair["row"]
            if pair["failed"] or row is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            curve = [epoch_accuracy(m) for m in row["metrics"]]
            if any(v is None for v in curve):
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            pruned = False
            for epoch, value in enumerate(curve, start=1):
                trial.report(float(value), epoch)
                if trial.should_prune():
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    pruned = True
                    break
            if pruned:
                continue
            if len(curve) >= full:
                study.tell(trial, float(row["score"] if row["score"] is not None else curve[-1]))
            else:
                running.append((np.asarray(pair["vector"], dtype=float), len(curve), curve[-1]))
        return study, distributions, running

    def _proposal(self, ctx: Context, picks: list[tuple[np.ndarray, int]], label: str) -> Proposal:
        """The batch; a pick short of the full schedule carries its epochs."""
        if not picks:
            return Proposal.empty(ctx.space, label)
        full = self.full(ctx)
        u = np.array([v for v, _ in picks])
        macs, params, _ = batch_stats(ctx.space, u, ctx.num_classes)
        epochs = [int(e) if e < full else None for _, e in picks]
        notes = {"optuna": self.optuna.__version__, "pruner": self.settings.pruner}
        return Proposal(u, macs, params, label, epochs=epochs, notes=notes)

    def _new_pairs(
        self, ctx: Context, study: Any, distributions: dict, count: int, known: set
    ) -> list[np.ndarray]:
        """Up to ``count`` fresh TPE asks, each landed on an unvisited feasible pair."""
        picks: list[np.ndarray] = []
        for _ in range(count):
            pick = None
            for _ in range(self.settings.max_tries):
                trial = study.ask(distributions)
                pick = self._land(ctx, vector_of(ctx.space, trial.params), ctx.constraints, known)
                if pick is not None or ctx.source.finite:
                    break
                study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
            if pick is None:
                break
            known.add(vector_key(pick))
            picks.append(pick)
        return picks

    def ask(self, ctx: Context, iteration: int, n: int) -> Proposal:
        study, distributions, running = self.replay(ctx, iteration)
        marks = checkpoints(
            self.settings.min_resource, self.settings.reduction_factor, self.full(ctx)
        )
        picks = [(v, next(m for m in marks if m > done)) for v, done, _ in running][:n]
        known = ctx.store.known_vectors()
        fresh = self._new_pairs(ctx, study, distributions, n - len(picks), known)
        picks += [(v, marks[0]) for v in fresh]
        return self._proposal(ctx, picks, "tpe-pruned")

    def fine(self, ctx: Context, iteration: int) -> Proposal:
        study, distributions, running = self.replay(ctx, iteration)
        full = self.full(ctx)
        if running:
            best = max(running, key=lambda t: (t[2], t[1]))  # best latest report, longest first
            return self._proposal(ctx, [(best[0], full)], "tpe-pruned-final")
        known = ctx.store.known_vectors()
        fresh = self._new_pairs(ctx, study, distributions, 1, known)
        return self._proposal(ctx, [(v, full) for v in fresh], "tpe-pruned-final")
