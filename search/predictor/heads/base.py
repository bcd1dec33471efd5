"""What an accuracy head is, the registry of heads by name, and the ``auto`` rule.

A head turns measured (pair, accuracy) rows into an ``AccuracyModel`` that the
strategy ranks candidates with.  Heads are registered by name, like timm's
models: the config, the CLI help and the report read names and descriptions
from ``HEADS``, and a new head is one file plus one ``register_head`` line.

This module imports neither numpy nor torch, so building the CLI parser stays
light: a built-in head is registered as ``"module:attr"`` (the form packaging
entry points use) and imported the first time it is fitted.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from fbnetv3_zoo.search.predictor.encoder import Pretrained
    from fbnetv3_zoo.search.space.definition import SearchSpace

AUTO = "auto"
# ``auto``: the Bayesian linear head below this many measured pairs, then the network head
# (why: the auto-head comparison in benchmarks/results/search.md)
AUTO_LINEAR_BELOW = 64
AUTO_FEW, AUTO_MANY = "linear", "network"


@dataclass(frozen=True)
class FitContext:
    """Everything a head may use besides the pairs; each head reads what it needs.

    ``members`` and ``steps`` are the search's predictor settings
    (``JointNASSettings.members`` / ``fit_steps``): an ensemble's size and the
    gradient steps of a head trained by gradient descent.  Heads with an exact
    posterior use neither, and a fit is a function of these fields alone.
    """

    space: SearchSpace | None = None
    pretrained: Pretrained | None = None
    seed: int = 0
    members: int = 5
    steps: int = 300


@runtime_checkable
class AccuracyModel(Protocol):
    """A fitted head: predicted accuracy with a spread, and a batch rule for the acquisition."""

    train_loss: float

    def predict(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, spread) of the accuracy of each row of ``u``, in accuracy units."""
        ...

    def pick_batch(self, u: np.ndarray, n: int, kappa: float = 0.5) -> np.ndarray:
        """Indices of ``n`` rows of ``u`` to train next (upper confidence bound with ``kappa``)."""
        ...

    def diagnostics(self) -> dict[str, float]:
        """Numbers that describe the fit (e.g. the noise it chose), stored with its quality."""
        ...


@runtime_checkable
class Head(Protocol):
    """An accuracy head: fits measured pairs ``(u, y)`` into an ``AccuracyModel``."""

    name: str

    def fit(self, u: np.ndarray, y: np.ndarray, ctx: FitContext) -> AccuracyModel: ...


class UpperConfidenceBound:
    """``acquisition`` and a plain top-n ``pick_batch`` for any model whose ``predict`` gives (mean, spread)."""

    def predict(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def acquisition(self, u: np.ndarray, kappa: float = 0.5) -> np.ndarray:
        """Upper confidence bound: mean + kappa * spread (kappa=0: greedy on the mean)."""
        mean, std = self.predict(u)
        return mean + kappa * std

    def pick_batch(self, u: np.ndarray, n: int, kappa: float = 0.5) -> np.ndarray:
        """Indices of the ``n`` rows of ``u`` with the highest acquisition."""
        return (-self.acquisition(u, kappa)).argsort(kind="stable")[:n]


@dataclass(frozen=True)
class HeadEntry:
    """A registered head: its name, one line for help and reports, and how to build it."""

    name: str
    description: str
    factory: Callable[[], Head] | str  # or "module:attr" of one, imported on first use

    def build(self) -> Head:
        factory = self.factory
        if isinstance(factory, str):
            module, _, attr = factory.partition(":")
            factory = getattr(importlib.import_module(module), attr)
        return factory()


HEADS: dict[str, HeadEntry] = {}


def register_head(name: str, description: str, factory: Callable[[], Head] | str) -> None:
    """Make ``--head name`` / ``JointNASSettings(head=name)`` fit with ``factory()``."""
    if name == AUTO:
        raise ValueError(f"{AUTO!r} is the rule that chooses between heads, not a head")
    HEADS[name] = HeadEntry(name, description, factory)


def head_choices() -> tuple[str, ...]:
    """Every value ``SearchConfig.head`` accepts: ``auto`` and the registered heads."""
    return (AUTO, *HEADS)


def resolve_head(setting: str, measured: int) -> str:
    """The head a fit on ``measured`` pairs uses: ``setting`` itself, or the ``auto`` rule's pick."""
    if setting != AUTO:
        return setting
    return AUTO_FEW if measured < AUTO_LINEAR_BELOW else AUTO_MANY


def auto_description() -> str:
    return f"{AUTO_FEW} while fewer than {AUTO_LINEAR_BELOW} pairs are measured, then {AUTO_MANY}"


def describe_head(name: str) -> str:
    """The one-line description of a head (the name itself for one no longer registered)."""
    if name == AUTO:
        return auto_description()
    entry = HEADS.get(name)
    return entry.description if entry is not None else name


def make_head(head: str | Head) -> Head:
    """A head by registered name (or the instance itself, e.g. a variant a benchmark built)."""
    if not isinstance(head, str):
        return head
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; registered: {', '.join(HEADS)}")
    return HEADS[head].build()


_HERE = __name__.rpartition(".")[0]
register_head("network", "the paper's network head", f"{_HERE}.network:NetworkHead")
register_head(
    "linear",
    "the Bayesian linear head on the frozen pretrained encoder",
    f"{_HERE}.linear:LinearHead",
)
register_head(
    "gp", "the Gaussian-process head on the frozen pretrained encoder", f"{_HERE}.gp:GPHead"
)
