"""Where a search draws its candidate vectors from.

A source hands out feasible encodings; strategies never sample the space
themselves, so the same strategy runs unchanged on the open space (Sobol
draws) or on a finite table of already-trained pairs (a ground-truth pool),
where the fine step can simply rank every vector.

A strategy that proposes points of the continuous space itself (``optuna-tpe``)
lands them on a finite source with ONE rule, :func:`nearest_unvisited`: the
nearest feasible vector of the source, in the encoded space, that the run has
not proposed yet.  Every such strategy must use it, so that strategies compared
on a pool differ in what they propose, not in how a proposal becomes a pair.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from fbnetv3_zoo.search.space.constraints import Constraint, batch_stats, feasible
from fbnetv3_zoo.search.space.definition import SearchSpace
from fbnetv3_zoo.search.space.encoding import snap
from fbnetv3_zoo.search.space.sampling import sample_feasible

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
        ok = np.flatnonzero(feasible(constraints, self.macs, self.params, self.u))
        pick = np.random.default_rng(seed).permutation(ok)[:n]
        return self.u[pick], self.macs[pick], self.params[pick]


def nearest_unvisited(
    source: CandidateSource,
    points: np.ndarray,
    constraints: list[Constraint],
    visited: set[tuple[float, ...]],
) -> list[int]:
    """Indices into ``source.all()`` of the pairs that proposed ``points`` land on, in order.

    The shared landing rule for finite sources: each point takes the feasible
    vector (meeting at least one of ``constraints``) nearest to it in Euclidean
    distance over the encoding (every column in [0, 1]; a different choice costs
    its cell distance), skipping vectors in ``visited`` (``vector_key``s) and
    those taken by earlier points of the same call; ties go to the source's
    first vector.  A point with nothing left to land on is dropped, so the list
    may be shorter than ``points``.
    """
    from fbnetv3_zoo.search.store import vector_key

    u, macs, params = source.all()
    taken = set(visited)
    free = feasible(constraints, macs, params, u) & np.array(
        [vector_key(v) not in taken for v in u], dtype=bool
    )
    out: list[int] = []
    for point in np.atleast_2d(np.asarray(points, dtype=float)):
        if not free.any():
            break
        distance = np.where(free, np.sum((u - point) ** 2, axis=1), np.inf)
        i = int(np.argmin(distance))
        free[i] = False
        out.append(i)
    return out
