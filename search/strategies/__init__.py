"""Search strategies behind one ask/tell seam.

The driver (``driver.py``) owns the loop, the budget and the store; a
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
many, the full proxy for the best on their partial curves) and
``optuna-tpe-pruned`` (TPE with Optuna's own Hyperband or successive-halving
pruner stopping trainings at rung epochs, the multi-fidelity setup an Optuna
user writes) and ``jointnas-mf`` (JointNAS judged on rungs of the full schedule:
a predictor with the fidelity as an input picks the starts and ranks each
rung, finalists train at full length).  Add your own with
:func:`register_strategy` (its settings: a dataclass, see ``strategy_settings.py``)
or pass an instance to ``run_search(strategy=...)``.  One module per strategy;
``base.py`` holds the seam.

Budgets count trainings, whatever their length (``SearchConfig.budget``); a
strategy that trains some candidates for fewer epochs says so through
``stop_after(ctx, row)`` and every row records the epochs it trained, so
:func:`epochs_spent` gives the compute a run spent for equal-epochs comparisons.
"""

from __future__ import annotations

from collections.abc import Callable

from fbnetv3_zoo.search.strategies.base import (
    Context,
    Proposal,
    Strategy,
    draw_unseen,
    epochs_spent,
    unseen,
)
from fbnetv3_zoo.search.strategies.halving import SuccessiveHalvingStrategy
from fbnetv3_zoo.search.strategies.jointnas import JointNASStrategy, fine_search
from fbnetv3_zoo.search.strategies.jointnas_mf import JointNASMFStrategy
from fbnetv3_zoo.search.strategies.optuna_pruned import OptunaPrunedStrategy
from fbnetv3_zoo.search.strategies.optuna_tpe import (
    OPTUNA_INSTALL,
    OptunaTPEStrategy,
    import_optuna,
    optuna_distributions,
    params_of,
    vector_of,
)
from fbnetv3_zoo.search.strategies.random_draws import RandomStrategy
from fbnetv3_zoo.search.strategy_settings import SETTINGS, StrategySettings

from fbnetv3_zoo.errors import UserError

# name -> factory taking the strategy's settings (None: its defaults)
STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "random": RandomStrategy,
    "jointnas": JointNASStrategy,
    "optuna-tpe": OptunaTPEStrategy,
    "successive-halving": SuccessiveHalvingStrategy,
    "optuna-tpe-pruned": OptunaPrunedStrategy,
    "jointnas-mf": JointNASMFStrategy,
}


def register_strategy(
    name: str,
    factory: Callable[..., Strategy],
    settings: type[StrategySettings] | None = None,
) -> None:
    """Make ``SearchConfig(strategy=name)`` / ``fbnetv3 search --strategy name`` build ``factory()``.

    ``settings`` is the strategy's settings dataclass (default: the factory's
    ``Settings``); the factory is then called with one validated instance.
    """
    STRATEGIES[name] = factory
    SETTINGS[name] = settings or getattr(factory, "Settings", SETTINGS["random"])


def make_strategy(name: str, settings: StrategySettings | None = None) -> Strategy:
    """The registered strategy ``name``, built with ``settings`` (default: its defaults)."""
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name](settings) if settings is not None else STRATEGIES[name]()


__all__ = [
    "OPTUNA_INSTALL",
    "STRATEGIES",
    "Context",
    "JointNASMFStrategy",
    "JointNASStrategy",
    "OptunaPrunedStrategy",
    "OptunaTPEStrategy",
    "Proposal",
    "RandomStrategy",
    "Strategy",
    "SuccessiveHalvingStrategy",
    "draw_unseen",
    "epochs_spent",
    "fine_search",
    "import_optuna",
    "make_strategy",
    "optuna_distributions",
    "params_of",
    "register_strategy",
    "unseen",
    "vector_of",
]
