"""The per-optimizer learning-rate features and the Bayesian linear head for few measured pairs."""

from __future__ import annotations

import numpy as np
import pytest
from fbnetv3_zoo.search.config import ConfigError, SearchConfig
from fbnetv3_zoo.search.predictor import fit as P
from fbnetv3_zoo.search.predictor.features import feature_map
from fbnetv3_zoo.search.predictor.heads import AUTO_LINEAR_BELOW, FitContext
from fbnetv3_zoo.search.predictor.heads import network as N
from fbnetv3_zoo.search.predictor.heads import resolve_head as head_for
from fbnetv3_zoo.search.predictor.heads.linear import (
    LinearHead,
    LinearPredictor,
    fit_linear,
    recipe_design,
)
from fbnetv3_zoo.search.space.definition import parse_space
from fbnetv3_zoo.search.space.encoding import snap
from fbnetv3_zoo.search.space.sampling import sample
from lr_task import LR_SPACE, best_lr_moves_with_optimizer, columns, ranking_task


def test_lr_gets_one_column_per_optimizer(lr_space):
    u = sample(lr_space, 200, "uniform", seed=1)
    x, col = columns(lr_space, u)
    fmap = feature_map(lr_space)
    per_opt = [col[f"recipe.lr|recipe.optimizer={o}"] for o in ("rmsprop", "sgd", "adamw")]
    chosen = x[:, [col[f"recipe.optimizer={o}"] for o in ("rmsprop", "sgd", "adamw")]]
    np.testing.assert_allclose(x[:, per_opt], chosen * x[:, [col["recipe.lr"]]])
    assert x.shape[1] == fmap.width == len(fmap.names)
    np.testing.assert_array_equal(fmap.inverse(x), snap(lr_space, u))  # derived: ignored


def test_no_per_optimizer_rate_without_both_dims():
    fixed = dict(LR_SPACE, recipe={"optimizer": "sgd", "lr": {"min": 0.01, "max": 0.5}})
    fmap = feature_map(parse_space(fixed, "fixed optimizer"))
    assert not fmap.conditional and not any("|" in n for n in fmap.names)


def test_recipe_design_is_second_order(lr_space):
    u = sample(lr_space, 50, "uniform", seed=2)
    d = recipe_design(feature_map(lr_space), u)
    # 3 one-hot + 2 centred numbers + 3 per-optimizer rates + 2 squares
    assert d.shape == (50, 10)


@pytest.mark.parametrize("use_pretraining", [True, False])
def test_linear_head_ranks_from_few_pairs(lr_space, lr_pretrained, use_pretraining):
    enc = lr_pretrained if use_pretraining else None
    u, y, shuffled, held_out, tau_of = ranking_task(lr_space)
    model = fit_linear(u, y, enc, space=lr_space)
    tau = tau_of(model)
    tau_chance = tau_of(fit_linear(u, shuffled, enc, space=lr_space))
    tau_network = tau_of(N.fit(u, y, enc, members=3, steps=300, seed=0, space=lr_space))
    mean, std = model.predict(held_out)
    assert tau > 0.6, tau  # measured 0.86 with or without pretraining (0.76-0.86 over 3 sets)
    assert tau > tau_chance + 0.4, (tau, tau_chance)  # shuffled: 0.08 / 0.10
    assert tau > tau_network + 0.1, (tau, tau_network)  # network: 0.31 / 0.25 (up to 0.61)
    assert (std > 0).all() and np.all(model.acquisition(held_out, kappa=1.0) > mean)


def test_linear_head_is_deterministic_and_uncertain_away_from_data(lr_space, lr_pretrained):
    u = sample(lr_space, 60, "uniform", seed=7)
    y = best_lr_moves_with_optimizer(lr_space, u, noise=0.5)
    a = LinearHead().fit(u[:20], y[:20], FitContext(pretrained=lr_pretrained, seed=0))
    b = LinearHead().fit(
        u[:20], y[:20], FitContext(pretrained=lr_pretrained, seed=9)
    )  # no seed used
    np.testing.assert_array_equal(a.predict(u)[0], b.predict(u)[0])
    _, std = a.predict(u)
    assert std[:20].mean() < std[20:].mean()


def test_marginal_likelihood_picks_the_noise(lr_space):
    u = sample(lr_space, 40, "uniform", seed=4)
    clean = fit_linear(u, best_lr_moves_with_optimizer(lr_space, u), space=lr_space)
    noisy = fit_linear(u, np.random.default_rng(0).normal(size=40), space=lr_space)
    assert clean.noise < noisy.noise


def test_fit_with_holdout_takes_the_head(lr_space, lr_pretrained):
    u = sample(lr_space, 24, "uniform", seed=9)
    y = best_lr_moves_with_optimizer(lr_space, u, noise=0.5)
    model, quality = P.fit_with_holdout(u, y, lr_pretrained, seed=0, head="linear", members=3)
    assert isinstance(model, LinearPredictor) and "recipe_prior" in quality
    assert quality["tau"] > 0.5, quality["tau"]  # measured 1.00; shuffled scores: -0.33
    assert model.predict(u)[0].shape == (24,)
    with pytest.raises(ValueError, match="head"):
        P.fit_with_holdout(u, y, lr_pretrained, head="forest")


def test_auto_head_switches_to_the_network_with_enough_pairs():
    assert head_for("auto", AUTO_LINEAR_BELOW - 1) == "linear"
    assert head_for("auto", AUTO_LINEAR_BELOW) == "network"
    assert head_for("network", 3) == "network" and head_for("linear", 500) == "linear"
    assert SearchConfig(settings={"jointnas": {"head": "gp"}}).strategy_settings().head == "gp"
    with pytest.raises(ConfigError, match="head"):
        SearchConfig(settings={"jointnas": {"head": "forest"}})


def test_batch_picks_spread_out_by_kriging_believer(lr_space, lr_pretrained):
    u = sample(lr_space, 300, "uniform", seed=11)
    y = best_lr_moves_with_optimizer(lr_space, u, noise=1.0)
    model = fit_linear(u[:12], y[:12], lr_pretrained)
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
