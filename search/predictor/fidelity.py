"""A Bayesian linear accuracy head with the fidelity (epochs trained) as an input.

A multi-fidelity search measures most pairs on a prefix of the full schedule.
To let those short curves inform the choice of what to train at full length,
every curve contributes one training point per rung epoch it covers:
``(pair, fidelity) -> top-1 at that epoch``, and the head predicts any pair
at any fidelity, the full schedule by default.

Design (``fidelity_design``): the linear head's recipe design (one-hot
choices, centred numbers, their squares, per-optimizer rates) and the raw
architecture features, then the fidelity ``z = log(e / E) / log(E)`` (0 at the
full ``E`` epochs, -1 at one epoch) and its square, then every pair column
times ``z``: a pair's own gap between a short and a full training (a high
learning rate that climbs late) is something the head may learn when the
curves show it.  Prior variances (pair terms, architecture terms, the
interactions) and the noise are chosen by the marginal likelihood as in
``heads/linear.py``; nothing is random, so a fit needs no seed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from fbnetv3_zoo.search.predictor.encoder import arch_design
from fbnetv3_zoo.search.predictor.features import FeatureMap, feature_map
from fbnetv3_zoo.search.predictor.heads.linear import (
    ARCH_RATIO_GRID,
    RECIPE_PRIOR_GRID,
    LinearPredictor,
    posterior,
    recipe_design,
)
from fbnetv3_zoo.search.space.definition import SearchSpace

# prior variance of a (pair column x fidelity) weight, relative to a pair weight's
INTERACTION_GRID = (0.01, 0.1, 1.0)


def fidelity_feature(epochs: np.ndarray, full: int) -> np.ndarray:
    """``log(e / E) / log(E)``: 0 for the full schedule, -1 for one epoch (0 when E is 1)."""
    e = np.clip(np.asarray(epochs, dtype=float), 1.0, float(full))
    return np.log(e / full) / math.log(full) if full > 1 else np.zeros_like(e)


def fidelity_design(fmap: FeatureMap, u: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(design, recipe width, pair width): pair columns, z, z**2, pair columns x z."""
    u = np.atleast_2d(np.asarray(u, dtype=float))
    recipe = recipe_design(fmap, u)
    pair = np.concatenate([recipe, arch_design(fmap, None, u)], axis=1)
    z = np.broadcast_to(np.asarray(z, dtype=float), (len(u),))[:, None]
    design = np.concatenate([pair, z, z * z, pair * z], axis=1)
    return design, recipe.shape[1], pair.shape[1]


@dataclass
class FidelityPredictor(LinearPredictor):
    """The posterior of the fidelity head; ``predict`` is at the full schedule, ``predict_at`` anywhere.

    ``pick_batch`` (UCB, one pick at a time, the linear head's kriging
    believer) therefore ranks pairs by their full-length prediction.
    """

    full: int = 1
    interaction_prior: float = 0.0

    def design_at(self, u: np.ndarray, epochs: np.ndarray | int) -> np.ndarray:
        return (
            fidelity_design(self.features, u, fidelity_feature(epochs, self.full))[0] - self.center
        )

    def design(self, u: np.ndarray) -> np.ndarray:
        return self.design_at(u, self.full)

    def predict_at(self, u: np.ndarray, epochs: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) top-1 of each row of ``u`` after ``epochs`` of the full schedule."""
        f = self.design_at(u, epochs)
        var = np.einsum("ij,jk,ik->i", f, self.covariance, f)
        return f @ self.weights * self.y_std + self.y_mean, np.sqrt(np.maximum(var, 0)) * self.y_std

    def diagnostics(self) -> dict[str, float]:
        return {**super().diagnostics(), "interaction_prior": self.interaction_prior}


def fidelity_priors(recipe: int, pair: int, width: int) -> tuple[list[np.ndarray], list[tuple]]:
    """Per grid point (recipe scale, arch ratio, interaction ratio): the prior of every column."""
    col = np.arange(width)
    grid = list(itertools.product(RECIPE_PRIOR_GRID, ARCH_RATIO_GRID, INTERACTION_GRID))
    priors = []
    for scale, ratio, inter in grid:
        prior = np.full(width, scale)
        prior[(col >= recipe) & (col < pair)] = scale * ratio  # architecture columns
        prior[col >= pair + 2] = scale * inter  # pair x fidelity
        priors.append(prior)
    return priors, grid


def fit_fidelity(
    u: np.ndarray, epochs: np.ndarray, y: np.ndarray, full: int, space: SearchSpace
) -> FidelityPredictor:
    """Exact posterior on measured points ``(u[i], epochs[i]) -> y[i]`` (top-1 at that epoch)."""
    fmap = feature_map(space)
    y = np.asarray(y, dtype=float)
    if len(y) != len(u) or len(y) != len(epochs):
        raise ValueError(f"u, epochs and y differ in length: {len(u)}, {len(epochs)}, {len(y)}")
    mean, std = float(y.mean()), float(y.std()) or 1.0
    raw, recipe, pair = fidelity_design(fmap, u, fidelity_feature(epochs, full))
    center = raw.mean(axis=0)
    priors, grid = fidelity_priors(recipe, pair, raw.shape[1])
    post = posterior(raw - center, (y - mean) / std, priors)
    scale, ratio, inter = grid[post.choice]
    return FidelityPredictor(
        fmap,
        None,
        post.weights,
        post.covariance,
        center,
        mean,
        std,
        post.noise,
        scale,
        scale * ratio,
        post.loss,
        full=full,
        interaction_prior=scale * inter,
    )
