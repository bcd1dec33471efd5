"""Fine search: an adaptive genetic algorithm with the predictor as fitness.

Fitness is one batched predictor call per generation, so a whole run takes
seconds.  Crossover and mutation probabilities adapt per individual (after
Srinivas & Patnaik's adaptive GA): good individuals are disturbed little so
they survive, below-average ones are recombined and mutated freely.
Constraints are hard: an offspring outside its population's limit is replaced
by its better parent.  One run serves several constraints by evolving one
population per constraint side by side, scored in the same predictor call.
A population never holds the same vector twice: duplicates are replaced by
fresh feasible draws, so it cannot collapse onto one point and the caller
always finds runners-up it has not measured yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from fbnetv3_zoo.search.space.constraints import Constraint, batch_stats
from fbnetv3_zoo.search.space.definition import SearchSpace
from fbnetv3_zoo.search.space.encoding import snap
from fbnetv3_zoo.search.space.sampling import sample_feasible

# the adaptive GA's published constants: crossover k1 = k3 = 1.0, mutation k2 = k4 = 0.5
K_CROSS, K_MUT = 1.0, 0.5
PM_MIN = 0.05  # our choice: a floor so a converged population keeps exploring
ELITE = 2


@dataclass
class GAResult:
    """The best individual found for one constraint, and the fitness trace."""

    constraint: Constraint
    vector: np.ndarray
    fitness: float
    macs: int
    params: int
    history: list[float]  # best fitness per generation (index 0: initial population)
    ranked: np.ndarray  # the final population, best first (runners-up for the caller)


def adaptive_rates(f: np.ndarray, fmax: float, favg: float, k_hi: float, k_lo: float) -> np.ndarray:
    """``k_hi (fmax - f) / (fmax - favg)`` for above-average ``f``, ``k_lo`` below."""
    spread = max(fmax - favg, 1e-12)
    return np.where(f >= favg, k_hi * (fmax - f) / spread, k_lo)


def _evolve(
    pop: np.ndarray, fit: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One generation of offspring: tournament selection, adaptive uniform crossover and mutation.

    Returns the children and, for each, the index of its better parent.
    """
    n, d = pop.shape
    fmax, favg = float(fit.max()), float(fit.mean())
    a, b = rng.integers(0, n, (2, n))
    first = np.where(fit[a] >= fit[b], a, b)
    a, b = rng.integers(0, n, (2, n))
    second = np.where(fit[a] >= fit[b], a, b)
    better = np.where(fit[first] >= fit[second], first, second)
    pc = adaptive_rates(np.maximum(fit[first], fit[second]), fmax, favg, K_CROSS, K_CROSS)
    cross = rng.random(n) < pc
    take = rng.random((n, d)) < 0.5
    children = np.where(cross[:, None] & take, pop[second], pop[first])
    pm = np.maximum(adaptive_rates(fit[better], fmax, favg, K_MUT, K_MUT), PM_MIN)
    mutate = rng.random(n) < pm
    genes = rng.random((n, d)) < 2.0 / d
    genes[np.arange(n), rng.integers(0, d, n)] = True  # a mutation changes at least one gene
    children = np.where(mutate[:, None] & genes, rng.random((n, d)), children)
    return children, better


Refill = Callable[[Constraint, int, int], np.ndarray]  # (constraint, n, seed) -> feasible vectors


def dedupe(
    pop: np.ndarray, keep: int, refill: Callable[[int, int], np.ndarray], seed: int
) -> np.ndarray:
    """``pop`` with every repeated row (after the first ``keep``, which stay) replaced by a new draw.

    ``refill(n, seed)`` supplies feasible candidates; rows it cannot replace
    (a source with nothing new left) stay duplicated.
    """
    keys = [tuple(np.round(v, 9)) for v in pop]
    seen: set[tuple[float, ...]] = set(keys[:keep])
    dup = []
    for i in range(keep, len(pop)):
        if keys[i] in seen:
            dup.append(i)
        seen.add(keys[i])
    if not dup:
        return pop
    pop = pop.copy()
    fresh = [v for v in refill(len(pop) + len(dup), seed) if tuple(np.round(v, 9)) not in seen]
    for i, v in zip(dup, fresh, strict=False):
        pop[i] = v
    return pop


