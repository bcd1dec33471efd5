"""Your own training as a search objective, in the shape Optuna users know.

``objective(trial) -> float`` returns one score (percent top-1, higher is
better) for the pair ``trial`` describes; an objective that trains epoch by
epoch calls ``trial.report(epoch, value)`` instead (or as well), so early
stopping and successive halving see its curve.  ``Objective(fn)`` turns such a
function into the evaluator ``run_search`` runs, in this process or as a Ray
task (pass a module-level function there, so it pickles).  Exceptions become
failed candidates with their message, as the built-in trainer's do.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fbnetv3_zoo.search.trainer import EvalTask

from fbnetv3_zoo.errors import UserError


@dataclass(frozen=True)
class Trial:
    """One (architecture, recipe) pair to train, as an objective sees it.

    ``arch``: an ``ArchSpec`` (or, in a recipe-only search, the fixed model's
    ``{"model", "input_size"}``); ``recipe``: the searched recipe fields;
    ``epochs``: train this many epochs (early stopping may ask for fewer than
    the schedule's ``schedule_epochs``); ``seed``: the training seed (a
    re-measurement, ``repeat`` > 0, gets another one).
    """

    number: int
    arch: Any
    recipe: dict[str, Any]
    epochs: int
    schedule_epochs: int
    seed: int
    repeat: int
    data: str
    holdout: float
    _reports: list[tuple[int, float]] = field(default_factory=list, repr=False, compare=False)

    def report(self, epoch: int, value: float) -> None:
        """Record the score after ``epoch`` (1-based), as the built-in trainer's curves do."""
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
            raise UserError(f"trial.report: epoch must be an integer >= 1, got {epoch!r}")
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise UserError(f"trial.report: value must be a number, got {type(value).__name__}")
        self._reports.append((epoch, float(value)))

    @classmethod
    def from_task(cls, task: EvalTask) -> Trial:
        from fbnetv3_zoo.models.spec import ArchSpec

        arch = dict(task.arch) if "model" in task.arch else ArchSpec.from_dict(dict(task.arch))
        return cls(
            number=task.cid,
            arch=arch,
            recipe=dict(task.recipe),
            epochs=task.stop_after or task.epochs,
            schedule_epochs=task.epochs,
            seed=task.seed,
            repeat=task.repeat,
            data=task.data,
            holdout=task.holdout,
        )


class Objective:
    """``objective(trial)`` as a search evaluator (``run_search(..., evaluator=Objective(fn))``)."""

    def __init__(self, fn: Callable[[Trial], float | None]) -> None:
        if not callable(fn):
            raise UserError(f"an objective must be callable, got {type(fn).__name__}")
        self.fn = fn

    def __call__(self, task: EvalTask) -> dict[str, Any]:
        start = time.perf_counter()
        trial = Trial.from_task(task)
        try:
            value = self.fn(trial)
        except Exception as err:  # noqa: BLE001 - a failing trial is a result, as in evaluate()
            error = f"{type(err).__name__}: {err}\n" + traceback.format_exc(limit=3)
            return dict(cid=task.cid, status="failed", metrics=[], error=error, wall_s=0.0)
        if isinstance(value, float) and not math.isfinite(value):
            error = f"the objective returned {value} (the training did not produce a score)"
            return dict(cid=task.cid, status="failed", metrics=[], error=error, wall_s=0.0)
        metrics = _curve(trial, value)
        return dict(
            cid=task.cid,
            status="done",
            metrics=metrics,
            error=None,
            wall_s=time.perf_counter() - start,
        )


def _curve(trial: Trial, value: Any) -> list[dict[str, Any]]:
    """The per-epoch records of a trial: its reports, and a returned value as the last epoch."""
    if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
        raise UserError(
            f"the objective returned a {type(value).__name__} for trial {trial.number}; "
            "return the score as a number (percent top-1) or None after trial.report(...)"
        )
    scores = dict(trial._reports)
    if value is not None:
        scores[max(scores, default=trial.epochs)] = float(value)
    if not scores:
        raise UserError(
            f"the objective returned None for trial {trial.number} and reported nothing; "
            "return the score or call trial.report(epoch, value)"
        )
    return [{"epoch": e, "val_top1": v} for e, v in sorted(scores.items())]
