"""The search driver: budget, early stopping, store and outputs around a pluggable strategy.

Shape of a run (every step resumable from ``search.sqlite``):

1. the first batch is drawn from the candidate source (Sobol inside the
   constraints by default) and trained for the full proxy ``epochs``; the
   early-stopping epoch is the first one whose accuracies rank the batch like
   the final ones (Kendall tau >= threshold);
2. each later batch comes from the strategy's ``ask`` (``jointnas``: refit
   the predictor, rank a feasible pool by the acquisition; ``random``: more
   feasible draws) and is trained on the same schedule, stopped at the
   early-stopping epoch, or for the epochs the strategy's proposal asks
   (``Proposal.epochs``: ``successive-halving``'s lower rungs); once a batch
   is trained the strategy is told its results (``tell``);
3. the strategy's ``fine`` step proposes one last pick per constraint
   (``jointnas``: the genetic search on the predictor);
4. the finalists (``remeasure`` best per constraint) are trained once more
   with another seed, the budget is spent exactly, and the best pair per
   constraint on the mean of its trainings is written to
   ``best/<constraint>.yaml`` with a report.

The strategy decides what to train; this module decides when, how long, and
records everything.  Same seed and settings give the same candidates,
curves and picks whether the run goes in one go, is killed and resumed, or
trains on Ray workers.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from fbnetv3_zoo.search.config import (
    PINNED,
    PINNED_DEFAULTS,
    PINNED_IF_SET,
    ConfigError,
    SearchConfig,
)
from fbnetv3_zoo.search.early_stop import choose_stop_epoch, score_at
from fbnetv3_zoo.search.executors import make_executor
from fbnetv3_zoo.search.finished import RESULT_KEYS, FinishedTrial, check_result
from fbnetv3_zoo.search.latency.limits import bind_latency, record_latency
from fbnetv3_zoo.search.objective import Objective
from fbnetv3_zoo.search.proxy_check import check_proxy
from fbnetv3_zoo.search.report.summaries import finalists
from fbnetv3_zoo.search.sources import CandidateSource, SobolSource
from fbnetv3_zoo.search.space.constraints import Constraint, batch_stats, parse_constraint
from fbnetv3_zoo.search.space.definition import SearchSpace, load_space
from fbnetv3_zoo.search.space.encoding import base_recipe_vector, decode
from fbnetv3_zoo.search.store import Store, check_ours, diverged, vector_key
from fbnetv3_zoo.search.strategies import Context, Proposal, Strategy, make_strategy
from fbnetv3_zoo.search.trainer import EvalTask, TrainObjective, epoch_accuracy

from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.files.outputs import (
    RunLock,
    check_run_folder,
    claim_run_folder,
    refuse_inside_input,
    refuse_link,
)
from fbnetv3_zoo.provenance import command_line, versions

# SearchConfig, ConfigError and PINNED live in config.py (no heavy imports) and are re-exported
__all__ = [
    "PINNED",
    "RESULT_KEYS",
    "ConfigError",
    "Search",
    "SearchConfig",
    "SearchFailed",
    "check_result",
    "choose_stop_epoch",
    "run_search",
]

DB_NAME = "search.sqlite"


def space_of(config: SearchConfig, num_classes: int) -> SearchSpace:
    """The space a config searches: a space file, or its recipe ranges around a fixed model."""
    if config.model is None:
        return load_space(config.space)
    from fbnetv3_zoo.search.space.fixed_model import fixed_model_space

    return fixed_model_space(config.model, config.space, config.resolution, num_classes)


def _changes(old: dict[str, Any], new: dict[str, Any], keys: tuple[str, ...]) -> list[tuple]:
    """(name, old value, new value) of every pinned setting that differs; dicts field by field."""
    out = []
    for k in keys:
        was, now = old.get(k, "(not recorded)"), new.get(k, "(not recorded)")
        if isinstance(was, dict) and isinstance(now, dict):
            out += [
                (f"{k}.{f}", was.get(f, "(not recorded)"), now.get(f, "(not recorded)"))
                for f in sorted(set(was) | set(now))
                if was.get(f, "(not recorded)") != now.get(f, "(not recorded)")
            ]
        elif was != now:
            out.append((k, was, now))
    return out


class Search:
    """One run folder: checks, then the loop around a strategy, then the outputs."""

    def __init__(
        self,
        config: SearchConfig,
        out: str | Path,
        evaluator: Callable[[EvalTask], dict[str, Any]] | None = None,
        progress: bool = True,
        num_classes: int | None = None,
        source: CandidateSource | None = None,
        strategy: Strategy | None = None,
    ) -> None:
        config.validate()
        if config.device and config.executor == "local":  # Ray workers may have GPUs we lack
            from fbnetv3_zoo.recipes.devices import resolve_device

            resolve_device(config.device)  # one error now, not one per candidate
        self.config = config
        self.out = Path(out)
        self.progress = progress
        self.bar: Any = None  # the progress bar while running; log() works before it exists
        self.constraints: list[Constraint] = [parse_constraint(c) for c in config.constraints]
        if num_classes is None:
            num_classes = getattr(source, "num_classes", None)  # a table knows its class count
        if num_classes is None:
            from fbnetv3_zoo.search.trainer import _num_classes

            num_classes = _num_classes(config.data, config.download)
        self.num_classes = num_classes
        given = getattr(source, "space", None)
        self.space: SearchSpace = given if given is not None else space_of(config, num_classes)
        # latency_ms limits get this machine's table predictor (built first if missing)
        self.constraints = bind_latency(
            self.constraints, self.space, num_classes, progress=progress, log=self.log
        )
        # the built-in trainer is one objective, run through the adapter a user objective gets
        builtin = TrainObjective(self.space.recipe_base, dict(self.space.recipe_overrides))
        self.evaluator = evaluator or Objective(builtin)
        self.source: CandidateSource = source or SobolSource(self.space, num_classes)
        self.strategy = strategy or make_strategy(config.strategy, config.strategy_settings())
        self.strategy_name = getattr(self.strategy, "name", type(self.strategy).__name__)
        # everything that can fail on the user's input fails before the folder exists
        refuse_link(self.out / DB_NAME)
        check_ours(self.out / DB_NAME)  # a foreign database is refused before anything is written
        check_run_folder(
            self.out, "search", holds_run=(self.out / DB_NAME).is_file(), what="search"
        )
        refuse_inside_input(self.out, config.data)
        self.first = self._first_batch()
        self.executor: Any = None
        self.lock: RunLock | None = None
        self.store: Store | None = None
        self.told: set[int] = set()  # iterations this strategy object has been told

    def open(self) -> None:
        """Start the executor, then create/lock the folder and open (or resume) its store."""
        c = self.config
        if self.executor is None:
            self.executor = make_executor(
                c.executor, c.ray_address, c.cpus_per_trial, c.gpus_per_trial
            )
        try:
            self.lock, _ = claim_run_folder(self.out, "search", "search")
        except PermissionError as err:
            raise UserError(
                f"{self.out}: cannot write to the run folder ({err.strerror})"
            ) from None
        refuse_link(self.out / DB_NAME)
        self.store = Store(self.out / DB_NAME)
        self._check_resume()

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()
            self.executor = None
        if self.store is not None:
            self.store.close()
            self.store = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _first_batch(self) -> Proposal:
        """The first batch, and a check that every constraint admits at least one pair."""
        for c in self.constraints:
            if not len(self.source.draw(1, [c], self.config.seed)[0]):
                raise UserError(f"constraint {c.text}: no candidate of the source satisfies it")
        label = "pool" if self.source.finite else "sobol"
        u, m, p = self.source.draw(self.config.initial, self.constraints, self.config.seed)
        if not self.config.start_at_base:
            return Proposal(u, m, p, label)
        base = self._base_candidate()  # first, then the draws that are not the base itself
        rest = [i for i, v in enumerate(u) if vector_key(v) != vector_key(base[0][0])]
        rest = rest[: self.config.initial - 1]
        joined = [np.concatenate([b, d[rest]]) for b, d in zip(base, (u, m, p), strict=True)]
        return Proposal(*joined, label)

    def _base_candidate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The base recipe as a one-vector draw; a finite source must hold it exactly."""
        u = base_recipe_vector(self.space)
        if not self.source.finite:
            return u, *batch_stats(self.space, u, self.num_classes)[:2]
        all_u, all_m, all_p = self.source.all()
        hit = [i for i, v in enumerate(all_u) if vector_key(v) == vector_key(u[0])]
        if not hit:
            raise UserError(
                f"start_at_base: the candidate source does not hold the base recipe "
                f"{self.space.recipe_base!r}; turn start_at_base off to search without it"
            )
        return all_u[hit[:1]], all_m[hit[:1]], all_p[hit[:1]]

    # -------------------------------------------------------------- resume
    def _identity(self) -> dict[str, Any]:
        ident = self.config.identity()
        ident["space"] = f"{self.space.name} (fingerprint {self.space.fingerprint()})"
        ident["strategy"] = self.strategy_name
        ident["budget"] = self.config.budget  # not pinned: a study may grow (``_grow``)
        ident["settings"] = self.strategy.settings.as_dict()  # an instance's own, when given
        return ident

    def _check_resume(self) -> None:
        """Refuse to continue a run whose pinned settings changed, naming old and new values."""
        store = self.store
        old = store.get("identity")
        new = self._identity()
        if old is None:
            store.set("identity", new)
            store.set("space_yaml", self.space.raw_json)
            store.set("num_classes", self.num_classes)
            # the command and versions that started the search, for its result files
            store.set("made_by", dict(command=command_line(), versions=versions()))
        else:
            diff = [
                f"{name}: run has {was!r}, now {now!r}"
                for name, was, now in _changes(
                    {**PINNED_DEFAULTS, **old},
                    {**PINNED_DEFAULTS, **new},
                    (*PINNED, *PINNED_IF_SET),
                )
            ]
            if diff:
                raise UserError(
                    f"{self.out} holds a search with different settings ({'; '.join(diff)}); resume with the original settings or choose another --out"
                )
            self._grow(old)
        config = dataclasses.asdict(self.config)
        config["strategy"] = self.strategy_name
        config["settings"] = new["settings"]
        store.set("config", config)

    def _grow(self, old: dict[str, Any]) -> None:
        """A study may grow: a larger budget continues the run (a smaller one is refused)."""
        had = old.get("budget", self.config.budget)
        if self.config.budget < had:
            raise UserError(
                f"budget: run has {had}, now {self.config.budget}; a search can grow, not shrink: "
                f"pass --budget {had} or more"
            )
        if self.config.budget > had:
            self.store.set("identity", {**old, "budget": self.config.budget})
            self.store.set("grown", [*(self.store.get("grown") or []), [had, self.config.budget]])
            self.log(f"budget grows from {had} to {self.config.budget} trainings")

    # ------------------------------------------------------------- helpers
    def log(self, message: str) -> None:
        if self.progress:
            (self.bar.write if self.bar is not None else print)(message, file=sys.stderr)

    def _context(self) -> Context:
        return Context(
            self.space,
            self.source,
            self.constraints,
            self.num_classes,
            self.config,
            self.store,
            self.log,
            self.progress,
            self._task,
        )

    def _add(self, iteration: int, proposal: Proposal) -> int:
        """Store a proposal as pending; returns how many were added."""
        rows = []
        for i, vec in enumerate(proposal.u):
            spec, recipe = decode(self.space, vec)
            row = dict(
                vector=vec,
                arch=spec.to_dict(),
                recipe=recipe,
                macs=proposal.macs[i],
                params=proposal.params[i],
            )
            if proposal.mean is not None:
                row.update(predicted=float(proposal.mean[i]), predicted_std=float(proposal.std[i]))
            if proposal.epochs is not None:
                row["planned_epochs"] = proposal.epochs[i]
            if proposal.repeat_of is not None:
                row["repeat_of"] = proposal.repeat_of[i]
            rows.append(row)
        self.store.add_notes(iteration, proposal.notes)
        if rows:
            self.store.add_candidates(iteration, proposal.label, rows)
        return len(rows)

    def _tell(self, ctx: Context) -> None:
        """Tell the strategy every finished batch it has not heard yet, in iteration order."""
        by_iteration: dict[int, list[dict[str, Any]]] = {}
        for row in self.store.candidates():
            by_iteration.setdefault(row["iteration"], []).append(row)
        for iteration, rows in sorted(by_iteration.items()):
            if iteration not in self.told and all(r["status"] != "pending" for r in rows):
                trials = [FinishedTrial.from_row(r, self._task(r)) for r in rows]
                self.strategy.tell(ctx, iteration, trials)
                self.told.add(iteration)

    def _task(self, row: dict[str, Any]) -> EvalTask:
        """How a stored candidate is trained: its schedule, early stop, seed and data."""
        c, stop = self.config, self.stop_epoch
        early = None if row["iteration"] == 0 or stop is None or stop >= c.epochs else stop
        if row["iteration"] > 0 and row.get("planned_epochs") is not None:
            early = row["planned_epochs"]
        repeat = 0 if row.get("repeat_of") is None else 1
        return EvalTask(
            row["id"],
            row["arch"],
            row["recipe"],
            self.space.recipe_base,
            c.data,
            c.epochs,
            early,
            c.seed + repeat,
            c.threads,
            dict(self.space.recipe_overrides),
            repeat,
            c.holdout,
            c.device,
            c.channels_last,
        )

    def _run_pending(self) -> None:
        """Train every pending candidate, committing each result as it arrives."""
        pending = self.store.candidates("pending")
        if not pending:
            return
        tasks = []
        for row in pending:
            tasks.append(self._task(row))
            self.store.mark_started(row["id"])
        stop = self.stop_epoch
        for finished in self.executor.map(self.evaluator, tasks):
            metrics = finished.metrics()
            score = score_at(metrics, stop or len(metrics), self.config.score_epochs)
            status = "done" if finished.done and score is not None else "failed"
            error = finished.error or (None if status == "done" else "no accuracy reported")
            self.store.finish(finished.replace(status=status, score=score, error=error))
            if status == "failed":
                self.log(f"candidate {finished.number} failed: {str(error).splitlines()[0]}")
            self._tick()
        self._stop_if_failing()

    def _stop_if_failing(self) -> None:
        """Stop in one line when the first batch failed entirely or too many candidates failed.

        The failed rows stay in the store, marked, and the next run of the same command
        trains them again (after the user fixed the cause), so nothing is lost.
        """
        rows = [r for r in self.store.candidates() if r["status"] in ("done", "failed")]
        # a training that diverged is a measured outcome (a bad recipe), not a broken evaluator
        failed = [r for r in rows if r["status"] == "failed" and not diverged(r)]
        first = [r for r in rows if r["iteration"] == 0]
        whole_first = len(first) >= self.config.initial and all(
            r["status"] == "failed" and not diverged(r) for r in first
        )
        too_many = len(rows) >= self.config.initial and len(failed) > (
            self.config.max_failed_share * len(rows)
        )
        if not failed or not (whole_first or too_many):
            return
        errors = Counter(str(r["error"] or "no error recorded").splitlines()[0] for r in failed)
        common, count = errors.most_common(1)[0]
        self.store.set("stopped_failed", [r["id"] for r in failed])
        what = (
            f"every candidate of the first batch failed ({len(first)} of {len(first)})"
            if whole_first
            else f"{len(failed)} of {len(rows)} trained candidates failed, more than "
            f"max_failed_share {self.config.max_failed_share:g}"
        )
        raise SearchFailed(
            f"{what}; most common error ({count}x): {common[:300]}. The run in {self.out} is "
            "kept: fix the cause and run the same command to train them again"
        )

    def _retry_failed(self) -> None:
        """Candidates a loud stop left failed are trained again on the next run."""
        ids = self.store.get("stopped_failed")
        if ids:
            self.store.retry(ids)
            self.store.set("stopped_failed", [])

    def _best(self) -> float | None:
        return max((r["score"] for r in self.store.candidates("done")), default=None)

    def _tick(self) -> None:
        if self.bar is not None:
            best = self._best()
            label = f"best@e{self.stop_epoch}" if self.stop_epoch else f"best@e{self.config.epochs}"
            self.bar.n = self.store.count() - self.store.count("pending")
            self.bar.set_postfix(
                {
                    label: f"{best:.1f}" if best is not None else "-",
                    "failed": self.store.count("failed"),
                }
            )
            self.bar.refresh()

    @property
    def stop_epoch(self) -> int | None:
        return self.store.get("stop_epoch")

    def _choose_stop_epoch(self) -> None:
        first = [r for r in self.store.candidates("done") if r["iteration"] == 0]
        curves = [[epoch_accuracy(e) for e in r["metrics"]] for r in first]
        least = self.config.min_stop_curves
        epoch, taus = choose_stop_epoch(curves, self.config.early_stop_tau, least)
        before = self._best()
        self.store.rescore(
            {r["id"]: score_at(r["metrics"], epoch, self.config.score_epochs) for r in first}
        )
        self.store.set("stop_epoch_taus", [t if t == t else None for t in taus])
        self.store.set("stop_epoch", epoch)
        after = self._best()
        rescored = ""
        if epoch < self.config.epochs and before is not None and after is not None:
            rescored = f"; the first batch is re-scored at epoch {epoch} (best {before:.1f} -> {after:.1f}) so every candidate is compared at the same epoch"
        few = (
            f"; no early stopping: {len(curves)} first-batch curves, fewer than the {least} a stable tau needs"
            if len(curves) < least
            else ""
        )
        self.log(
            f"early-stopping epoch: {epoch} of {self.config.epochs} (Kendall tau to final per epoch: {[round(t, 2) for t in taus]}){rescored}{few}"
        )
        self._tick()

    # ---------------------------------------------------------------- run
    def run(self, plots: bool = True) -> dict[str, Any]:
        """Run (or resume) the whole search and write the outputs; returns a summary."""
        from tqdm.auto import tqdm

        c = self.config
        start = time.perf_counter()
        self.bar = tqdm(
            total=c.budget, desc="search", unit="cand", disable=not self.progress, file=sys.stderr
        )
        ctx = self._context()
        self._retry_failed()
        try:
            if self.store.count() == 0:
                self._add(0, self.first)
            self._tick()
            self._run_pending()
            if self.stop_epoch is None:
                self._choose_stop_epoch()
            if c.full_epochs is not None and c.proxy_check and not self.store.get("proxy_check"):
                check_proxy(self)
            reserved = len(self.constraints) + c.remeasured()  # fine picks + finalists
            while self.store.count() < c.budget - reserved:
                if not self._step(ctx, min(c.batch, c.budget - reserved - self.store.count())):
                    break
            self._run_pending()  # anything left from an interrupted run
            if not self._done("fine"):
                self._tell(ctx)
                iteration = self.store.last_iteration() + 1
                self.store.set(f"{self._key('fine')}_iteration", iteration)
                added = self._add(iteration, self.strategy.fine(ctx, iteration))
                self.store.set(f"{self._key('fine')}_done", added)
                self._run_pending()
            if c.remeasure and not self._done("remeasure"):
                self._tell(ctx)
                iteration = self.store.last_iteration() + 1
                self.store.set(f"{self._key('remeasure')}_iteration", iteration)
                added = self._add(iteration, self._finalists(c.budget - self.store.count()))
                self.store.set(f"{self._key('remeasure')}_done", added)
                self._run_pending()
            while self.store.count() < c.budget:  # too few picks or finalists to fill the budget
                if not self._step(ctx, c.budget - self.store.count()):
                    break
        finally:
            self.bar.close()
            self.bar = None
        self.store.set("wall_s", self.store.get("wall_s", 0.0) + time.perf_counter() - start)
        from fbnetv3_zoo.search.report.outputs import write_outputs

        record_latency(self.store, self.space, self.constraints, self.num_classes, self.log)
        return write_outputs(self.out, self.store, self.space, self.constraints, plots=plots)

    def _key(self, step: str) -> str:
        """The store key of a step's marker: a grown study runs the end steps again."""
        grown = self.store.get("grown") or []
        return step if not grown else f"{step}@{self.config.budget}"

    def _done(self, step: str) -> bool:
        """True once the ``fine`` step's picks (or the ``remeasure`` step's finalists) are stored."""
        if self.store.get(f"{self._key(step)}_done") is not None:
            return True
        iteration = self.store.get(f"{self._key(step)}_iteration")
        # killed between storing the batch and marking the step done
        return iteration is not None and any(
            r["iteration"] == iteration for r in self.store.candidates()
        )

    def _finalists(self, count: int) -> Proposal:
        """The best measured candidates per constraint, to be trained again with another seed."""
        done = self.store.candidates("done")
        rows = finalists(done, self.constraints, self.stop_epoch or self.config.epochs, count)
        if not rows:
            return Proposal.empty(self.space, "repeat")
        return Proposal(
            np.array([r["vector"] for r in rows], dtype=float),
            np.array([r["macs"] for r in rows]),
            np.array([r["params"] for r in rows]),
            "repeat",
            repeat_of=[r["id"] for r in rows],
            notes={"remeasured": [r["id"] for r in rows]},
        )

    def _step(self, ctx: Context, size: int) -> bool:
        """Ask the strategy for one batch and train it; False when it has nothing new."""
        self._tell(ctx)
        iteration = self.store.last_iteration() + 1
        if not self._add(iteration, self.strategy.ask(ctx, iteration, size)):
            self.log("the candidate source has nothing new left; ending the search below budget")
            return False
        self._run_pending()
        return True


