"""Accuracy heads as plug-ins: a head written outside the package is one class and one line."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import numpy as np
import pytest
from fbnetv3_zoo.search.driver import SearchConfig, run_search
from fbnetv3_zoo.search.predictor import heads
from fbnetv3_zoo.search.predictor.heads import FitContext, UpperConfidenceBound, register_head
from fbnetv3_zoo.search.report.outputs import predictor_fits
from fbnetv3_zoo.search.store import Store
from fbnetv3_zoo.search.trainer import EvalTask

FITS: list[int] = []  # pairs each fit of the head below saw, in order


class NearestModel(UpperConfidenceBound):
    """Predicts the accuracy of the nearest measured vector; its spread is the distance to it."""

    def __init__(self, u: np.ndarray, y: np.ndarray) -> None:
        self.u, self.y, self.train_loss = u, y, 0.0

    def predict(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = np.linalg.norm(np.asarray(u)[:, None, :] - self.u[None], axis=2)
        nearest = d.argmin(axis=1)
        return self.y[nearest], d[np.arange(len(u)), nearest]

    def diagnostics(self) -> dict[str, float]:
        return {"pairs": float(len(self.y))}


class NearestHead:
    name = "nearest"

    def fit(self, u: np.ndarray, y: np.ndarray, ctx: FitContext) -> NearestModel:
        FITS.append(len(y))
        return NearestModel(np.asarray(u, dtype=float), np.asarray(y, dtype=float))


@pytest.fixture
def nearest():
    register_head("nearest", "the accuracy of the nearest measured pair", NearestHead)
    FITS.clear()
    yield
    heads.HEADS.pop("nearest")


def score(task: EvalTask) -> dict:
    """A fake training: a curve towards a value seeded by the pair itself."""
    key = json.dumps([task.arch, task.recipe], sort_keys=True).encode()
    final = 50 + 40 * np.random.default_rng(int(hashlib.sha256(key).hexdigest()[:8], 16)).random()
    metrics = [
        {"epoch": e + 1, "val_top1": final * (e + 1) / task.epochs, "ema_top1": None}
        for e in range(task.stop_after or task.epochs)
    ]
    return dict(cid=task.cid, status="done", metrics=metrics, error=None, wall_s=0.0)


def test_a_head_registered_outside_the_package_runs_a_search(tmp_path, nearest):
    config = SearchConfig(
        budget=9,
        initial=4,
        batch=2,
        remeasure=0,  # the test counts acquisition picks
        constraints=["macs<=1M"],
        settings={
            "jointnas": dict(
                head="nearest", pretrain_steps=0, pool=128, ga_population=8, ga_generations=2
            )
        },
        epochs=2,
    )
    run_search(config, tmp_path, evaluator=score, progress=False)
    db = sqlite3.connect(tmp_path / "search.sqlite")
    sources = [r[0] for r in db.execute("SELECT source FROM candidates ORDER BY id")]
    db.close()
    store = Store(tmp_path / "search.sqlite", readonly=True)
    fitted = [f["n"] for f in predictor_fits(store.notes())]
    store.close()
    assert sources == ["sobol"] * 4 + ["acquisition"] * 4 + ["genetic"]
    # every fit is ours: per iteration a held-out probe (from 6 pairs on: 3 held out), then
    # the refit on all pairs; the last fit guides the final (genetic) pick
    assert fitted == [4, 6, 8] and FITS == [4, 3, 6, 5, 8]
    report = (tmp_path / "report.md").read_text()
    assert "the accuracy of the nearest measured pair on 4-8 pairs" in report


def test_the_cli_and_config_read_heads_from_the_registry(nearest, capsys):
    from fbnetv3_zoo.search.config import ConfigError

    from fbnetv3_zoo.cli import main

    with pytest.raises(SystemExit):
        main(["search", "--help"])
    assert "nearest: the accuracy of the nearest measured pair" in " ".join(
        capsys.readouterr().out.split()
    )
    chosen = SearchConfig(settings={"jointnas": {"head": "nearest"}})
    assert chosen.strategy_settings().head == "nearest"
    heads.HEADS.pop("nearest")
    with pytest.raises(ConfigError, match="head"):
        SearchConfig(settings={"jointnas": {"head": "nearest"}})
    register_head("nearest", "back for the fixture's teardown", NearestHead)


def test_auto_is_a_rule_not_a_head():
    with pytest.raises(ValueError, match="rule"):
        register_head("auto", "anything", NearestHead)
    assert heads.resolve_head("auto", heads.AUTO_LINEAR_BELOW - 1) == "linear"
    assert heads.resolve_head("auto", heads.AUTO_LINEAR_BELOW) == "network"
    assert heads.head_choices()[0] == "auto" and set(heads.HEADS) >= {"network", "linear", "gp"}


class OvershootModel(NearestModel):
    """Extrapolates far past every measurement (40 points above the nearest pair)."""

    def predict(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, spread = super().predict(u)
        return mean + 40.0, spread


class OvershootHead(NearestHead):
    name = "overshoot"

    def fit(self, u: np.ndarray, y: np.ndarray, ctx: FitContext) -> OvershootModel:
        return OvershootModel(np.asarray(u, dtype=float), np.asarray(y, dtype=float))


def test_recorded_predictions_stay_inside_0_100(tmp_path):
    """Issue 18: a head may extrapolate past 100 %; what the run records and reports may not."""
    from fbnetv3_zoo.search.strategies import JointNASStrategy

    config = SearchConfig(
        budget=9,
        initial=4,
        batch=2,
        remeasure=0,  # the test counts acquisition picks
        constraints=["macs<=1M"],
        settings={"jointnas": dict(pretrain_steps=0, pool=128, ga_population=8, ga_generations=2)},
        epochs=2,
    )
    strategy = JointNASStrategy(config.strategy_settings(), head=OvershootHead())
    run_search(config, tmp_path, evaluator=score, progress=False, strategy=strategy)
    db = sqlite3.connect(tmp_path / "search.sqlite")
    predicted = [r[0] for r in db.execute("SELECT predicted FROM candidates WHERE predicted >= 0")]
    db.close()
    assert len(predicted) == 5 and max(predicted) == 100.0  # the raw ones were up to ~130
