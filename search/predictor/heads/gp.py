"""A Gaussian-process accuracy head on the frozen pretrained encoder (``--head gp``).

With the few dozen measured pairs of a small search, the question a predictor
must answer is "which unmeasured pairs look like the best measured ones?".
A Gaussian process answers it directly: its prediction for a pair is a
similarity-weighted blend of the measured accuracies, and its uncertainty
grows with the distance to every measured pair, which is what UCB needs.

The similarity is a squared-exponential kernel over three groups of
features, each with its own length scale:

* the recipe's choices (one-hot, e.g. the optimizer),
* the recipe's numbers (min-max, log scale for log ranges),
* the architecture, as the frozen pretrained encoder embeds it (raw
  architecture features without pretraining), standardised over a fixed
  sample of the space so the scale does not depend on which pairs were
  measured.

A group's length scale says how far apart two pairs may be in that group
and still predict each other; a long one switches the group off.  Three
scales and the noise are chosen by the marginal likelihood (coordinate
ascent over a fixed grid), so nothing is tuned by hand to a benchmark.  One
scale per group, not per column: with a dozen pairs a scale per column
overfits (a design-time trial, not a shipped benchmark).

How it ranks held-out pairs and guides a search against the other heads:
``benchmarks/results/predictor.md`` and ``search.md``; it tends to stay near
the best pairs measured so far, so it is an option, not the default.
"""

from __future__ import annotations

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
from fbnetv3_zoo.search.space.sampling import sample
from torch import nn

LENGTH_GRID = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2)  # length scales tried per group
NOISE_GRID = (0.01, 0.05, 0.2, 0.5)  # noise variance, in units of the standardised accuracy
SWEEPS = 3  # coordinate-ascent passes over the groups and the noise
SCALE_SAMPLES = 256  # architectures that fix the embedding's standardisation
GROUPS = ("recipe choices", "recipe numbers", "architecture")


def _recipe_groups(fmap: FeatureMap, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The recipe's one-hot choices (scaled so two choices differ by 1) and its numbers."""
    x = fmap.transform(u)
    choices = [x[:, c.start : c.start + c.width] for c in fmap.columns if c.recipe and c.onehot]
    numbers = [x[:, c.start : c.start + c.width] for c in fmap.columns if c.recipe and not c.onehot]

    def stack(parts: list[np.ndarray], scale: float = 1.0) -> np.ndarray:
        return np.concatenate(parts, axis=1) * scale if parts else np.zeros((len(x), 0))

    return stack(choices, 1 / np.sqrt(2)), stack(numbers)


@dataclass
class ArchScale:
    """Per-column centre and spread of the architecture features over a fixed sample of the space."""

    center: np.ndarray
    spread: np.ndarray

    def __call__(self, a: np.ndarray) -> np.ndarray:
        # divided by sqrt(width): a distance of 1 means "as different as two typical architectures"
        return (a - self.center) / self.spread / np.sqrt(max(1, a.shape[1]))


def arch_scale(fmap: FeatureMap, encoder: nn.Module | None, space: SearchSpace) -> ArchScale:
    a = arch_design(fmap, encoder, sample(space, SCALE_SAMPLES, "sobol", seed=0))
    spread = a.std(axis=0)
    return ArchScale(a.mean(axis=0), np.where(spread > 1e-9, spread, 1.0))


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)


def _log_evidence(k: np.ndarray, t: np.ndarray, noise: float) -> float:
    chol = np.linalg.cholesky(k + noise * np.eye(len(t)))
    a = np.linalg.solve(chol, t)
    return float(-0.5 * a @ a - np.log(np.diag(chol)).sum())


