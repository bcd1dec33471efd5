"""The per-optimizer learning-rate features and the Bayesian linear head for few measured pairs."""

from __future__ import annotations

import numpy as np
import pytest
from fbnetv3_zoo.search import encoder as E
from fbnetv3_zoo.search import predictor as P
from fbnetv3_zoo.search.config import ConfigError, SearchConfig
from fbnetv3_zoo.search.encoding import snap
from fbnetv3_zoo.search.features import feature_map
from fbnetv3_zoo.search.heads import AUTO_LINEAR_BELOW, FitContext
from fbnetv3_zoo.search.heads import network as N
from fbnetv3_zoo.search.heads import resolve_head as head_for
from fbnetv3_zoo.search.heads.linear import LinearHead, fit_linear, recipe_design
from fbnetv3_zoo.search.sampling import sample
from fbnetv3_zoo.search.space import parse_space

SPACE = {
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


@pytest.fixture(scope="module")
def space():
    return parse_space(SPACE, "tiny test space")


@pytest.fixture(scope="module")
def pretrained(space):
    return E.pretrain(space, samples=512, steps=200, num_classes=10, seed=0)


def _columns(space, u):
    fmap = feature_map(space)
    x = fmap.transform(u)
    return x, {name: i for i, name in enumerate(fmap.names)}


def _best_lr_moves_with_optimizer(space, u, noise=0.0, seed=0):
    """Each optimizer has its own best learning rate inside the range (a bump, not a slope)."""
    x, col = _columns(space, u)
    lr = x[:, col["recipe.lr"]]
    best = np.select(
        [x[:, col["recipe.optimizer=sgd"]] > 0, x[:, col["recipe.optimizer=adamw"]] > 0],
        [0.8, 0.3],
        0.5,
    )
    y = 90 - 60 * (lr - best) ** 2 + 2 * x[:, col["recipe.optimizer=adamw"]]
    return y + noise * np.random.default_rng(seed).standard_normal(len(u))


def test_lr_gets_one_column_per_optimizer(space):
    u = sample(space, 200, "uniform", seed=1)
    x, col = _columns(space, u)
    fmap = feature_map(space)
    per_opt = [col[f"recipe.lr|recipe.optimizer={o}"] for o in ("rmsprop", "sgd", "adamw")]
    chosen = x[:, [col[f"recipe.optimizer={o}"] for o in ("rmsprop", "sgd", "adamw")]]
    np.testing.assert_allclose(x[:, per_opt], chosen * x[:, [col["recipe.lr"]]])
    assert x.shape[1] == fmap.width == len(fmap.names)
    np.testing.assert_array_equal(fmap.inverse(x), snap(space, u))  # derived: ignored


def test_no_per_optimizer_rate_without_both_dims():
    fixed = dict(SPACE, recipe={"optimizer": "sgd", "lr": {"min": 0.01, "max": 0.5}})
    fmap = feature_map(parse_space(fixed, "fixed optimizer"))
    assert not fmap.conditional and not any("|" in n for n in fmap.names)


def test_recipe_design_is_second_order(space):
    u = sample(space, 50, "uniform", seed=2)
    d = recipe_design(feature_map(space), u)
    # 3 one-hot + 2 centred numbers + 3 per-optimizer rates + 2 squares
    assert d.shape == (50, 10)


def ranking_task(space):
    """16 noisy training pairs, their scores shuffled, 300 held-out pairs, and a function
    giving a fitted head's Kendall tau against the noise-free truth on the held-out pairs."""
    u = sample(space, 400, "uniform", seed=5)
    y = _best_lr_moves_with_optimizer(space, u, noise=1.0)
    truth = _best_lr_moves_with_optimizer(space, u)
    train, test = slice(0, 16), slice(100, 400)
    shuffled = np.random.default_rng(0).permutation(y[train])

    def tau_of(model):
        return P.rank_quality(model.predict(u[test])[0], truth[test])[0]

    return u[train], y[train], shuffled, u[test], tau_of


@pytest.mark.parametrize("use_pretraining", [True, False])
def test_linear_head_ranks_from_few_pairs(space, pretrained, use_pretraining):
    enc = pretrained if use_pretraining else None
    u, y, shuffled, held_out, tau_of = ranking_task(space)
    model = fit_linear(u, y, enc, space=space)
    tau = tau_of(model)
    tau_chance = tau_of(fit_linear(u, shuffled, enc, space=space))
    tau_network = tau_of(N.fit(u, y, enc, members=3, steps=300, seed=0, space=space))
    mean, std = model.predict(held_out)
    assert tau > 0.6, tau  # measured 0.86 with or without pretraining (0.76-0.86 over 3 sets)
    assert tau > tau_chance + 0.4, (tau, tau_chance)  # shuffled: 0.08 / 0.10
    assert tau > tau_network + 0.1, (tau, tau_network)  # network: 0.31 / 0.25 (up to 0.61)
    assert (std > 0).all() and np.all(model.acquisition(held_out, kappa=1.0) > mean)


def test_linear_head_is_deterministic_and_uncertain_away_from_data(space, pretrained):
    u = sample(space, 60, "uniform", seed=7)
    y = _best_lr_moves_with_optimizer(space, u, noise=0.5)
    a = LinearHead().fit(u[:20], y[:20], FitContext(pretrained=pretrained, seed=0))
    b = LinearHead().fit(u[:20], y[:20], FitContext(pretrained=pretrained, seed=9))  # no seed used
    np.testing.assert_array_equal(a.predict(u)[0], b.predict(u)[0])
    _, std = a.predict(u)
    assert std[:20].mean() < std[20:].mean()


def test_marginal_likelihood_picks_the_noise(space):
    u = sample(space, 40, "uniform", seed=4)
    clean = fit_linear(u, _best_lr_moves_with_optimizer(space, u), space=space)
    noisy = fit_linear(u, np.random.default_rng(0).normal(size=40), space=space)
    assert clean.noise < noisy.noise


def test_fit_with_holdout_takes_the_head(space, pretrained):
    u = sample(space, 24, "uniform", seed=9)
    y = _best_lr_moves_with_optimizer(space, u, noise=0.5)
    model, quality = P.fit_with_holdout(u, y, pretrained, seed=0, head="linear", members=3)
    assert quality["head"] == "linear" and np.isfinite(quality["tau"])
    assert model.predict(u)[0].shape == (24,)
    with pytest.raises(ValueError, match="head"):
        P.fit_with_holdout(u, y, pretrained, head="forest")


def test_auto_head_switches_to_the_network_with_enough_pairs():
    assert head_for("auto", AUTO_LINEAR_BELOW - 1) == "linear"
    assert head_for("auto", AUTO_LINEAR_BELOW) == "network"
    assert head_for("network", 3) == "network" and head_for("linear", 500) == "linear"
    assert SearchConfig(settings={"jointnas": {"head": "gp"}}).strategy_settings().head == "gp"
    with pytest.raises(ConfigError, match="head"):
        SearchConfig(settings={"jointnas": {"head": "forest"}})


def test_batch_picks_spread_out_by_kriging_believer(space, pretrained):
    u = sample(space, 300, "uniform", seed=11)
    y = _best_lr_moves_with_optimizer(space, u, noise=1.0)
    model = fit_linear(u[:12], y[:12], pretrained)
    pool = u[12:]
    acq = model.acquisition(pool, kappa=2.0)
    plain = np.argsort(-acq, kind="stable")[:6]
    batch = model.pick_batch(pool, 6, kappa=2.0)
    assert len(set(batch.tolist())) == 6 and batch[0] == plain[0]
    # kappa 0 ranks by the mean, which a believed measurement does not move
    np.testing.assert_array_equal(
        model.pick_batch(pool, 6, kappa=0.0), np.argsort(-model.predict(pool)[0])[:6]
    )
    assert len(model.pick_batch(pool[:3], 6)) == 3

    def spread(idx):
        d = model.design(pool[idx])
        return np.mean([np.linalg.norm(a - b) for i, a in enumerate(d) for b in d[i + 1 :]])

    assert spread(batch) > spread(plain), (spread(batch), spread(plain))