class SearchFailed(UserError):
    """The search stopped because its candidates fail (one line, the most common error)."""


def run_search(
    config: SearchConfig,
    out: str | Path,
    evaluator: Callable[[EvalTask], dict[str, Any]] | None = None,
    progress: bool = True,
    source: CandidateSource | None = None,
    strategy: Strategy | None = None,
    objective: Callable[[Any], float | None] | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Run or resume a search in ``out``; see :class:`SearchConfig`.

    The simplest objective has Optuna's shape::

        from fbnetv3_zoo.search import SearchConfig, run_search

        def objective(trial):
            # train trial.arch (an ArchSpec) with trial.recipe for trial.epochs epochs of a
            # trial.schedule_epochs schedule, seed trial.seed; report each epoch's top-1 (%)
            for epoch in range(1, trial.epochs + 1):
                trial.report(epoch, my_train_one_epoch_and_validate(trial, epoch))

        run_search(SearchConfig(budget=24), "runs/mine", objective=objective)

    Returning the final top-1 instead of reporting works too (early stopping then
    sees one point per candidate).  Without ``objective`` or ``evaluator`` the
    built-in trainer (:class:`~fbnetv3_zoo.search.trainer.TrainObjective`) trains
    each pair, through the same adapter.  On a GPU: ``SearchConfig(device="cuda")``
    (``fbnetv3 search --device cuda``); one candidate per GPU on several GPUs or
    machines: ``SearchConfig(executor="ray", gpus_per_trial=1, device="cuda")``
    (``--executor ray --gpus-per-trial 1 --device cuda``, and ``--ray-address auto``
    on a running cluster); pass a module-level objective there, so it pickles.
    Calling it again with a larger ``config.budget`` grows the study.

    Args:
        config: the search's settings (checked field by field).
        out: the run folder; the same call again resumes it.
        evaluator: ``fn(EvalTask) -> dict`` of ``RESULT_KEYS`` (default: train on the proxy).
        progress: show a progress bar and log lines on stderr.
        source: replaces the default Sobol source (e.g. a pool of pre-trained pairs).
        strategy: an instance replacing ``config.strategy``.
        objective: ``fn(Trial) -> float`` (or ``trial.report(epoch, value)``), Optuna's
            shape; replaces ``evaluator`` (see ``fbnetv3_zoo.search.objective``).
        plots: draw the PNG plots (False for a caller that reads only the store, e.g. a
            benchmark running thousands of simulated searches: the plots cost most of their time).

    Returns:
        A summary: the best row per constraint, counts of done and failed candidates.

    Raises:
        UserError: bad settings, a folder that is not this search's, an evaluator result of
            the wrong shape, an objective returning something other than a number or None.
        SearchFailed: the first batch failed entirely, or more than
            ``config.max_failed_share`` of the trained candidates failed; the message gives
            the most common error, and the same call retrains them once it is fixed.
    """
    if objective is not None:
        evaluator = Objective(objective)
    search = Search(config, out, evaluator, progress, source=source, strategy=strategy)
    try:
        search.open()
        return search.run(plots=plots)
    finally:
        search.close()
