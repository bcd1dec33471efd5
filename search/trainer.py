"""Evaluating one candidate: build its ArchSpec, train it with its recipe, report metrics.

``evaluate`` is a pure function of an :class:`EvalTask` (plain data), so it
runs unchanged in this process or as a Ray task on another machine.  It never
raises: a candidate that errors, runs out of memory or diverges comes back as
``failed`` with its error text, and the search carries on.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EvalTask:
    """Everything a worker needs to train one (arch, recipe) pair."""

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


def evaluate(task: EvalTask) -> dict[str, Any]:
    """Train one candidate; returns ``{cid, status, metrics, error, wall_s}``."""
    start = time.perf_counter()
    try:
        from fbnetv3_zoo.latency.timing import torch_threads

        threads = torch_threads(task.threads) if task.threads else contextlib.nullcontext()
        with threads:  # the caller's thread count is restored afterwards
            metrics = _train(task)
        return dict(
            cid=task.cid,
            status="done",
            metrics=metrics,
            error=None,
            wall_s=time.perf_counter() - start,
        )
    except Exception as err:  # noqa: BLE001 - any failure is a result, not a crash
        text = f"{type(err).__name__}: {err}"
        if not isinstance(err, RuntimeError | ValueError | MemoryError):
            text += "\n" + traceback.format_exc(limit=3)
        return dict(
            cid=task.cid,
            status="failed",
            metrics=[],
            error=text,
            wall_s=time.perf_counter() - start,
        )


def _train(task: EvalTask) -> list[dict[str, Any]]:
    """Build and train the candidate; its per-epoch records (numbers only)."""
    from fbnetv3_zoo.recipes.apply import create_model
    from fbnetv3_zoo.recipes.engine import seed_everything, train
    from fbnetv3_zoo.search.space.fixed_model import model_of

    model_ref = model_of(task.arch)  # an ArchSpec, or a recipe-only search's fixed model
    resolution = int(task.arch["input_size"])
    recipe = build_recipe(task.base_recipe, task.recipe, resolution, task.overrides)
    num_classes = _num_classes(task.data)
    seed_everything(task.seed)  # initial weights must not depend on what ran before
    model = create_model(recipe, model_ref, num_classes=num_classes)  # dropout/drop path
    result = train(
        model,
        recipe,
        data=task.data,
        epochs=task.epochs,
        stop_after_epochs=task.stop_after,
        seed=task.seed,
        num_classes=num_classes,
        progress=False,
        holdout=task.holdout,
    )
    return [
        {k: v for k, v in e.items() if isinstance(v, int | float | type(None))}
        for e in result["epochs"]
    ]


_CLASSES: dict[str, int] = {}


def _num_classes(data: str, download: bool = False) -> int:
    """Class count of a dataset (cached; digits needs no disk scan); ``download`` fetches CIFAR once."""
    if data not in _CLASSES:
        from fbnetv3_zoo.data import load_data

        _CLASSES[data] = load_data(data, 32, download=download, train=download).num_classes
    return _CLASSES[data]