def genetic_search(
    space: SearchSpace,
    fitness: Callable[[np.ndarray], np.ndarray],
    constraints: list[Constraint],
    num_classes: int = 1000,
    population: int = 64,
    generations: int = 40,
    seed: int = 0,
    seeds: np.ndarray | None = None,
    on_generation: Callable[[int], None] | None = None,
    refill: Refill | None = None,
) -> list[GAResult]:
    """Maximise ``fitness`` under each constraint; ``seeds`` are known-good vectors to start from.

    ``refill`` draws feasible vectors for a constraint (default: Sobol draws of
    ``space``); it seeds the populations and replaces duplicates.
    """
    if population < ELITE + 1 or generations < 0:
        raise ValueError(f"population must be >= {ELITE + 1} and generations >= 0")
    if refill is None:

        def refill(c: Constraint, n: int, s: int) -> np.ndarray:
            return sample_feasible(space, n, [c], num_classes, seed=s)[0]

    rng = np.random.default_rng(seed)
    pops = _first_populations(space, constraints, refill, population, num_classes, seed, seeds)
    sizes = [len(p) for p in pops]
    fits = _score(fitness, pops)
    history = [[float(f.max())] for f in fits]
    for gen in range(generations):
        children = [
            _children(
                space,
                pops[k],
                fits[k],
                c,
                refill,
                rng,
                num_classes,
                sizes[k],
                seed + 1009 * (gen + 1) + 31 * k,
            )
            for k, c in enumerate(constraints)
        ]
        kid_fits = _score(fitness, children)
        for k in range(len(constraints)):
            # generational replacement with elitism: children replace all but the best
            elite = np.argsort(-fits[k])[:ELITE]
            pops[k] = np.concatenate([pops[k][elite], children[k]])
            fits[k] = np.concatenate([fits[k][elite], kid_fits[k]])
            history[k].append(float(fits[k].max()))
        if on_generation is not None:
            on_generation(gen)
    return _results(space, constraints, pops, fits, history, num_classes)


def _first_populations(
    space: SearchSpace,
    constraints: list[Constraint],
    refill: Refill,
    population: int,
    num_classes: int,
    seed: int,
    seeds: np.ndarray | None,
) -> list[np.ndarray]:
    """One population per constraint: feasible ``seeds`` first (up to half), then refills."""
    pops = []
    for i, c in enumerate(constraints):
        start = refill(c, population, seed + 31 * i)
        if seeds is not None and len(seeds):
            m, p, v = batch_stats(space, seeds, num_classes)
            ok = seeds[v & c.ok(m, p, seeds)][: population // 2]
            start = np.concatenate([ok, start])[:population]
        start = dedupe(start, 0, lambda n, s, c=c: refill(c, n, s), seed + 31 * i + 1)
        pops.append(start)
    return pops


def _score(
    fitness: Callable[[np.ndarray], np.ndarray], parts: list[np.ndarray]
) -> list[np.ndarray]:
    """Every population's fitness from one batched call, split back per population."""
    values = np.asarray(fitness(np.concatenate(parts)), dtype=float)
    return np.split(values, np.cumsum([len(x) for x in parts])[:-1])


def _children(
    space: SearchSpace,
    pop: np.ndarray,
    fit: np.ndarray,
    c: Constraint,
    refill: Refill,
    rng: np.random.Generator,
    num_classes: int,
    size: int,
    seed: int,
) -> np.ndarray:
    """One generation's children for constraint ``c``: feasible, and new next to the elite."""
    kids, parent = _evolve(pop, fit, rng)
    kids = snap(space, kids)
    m, p, v = batch_stats(space, kids, num_classes)
    bad = ~(v & c.ok(m, p, kids))
    kids[bad] = pop[parent[bad]]  # hard limit: keep the better parent instead
    elite = pop[np.argsort(-fit)[:ELITE]]
    merged = dedupe(
        np.concatenate([elite, kids[: size - ELITE]]),
        len(elite),
        lambda n, s: refill(c, n, s),
        seed,
    )
    return merged[len(elite) :]


def _results(
    space: SearchSpace,
    constraints: list[Constraint],
    pops: list[np.ndarray],
    fits: list[np.ndarray],
    history: list[list[float]],
    num_classes: int,
) -> list[GAResult]:
    """Per constraint: the fittest vector, its MACs and params, and the population ranked."""
    results = []
    for k, c in enumerate(constraints):
        best = int(np.argmax(fits[k]))
        m, p, _ = batch_stats(space, pops[k][best : best + 1], num_classes)
        order = np.argsort(-fits[k], kind="stable")
        results.append(
            GAResult(
                c,
                pops[k][best],
                float(fits[k][best]),
                int(m[0]),
                int(p[0]),
                history[k],
                pops[k][order],
            )
        )
    return results
