"""Search strategies behind one ask/tell seam.

The driver (``coarse.py``) owns the loop, the budget and the store; a
strategy only decides *which* vectors to train next.  It is asked for a
coarse batch (``ask``) and, at the end, for one final pick per constraint
(``fine``); results are told back through the store, which the strategy reads
(``ctx.store.measured()``) the next time it is asked.  So a strategy keeps no
state that a resumed run could lose: everything it uses is recomputed from
the store with seeds derived from the run seed and the iteration.

Shipped: ``random`` (the baseline a user would compare against: feasible
draws from the candidate source), ``jointnas`` (FBNetV3's predictor-guided
coarse search plus the genetic fine search), and the baselines a user would
pick instead of JointNAS: ``optuna-tpe`` (Optuna's TPE sampler through its own
ask/tell API; optional extra ``pip install "fbnetv3-zoo[optuna]"``) and
``successive-halving`` (multi-fidelity, no predictor: short trainings for
many, the full proxy for the best on their partial curves).  Add your own with
:func:`register_strategy` or pass an instance to ``run_search(strategy=...)``.

Budgets count trainings, whatever their length (``SearchConfig.budget``); a
strategy that trains some candidates for fewer epochs says so through
``stop_after(ctx, row)`` and every row records the epochs it trained, so
:func:`epochs_spent` gives the compute a run spent for equal-epochs comparisons.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .constraints import Constraint, batch_stats, feasible, row_stats
from .encoder import PretrainCache, Pretrained
from .encoding import snap
from .evaluate import epoch_accuracy
from .heads import AccuracyModel, Head, resolve_head
from .predictor import fit_with_holdout, rank_quality
from .sources import CandidateSource, nearest_unvisited
from .space import SearchSpace
from .store import Store, vector_key


@dataclass
class Context:
    """What a strategy may use: the space, the source, the limits, the settings and the store."""

    space: SearchSpace
    source: CandidateSource
    constraints: list[Constraint]
    num_classes: int
    config: Any  # SearchConfig (kept untyped to avoid an import cycle)
    store: Store
    log: Callable[[str], None] = field(default=lambda message: None)
    progress: bool = False


@dataclass
class Proposal:
    """Vectors to train next, labelled with where they came from (and predictions, if any)."""

    u: np.ndarray
    macs: np.ndarray
    params: np.ndarray
    label: str
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.u)


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
    """Base class: ``ask`` proposes a coarse batch; ``fine`` the final picks (default: more asks)."""

    name = "strategy"

    def ask(self, ctx: Context, iteration: int, n: int) -> Proposal:
        raise NotImplementedError

    def fine(self, ctx: Context, iteration: int) -> Proposal:
        """One candidate per constraint by default, proposed like a coarse batch."""
        return self.ask(ctx, iteration, len(ctx.constraints))

    def stop_after(self, ctx: Context, row: dict[str, Any]) -> int | None:
        """Epochs to train a stored pending ``row`` for; None: the driver's rule (the default).

        Only multi-fidelity strategies override it; it must be a function of
        the store, so a resumed run trains a pending row exactly as planned.
        """
        return None


class RandomStrategy(Strategy):
    """Feasible draws from the source: the baseline every search should beat."""

    name = "random"

    def ask(self, ctx: Context, iteration: int, n: int) -> Proposal:
        u, m, p = draw_unseen(ctx, n, ctx.constraints, ctx.config.seed + 1000 * iteration)
        return Proposal(u, m, p, "random")


class JointNASStrategy(Strategy):
    """FBNetV3's search: predictor-ranked coarse batches, then a genetic search on the predictor.

    ``head`` replaces the head that ``config.head`` names (a variant built with
    other constructor arguments); ``pretrain_cache`` shares pretrained encoders
    between the searches of one process (a benchmark's), which pretrain for
    themselves without one.
    """

    name = "jointnas"

    def __init__(self, head: Head | None = None, pretrain_cache: PretrainCache | None = None):
        self.head = head
        self.pretrain_cache = pretrain_cache or PretrainCache(size=1)
        self.pretrained: Pretrained | None = None

    # ------------------------------------------------------------ predictor
    def fit(self, ctx: Context, iteration: int) -> AccuracyModel | None:
        """Refit on all measured pairs and store its quality; None with fewer than 3 measured."""
        c = ctx.config
        rows, u, y = ctx.store.measured()
        if len(rows) < 3:
            return None
        if self.pretrained is None and c.pretrain_steps > 0:
            self.pretrained, fresh = self.pretrain_cache.get(
                ctx.space, c.pretrain_samples, c.pretrain_steps, ctx.num_classes, c.seed
            )
            spent = self.pretrained.wall_s if fresh else 0.0  # 0: pretrained by an earlier search
            ctx.store.set("pretrain", dict(loss=self.pretrained.loss, wall_s=spent))
        predictor, quality = fit_with_holdout(
            u,
            y,
            self.pretrained,
            seed=c.seed + iteration,
            members=c.members,
            steps=c.fit_steps,
            space=ctx.space,  # the featurisation when there is no pretrained encoder
            head=self.head or resolve_head(c.head, len(rows)),
        )
        # prospective: every acquisition-time prediction so far against what training measured
        chosen = [r for r in rows if r["predicted"] is not None and r["iteration"] < iteration]
        if len(chosen) >= 3:
            quality["prospective_tau"] = rank_quality(
                np.array([r["predicted"] for r in chosen]), np.array([r["score"] for r in chosen])
            )[0]
            quality["prospective_n"] = len(chosen)
        if not ctx.store.has_fit(iteration):
            ctx.store.add_fit(iteration, quality)
        return predictor

    def candidates(self, ctx: Context, iteration: int) -> tuple:
        """The vectors the acquisition ranks: the whole finite source, or a Sobol pool."""
        return draw_unseen(
            ctx, ctx.config.pool, ctx.constraints, ctx.config.seed + 1000 * iteration
        )

    # ---------------------------------------------------------------- steps
    def ask(self, ctx: Context, iteration: int, n: int) -> Proposal:
        t0 = time.perf_counter()
        predictor = self.fit(ctx, iteration)
        u, m, p = self.candidates(ctx, iteration)
        if predictor is None or not len(u):  # too few measurements yet: keep exploring
            return Proposal(u[:n], m[:n], p[:n], "sobol")
        top = predictor.pick_batch(u, n, ctx.config.kappa)
        mean, std = predictor.predict(u[top])
        ctx.store.set(f"select_s_{iteration}", time.perf_counter() - t0)
        return Proposal(u[top], m[top], p[top], "acquisition", mean, std)

    def fine(self, ctx: Context, iteration: int) -> Proposal:
        predictor = self.fit(ctx, iteration)
        if predictor is None:
            ctx.log("fine search: fewer than 3 successful evaluations, drawing at random instead")
            return RandomStrategy().ask(ctx, iteration, len(ctx.constraints))
        return fine_search(ctx, predictor, iteration)


def fine_search(ctx: Context, predictor: Any, iteration: int) -> Proposal:
    """Per constraint, the unmeasured vector the predictor likes best.

    On a finite source every vector is ranked; otherwise the genetic search
    maximises the predicted accuracy and its final (duplicate-free) population
    supplies the pick, falling back to the best of a fresh Sobol pool.
    """
    known = ctx.store.known_vectors()
    picks: list[np.ndarray] = []
    if ctx.source.finite:
        u, m, p = ctx.source.all()
        score = predictor.predict(u)[0] if len(u) else np.zeros(0)
        for c in ctx.constraints:
            for i in np.argsort(-score, kind="stable"):
                if (
                    bool(c.ok(m[i : i + 1], p[i : i + 1], u[i : i + 1])[0])
                    and vector_key(u[i]) not in known
                ):
                    known.add(vector_key(u[i]))
                    picks.append(u[i])
                    break
        return _proposal(ctx, picks, "ranked", predictor)
    results = _run_genetic(ctx, predictor)
    for k, r in enumerate(results):
        fresh = [v for v in r.ranked if vector_key(v) not in known]
        if not fresh:  # every individual measured already: best unmeasured of a fresh pool
            u, _, _ = draw_unseen(
                ctx, ctx.config.pool, [r.constraint], ctx.config.seed + 7919 * (k + 1)
            )
            u = np.array([v for v in u if vector_key(v) not in known])
            fresh = list(u[np.argsort(-predictor.predict(u)[0], kind="stable")]) if len(u) else []
        if fresh:
            known.add(vector_key(fresh[0]))
            picks.append(fresh[0])
    return _proposal(ctx, picks, "genetic", predictor)


def _run_genetic(ctx: Context, predictor: Any) -> list[Any]:
    from tqdm.auto import tqdm

    from .genetic import genetic_search

    c = ctx.config
    rows, u, y = ctx.store.measured()
    seeds = u[np.argsort(-y, kind="stable")]
    t0 = time.perf_counter()
    with tqdm(
        total=c.ga_generations,
        desc="genetic",
        unit="gen",
        disable=not ctx.progress,
        leave=False,
        file=sys.stderr,
    ) as bar:
        results = genetic_search(
            ctx.space,
            lambda v: predictor.predict(v)[0],
            ctx.constraints,
            ctx.num_classes,
            c.ga_population,
            c.ga_generations,
            seed=c.seed,
            seeds=seeds,
            on_generation=lambda g: bar.update(1),
            refill=lambda con, n, s: ctx.source.draw(n, [con], s)[0],
        )
    ga_s = time.perf_counter() - t0
    ctx.log(
        f"genetic search: {ga_s:.1f}s, predicted best "
        + ", ".join(f"{r.constraint.text}: {r.fitness:.1f}" for r in results)
    )
    ctx.store.set("ga_s", ga_s)
    ctx.store.set(
        "ga",
        [dict(constraint=r.constraint.text, fitness=r.fitness, history=r.history) for r in results],
    )
    return results


def _proposal(ctx: Context, picks: list[np.ndarray], label: str, predictor: Any) -> Proposal:
    if not picks:
        empty = np.zeros((0, ctx.space.size))
        return Proposal(empty, np.zeros(0, int), np.zeros(0, int), label)
    u = np.array(picks)
    m, p, _ = batch_stats(ctx.space, u, ctx.num_classes)
    mean, std = predictor.predict(u)
    return Proposal(u, m, p, label, mean, std)


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


# --------------------------------------------------------------- optuna-tpe
OPTUNA_INSTALL = 'pip install "fbnetv3-zoo[optuna]"'


def import_optuna() -> Any:
    """Optuna with its per-trial log lines silenced; a one-line UserError naming the extra if missing."""
    try:
        import optuna
    except ImportError:
        from fbnetv3_zoo.errors import UserError

        raise UserError(f"strategy optuna-tpe needs Optuna: {OPTUNA_INSTALL}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def optuna_distributions(space: SearchSpace) -> dict[str, Any]:
    """One Optuna distribution per encoding column, named after the space's dimension.

    A choice is categorical over its choice indices (TPE treats it as
    unordered, as Optuna users declare architecture choices); a range is a
    float distribution over its values, log-scaled where the space says
    ``log: true`` (the learning rate, weight decay).
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    out: dict[str, Any] = {}
    for dim in space.free_dims():
        if dim.choices is not None:
            out[dim.name] = CategoricalDistribution(tuple(range(len(dim.choices))))
        else:
            out[dim.name] = FloatDistribution(dim.low, dim.high, log=dim.log)
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

    def __init__(self, n_startup_trials: int = 10, max_tries: int = 64, **sampler_options: Any):
        self.optuna = import_optuna()
        self.n_startup_trials = n_startup_trials
        self.max_tries = max_tries
        self.sampler_options = sampler_options  # any other TPESampler argument

    def study(self, ctx: Context, iteration: int) -> tuple[Any, dict[str, Any]]:
        """A fresh study holding every finished trial of the run, and the distributions."""
        optuna = self.optuna
        distributions = optuna_distributions(ctx.space)
        options = dict(
            seed=ctx.config.seed + 1000 * iteration,
            n_startup_trials=self.n_startup_trials,
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
        ctx.store.set("optuna_version", optuna.__version__)
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
            for _ in range(self.max_tries):
                trial = study.ask(distributions)
                pick = self._land(ctx, vector_of(ctx.space, trial.params), constraints, known)
                if pick is not None:
                    break  # the trial stays running: the constant liar spreads the batch
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                if ctx.source.finite:
                    break  # nothing unvisited left inside these limits
            if pick is None and not ctx.source.finite:
                ctx.log(f"optuna-tpe: {self.max_tries} asks rejected; a random feasible draw")
                seed = ctx.config.seed + 1000 * iteration + 500 + k
                u, _, _ = draw_unseen(ctx, len(picks) + 1, constraints, seed)
                fresh = [v for v in u if vector_key(v) not in known]
                pick = fresh[0] if fresh else None
            if pick is not None:
                known.add(vector_key(pick))
                picks.append(pick)
        if not picks:
            empty = np.zeros((0, ctx.space.size))
            return Proposal(empty, np.zeros(0, int), np.zeros(0, int), label)
        u = np.array(picks)
        macs, params, _ = batch_stats(ctx.space, u, ctx.num_classes)
        return Proposal(u, macs, params, label)

    def ask(self, ctx: Context, iteration: int, n: int) -> Proposal:
        return self.propose(ctx, iteration, [ctx.constraints] * n, "tpe")

    def fine(self, ctx: Context, iteration: int) -> Proposal:
        return self.propose(ctx, iteration, [[c] for c in ctx.constraints], "tpe-final")


# ------------------------------------------------------- successive halving
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
    :func:`epochs_spent` for equal-epochs comparisons.  Which rows trained for
    how long is kept in the store (``halving_epochs_<iteration>``), written
    before the rows, so a resumed run trains pending rows as planned.
    """

    name = "successive-halving"

    def __init__(self, eta: int = 3, min_epochs: int = 2) -> None:
        if eta < 2 or min_epochs < 1:
            raise ValueError(f"need eta >= 2 and min_epochs >= 1, got {eta}, {min_epochs}")
        self.eta = eta
        self.min_epochs = min_epochs

    def rungs(self, ctx: Context) -> list[int]:
        """Epochs of each rung, lowest first; the last is the epoch the driver scores at."""
        top = min(ctx.store.get("stop_epoch") or ctx.config.epochs, ctx.config.epochs)
        out = [int(top)]
        while self.min_epochs <= math.ceil(out[0] / self.eta) < out[0]:
            out.insert(0, math.ceil(out[0] / self.eta))
        return out

    def stop_after(self, ctx: Context, row: dict[str, Any]) -> int | None:
        plan = ctx.store.get(f"halving_epochs_{row['iteration']}") or []
        key = vector_key(row["vector"])
        for vector, epochs in plan:
            if vector_key(vector) == key:
                return int(epochs) if epochs < self.rungs(ctx)[-1] else None
        return None

    def _ladder(self, ctx: Context, top: int) -> tuple[dict, dict]:
        """Per pair (vector key): the epochs it reached (or is planned to), and its longest curve."""
        reached: dict[tuple[float, ...], int] = {}
        curves: dict[tuple[float, ...], dict[str, Any]] = {}
        for row in ctx.store.candidates():
            key = vector_key(row["vector"])
            if row["status"] == "done":
                epochs = len(row["metrics"])
                if key not in curves or epochs > len(curves[key]["metrics"]):
                    curves[key] = row
            else:  # failed or pending: counts as reached, so it is never proposed again
                epochs = self.stop_after(ctx, row) or top
            reached[key] = max(reached.get(key, 0), min(epochs, top))
        return reached, curves

    def _ranked(self, curves: dict, epoch: int) -> list[tuple[float, int, tuple]]:
        """(accuracy at ``epoch``, id, key) of every curve covering it, best first."""
        out = []
        for key, row in curves.items():
            if len(row["metrics"]) >= epoch:
                acc = epoch_accuracy(row["metrics"][epoch - 1])
                if acc is not None:
                    out.append((acc, row["id"], key))
        return sorted(out, key=lambda t: (-t[0], t[1]))

    def _proposal(
        self, ctx: Context, iteration: int, picks: list[tuple[np.ndarray, int]], label: str
    ) -> Proposal:
        """The batch, after storing each pick's epochs (before the driver stores the rows)."""
        ctx.store.set(
            f"halving_epochs_{iteration}", [[[float(x) for x in v], int(e)] for v, e in picks]
        )
        ctx.store.set("halving_rungs", self.rungs(ctx))
        if not picks:
            empty = np.zeros((0, ctx.space.size))
            return Proposal(empty, np.zeros(0, int), np.zeros(0, int), label)
        u = np.array([v for v, _ in picks])
        macs, params, _ = batch_stats(ctx.space, u, ctx.num_classes)
        return Proposal(u, macs, params, label)

    def ask(self, ctx: Context, iteration: int, n: int) -> Proposal:
        rungs = self.rungs(ctx)
        if len(rungs) == 1 and ctx.store.get("halving_rungs") is None:
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


STRATEGIES: dict[str, Callable[[], Strategy]] = {
    "random": RandomStrategy,
    "jointnas": JointNASStrategy,
    "optuna-tpe": OptunaTPEStrategy,
    "successive-halving": SuccessiveHalvingStrategy,
}


def register_strategy(name: str, factory: Callable[[], Strategy]) -> None:
    """Make ``SearchConfig(strategy=name)`` / ``fbnetv3 search --strategy name`` build ``factory()``."""
    from .config import STRATEGY_NAMES

    STRATEGIES[name] = factory
    if name not in STRATEGY_NAMES:
        STRATEGY_NAMES.append(name)


def make_strategy(name: str) -> Strategy:
    from fbnetv3_zoo.errors import UserError

    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name]()
