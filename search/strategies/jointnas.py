"""JointNAS (FBNetV3): predictor-ranked coarse batches, then a genetic search on the predictor."""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
from fbnetv3_zoo.search.predictor.encoder import PretrainCache, Pretrained
from fbnetv3_zoo.search.predictor.fit import fit_with_holdout, rank_quality
from fbnetv3_zoo.search.predictor.heads import AccuracyModel, Head, resolve_head
from fbnetv3_zoo.search.space.constraints import batch_stats
from fbnetv3_zoo.search.store import vector_key
from fbnetv3_zoo.search.strategies.base import Context, Proposal, Strategy, draw_unseen
from fbnetv3_zoo.search.strategies.random_draws import RandomStrategy
from fbnetv3_zoo.search.strategy_settings import JointNASSettings


class JointNASStrategy(Strategy):
    """FBNetV3's search: predictor-ranked coarse batches, then a genetic search on the predictor.

    Settings: :class:`~fbnetv3_zoo.search.strategy_settings.JointNASSettings`.
    ``head`` replaces the head that ``settings.head`` names (a variant built
    with other constructor arguments); ``pretrain_cache`` shares pretrained
    encoders between the searches of one process (a benchmark's), which
    pretrain for themselves without one.
    """

    name = "jointnas"
    Settings = JointNASSettings
    settings: JointNASSettings

    def __init__(
        self,
        settings: JointNASSettings | None = None,
        head: Head | None = None,
        pretrain_cache: PretrainCache | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(settings, **fields)
        self.head = head
        self.pretrain_cache = pretrain_cache or PretrainCache(size=1)
        self.pretrained: Pretrained | None = None

    # ------------------------------------------------------------ predictor
    def fit(self, ctx: Context, iteration: int) -> tuple[AccuracyModel | None, dict[str, Any]]:
        """Refit on all measured pairs: (model, notes on its quality); no model below 3 pairs."""
        c, seed = self.settings, ctx.config.seed
        rows, u, y = ctx.store.measured(diverged_score=chance(ctx))
        notes: dict[str, Any] = {}
        if len(rows) < 3:
            return None, notes
        if self.pretrained is None and c.pretrain_steps > 0:
            self.pretrained, fresh = self.pretrain_cache.get(
                ctx.space, c.pretrain_samples, c.pretrain_steps, ctx.num_classes, seed
            )
            spent = self.pretrained.wall_s if fresh else 0.0  # 0: pretrained by an earlier search
            notes["pretrain"] = dict(loss=self.pretrained.loss, wall_s=spent)
            if self.pretrained.skipped:
                notes["pretrain"]["skipped"] = self.pretrained.skipped
        predictor, quality = fit_with_holdout(
            u,
            y,
            self.pretrained,
            seed=seed + iteration,
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
        notes["fit"] = quality
        return predictor, notes

    def candidates(self, ctx: Context, iteration: int) -> tuple:
        """The vectors the acquisition ranks: the whole finite source, or a Sobol pool."""
        seed = ctx.config.seed + 1000 * iteration
        return draw_unseen(ctx, self.settings.pool, ctx.constraints, seed)

    # ---------------------------------------------------------------- steps
    def ask(self, ctx: Context, iteration: int, n: int) -> Proposal:
        t0 = time.perf_counter()
        predictor, notes = self.fit(ctx, iteration)
        u, m, p = self.candidates(ctx, iteration)
        if predictor is None or not len(u):  # too few measurements yet: keep exploring
            return Proposal(u[:n], m[:n], p[:n], "sobol", notes=notes)
        top = predictor.pick_batch(u, n, self.settings.kappa)
        mean, std = recorded(*predictor.predict(u[top]))
        notes["select_s"] = time.perf_counter() - t0
        return Proposal(u[top], m[top], p[top], "acquisition", mean, std, notes=notes)

    def fine(self, ctx: Context, iteration: int) -> Proposal:
        predictor, notes = self.fit(ctx, iteration)
        if predictor is None:
            ctx.log("fine search: fewer than 3 successful evaluations, drawing at random instead")
            return RandomStrategy().ask(ctx, iteration, len(ctx.constraints))
        proposal = fine_search(ctx, predictor, iteration, self.settings)
        proposal.notes.update(notes)
        return proposal


def chance(ctx: Context) -> float:
    """Top-1 of a network that guesses: what a diverged training is worth to the predictor."""
    return 100.0 / ctx.num_classes


def recorded(mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predictions as stored with a pick: top-1 inside [0, 100].

    A head extrapolating past the best measured pair can predict more than
    100 %; the ranking uses the raw values (their order still means
    something), the record and the report only what accuracy can be.
    """
    return np.clip(mean, 0.0, 100.0), std


def fine_search(
    ctx: Context, predictor: Any, iteration: int, settings: JointNASSettings
) -> Proposal:
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
                inside = bool(c.ok(m[i : i + 1], p[i : i + 1], u[i : i + 1])[0])
                if inside and vector_key(u[i]) not in known:
                    known.add(vector_key(u[i]))
                    picks.append(u[i])
                    break
        return _proposal(ctx, picks, "ranked", predictor)
    results, genetic = _run_genetic(ctx, predictor, settings)
    for k, r in enumerate(results):
        fresh = [v for v in r.ranked if vector_key(v) not in known]
        if not fresh:  # every individual measured already: best unmeasured of a fresh pool
            u, _, _ = draw_unseen(
                ctx, settings.pool, [r.constraint], ctx.config.seed + 7919 * (k + 1)
            )
            u = np.array([v for v in u if vector_key(v) not in known])
            fresh = list(u[np.argsort(-predictor.predict(u)[0], kind="stable")]) if len(u) else []
        if fresh:
            known.add(vector_key(fresh[0]))
            picks.append(fresh[0])
    proposal = _proposal(ctx, picks, "genetic", predictor)
    proposal.notes["genetic"] = genetic
    return proposal


def _run_genetic(
    ctx: Context, predictor: Any, settings: JointNASSettings
) -> tuple[list[Any], dict[str, Any]]:
    """The genetic search's results per constraint, and notes on it (time, predicted best)."""
    from fbnetv3_zoo.search.strategies.genetic import genetic_search
    from tqdm.auto import tqdm

    c = settings
    rows, u, y = ctx.store.measured(diverged_score=chance(ctx))
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
            seed=ctx.config.seed,
            seeds=seeds,
            on_generation=lambda g: bar.update(1),
            refill=lambda con, n, s: ctx.source.draw(n, [con], s)[0],
        )
    ga_s = time.perf_counter() - t0
    ctx.log(
        f"genetic search: {ga_s:.1f}s, predicted best "
        + ", ".join(
            f"{r.constraint.text}: {recorded(np.array([r.fitness]), np.zeros(1))[0][0]:.1f}"
            + (" (raw fitness above 100: extrapolating)" if r.fitness > 100 else "")
            for r in results
        )
    )
    best = [
        dict(constraint=r.constraint.text, fitness=r.fitness, history=r.history) for r in results
    ]
    return results, dict(wall_s=ga_s, best=best)


def _proposal(ctx: Context, picks: list[np.ndarray], label: str, predictor: Any) -> Proposal:
    if not picks:
        return Proposal.empty(ctx.space, label)
    u = np.array(picks)
    m, p, _ = batch_stats(ctx.space, u, ctx.num_classes)
    mean, std = recorded(*predictor.predict(u))
    return Proposal(u, m, p, label, mean, std)
