"""The search driver: coarse constrained iterative optimisation, then the genetic fine search.

Shape of a run (every step resumable from ``search.sqlite``):

1. the first batch is Sobol-sampled inside the constraints and trained for the
   full proxy ``epochs``; the early-stopping epoch is the first one whose
   accuracies rank the batch like the final ones (Kendall tau >= threshold);
2. each later batch: refit the predictor (pretrained on free statistics), rank
   a large feasible Sobol pool by the acquisition, train the top pairs on the
   same proxy schedule but stop them at the early-stopping epoch;
3. the genetic search maximises the predictor under each constraint, its
   winners are trained like the rest, and the best measured pair per
   constraint is written to ``best/<constraint>.yaml`` with a report.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .constraints import Constraint, batch_stats, parse_constraint
from .encoding import decode
from .evaluate import EvalTask, epoch_accuracy, evaluate
from .executors import make_executor
from .predictor import Predictor, Pretrained, fit_with_holdout, pretrain, rank_quality
from .sampling import sample_feasible
from .space import SearchSpace, load_space
from .store import Store

DB_NAME = "search.sqlite"
# settings that define what a run measures; changing them on resume is refused
PINNED = ("space", "data", "epochs", "seed")


@dataclass
class SearchConfig:
    """Everything a search run depends on (the CLI flags map one to one)."""

    space: str = "fbnetv3_proxy"
    data: str = "digits:40"  # 40 training images per class: a proxy that trains in seconds
    constraints: list[str] = field(default_factory=lambda: ["macs<=0.5M", "macs<=1M"])
    budget: int = 11  # total candidate trainings, including the genetic winners
    batch: int = 2
    initial: int = 5  # size of the first (Sobol) batch
    epochs: int = 4  # proxy epochs of the first batch
    early_stop_tau: float = 0.8
    pool: int = 4096
    kappa: float = 0.5
    seed: int = 0
    executor: str = "local"
    ray_address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    threads: int | None = 1
    ga_population: int = 64
    ga_generations: int = 40
    pretrain_samples: int = 4096
    pretrain_steps: int = 1000
    fit_steps: int = 300
    members: int = 5  # predictor ensemble size


def choose_stop_epoch(curves: list[list[float]], threshold: float) -> tuple[int, list[float]]:
    """Smallest epoch whose accuracies rank-correlate with the final ones at >= ``threshold``.

    Returns (epoch, tau per epoch).  Fewer than three complete curves: the final epoch.
    """
    curves = [c for c in curves if c and all(v is not None for v in c)]
    if not curves:
        return 1, []
    final_epoch = min(len(c) for c in curves)
    if len(curves) < 3:
        return final_epoch, []
    acc = np.array([c[:final_epoch] for c in curves], dtype=float)
    taus = [rank_quality(acc[:, e], acc[:, -1])[0] for e in range(final_epoch)]
    for e, tau in enumerate(taus):
        if tau == tau and tau >= threshold - 1e-9:  # Kendall's 0.8 on 5 items is 0.7999...
            return e + 1, taus
    return final_epoch, taus


def score_at(metrics: list[dict[str, Any]], epoch: int) -> float | None:
    """The candidate's accuracy at ``epoch`` (its last epoch if it trained fewer)."""
    if not metrics:
        return None
    return epoch_accuracy(metrics[min(epoch, len(metrics)) - 1])


