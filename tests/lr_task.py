"""A small search space whose best learning rate moves with the optimizer, for the head tests.

Shared by the linear and Gaussian-process head tests (fixtures ``lr_space`` and
``lr_pretrained`` in ``conftest.py``).
"""

from __future__ import annotations

import numpy as np
from fbnetv3_zoo.search.predictor import fit as P
from fbnetv3_zoo.search.predictor.features import feature_map
from fbnetv3_zoo.search.space.sampling import sample

LR_SPACE = {
    "name": "tiny-lr",
    "stem": {"channels": {"min": 8, "max": 16, "step": 4}},
    "resolution": 16,
    "head": {"feature_width": 64},
    "stages": [
        [{"kernel": [3, 5], "expansion": [2, 4, 6], "channels": {"min": 8, "max": 16, "step": 4},
          "repeats": {"min": 1, "max": 2}, "stride": 2}],
    ],
    "recipe": {
        "optimizer": ["rmsprop", "sgd", "adamw"],
        "lr": {"min": 0.01, "max": 0.5, "log": True},
        "mixup": {"min": 0.0, "max": 0.4},
    },
}  # fmt: skip


def columns(space, u):
    fmap = feature_map(space)
    x = fmap.transform(u)
    return x, {name: i for i, name in enumerate(fmap.names)}


def best_lr_moves_with_optimizer(space, u, noise=0.0, seed=0):
    """Each optimizer has its own best learning rate inside the range (a bump, not a slope)."""
    x, col = columns(space, u)
    lr = x[:, col["recipe.lr"]]
    best = np.select(
        [x[:, col["recipe.optimizer=sgd"]] > 0, x[:, col["recipe.optimizer=adamw"]] > 0],
        [0.8, 0.3],
        0.5,
    )
    y = 90 - 60 * (lr - best) ** 2 + 2 * x[:, col["recipe.optimizer=adamw"]]
    return y + noise * np.random.default_rng(seed).standard_normal(len(u))


def ranking_task(space):
    """16 noisy training pairs, their scores shuffled, 300 held-out pairs, and a function
    giving a fitted head's Kendall tau against the noise-free truth on the held-out pairs."""
    u = sample(space, 400, "uniform", seed=5)
    y = best_lr_moves_with_optimizer(space, u, noise=1.0)
    truth = best_lr_moves_with_optimizer(space, u)
    train, test = slice(0, 16), slice(100, 400)
    shuffled = np.random.default_rng(0).permutation(y[train])

    def tau_of(model):
        return P.rank_quality(model.predict(u[test])[0], truth[test])[0]

    return u[train], y[train], shuffled, u[test], tau_of
