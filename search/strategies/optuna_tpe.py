"""``optuna-tpe``: Optuna's TPE sampler behind the ask/tell seam (the HPO tool users reach for first)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from fbnetv3_zoo.search.sources import nearest_unvisited
from fbnetv3_zoo.search.space.constraints import Constraint, batch_stats, feasible
from fbnetv3_zoo.search.space.definition import SearchSpace
from fbnetv3_zoo.search.space.encoding import snap
from fbnetv3_zoo.search.store import vector_key
from fbnetv3_zoo.search.strategies.base import Context, Proposal, Strategy, draw_unseen
from fbnetv3_zoo.search.strategy_settings import OptunaTPESettings

from fbnetv3_zoo.optional import install_hint, require

OPTUNA_INSTALL = install_hint("optuna")


def import_optuna() -> Any:
    """Optuna with its per-trial log lines silenced; a one-line UserError naming the extra if missing."""
    optuna = require("optuna", "strategy optuna-tpe")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def optuna_distributions(space: SearchSpace) -> dict[str, Any]:
    """One Optuna distribution per encoding column, named after the space's dimension.

    A choice is categorical over its choice indices (TPE treats it as
    unordered, as Optuna users declare architecture choices); a range is a
    float distribution over its values, log-scaled where the space says
    ``log: true`` (the learning rate, weight decay).
    """
    dists = require("optuna.distributions", "strategy optuna-tpe")
    out: dict[str, Any] = {}
    for dim in space.free_dims():
        if dim.choices is not None:
            out[dim.name] = dists.CategoricalDistribution(tuple(range(len(dim.choices))))
        else:
            out[dim.name] = dists.FloatDistribution(dim.low, dim.high, log=dim.log)
    return out


def params_of(space: SearchSpace, vector: np.ndarray) -> dict[str, Any]:
    """Optuna parameters of an encoded vector: choice indices and range values."""
    params: dict[str, Any] = {}
    for value, dim in zip(np.asarray(vector, dtype=float), space.free_dims(), strict=True):
        if dim.choices is not None:
            params[dim.name] = min(int(value * len(dim.choices)), len(dim.choices) - 1)
        else:
            decoded = float(dim.decode(np.array([value]))[0])
            params[dim.name] = min(max(decoded, dim.low), dim.high)  # exp() may overshoot
    return params


def vector_of(space: SearchSpace, params: dict[str, Any]) -> np.ndarray:
    """The snapped encoded vector of Optuna parameters (the inverse of :func:`params_of`)."""
    u = []
    for dim in space.free_dims():
        value = params[dim.name]
        if dim.choices is not None:
            u.append((int(value) + 0.5) / len(dim.choices))
        else:
            u.append(dim.encode(min(max(float(value), dim.low), dim.high)))
    return snap(space, np.array([u]))[0]


class OptunaTPEStrategy(Strategy):
    """Optuna's TPE sampler, driven through Optuna's own ask/tell API.

    Every ``ask`` rebuilds the study from the store: each measured pair is
    added as a completed trial with its score (each failed one as a failed
    trial, which TPE leaves out of its model, as it does in Optuna), and the
    sampler is seeded with ``seed + 1000 * iteration``; so a resumed run asks
    exactly what an uninterrupted one would and nothing lives outside the
    store.  A batch of ``n`` is ``n`` asks without tells: the sampler's
    constant liar treats the trials still running as bad, which spreads a
    batch out.  Until ``n_startup_trials`` pairs are measured (the driver's
    first batch counts) TPE samples at random, as Optuna does.

    Constraints: MACs and params are known before training, so an ask that
    meets none of the limits (or repeats a pair the run has already proposed)
    is rejected and resampled: it is told to the study as failed and asked
    again, up to ``max_tries`` times per pick, and never trained nor counted
    in the budget.  Telling it as a low score instead would put made-up values
    into TPE's good/bad split.  If all tries fail, the pick is a feasible
    random draw from the source (logged).  On a finite source (a pool) each
    ask lands on the nearest unvisited feasible pair
    (:func:`~fbnetv3_zoo.search.sources.nearest_unvisited`, the rule every
    strategy that proposes continuous points uses), so no ask is rejected.
    The fine step asks one pick per constraint, each inside its own limit.
    """

    name = "optuna-tpe"
    Settings = OptunaTPESettings
    settings: OptunaTPESettings

    def __init__(
        self,
        settings: OptunaTPESettings | None = None,
        sampler_options: dict[str, Any] | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(settings, **fields)
        self.optuna = import_optuna()
        self.sampler_options = dict(sampler_options or {})  # any other TPESampler argument

    def study(self, ctx: Context, iteration: int) -> tuple[Any, dict[str, Any]]:
        """A fresh study holding every finished trial of the run, and the distributions."""
        optuna = self.optuna
        distributions = optuna_distributions(ctx.space)
        options = dict(
            seed=ctx.config.seed + 1000 * iteration,
            n_startup_trials=self.settings.n_startup_trials,
            constant_liar=True,
        )
        options.update(self.sampler_options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(**options)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        rows, u, y = ctx.store.measured()
        for vector, score in zip(u, y, strict=True):
            study.add_trial(
                optuna.trial.create_trial(
                    params=params_of(ctx.space, vector),
                    distributions=distributions,
                    value=float(score),
                )
            )
        for row in ctx.store.candidates("failed"):
            study.add_trial(
                optuna.trial.create_trial(
                    state=optuna.trial.TrialState.FAIL,
                    params=params_of(ctx.space, row["vector"]),
                    distributions=distributions,
                )
            )
        return study, distributions

    def _land(
        self, ctx: Context, point: np.ndarray, constraints: list[Constraint], known: set
    ) -> np.ndarray | None:
        """The pair an asked point becomes, or None when it must be rejected."""
        if ctx.source.finite:
            hit = nearest_unvisited(ctx.source, point, constraints, known)
            return ctx.source.all()[0][hit[0]] if hit else None
        v = snap(ctx.space, point)
        macs, params, valid = batch_stats(ctx.space, v, ctx.num_classes)
        if not (valid[0] and feasible(constraints, macs, params, v)[0]):
            return None
        return None if vector_key(v[0]) in known else v[0]

    def propose(
        self, ctx: Context, iteration: int, slots: list[list[Constraint]], label: str
    ) -> Proposal:
        """One pick per slot, each meeting at least one of its slot's constraints."""
        optuna = self.optuna
        study, distributions = self.study(ctx, iteration)
        known = ctx.store.known_vectors()
        picks: list[np.ndarray] = []
        for k, constraints in enumerate(slots):
            pick = None
            for _ in range(self.settings.max_tries):
                trial = study.ask(distributions)
                pick = self._land(ctx, vector_of(ctx.space, trial.params), constraints, known)
                if pick is not None:
                    break  # the trial stays running: the constant liar spreads the batch
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                if ctx.source.finite:
                    break  # nothing unvisited left inside these limits
            if pick is None and not ctx.source.finite:
                tries = self.settings.max_tries
                ctx.log(f"optuna-tpe: {tries} asks rejected; a random feasible draw")
                seed = ctx.config.seed + 1000 * iteration + 500 + k
                u, _, _ = draw_unseen(ctx, len(picks) + 1, constraints, seed)
                fresh = [v for v in u if vector_key(v) not in known]
                pick = fresh[0] if fresh else None
            if pick is not None:
                known.add(vector_key(pick))
                picks.append(pick)
        if not picks:
            return Proposal.empty(ctx.space, label)
        u = np.array(picks)
        macs, params, _ = batch_stats(ctx.space, u, ctx.num_classes)
        return Proposal(u, macs, params, label, notes={"optuna": self.optuna.__version__})

    def ask(self, ctx: Context, iteration: int, n: int) -> Proposal:
        return self.propose(ctx, iteration, [ctx.constraints] * n, "tpe")

    def fine(self, ctx: Context, iteration: int) -> Proposal:
        return self.propose(ctx, iteration, [[c] for c in ctx.constraints], "tpe-final")
