"""The built-in objective: train one candidate with its recipe on the proxy.

:class:`TrainObjective` is an objective like any user's (``objective(trial)``,
reporting each epoch through ``trial.report``), so the search runs its own
trainer through the same :class:`~fbnetv3_zoo.search.objective.Objective`
adapter as yours.  :func:`evaluate` is that adapter around it, a pure
function of an :class:`EvalTask` (plain data), so it runs unchanged in this
process or as a Ray task on another machine.  It never raises: a candidate
that errors, runs out of memory or diverges comes back as ``failed`` with its
error text, and the search carries on.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from fbnetv3_zoo.search.objective import EvalTask, Objective, Trial

__all__ = ["EvalTask", "TrainObjective", "build_recipe", "epoch_accuracy", "evaluate"]


def build_recipe(
    base: str, fields: dict[str, Any], resolution: int, overrides: dict[str, Any] | None = None
) -> Any:
    """The full Recipe of a pair: ``base`` preset, the space's fixed overrides, the searched fields, the arch's resolution."""
    from fbnetv3_zoo.recipes import Recipe

    data = {**Recipe.load(base).to_dict(), **(overrides or {}), **fields, "resolution": resolution}
    return Recipe.from_dict(data)


def epoch_accuracy(record: dict[str, Any]) -> float | None:
    """A candidate's accuracy after an epoch: the better of the raw and the EMA weights.

    Our choice: with EMA on, early epochs of the average lag the raw weights,
    and the search should not punish EMA for that.
    """
    values = [record.get(k) for k in ("val_top1", "ema_top1") if record.get(k) is not None]
    return max(values) if values else None


@dataclass(frozen=True)
class TrainObjective:
    """Train the trial's pair: ``base_recipe`` preset, the space's fixed ``overrides``, its recipe.

    Trains ``trial.epochs`` epochs of a ``trial.schedule_epochs`` schedule on
    ``trial.data`` (``holdout`` of the training images scored instead), with
    ``trial.threads`` torch threads on ``trial.device`` (NHWC with
    ``trial.channels_last``), and reports every
    epoch's record (``val_top1``, ``ema_top1``, ``train_loss``...) through
    ``trial.report``.
    """

    base_recipe: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def __call__(self, trial: Trial) -> None:
        from fbnetv3_zoo.latency.timing import torch_threads

        threads = torch_threads(trial.threads) if trial.threads else contextlib.nullcontext()
        with threads:  # the caller's thread count is restored afterwards
            records = self.train(trial)
        for record in records:
            numbers = {k: v for k, v in record.items() if isinstance(v, int | float | type(None))}
            trial.report(int(record["epoch"]), record.get("val_top1"), numbers)

    def train(self, trial: Trial) -> list[dict[str, Any]]:
        """Build and train the candidate; its per-epoch records."""
        from fbnetv3_zoo.recipes.apply import create_model
        from fbnetv3_zoo.recipes.engine import seed_everything, train
        from fbnetv3_zoo.search.space.fixed_model import model_of

        if isinstance(trial.arch, dict):  # a recipe-only search's fixed model
            model_ref, resolution = model_of(trial.arch), int(trial.arch["input_size"])
        else:  # an ArchSpec
            model_ref, resolution = trial.arch, int(trial.arch.input_size)
        recipe = build_recipe(self.base_recipe, trial.recipe, resolution, self.overrides)
        num_classes = _num_classes(trial.data)
        seed_everything(trial.seed)  # initial weights must not depend on what ran before
        model = create_model(recipe, model_ref, num_classes=num_classes)  # dropout/drop path
        stop = trial.epochs if trial.epochs < trial.schedule_epochs else None
        result = train(
            model,
            recipe,
            data=trial.data,
            epochs=trial.schedule_epochs,
            stop_after_epochs=stop,
            seed=trial.seed,
            num_classes=num_classes,
            progress=False,
            holdout=trial.holdout,
            device=trial.device,
            channels_last=trial.channels_last,
        )
        return result["epochs"]


def evaluate(task: EvalTask) -> dict[str, Any]:
    """Train one candidate with the built-in objective; returns ``{cid, status, metrics, error, wall_s}``."""
    return Objective(TrainObjective(task.base_recipe, dict(task.overrides)))(task)


_CLASSES: dict[str, int] = {}


def _num_classes(data: str, download: bool = False) -> int:
    """Class count of a dataset (cached; digits needs no disk scan); ``download`` fetches CIFAR once."""
    if data not in _CLASSES:
        from fbnetv3_zoo.data import load_data

        _CLASSES[data] = load_data(data, 32, download=download, train=download).num_classes
    return _CLASSES[data]
