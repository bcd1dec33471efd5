"""A Bayesian linear accuracy head on the frozen pretrained encoder (``--head linear``).

The paper's predictor first fits its accuracy head with the pretrained
encoder frozen, then fine-tunes every layer.  With the few dozen measured
pairs of a small search that network overfits (held-out rank correlations
per pair count: ``benchmarks/results/predictor.md``).  This head keeps the
frozen phase and makes the head a Bayesian linear model (as in DNGO, Snoek et
al. 2015: a network's features under a Bayesian last layer):

* inputs: the frozen encoder's embedding of the architecture (raw architecture
  features when there is no pretraining) and a second-order design of the
  recipe: its one-hot choices, its centred numbers, their squares (a learning
  rate has a best value inside its range, which a line cannot express) and the
  per-optimizer learning rate (``features.CONDITIONAL``);
* a Gaussian prior on the weights, one variance for the recipe terms and one
  for the architecture terms, and a Gaussian noise; those three are chosen by
  the marginal likelihood (type-II maximum likelihood) on a fixed grid, so no
  value is tuned by hand to a benchmark;
* the posterior is exact, so ``predict`` returns a mean and a standard
  deviation that UCB can use without an ensemble, and ``pick_batch`` can
  choose a batch one pair at a time, updating the spread after each pick.

``auto`` uses it below ``heads.base.AUTO_LINEAR_BELOW`` measured pairs (the
search comparison behind that choice: ``benchmarks/results/search.md``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from fbnetv3_zoo.search.predictor.encoder import (
    Pretrained,
    arch_design,
    frozen_encoder,
    resolve_features,
)
from fbnetv3_zoo.search.predictor.features import FeatureMap
from fbnetv3_zoo.search.predictor.heads.base import FitContext, UpperConfidenceBound
from fbnetv3_zoo.search.space.definition import SearchSpace
from torch import nn

# type-II maximum-likelihood grid, in units of the standardised accuracy
NOISE_GRID = (0.03, 0.1, 0.3, 1.0)  # noise variance
RECIPE_PRIOR_GRID = (0.1, 0.3, 1.0, 3.0)  # prior variance of each recipe weight
ARCH_RATIO_GRID = (0.001, 0.01, 0.1)  # prior variance of an arch weight, relative to recipe's


def recipe_design(fmap: FeatureMap, u: np.ndarray) -> np.ndarray:
    """One-hot choices, centred numbers, their squares and the per-optimizer rates of ``u``."""
    x = fmap.transform(u)
    cols, squares = [], []
    for col in fmap.columns:
        if not col.recipe:
            continue
        block = x[:, col.start : col.start + col.width]
        if col.onehot:
            cols.append(block)
        else:
            cols.append(block - 0.5)
            squares.append((block - 0.5) ** 2)
    for num, cat, _ in fmap.conditional:
        chosen = x[:, cat.start : cat.start + cat.width]
        cols.append(chosen * (x[:, num.start : num.start + 1] - 0.5))
    parts = cols + squares
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(x), 0))


@dataclass
class LinearPredictor(UpperConfidenceBound):
    """The posterior of a Bayesian linear head; ``predict`` returns mean and std in accuracy units."""

    features: FeatureMap
    encoder: nn.Module | None  # the frozen pretrained encoder (None: raw arch features)
    weights: np.ndarray
    covariance: np.ndarray
    center: np.ndarray  # design-matrix column means of the fitted pairs
    y_mean: float
    y_std: float
    noise: float
    recipe_prior: float
    arch_prior: float
    train_loss: float = 0.0

    def design(self, u: np.ndarray) -> np.ndarray:
        u = np.atleast_2d(np.asarray(u, dtype=float))
        f = np.concatenate(
            [recipe_design(self.features, u), arch_design(self.features, self.encoder, u)],
            axis=1,
        )
        return f - self.center

    def predict(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f = self.design(u)
        mean = f @ self.weights
        var = np.einsum("ij,jk,ik->i", f, self.covariance, f)
        return mean * self.y_std + self.y_mean, np.sqrt(np.maximum(var, 0.0)) * self.y_std

    def diagnostics(self) -> dict[str, float]:
        return {
            "noise": self.noise,
            "recipe_prior": self.recipe_prior,
            "arch_prior": self.arch_prior,
        }

    def pick_batch(self, u: np.ndarray, n: int, kappa: float = 0.5) -> np.ndarray:
        """Indices of ``n`` rows of ``u`` picked one at a time by UCB.

        Each pick is then treated as measured at its predicted mean (the
        "kriging believer" of batch Bayesian optimisation): the posterior
        spread shrinks around it, so the next pick explores elsewhere instead
        of repeating the same idea ``n`` times.
        """
        f = self.design(u)
        mean = f @ self.weights
        cov = self.covariance.copy()
        chosen: list[int] = []
        for _ in range(min(n, len(f))):
            var = np.maximum(np.einsum("ij,jk,ik->i", f, cov, f), 0.0)
            score = mean + kappa * np.sqrt(var)
            score[chosen] = -np.inf
            k = int(np.argmax(score))
            chosen.append(k)
            g = cov @ f[k]
            cov -= np.outer(g, g) / (self.noise + f[k] @ g)
        return np.array(chosen, dtype=int)


def _log_evidence(f: np.ndarray, t: np.ndarray, prior: np.ndarray, noise: float) -> float:
    """log p(t | prior, noise) of a linear-Gaussian model, up to a constant."""
    k = (f * prior) @ f.T + noise * np.eye(len(t))
    chol = np.linalg.cholesky(k)
    a = np.linalg.solve(chol, t)
    return float(-0.5 * a @ a - np.log(np.diag(chol)).sum())


@dataclass(frozen=True)
class Posterior:
    """The exact posterior of a Bayesian linear model at its type-II maximum-likelihood grid point."""

    weights: np.ndarray
    covariance: np.ndarray
    noise: float
    prior: np.ndarray  # per column
    choice: int  # index of the chosen prior among those offered
    loss: float  # Huber loss of the posterior mean on the fitted (standardised) targets


def posterior(f: np.ndarray, t: np.ndarray, priors: list[np.ndarray]) -> Posterior:
    """Choose the noise (``NOISE_GRID``) and one of ``priors`` by the evidence; exact posterior there.

    Shared by every Bayesian linear head (``fidelity.py`` adds a fidelity
    input); ties keep the first grid point, so the result is deterministic.
    """
    best = None
    for noise, (k, prior) in itertools.product(NOISE_GRID, enumerate(priors)):
        evidence = _log_evidence(f, t, prior, noise)
        if best is None or evidence > best[0]:
            best = (evidence, noise, k)
    _, noise, k = best
    precision = f.T @ f / noise + np.diag(1.0 / priors[k])
    covariance = np.linalg.inv(precision)
    weights = covariance @ f.T @ t / noise
    resid = f @ weights - t
    loss = float(np.mean(np.where(np.abs(resid) <= 1, 0.5 * resid**2, np.abs(resid) - 0.5)))
    return Posterior(weights, covariance, noise, priors[k], k, loss)


def fit_linear(
    u: np.ndarray,
    y: np.ndarray,
    pretrained: Pretrained | None = None,
    space: SearchSpace | None = None,
) -> LinearPredictor:
    """Exact posterior of the Bayesian linear head on measured ``(u, y)``.

    Noise and prior variances come from the grid point with the highest
    marginal likelihood; there is nothing random, so no seed.
    """
    fmap = resolve_features(pretrained, space)
    u = np.asarray(u, dtype=float)
    y = np.asarray(y, dtype=float)
    mean, std = float(y.mean()), float(y.std()) or 1.0
    t = (y - mean) / std
    recipe = recipe_design(fmap, u)
    encoder = frozen_encoder(fmap, pretrained)
    raw = np.concatenate([recipe, arch_design(fmap, encoder, u)], axis=1)
    center = raw.mean(axis=0)
    f = raw - center
    is_recipe = np.arange(f.shape[1]) < recipe.shape[1]
    grid = list(itertools.product(RECIPE_PRIOR_GRID, ARCH_RATIO_GRID))
    post = posterior(f, t, [np.where(is_recipe, scale, scale * ratio) for scale, ratio in grid])
    scale, ratio = grid[post.choice]
    return LinearPredictor(
        fmap,
        encoder,
        post.weights,
        post.covariance,
        center,
        mean,
        std,
        post.noise,
        scale,
        scale * ratio,
        post.loss,
    )


@dataclass(frozen=True)
class LinearHead:
    """The Bayesian linear head (it reads the encoder and space; its posterior needs no seed)."""

    name: str = "linear"

    def fit(self, u: np.ndarray, y: np.ndarray, ctx: FitContext) -> LinearPredictor:
        return fit_linear(u, y, ctx.pretrained, ctx.space)
