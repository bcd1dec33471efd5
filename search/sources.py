"""Where a search draws its candidate vectors from.

A source hands out feasible encodings; strategies never sample the space
themselves, so the same strategy runs unchanged on the open space (Sobol
draws) or on a finite table of already-trained pairs (a ground-truth pool),
where the fine step can simply rank every vector.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .constraints import Constraint, batch_stats, feasible
from .encoding import snap
from .sampling import sample_feasible
from .space import SearchSpace

Draw = tuple[np.ndarray, np.ndarray, np.ndarray]  # (vectors, macs, params)


class CandidateSource(Protocol):
    """What the driver and the strategies need from a source of candidates."""

    space: SearchSpace
    finite: bool

    def draw(self, n: int, constraints: list[Constraint], seed: int) -> Draw:
        """Up to ``n`` vectors meeting at least one of ``constraints``, with MACs and params."""
        ...

    def all(self) -> Draw:
        """Every vector of a finite source."""
        ...


class SobolSource:
    """Scrambled Sobol (or uniform) draws from the whole space, filtered by the constraints."""

    finite = False

    def __init__(self, space: SearchSpace, num_classes: int = 1000, method: str = "sobol") -> None:
        self.space = space
        self.num_classes = num_classes
        self.method = method

    def draw(self, n: int, constraints: list[Constraint], seed: int) -> Draw:
        return sample_feasible(
            self.space, n, constraints, self.num_classes, method=self.method, seed=seed
        )

    def all(self) -> Draw:
        raise TypeError("a SobolSource is not finite; use draw()")


class VectorSource:
    """A fixed, finite set of vectors (e.g. the pairs of a lookup table), drawn in seeded order."""

    finite = True

    def __init__(self, space: SearchSpace, vectors: np.ndarray, num_classes: int = 1000) -> None:
        self.space = space
        self.num_classes = num_classes
        u = snap(space, np.asarray(vectors, dtype=float))
        macs, params, valid = batch_stats(space, u, num_classes)
        _, first = np.unique(np.round(u, 9), axis=0, return_index=True)
        keep = np.zeros(len(u), dtype=bool)
        keep[np.sort(first)] = True
        keep &= valid
        self.u, self.macs, self.params = u[keep], macs[keep], params[keep]

    def all(self) -> Draw:
        return self.u, self.macs, self.params

    def draw(self, n: int, constraints: list[Constraint], seed: int) -> Draw:
        ok = np.flatnonzero(feasible(constraints, self.macs, self.params))
        pick = np.random.default_rng(seed).permutation(ok)[:n]
        return self.u[pick], self.macs[pick], self.params[pick]
