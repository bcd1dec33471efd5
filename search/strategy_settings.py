"""Each strategy's own settings: one dataclass per strategy, validated, pinned and shown in the CLI.

Kept free of numpy/torch imports so that ``fbnetv3 search --help`` can list
every strategy's flags without loading a strategy.  A strategy with settings
is one dataclass here (or in the user's own module) and one
``register_strategy(name, factory, settings)`` call: the same fields become
``SearchConfig(settings={name: {...}})`` keys, ``fbnetv3 search`` flags, and
pinned values of a run (changing them on resume is refused).

Field metadata drives the checks and the help text: ``help`` (shown by
``--help``), ``low``/``high`` (inclusive bounds for numbers) and ``choices``
(a callable returning the allowed strings, evaluated when checked, so that
heads registered later count).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fbnetv3_zoo.search.predictor.heads import describe_head, head_choices

from fbnetv3_zoo.checks import is_int, is_number
from fbnetv3_zoo.errors import UserError


class SettingsError(UserError):
    """A strategy setting has a value the strategy cannot run with."""


# Upper bounds, checked before any work: a Sobol draw holds ~100 float64 columns
# and the search keeps a few copies of it, so 1M draws is ~1 GB, the most a laptop
# should be asked for; a typo (1000000000) fails in one line, not in the allocator.
MAX_DRAWS = 1 << 20
MAX_STEPS = 100_000  # predictor steps and GA generations: hours at most, not days
MAX_POPULATION = 1 << 14  # GA individuals per limit, each a predictor call per generation


def setting(default: Any, help: str | Callable[[], str], **rules: Any) -> Any:
    """A settings field: its default, its ``--help`` text (or a callable) and its checks."""
    return field(default=default, metadata=dict(help=help, **rules))


@dataclass(frozen=True)
class StrategySettings:
    """Base of every strategy's settings; subclasses only declare fields with :func:`setting`."""

    owner: ClassVar[str] = "strategy"  # the strategy's name, for error messages

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check_value(type(self), f, getattr(self, f.name))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotation of every field (``from __future__ import annotations`` safe)."""
    return typing.get_type_hints(cls)


def check_value(cls: type, f: dataclasses.Field, value: Any) -> None:
    """Raise SettingsError naming the field when ``value`` breaks its type or its rules."""
    kind = field_types(cls)[f.name]
    rules = f.metadata
    where = f"setting {f.name} (--{f.name.replace('_', '-')}) of {cls.owner}"
    if kind is bool:
        ok, rule = isinstance(value, bool), "true or false"
    elif kind is int:
        ok, rule = is_int(value), "an integer"
    elif kind is float:
        ok, rule = is_number(value), "a finite number"
    elif kind is str:
        ok, rule = isinstance(value, str) and value != "", "a non-empty string"
    else:
        raise TypeError(f"{cls.__name__}.{f.name}: settings fields are bool, int, float or str")
    if ok and "low" in rules and value < rules["low"]:
        ok, rule = False, f"{rule} >= {rules['low']}"
    if ok and "high" in rules and value > rules["high"]:
        ok, rule = False, f"{rule} <= {rules['high']}"
    if ok and "choices" in rules and value not in rules["choices"]():
        ok, rule = False, "one of " + ", ".join(rules["choices"]())
    if not ok:
        raise SettingsError(f"{where} must be {rule}, got {value!r}")


@dataclass(frozen=True)
class NoSettings(StrategySettings):
    """A strategy without settings of its own (``random``)."""

    owner: ClassVar[str] = "random"


def _head_help() -> str:
    return "predictor's accuracy head: " + "; ".join(
        f"{name}: {describe_head(name)}" for name in head_choices()
    )


@dataclass(frozen=True)
class JointNASSettings(StrategySettings):
    """FBNetV3's predictor-guided search: acquisition, predictor and genetic fine search."""

    owner: ClassVar[str] = "jointnas"

    pool: int = setting(
        4096, "feasible Sobol pool ranked by the acquisition each iteration", low=1, high=MAX_DRAWS
    )
    kappa: float = setting(
        0.5, "acquisition: predicted mean + kappa * ensemble spread (0: greedy)", low=0.0
    )
    members: int = setting(
        5, "predictor ensemble size (1 with --kappa 0: the paper's greedy choice)", low=1, high=64
    )
    head: str = setting("auto", _head_help, choices=head_choices)
    fit_steps: int = setting(300, "predictor fit steps per iteration", low=1, high=MAX_STEPS)
    pretrain_samples: int = setting(
        4096, "architectures the predictor pretrains on", low=1, high=MAX_DRAWS
    )
    pretrain_steps: int = setting(
        1000,
        "predictor pretraining steps on MACs/params (0: no pretraining)",
        low=0,
        high=MAX_STEPS,
    )
    ga_population: int = setting(
        64, "genetic search: individuals per constraint", low=3, high=MAX_POPULATION
    )
    ga_generations: int = setting(40, "genetic search: generations", low=0, high=MAX_STEPS)


