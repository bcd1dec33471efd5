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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fbnetv3_zoo.errors import UserError

__all__ = ["EvalTask", "Objective", "Trial", "error_text"]


@dataclass(frozen=True)
class EvalTask:
    """Everything a worker needs to train one (arch, recipe) pair (plain data: it may cross to Ray)."""

    cid: int
    arch: dict[str, Any]  # ArchSpec.to_dict(), or a fixed model's {model, input_size}
    recipe: dict[str, Any]  # the searched fields; the rest comes from ``base_recipe``
    base_recipe: str
    data: str
    epochs: int  # length of the schedule
    stop_after: int | None = None  # early stopping: end after this many epochs of that schedule
    seed: int = 0
    threads: int | None = 1  # torch threads; tiny CPU proxies run fastest on one
    overrides: dict[str, Any] = field(default_factory=dict)  # fixed recipe fields of the space
    # 0: the pair's first training; k: its k-th re-measurement (the seed is then seed + k)
    repeat: int = 0
    # > 0: rank on this share of the training images, held out of training (SearchConfig.holdout)
    holdout: float = 0.0
    device: str | None = None  # cpu, cuda, cuda:N, mps (None: a GPU if there is one)
    channels_last: bool = False  # train with the model in NHWC memory (SearchConfig.channels_last)


def error_text(err: BaseException) -> str:
    """How a failed training is recorded: ``Name: message``, with a short traceback for bugs.

    Runtime, value and memory errors are what a bad pair does (a NaN loss is
    ``TrainingDiverged: ...``, which the store recognises); anything else is
    more likely a bug, so its last frames are kept.
    """
    text = f"{type(err).__name__}: {err}"
    if not isinstance(err, RuntimeError | ValueError | MemoryError):
        text += "\n" + traceback.format_exc(limit=3)
    return text


@dataclass(frozen=True)
class Trial:
    """One (architecture, recipe) pair to train, as an objective sees it.

    ``arch``: an ``ArchSpec`` (or, in a recipe-only search, the fixed model's
    ``{"model", "input_size"}``); ``recipe``: the searched recipe fields;
    ``epochs``: train this many epochs (early stopping may ask for fewer than
    the schedule's ``schedule_epochs``); ``seed``: the training seed (a
    re-measurement, ``repeat`` > 0, gets another one); ``data`` and
    ``holdout``: the data set and the share of its training images to score
    on instead of training; ``threads``, ``device`` and ``channels_last``: how
    to train (``SearchConfig.threads``, ``.device`` and ``.channels_last``).
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
    threads: int | None = 1
    device: str | None = None
    channels_last: bool = False
    _reports: list[tuple[int, float | None, dict[str, Any]]] = field(
        default_factory=list, repr=False, compare=False
    )

    def report(
        self, epoch: int, value: float | None, metrics: Mapping[str, Any] | None = None
    ) -> None:
        """Record the score (percent top-1) after ``epoch`` (1-based), as the built-in trainer does.

        ``metrics``: other numbers of that epoch to keep in the run's curves (e.g.
        ``train_loss``; an ``ema_top1`` counts towards the score like ``val_top1``).
        ``value`` None: not measured at this epoch.

        Raises:
            UserError: an epoch that is not an integer >= 1, a value that is not a number.
        """
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
            raise UserError(f"trial.report: epoch must be an integer >= 1, got {epoch!r}")
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise UserError(f"trial.report: value must be a number, got {type(value).__name__}")
        extra = dict(metrics or {})
        self._reports.append((epoch, None if value is None else float(value), extra))

    @classmethod
    def from_task(cls, task: EvalTask, strict: bool = True) -> Trial:
        """The trial of ``task``; ``strict=False`` keeps an arch that is no valid ArchSpec as a dict."""
        from fbnetv3_zoo.models.spec import ArchSpec

        arch: Any = dict(task.arch)
        if "model" not in arch:
            try:
                arch = ArchSpec.from_dict(arch)
            except (UserError, TypeError, ValueError, KeyError):  # SpecError is a UserError
                if strict:
                    raise
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
            threads=task.threads,
            device=task.device,
            channels_last=task.channels_last,
        )


class Objective:
    """``objective(trial)`` as a search evaluator (``run_search(..., evaluator=Objective(fn))``)."""

    def __init__(self, fn: Callable[[Trial], float | None]) -> None:
        if not callable(fn):
            raise UserError(f"an objective must be callable, got {type(fn).__name__}")
        self.fn = fn

    def __call__(self, task: EvalTask) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            trial = Trial.from_task(task)  # an arch that is no ArchSpec fails this candidate
            value = self.fn(trial)
        except Exception as err:  # noqa: BLE001 - a failing trial is a result, not a crash
            return _failed(task, error_text(err), start)
        if isinstance(value, float) and not math.isfinite(value):
            error = f"the objective returned {value} (the training did not produce a score)"
            return _failed(task, error, start)
        metrics = _curve(trial, value)
        return dict(
            cid=task.cid,
            status="done",
            metrics=metrics,
            error=None,
            wall_s=time.perf_counter() - start,
        )


def _failed(task: EvalTask, error: str, start: float) -> dict[str, Any]:
    wall = time.perf_counter() - start
    return dict(cid=task.cid, status="failed", metrics=[], error=error, wall_s=wall)


def _curve(trial: Trial, value: Any) -> list[dict[str, Any]]:
    """The per-epoch records of a trial: its reports, and a returned value as the last epoch."""
    if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
        raise UserError(
            f"the objective returned a {type(value).__name__} for trial {trial.number}; "
            "return the score as a number (percent top-1) or None after trial.report(...)"
        )
    records: dict[int, dict[str, Any]] = {}
    for epoch, score, extra in trial._reports:  # a later report of an epoch replaces it
        records[epoch] = {**extra, "epoch": epoch, "val_top1": score}
    if value is not None:
        last = max(records, default=trial.epochs)
        records[last] = {**records.get(last, {}), "epoch": last, "val_top1": float(value)}
    if not records:
        raise UserError(
            f"the objective returned None for trial {trial.number} and reported nothing; "
            "return the score or call trial.report(epoch, value)"
        )
    return [records[e] for e in sorted(records)]