class Search:
    """One run folder: config check, coarse loop, fine search, outputs."""

    def __init__(
        self,
        config: SearchConfig,
        out: str | Path,
        evaluator: Callable[[EvalTask], dict[str, Any]] = evaluate,
        progress: bool = True,
        num_classes: int | None = None,
    ) -> None:
        self.config = config
        self.out = Path(out)
        self.evaluator = evaluator
        self.progress = progress
        self.space: SearchSpace = load_space(config.space)
        self.constraints: list[Constraint] = [parse_constraint(c) for c in config.constraints]
        if config.budget < config.initial + len(self.constraints):
            raise ValueError(
                f"budget {config.budget} is too small: the first batch ({config.initial}) plus one genetic winner per constraint ({len(self.constraints)}) need {config.initial + len(self.constraints)}"
            )
        if num_classes is None:
            from .evaluate import _num_classes

            num_classes = _num_classes(config.data)
        self.num_classes = num_classes
        self.store = Store(self.out / DB_NAME)
        self._check_resume()
        self.pretrained: Pretrained | None = None
        self.executor: Any = None
        self.bar: Any = None

    # -------------------------------------------------------------- resume
    def _identity(self) -> dict[str, Any]:
        c = self.config
        return dict(
            space=f"{self.space.name} (fingerprint {self.space.fingerprint()})",
            data=c.data,
            epochs=c.epochs,
            seed=c.seed,
        )

    def _check_resume(self) -> None:
        """Refuse to continue a run whose space, data, epochs or seed changed."""
        old = self.store.get("identity")
        new = self._identity()
        if old is None:
            self.store.set("identity", new)
            self.store.set("space_yaml", self.space.raw_json)
        else:
            diff = [
                f"{k}: run has {old.get(k)!r}, now {new[k]!r}"
                for k in PINNED
                if old.get(k) != new[k]
            ]
            if diff:
                raise ValueError(
                    f"{self.out} holds a search with different settings ({'; '.join(diff)}); resume with the original settings or choose another --out"
                )
        self.store.set("config", dataclasses.asdict(self.config))

    # ------------------------------------------------------------- helpers
    def log(self, message: str) -> None:
        if self.progress:
            (self.bar.write if self.bar is not None else print)(message, file=sys.stderr)

    def _rows(
        self, u: np.ndarray, macs: np.ndarray, params: np.ndarray, pred=None
    ) -> list[dict[str, Any]]:
        rows = []
        for i, vec in enumerate(u):
            spec, recipe = decode(self.space, vec)
            row = dict(
                vector=vec, arch=spec.to_dict(), recipe=recipe, macs=macs[i], params=params[i]
            )
            if pred is not None:
                row.update(predicted=float(pred[0][i]), predicted_std=float(pred[1][i]))
            rows.append(row)
        return rows

    def _run_pending(self, epochs: int) -> None:
        """Train every pending candidate, committing each result as it arrives."""
        pending = self.store.candidates("pending")
        if not pending:
            return
        c = self.config
        tasks = []
        for row in pending:
            stop = None if row["iteration"] == 0 or epochs >= c.epochs else epochs
            task = EvalTask(
                row["id"],
                row["arch"],
                row["recipe"],
                self.space.recipe_base,
                c.data,
                c.epochs,
                stop,
                c.seed,
                c.threads,
                dict(self.space.recipe_overrides),
            )
            tasks.append(task)
            self.store.mark_started(row["id"])
        if self.executor is None:
            self.executor = make_executor(
                c.executor, c.ray_address, c.cpus_per_trial, c.gpus_per_trial
            )
        for result in self.executor.map(self.evaluator, tasks):
            metrics = result.get("metrics") or []
            score = score_at(metrics, epochs if self.stop_epoch else len(metrics))
            status = (
                result["status"] if score is not None or result["status"] == "failed" else "failed"
            )
            error = result.get("error") or (None if status == "done" else "no accuracy reported")
            self.store.record(
                result["cid"],
                status,
                epochs=len(metrics),
                score=score,
                metrics=metrics,
                error=error,
                wall_s=result.get("wall_s"),
            )
            if status == "failed":
                self.log(f"candidate {result['cid']} failed: {str(error).splitlines()[0]}")
            self._tick()

    def _tick(self) -> None:
        if self.bar is not None:
            done = self.store.candidates("done")
            best = max((r["score"] for r in done), default=None)
            self.bar.n = self.store.count() - self.store.count("pending")
            self.bar.set_postfix(
                best=f"{best:.1f}" if best is not None else "-", failed=self.store.count("failed")
            )
            self.bar.refresh()

    @property
    def stop_epoch(self) -> int | None:
        return self.store.get("stop_epoch")

    def _choose_stop_epoch(self) -> None:
        first = [r for r in self.store.candidates("done") if r["iteration"] == 0]
        curves = [[epoch_accuracy(e) for e in r["metrics"]] for r in first]
        epoch, taus = choose_stop_epoch(curves, self.config.early_stop_tau)
        self.store.set("stop_epoch", epoch)
        self.store.set("stop_epoch_taus", [t if t == t else None for t in taus])
        with self.store.db:
            for r in first:
                self.store.db.execute(
                    "UPDATE candidates SET score = ? WHERE id = ?",
                    (score_at(r["metrics"], epoch), r["id"]),
                )
        self.log(
            f"early-stopping epoch: {epoch} (Kendall tau to final per epoch: {[round(t, 2) for t in taus]})"
        )

    def _fit(self, iteration: int) -> Predictor | None:
        """Refit on all measured pairs; store quality (held-out and prospective)."""
        done = self.store.candidates("done")
        if len(done) < 3:
            return None
        u = np.array([r["vector"] for r in done])
        y = np.array([r["score"] for r in done], dtype=float)
        if self.pretrained is None:
            self.pretrained = pretrain(
                self.space,
                self.config.pretrain_samples,
                self.config.pretrain_steps,
                num_classes=self.num_classes,
                seed=self.config.seed,
            )
            self.store.set(
                "pretrain", dict(loss=self.pretrained.loss, wall_s=self.pretrained.wall_s)
            )
        predictor, quality = fit_with_holdout(
            u,
            y,
            self.pretrained,
            seed=self.config.seed + iteration,
            members=self.config.members,
            steps=self.config.fit_steps,
        )
        latest = [r for r in done if r["iteration"] == iteration - 1 and r["predicted"] is not None]
        if len(latest) >= 3:
            quality["prospective_tau"] = rank_quality(
                np.array([r["predicted"] for r in latest]), np.array([r["score"] for r in latest])
            )[0]
        if not any(f["iteration"] == iteration for f in self.store.fits()):
            self.store.add_fit(iteration, quality)
        return predictor

    # ---------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        """Run (or resume) the whole search and write the outputs; returns a summary."""
        from tqdm.auto import tqdm

        c = self.config
        start = time.perf_counter()
        self.bar = tqdm(
            total=c.budget, desc="search", unit="cand", disable=not self.progress, file=sys.stderr
        )
        try:
            if self.store.count() == 0:
                u, m, p = sample_feasible(
                    self.space, c.initial, self.constraints, self.num_classes, seed=c.seed
                )
                self.store.add_candidates(0, "sobol", self._rows(u, m, p))
            self._tick()
            self._run_pending(self.stop_epoch or c.epochs)
            if self.stop_epoch is None:
                self._choose_stop_epoch()
            coarse_budget = c.budget - len(self.constraints)
            while self.store.count() < coarse_budget:
                iteration = self.store.last_iteration() + 1
                if not self._next_batch(
                    iteration, min(c.batch, coarse_budget - self.store.count())
                ):
                    self.log("the candidate pool is exhausted; ending the coarse search early")
                    break
                self._run_pending(self.stop_epoch)
            self._run_pending(self.stop_epoch)  # anything left from an interrupted run
            if self.store.get("ga") is None:
                self._fine_search()
            self._run_pending(self.stop_epoch)
        finally:
            self.bar.close()
            self.bar = None
            if self.executor is not None:
                self.executor.close()
        self.store.set("wall_s", self.store.get("wall_s", 0.0) + time.perf_counter() - start)
        from .report import write_outputs

        return write_outputs(self.out, self.store, self.space, self.constraints)

    def _next_batch(self, iteration: int, size: int) -> bool:
        """Store the next batch as pending; False when the pool has nothing new."""
        c = self.config
        t0 = time.perf_counter()
        predictor = self._fit(iteration)
        u, m, p = sample_feasible(
            self.space, c.pool, self.constraints, self.num_classes, seed=c.seed + 1000 * iteration
        )
        seen = {tuple(np.round(r["vector"], 9)) for r in self.store.candidates()}
        fresh = np.array([tuple(np.round(v, 9)) not in seen for v in u])
        u, m, p = u[fresh], m[fresh], p[fresh]
        if not len(u):
            return False
        if predictor is None:  # too few measurements yet: keep exploring
            self.store.add_candidates(iteration, "sobol", self._rows(u[:size], m[:size], p[:size]))
            return True
        acq = predictor.acquisition(u, c.kappa)
        top = np.argsort(-acq)[:size]
        mean, std = predictor.predict(u[top])
        self.store.add_candidates(
            iteration, "acquisition", self._rows(u[top], m[top], p[top], (mean, std))
        )
        self.store.set(f"select_s_{iteration}", time.perf_counter() - t0)
        return True

    def _fine_search(self) -> None:
        from tqdm.auto import tqdm

        from .genetic import genetic_search

        c = self.config
        iteration = self.store.last_iteration() + 1
        predictor = self._fit(iteration)
        if predictor is None:
            self.log("fine search skipped: fewer than 3 successful evaluations")
            self.store.set("ga", [])
            return
        done = self.store.candidates("done")
        seeds = np.array([r["vector"] for r in sorted(done, key=lambda r: -r["score"])])
        t0 = time.perf_counter()
        with tqdm(
            total=c.ga_generations,
            desc="genetic",
            unit="gen",
            disable=not self.progress,
            leave=False,
            file=sys.stderr,
        ) as bar:
            results = genetic_search(
                self.space,
                lambda u: predictor.predict(u)[0],
                self.constraints,
                self.num_classes,
                c.ga_population,
                c.ga_generations,
                seed=c.seed,
                seeds=seeds,
                on_generation=lambda g: bar.update(1),
            )
        ga_s = time.perf_counter() - t0
        self.log(
            f"genetic search: {ga_s:.1f}s, predicted best "
            + ", ".join(f"{r.constraint.text}: {r.fitness:.1f}" for r in results)
        )
        # per constraint, the best individual not measured yet (the winner unless it is known)
        known = {tuple(np.round(r["vector"], 9)) for r in self.store.candidates()}
        picks = []
        for k, r in enumerate(results):
            fresh = [v for v in r.ranked if tuple(np.round(v, 9)) not in known]
            if not fresh:  # the population collapsed onto measured pairs: best unmeasured of a pool
                u, _, _ = sample_feasible(
                    self.space,
                    c.pool,
                    [r.constraint],
                    self.num_classes,
                    seed=c.seed + 7919 * (k + 1),
                )
                u = np.array([v for v in u if tuple(np.round(v, 9)) not in known])
                fresh = u[np.argsort(-predictor.predict(u)[0], kind="stable")] if len(u) else []
            if len(fresh):
                known.add(tuple(np.round(fresh[0], 9)))
                picks.append(fresh[0])
        if picks:
            u = np.array(picks)
            mean, std = predictor.predict(u)
            m, p, _ = batch_stats(self.space, u, self.num_classes)
            self.store.add_candidates(iteration, "genetic", self._rows(u, m, p, (mean, std)))
        self.store.set("ga_s", ga_s)
        self.store.set(
            "ga",
            [
                dict(constraint=r.constraint.text, fitness=r.fitness, history=r.history)
                for r in results
            ],
        )


def run_search(
    config: SearchConfig,
    out: str | Path,
    evaluator: Callable[[EvalTask], dict[str, Any]] = evaluate,
    progress: bool = True,
) -> dict[str, Any]:
    """Run or resume a search in ``out``; see :class:`SearchConfig`."""
    search = Search(config, out, evaluator, progress)
    try:
        return search.run()
    finally:
        search.store.close()