@dataclass(frozen=True)
class OptunaTPESettings(StrategySettings):
    """Optuna's TPE sampler: random start, then TPE; rejected asks are resampled."""

    owner: ClassVar[str] = "optuna-tpe"

    n_startup_trials: int = setting(
        10, "measured pairs (first batch included) before TPE replaces random", low=0
    )
    max_tries: int = setting(
        64, "asks per pick before an infeasible ask falls back to a random draw", low=1
    )


@dataclass(frozen=True)
class HalvingSettings(StrategySettings):
    """Successive halving: rung epochs shrink by ``eta`` down to ``min_epochs``."""

    owner: ClassVar[str] = "successive-halving"

    eta: int = setting(3, "keep the best 1/eta of a rung", low=2)
    min_epochs: int = setting(2, "epochs of the lowest rung", low=1)


PROMOTE_RULES = ("predicted", "gap", "measured")


@dataclass(frozen=True)
class JointNASMFSettings(StrategySettings):
    """Multi-fidelity JointNAS: rungs of the full schedule, a predictor with the fidelity as input."""

    owner: ClassVar[str] = "jointnas-mf"

    # 5 and 0.2 (rungs 8 and 40 of a 40-epoch schedule), and promote "measured": chosen on the
    # ResNet-18 tune recipe pool (benchmarks/results/recipe_search_pool_resnet18_tune.md, then
    # recipe_search_pool_resnet18_tune_choice.md: with the search starting at the base recipe,
    # "measured" had the lowest regret at 3 full-run equivalents over 200 search seeds)
    rung_factor: int = setting(
        5,
        "rungs: the full schedule divided by this, repeatedly (rounded up); the best "
        "1/rung_factor of a rung go on",
        low=2,
    )
    min_share: float = setting(
        0.2, "lowest rung as a share of the full schedule (no rung below it)", low=0.0, high=1.0
    )
    promote: str = setting(
        "measured",
        "rank a rung by: predicted (the predictor's full-length prediction, fitted on the rung's "
        "measurements too), gap (the rung measurement + the predicted gap to full length), "
        "measured (the rung measurement alone, ASHA's rule)",
        choices=lambda: PROMOTE_RULES,
    )
    near_chance: float = setting(
        1.25,
        "drop a pair whose top-1 at a rung is at most this times chance (a diverged one too)",
        low=1.0,
    )
    kappa: float = setting(
        0.5, "acquisition: predicted mean + kappa * ensemble spread (0: greedy)", low=0.0
    )
    pool: int = setting(
        4096, "feasible Sobol pool ranked by the acquisition each iteration", low=1, high=MAX_DRAWS
    )


PRUNERS = ("hyperband", "halving", "none")


@dataclass(frozen=True)
class OptunaPrunedSettings(StrategySettings):
    """Optuna's TPE sampler with one of its pruners stopping poor trainings at rung epochs."""

    owner: ClassVar[str] = "optuna-tpe-pruned"

    n_startup_trials: int = setting(
        10, "finished or pruned trials (first batch included) before TPE replaces random", low=0
    )
    pruner: str = setting(
        "hyperband",
        "Optuna pruner: hyperband (HyperbandPruner), halving (SuccessiveHalvingPruner), none",
        choices=lambda: PRUNERS,
    )
    min_resource: int = setting(1, "pruner: epochs before the first possible prune", low=1)
    reduction_factor: int = setting(3, "pruner: keep the best 1/reduction_factor at a rung", low=2)
    max_tries: int = setting(
        64, "asks per pick before an infeasible ask is given up (off a finite pool)", low=1
    )


# strategy name -> its settings class; strategies.register_strategy adds to it
SETTINGS: dict[str, type[StrategySettings]] = {
    "random": NoSettings,
    "jointnas": JointNASSettings,
    "optuna-tpe": OptunaTPESettings,
    "successive-halving": HalvingSettings,
    "optuna-tpe-pruned": OptunaPrunedSettings,
    "jointnas-mf": JointNASMFSettings,
}


def help_text(f: dataclasses.Field) -> str:
    """A field's ``--help`` line (built when asked where it lists registered heads)."""
    text = f.metadata["help"]
    return text() if callable(text) else text


def settings_for(name: str, values: dict[str, Any] | None = None) -> StrategySettings:
    """Strategy ``name``'s settings from a plain dict; one-line errors name the bad key."""
    cls = SETTINGS.get(name)
    if cls is None:
        raise SettingsError(f"unknown strategy {name!r}; choose one of {', '.join(SETTINGS)}")
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        mine = ", ".join(sorted(known)) or "none"
        raise SettingsError(
            f"setting {', '.join(unknown)} is not one of strategy {name}'s (its settings: {mine})"
        )
    return cls(**values)


def owner_of(flag_field: str) -> list[str]:
    """The strategies that have a setting called ``flag_field``."""
    return [
        name
        for name, cls in SETTINGS.items()
        if flag_field in {f.name for f in dataclasses.fields(cls)}
    ]
