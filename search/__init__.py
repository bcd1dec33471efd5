"""JointNAS: joint architecture-recipe search (FBNetV3), as ``fbnetv3_zoo.search``.

Subpackages, one concern each: ``space`` (what may be proposed: YAML spaces, their
encoding, sampling inside constraints, the recipe-only space of a fixed model),
``predictor`` (the pretrained encoder, features and accuracy heads), ``strategies``
(what to train next: random, jointnas with its genetic fine search, optuna-tpe,
successive halving), ``latency`` (latency limits from a per-block table), ``report``
(best pairs, report.md, plots).  The loop itself: ``config`` (validated settings),
``driver`` (budget, early stopping, store and outputs around a strategy),
``objective`` (``objective(trial)`` as an evaluator: your training, or the built-in
one), ``trainer`` (the built-in objective: trains one candidate), ``finished`` (the
typed, frozen result of a training), ``executors`` (local or Ray), ``sources`` (Sobol
draws or a finite table), ``pool`` (trained tables as sources), ``store`` (SQLite),
``cli``.  Entry point: :func:`fbnetv3_zoo.search.run_search` or ``fbnetv3 search``.
"""

from typing import Any

# the public API, loaded on first use (the CLI imports this package without torch)
_PUBLIC = {
    "run_search": "fbnetv3_zoo.search.driver",
    "check_result": "fbnetv3_zoo.search.finished",
    "FinishedTrial": "fbnetv3_zoo.search.finished",
    "SearchFailed": "fbnetv3_zoo.search.driver",
    "SearchConfig": "fbnetv3_zoo.search.config",
    "Strategy": "fbnetv3_zoo.search.strategies",
    "register_strategy": "fbnetv3_zoo.search.strategies",
    "load_space": "fbnetv3_zoo.search.space.definition",
    "EvalTask": "fbnetv3_zoo.search.objective",
    "TrainObjective": "fbnetv3_zoo.search.trainer",
    "Trial": "fbnetv3_zoo.search.objective",
    "Objective": "fbnetv3_zoo.search.objective",
    "evaluate": "fbnetv3_zoo.search.trainer",
}


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = sorted(_PUBLIC)
