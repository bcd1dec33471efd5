"""Predictor pretraining and the adaptive genetic search."""

from __future__ import annotations

import numpy as np
import pytest
from fbnetv3_zoo.search.constraints import batch_stats, parse_constraint
from fbnetv3_zoo.search.genetic import adaptive_rates, genetic_search
from fbnetv3_zoo.search.predictor import MLP, fit, free_targets, pretrain, rank_quality
from fbnetv3_zoo.search.sampling import sample
from fbnetv3_zoo.search.space import load_space


@pytest.fixture(scope="module")
def space():
    return load_space("fbnetv3_proxy")


@pytest.fixture(scope="module")
def pretrained(space):
    return pretrain(space, samples=1024, steps=400, num_classes=10, seed=0)


def _heldout_error(space, encoder_state):
    """MSE on held-out free targets after a short fit of a fresh head (+ encoder)."""
    import torch
    from fbnetv3_zoo.search.predictor import _train

    u_train = sample(space, 64, "uniform", seed=11)
    u_test = sample(space, 512, "uniform", seed=12)
    both = np.concatenate([u_train, u_test])
    t = free_targets(space, both, 10)
    torch.manual_seed(0)
    model = MLP(space.size, outputs=2)
    if encoder_state is not None:
        model.encoder.load_state_dict(encoder_state)
    x = torch.as_tensor(u_train, dtype=torch.float32)
    _train(
        model, x, torch.as_tensor(t[:64], dtype=torch.float32), steps=100, lr=3e-3, batch=64, seed=0
    )
    with torch.no_grad():
        pred = model(torch.as_tensor(u_test, dtype=torch.float32)).numpy()
    return float(((pred - t[64:]) ** 2).mean())


def test_pretraining_lowers_heldout_error_on_free_targets(space, pretrained):
    assert pretrained.loss < 0.05
    assert _heldout_error(space, pretrained.state) < 0.5 * _heldout_error(space, None)


def test_ensemble_fit_ranks_a_smooth_target(space, pretrained):
    u = sample(space, 200, "uniform", seed=5)
    macs, _, _ = batch_stats(space, u, 10)
    y = 60 + 8 * np.log(macs / 1e6)
    model = fit(u[:40], y[:40], pretrained, members=3, steps=200)
    mean, std = model.predict(u[100:])
    assert mean.shape == std.shape == (100,)
    assert (std >= 0).all()
    assert rank_quality(mean, y[100:])[0] > 0.5
    assert np.all(model.acquisition(u[100:], kappa=1.0) >= mean)


def test_rank_quality_degenerate_cases():
    assert np.isnan(rank_quality(np.array([1.0, 2.0]), np.array([1.0, 2.0]))[0])
    tau, rho = rank_quality(np.arange(5.0), np.arange(5.0))
    assert tau == pytest.approx(1.0) and rho == pytest.approx(1.0)


def test_adaptive_rates_protect_good_individuals():
    f = np.array([1.0, 2.0, 3.0, 4.0])
    rates = adaptive_rates(f, fmax=4.0, favg=2.5, k_hi=1.0, k_lo=0.5)
    assert rates[-1] == 0.0  # the best is never disturbed
    assert rates[0] == rates[1] == 0.5  # below average: the constant rate
    assert 0 < rates[2] < 1


def test_genetic_search_respects_constraints_and_improves(space):
    cols = [i for i, d in enumerate(space.free_dims()) if d.name.startswith("stages")]

    def fitness(u):  # favours big kernels/expansions/widths: pushes against the limit
        return u[:, cols].sum(axis=1)

    limits = [parse_constraint("macs<=0.4M"), parse_constraint("params<=0.25M")]
    results = genetic_search(
        space, fitness, limits, num_classes=10, population=32, generations=25, seed=1
    )
    assert [r.constraint for r in results] == limits
    for r in results:
        macs, params, valid = batch_stats(space, r.vector[None], 10)
        assert valid[0] and r.constraint.ok(macs, params)[0]
        assert (macs[0], params[0]) == (r.macs, r.params)
        assert r.history[-1] > r.history[0]
        assert all(b >= a for a, b in zip(r.history, r.history[1:], strict=False))
        assert r.fitness == pytest.approx(fitness(r.vector[None])[0])
        np.testing.assert_array_equal(r.ranked[0], r.vector)
        assert len(r.ranked) == 32