@dataclass
class GPPredictor(UpperConfidenceBound):
    """A fitted Gaussian process; ``predict`` returns mean and std in accuracy units."""

    features: FeatureMap
    encoder: nn.Module | None
    scale: ArchScale
    train_groups: list[np.ndarray]  # the measured pairs' features, one array per group
    lengths: tuple[float, ...]
    noise: float
    t: np.ndarray  # standardised measured accuracies
    y_mean: float
    y_std: float
    train_loss: float = 0.0

    def groups(self, u: np.ndarray) -> list[np.ndarray]:
        u = np.atleast_2d(np.asarray(u, dtype=float))
        choices, numbers = _recipe_groups(self.features, u)
        return [choices, numbers, self.scale(arch_design(self.features, self.encoder, u))]

    def kernel(self, a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
        r2 = sum(_sq_dist(x, y) / s**2 for x, y, s in zip(a, b, self.lengths, strict=True))
        return np.exp(-0.5 * r2)

    def predict(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = self.groups(u)
        k_tt = self.kernel(self.train_groups, self.train_groups) + self.noise * np.eye(len(self.t))
        k_xt = self.kernel(g, self.train_groups)
        mean = k_xt @ np.linalg.solve(k_tt, self.t)
        var = 1.0 - np.einsum("ij,ji->i", k_xt, np.linalg.solve(k_tt, k_xt.T))
        return mean * self.y_std + self.y_mean, np.sqrt(np.maximum(var, 0.0)) * self.y_std

    def diagnostics(self) -> dict[str, float]:
        lengths = {
            f"length_{g.replace(' ', '_')}": s for g, s in zip(GROUPS, self.lengths, strict=True)
        }
        return {"noise": self.noise, **lengths}

    def pick_batch(self, u: np.ndarray, n: int, kappa: float = 0.5) -> np.ndarray:
        """Indices of ``n`` rows of ``u`` picked one at a time by UCB.

        Each pick is then treated as measured at its predicted mean (the
        "kriging believer" of batch Bayesian optimisation), so the spread
        shrinks around it and the next pick explores elsewhere.
        """
        g = self.groups(u)
        k_xt = self.kernel(g, self.train_groups)
        k_tt = self.kernel(self.train_groups, self.train_groups)
        mean = k_xt @ np.linalg.solve(k_tt + self.noise * np.eye(len(self.t)), self.t)
        chosen: list[int] = []
        k_xc = np.zeros((len(u), 0))  # kernel between every row and the picks so far
        for _ in range(min(n, len(u))):
            # the pairs seen so far: the measured ones, then the picks (believed at their mean)
            k_ss = np.block([[k_tt, k_xt[chosen].T], [k_xt[chosen], k_xc[chosen]]])
            k_xs = np.concatenate([k_xt, k_xc], axis=1)
            solve = np.linalg.solve(k_ss + self.noise * np.eye(len(k_ss)), k_xs.T)
            var = np.maximum(1.0 - np.einsum("ij,ji->i", k_xs, solve), 0.0)
            score = mean + kappa * np.sqrt(var)
            score[chosen] = -np.inf
            chosen.append(int(np.argmax(score)))
            pick = [x[chosen[-1] : chosen[-1] + 1] for x in g]
            k_xc = np.concatenate([k_xc, self.kernel(g, pick)], axis=1)
        return np.array(chosen, dtype=int)


def fit_gp(
    u: np.ndarray,
    y: np.ndarray,
    pretrained: Pretrained | None = None,
    space: SearchSpace | None = None,
    lengths: tuple[float, float, float] | None = None,
    noise: float | None = None,
) -> GPPredictor:
    """Fit the Gaussian process to measured ``(u, y)``.

    The length scales (one per group of ``GROUPS``) and the noise come from
    coordinate ascent of the marginal likelihood over ``LENGTH_GRID`` and
    ``NOISE_GRID``, unless both are given.  The fit is deterministic: no seed.
    """
    fmap = resolve_features(pretrained, space)
    if space is None:
        raise TypeError("fit_gp needs the search space (space=...)")
    u = np.asarray(u, dtype=float)
    y = np.asarray(y, dtype=float)
    mean, std = float(y.mean()), float(y.std()) or 1.0
    t = (y - mean) / std
    encoder = frozen_encoder(fmap, pretrained)
    scale = arch_scale(fmap, encoder, space)
    choices, numbers = _recipe_groups(fmap, u)
    groups = [choices, numbers, scale(arch_design(fmap, encoder, u))]
    dist = [_sq_dist(g, g) for g in groups]

    def evidence(lengths: tuple[float, ...], noise: float) -> float:
        k = np.exp(-0.5 * sum(d / s**2 for d, s in zip(dist, lengths, strict=True)))
        return _log_evidence(k, t, noise)

    fixed = lengths is not None or noise is not None
    if fixed and (lengths is None or noise is None or len(lengths) != len(GROUPS)):
        raise TypeError(f"give noise and {len(GROUPS)} lengths ({', '.join(GROUPS)}), or neither")
    if not fixed:
        lengths, noise = (0.8,) * len(groups), 0.1
    best = evidence(lengths, noise)
    for _ in range(0 if fixed else SWEEPS):
        for i in range(len(groups) + 1):  # each group's length scale, then the noise
            for value in NOISE_GRID if i == len(groups) else LENGTH_GRID:
                if i == len(groups):
                    trial = lengths, value
                else:
                    trial = lengths[:i] + (value,) + lengths[i + 1 :], noise
                e = evidence(*trial)
                if e > best + 1e-9:
                    best, (lengths, noise) = e, trial
    gp = GPPredictor(fmap, encoder, scale, groups, lengths, noise, t, mean, std)
    resid = (gp.predict(u)[0] - y) / std
    gp.train_loss = float(
        np.mean(np.where(np.abs(resid) <= 1, 0.5 * resid**2, np.abs(resid) - 0.5))
    )
    return gp


@dataclass(frozen=True)
class GPHead:
    """The Gaussian-process head; fixed ``lengths`` and ``noise`` skip the evidence search."""

    lengths: tuple[float, float, float] | None = None
    noise: float | None = None
    name: str = "gp"

    def fit(self, u: np.ndarray, y: np.ndarray, ctx: FitContext) -> GPPredictor:
        return fit_gp(u, y, ctx.pretrained, ctx.space, self.lengths, self.noise)
