"""The settings of a search run, checked field by field.

Kept free of numpy/torch imports so that ``fbnetv3 search --help`` can show
the defaults without loading the search itself.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from fbnetv3_zoo.search.strategy_settings import (
    SETTINGS,
    SettingsError,
    StrategySettings,
    settings_for,
)

from fbnetv3_zoo.checks import THREADS_PER_CPU, is_int, is_number, max_threads
from fbnetv3_zoo.cli.args import ALL_CORES
from fbnetv3_zoo.errors import UserError

EXECUTORS = ("local", "ray")
_DEVICE = re.compile(r"cpu|cuda|cuda:\d+|mps")
# settings that decide what a run measures and picks; changing them on resume is refused
# ("settings" pins the chosen strategy's own settings, defaults filled in)
PINNED = (
    "space",
    "data",
    "epochs",
    "seed",
    "strategy",
    "constraints",
    "initial",
    "batch",
    "early_stop_tau",
    "min_stop_curves",
    "remeasure",
    "settings",
)
# pinned as well, but only in runs that set them, so runs made before they existed still resume
PINNED_IF_SET = (
    "model",
    "resolution",
    "full_epochs",
    "proxy_check",
    "holdout",
    "score_epochs",
    "start_at_base",
)
ARCH_SPACE = "fbnetv3_proxy"
RECIPE_SPACE = "recipe"  # the default space of a recipe-only search (spaces/recipe.yaml)
DEFAULT_CONSTRAINTS = ("macs<=0.3M", "macs<=0.4M")
NO_LIMIT = "none"  # constraints.NO_LIMIT: the single "limit" of a recipe-only search
ARCH_EPOCHS = 5  # proxy epochs of an architecture search (benchmarks/results/proxy.md)
# an architecture search scores a candidate on its mean top-1 over its last 3 epochs (chosen on
# the tune pool: benchmarks/results/search_tune_score_epochs.md)
ARCH_SCORE_EPOCHS = 3
# the architecture demo's budget: the one the heldout-pool benchmark compares strategies at
# (benchmarks/results/search_b24.md)
ARCH_BUDGET = 24
RECIPE_BUDGET = 13  # a recipe search with a proxy strategy (--strategy jointnas, random, ...)
RECIPE_FULL_EPOCHS = 100  # a recipe search's full run when none is given: the presets' length
RECIPE_PROXY_SHARE = 10  # a recipe search's proxy: 1/10 of the full run, schedule compressed
RECIPE_HOLDOUT = 0.2  # a recipe search ranks on this share of the training images
DEFAULT_STRATEGY = "jointnas"
# multi-fidelity JointNAS: with a fixed model its rungs are prefixes of the full schedule.  The
# default of a recipe search (--model): with `--promote measured` it had the lowest regret at 3
# full-run equivalents on the resnet18 tune recipe pool, where it was chosen (200 search seeds;
# benchmarks/results/recipe_search_pool_resnet18_tune_choice.md)
MF_STRATEGY = "jointnas-mf"
# the shape of a run when not given: the architecture search (and a recipe search with a proxy
# strategy) as before; a jointnas-mf recipe search as chosen on the tune recipe pool, 3 full-run
# equivalents: the base recipe at full length, five candidates on the lowest rung (a fifth of
# the run each), the best of them at full length, no re-measurement (no room for one)
PROXY_SHAPE = {"initial": 5, "batch": 2, "remeasure": 2}
RECIPE_MF_SHAPE = {"initial": 1, "batch": 1, "remeasure": 0, "budget": 7}
MAX_HOLDOUT = 0.5  # fbnetv3_zoo.data.MAX_HOLDOUT (not imported: that module loads torch)
PINNED_DEFAULTS = {
    "model": None,
    "resolution": None,
    "full_epochs": None,
    "proxy_check": True,
    "holdout": 0.0,
    "score_epochs": 1,  # runs made before the setting existed scored on one epoch
    "start_at_base": False,  # runs made before the setting existed drew their whole first batch
}


def default_strategy(recipe_only: bool) -> str:
    """The strategy a search runs when none is given: jointnas-mf for a recipe search."""
    return MF_STRATEGY if recipe_only else DEFAULT_STRATEGY


class ConfigError(UserError):
    """A SearchConfig field has a value the search cannot run with."""


@dataclass
class SearchConfig:
    """Everything a search run depends on (the CLI flags map one to one); validated on creation.

    Where candidates train (the built-in trainer; a user objective reads
    ``trial.device`` and ``trial.threads`` and may follow them or not):

    - one GPU, one candidate at a time: ``device="cuda"`` (CLI ``--device cuda``;
      the default None already takes a GPU when there is one). ``threads`` only
      sets the CPU-side torch threads then.
    - ``threads``: torch threads per candidate, as ``--threads`` means it in every
      command: N threads, ``0`` all cores (resolved to ``os.cpu_count()`` of the
      machine that creates the config, so trials see the count itself); ``None``
      leaves torch's own default (Python API only).
    - several GPUs or machines, one candidate per GPU: ``executor="ray"``,
      ``gpus_per_trial=1`` and ``device="cuda"`` (CLI ``--executor ray
      --gpus-per-trial 1 --device cuda``; on a cluster started with ``ray start``,
      add ``ray_address="auto"``). Ray gives each task its own GPU, which the
      task sees as ``cuda``; ``cpus_per_trial`` is the CPUs reserved per candidate.
      ``gpus_per_trial=0.5`` packs two small candidates on one GPU.

    Results do not depend on the executor: the same seed and settings give the
    same candidates whether they train here or on Ray workers (up to the
    numerical differences of the device itself, so pin ``device`` for a run you
    will resume elsewhere).

    Example::

        from fbnetv3_zoo.search import SearchConfig, run_search

        config = SearchConfig(model="resnet18", data="cifar10", download=True,
                              full_epochs=100, epochs=10, budget=24,
                              executor="ray", gpus_per_trial=1, device="cuda")
        run_search(config, "runs/r-gpu")
    """

    # None: fbnetv3_proxy, or for a fixed --model the recipe-only space "recipe"
    space: str | None = None
    data: str = "digits"  # all 1198 digits training images: benchmarks/results/proxy.md
    # both bind inside the embedded space, and their best pairs differ (chosen on the tune pool:
    # benchmarks/results/pool_tune.md); None: these two, or for a fixed --model ["none"]
    constraints: list[str] | None = None
    # total candidate trainings, final picks and re-measured finalists included (None: 24 for
    # the architecture search, where the heldout benchmark shows it helping; 13 with --model:
    # a first batch, one acquisition batch, a final pick and re-measurements of longer runs)
    budget: int | None = None
    batch: int | None = None  # None: 2, or 1 for a jointnas-mf recipe search (the shapes above)
    initial: int | None = None  # size of the first batch (None: 5, or 1 as batch)
    # proxy epochs of the first batch (the length of its schedule); None: 5, or for a fixed
    # --model a tenth of full_epochs (the full run's schedule compressed)
    epochs: int | None = None
    early_stop_tau: float = 0.8
    # fewer complete first-batch curves than this: no early stopping (a Kendall tau over n
    # curves has a standard error of about sqrt(2 (2n + 5) / (9 n (n - 1))): 0.19 at 16)
    min_stop_curves: int = 16
    # finalists per limit trained once more (seed + 1) before best/ is written, counted in the
    # budget (as far as it allows: remeasured()): a pick chosen on one noisy measurement
    # regresses to the mean (the winner's curse)
    remeasure: int | None = None  # None: 2, or 0 for a jointnas-mf recipe search
    # a candidate's score: its mean top-1 over this many epochs ending at the scoring epoch, a
    # less noisy measurement of the same training (None: 3 for the architecture search, 1 for
    # a fixed --model, where it was not measured)
    score_epochs: int | None = None
    seed: int = 0
    strategy: str | None = None  # None: default_strategy(model is not None)
    executor: str = "local"
    ray_address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    threads: int | None = 1  # 0: all cores; None: torch's default (see the docstring)
    # where the built-in trainer trains each candidate: cpu, cuda, cuda:N or mps (None: a GPU if
    # there is one); with the ray executor each candidate sees the GPU(s) Ray gave it as cuda
    device: str | None = None
    # train each candidate with the model in NHWC memory (the built-in trainer): FBNetV3's
    # depthwise blocks train faster on a CPU (benchmarks/results/memory_format.md); like threads
    # and device it changes results in the last bits only, so it is not pinned
    channels_last: bool = False
    # per strategy name, its own settings (strategy_settings.py); defaults where absent
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    download: bool = False  # fetch cifar10/cifar100 when missing
    # a recipe-only search: every candidate is this model (any `fbnetv3 train --model` reference)
    model: str | None = None
    resolution: int | None = None  # its input size (None: the space file's)
    # the full run the proxy shortens; the first batch is also trained this long (proxy_check)
    # to measure how well the proxy ranks (None: not measured; a fixed model: 100)
    full_epochs: int | None = None
    proxy_check: bool = True
    # share of each class's training images held out of training to rank candidates on, so the
    # validation split `fbnetv3 train` reports on stays unseen (None: 0.2 for a fixed --model; 0
    # for the architecture demo, whose pools and numbers were measured on the validation split)
    holdout: float | None = None
    # a recipe-only search trains the space's base recipe (the preset the ranges are searched
    # around, `baseline` in the shipped space) as its first candidate, so the pick, the best
    # full-length measurement, has the recipe a user would otherwise train to beat (None: on
    # with --model; an architecture search has no base point)
    start_at_base: bool | None = None
    # stop loudly when more than this share of the trained candidates failed (checked after
    # every batch once the first batch is in; a first batch that failed entirely always stops)
    max_failed_share: float = 0.5

    def __post_init__(self) -> None:
        recipe_only = self.model is not None
        if self.space is None:
            self.space = RECIPE_SPACE if recipe_only else ARCH_SPACE
        if self.constraints is None:
            self.constraints = [NO_LIMIT] if recipe_only else list(DEFAULT_CONSTRAINTS)
        if self.full_epochs is None and recipe_only:
            self.full_epochs = RECIPE_FULL_EPOCHS
        if self.strategy is None:
            self.strategy = default_strategy(recipe_only)
        mf_recipe = recipe_only and self.strategy == MF_STRATEGY
        shape = RECIPE_MF_SHAPE if mf_recipe else PROXY_SHAPE
        for name, value in shape.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if recipe_only and self.strategy == MF_STRATEGY:
            self._rungs_of_the_full_schedule()
        if self.epochs is None:
            share = self.full_epochs if is_int(self.full_epochs) else 0
            self.epochs = max(1, share // RECIPE_PROXY_SHARE) if recipe_only else ARCH_EPOCHS
        if self.holdout is None:
            self.holdout = RECIPE_HOLDOUT if recipe_only else 0.0
        if self.start_at_base is None:
            self.start_at_base = recipe_only
        if self.score_epochs is None:
            self.score_epochs = 1 if recipe_only else ARCH_SCORE_EPOCHS
        if self.budget is None:
            self.budget = RECIPE_BUDGET if recipe_only else ARCH_BUDGET
        self.validate()
        if self.threads == ALL_CORES:  # validated: an int, not False
            self.threads = os.cpu_count() or 1

    def _rungs_of_the_full_schedule(self) -> None:
        """jointnas-mf on a fixed model: candidates train prefixes of the ``full_epochs`` run.

        ``epochs`` becomes the full run (every rung is a prefix of its schedule,
        nothing is compressed); an ``epochs`` given shorter than it is the
        shortest rung (rung factor ``full // epochs``, lowest rung at least
        ``epochs``), and the proxy check is off: the first batch already trains
        the whole schedule.  Bad values are left for ``validate`` to name.
        """
        full, short = self.full_epochs, self.epochs
        if not is_int(full) or full < 1 or not isinstance(self.settings, dict):
            return
        own = self.settings.get(MF_STRATEGY, {})
        if is_int(short) and 1 <= short < full and isinstance(own, dict):
            rungs = {"rung_factor": max(2, full // short), "min_share": short / full}
            self.settings = {**self.settings, MF_STRATEGY: {**rungs, **own}}
        self.epochs = full
        self.proxy_check = False

    def validate(self) -> None:
        """Raise ConfigError naming the first field that cannot work."""
        self._validate_inputs()
        self._validate_counts()
        self._validate_choices()
        self._validate_fixed_model()

    def _need(self, ok: bool, name: str, rule: str) -> None:
        if not ok:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"search setting {name} ({flag}) must be {rule}, got {getattr(self, name)!r}"
            )

    def _integer(self, name: str, low: int) -> None:
        v = getattr(self, name)
        self._need(is_int(v) and v >= low, name, f"an integer >= {low}")

    def _number(self, name: str, low: float, high: float = math.inf) -> None:
        v = getattr(self, name)
        self._need(is_number(v) and low <= v <= high, name, f"a number in [{low}, {high}]")

    def _validate_inputs(self) -> None:
        """The space, the data and the constraints (each one parsed)."""
        for name in ("space", "data"):
            self._need(
                isinstance(getattr(self, name), str) and getattr(self, name) != "",
                name,
                "a non-empty string",
            )
        c = self.constraints
        self._need(
            isinstance(c, list | tuple) and len(c) > 0 and all(isinstance(x, str) for x in c),
            "constraints",
            "a non-empty list of strings such as 'macs<=400M'",
        )
        from fbnetv3_zoo.search.space.constraints import (
            parse_constraint,  # numpy: loaded only when a config is checked
        )

        for text in c:
            try:
                parse_constraint(text)
            except ValueError as err:
                raise ConfigError(f"search setting constraints (--constraint): {err}") from None

    def _validate_counts(self) -> None:
        """The counts, the seed, the numeric ranges and the threads per candidate."""
        for name in (
            "budget",
            "batch",
            "initial",
            "epochs",
            "min_stop_curves",
            "score_epochs",
        ):
            self._integer(name, 1)
        self._integer("seed", 0)
        self._integer("remeasure", 0)
        self._need(self.seed < 2**63, "seed", "an integer below 2**63")
        self._number("early_stop_tau", -1.0, 1.0)
        self._number("max_failed_share", 0.0, 1.0)
        self._number("holdout", 0.0, MAX_HOLDOUT)
        self._number("cpus_per_trial", 0.0)
        self._number("gpus_per_trial", 0.0)
        self._need(self.cpus_per_trial > 0, "cpus_per_trial", "> 0")
        v = self.threads
        self._need(
            v is None or is_int(v) and 0 <= v <= max_threads(),
            "threads",
            f"None (torch's default) or an integer in [0, {max_threads()}] (0 = all cores; "
            f"CPUs x {THREADS_PER_CPU} at most)",
        )

    def _validate_choices(self) -> None:
        """Executor, strategy and its settings (every strategy's), and the switches."""
        self._need(self.executor in EXECUTORS, "executor", "one of " + ", ".join(EXECUTORS))
        self._need(self.strategy in SETTINGS, "strategy", "one of " + ", ".join(SETTINGS))
        self._need(
            isinstance(self.settings, dict)
            and all(isinstance(v, dict) for v in self.settings.values()),
            "settings",
            "a dict of strategy name -> dict of that strategy's settings",
        )
        for name, values in self.settings.items():  # every strategy's, so typos never hide
            try:
                settings_for(name, values)
            except SettingsError as err:
                raise ConfigError(f"search {err}") from None
        self._need(
            self.device is None or isinstance(self.device, str) and _DEVICE.fullmatch(self.device),
            "device",
            "None (a GPU if there is one), cpu, cuda, cuda:N or mps",
        )
        self._need(isinstance(self.download, bool), "download", "true or false")
        self._need(isinstance(self.channels_last, bool), "channels_last", "true or false")
        self._need(isinstance(self.proxy_check, bool), "proxy_check", "true or false")

    def _validate_fixed_model(self) -> None:
        """A recipe-only search's model, resolution and full run; the budget against the picks."""
        c = self.constraints
        self._need(
            self.model is None or isinstance(self.model, str) and self.model != "",
            "model",
            "None or a model reference such as resnet18",
        )
        v = self.resolution
        self._need(
            v is None or is_int(v) and 8 <= v <= 4096,
            "resolution",
            "None or an integer in [8, 4096]",
        )
        v = self.full_epochs
        self._need(
            v is None or is_int(v) and v >= self.epochs,
            "full_epochs",
            f"None or an integer >= the proxy's epochs ({self.epochs})",
        )
        if self.model is not None and list(c) != [NO_LIMIT]:
            raise ConfigError(
                f"search setting constraints (--constraint {' '.join(c)}): MACs, params and latency "
                f"limits are moot for a fixed model ({self.model}), which has one value of each; "
                "drop them to search its recipe"
            )
        self._need(
            self.start_at_base is False or self.start_at_base is True and self.model is not None,
            "start_at_base",
            "true only with a fixed --model (an architecture search has no base point)",
        )
        needed = self.initial + len(c)
        if self.budget < needed:
            raise ConfigError(
                f"budget {self.budget} is too small: the first batch ({self.initial}) plus one final pick per constraint ({len(c)}) need {needed}"
            )

    def remeasured(self) -> int:
        """Trainings kept for re-measuring finalists: ``remeasure`` per limit, as the budget allows.

        The first batch and one final pick per limit come first; a budget too
        small for every finalist re-measures fewer.
        """
        return min(
            self.remeasure * len(self.constraints),
            self.budget - self.initial - len(self.constraints),
        )

    def strategy_settings(self, name: str | None = None) -> StrategySettings:
        """The validated settings of strategy ``name`` (default: the chosen one)."""
        name = name or self.strategy
        return settings_for(name, self.settings.get(name))

    def identity(self) -> dict[str, Any]:
        """The pinned settings, as stored in the run."""
        d = dataclasses.asdict(self)
        d["settings"] = self.strategy_settings().as_dict()
        return {k: d[k] for k in PINNED} | {
            k: d[k] for k in PINNED_IF_SET if d[k] is not None and d[k] != PINNED_DEFAULTS[k]
        }
