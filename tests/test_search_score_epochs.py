"""A candidate's score is its mean top-1 over its last ``score_epochs`` epochs (issue 18)."""

from __future__ import annotations

import json

import pytest
import yaml
from fbnetv3_zoo.search.config import ConfigError, SearchConfig
from fbnetv3_zoo.search.driver import run_search
from fbnetv3_zoo.search.early_stop import score_at
from fbnetv3_zoo.search.trainer import EvalTask
from search_result import candidate_rows
from search_settings import FAST_JOINTNAS


def _curve(*top1: float | None) -> list[dict]:
    return [{"epoch": e + 1, "val_top1": v, "ema_top1": None} for e, v in enumerate(top1)]


def test_score_at_averages_the_epochs_that_end_at_the_scoring_epoch():
    metrics = _curve(50.0, 60.0, 70.0, 80.0, 90.0)
    assert score_at(metrics, 5) == 90.0  # the window of one: the epoch alone
    assert score_at(metrics, 5, 3) == pytest.approx(80.0)
    assert score_at(metrics, 4, 3) == pytest.approx(70.0)  # an early-stopping epoch
    assert score_at(metrics, 2, 3) == pytest.approx(55.0)  # fewer epochs than the window
    assert score_at(metrics[:3], 5, 2) == pytest.approx(65.0)  # trained fewer than asked
    assert score_at([], 5, 3) is None


def test_score_at_skips_missing_epochs_but_not_a_missing_last_one():
    assert score_at(_curve(50.0, None, 90.0), 3, 3) == pytest.approx(70.0)
    assert score_at(_curve(50.0, 60.0, None), 3, 3) is None  # no accuracy at the end: failed


def test_the_default_is_three_epochs_for_the_architecture_search_and_one_for_a_fixed_model():
    assert SearchConfig().score_epochs == 3
    assert SearchConfig(model="resnet18", budget=8).score_epochs == 1
    assert SearchConfig(score_epochs=1).score_epochs == 1
    for bad in (0, 1.5, "3"):
        with pytest.raises(ConfigError, match=r"score_epochs \(--score-epochs\) must be"):
            SearchConfig(score_epochs=bad)


def rising(task: EvalTask) -> dict:
    """A curve that climbs 10 points per epoch to 30 + the pair's width / 20."""
    width = sum(row["channels"] for stage in task.arch["stages"] for row in stage)
    final = 30 + width / 20
    n = task.stop_after or task.epochs
    metrics = _curve(*(final - 10 * (task.epochs - 1 - e) for e in range(n)))
    return dict(cid=task.cid, status="done", metrics=metrics, error=None, wall_s=0.0)


@pytest.mark.slow
def test_a_search_scores_reports_and_writes_the_mean_of_the_last_epochs(tmp_path):
    config = SearchConfig(
        budget=8,
        initial=4,
        batch=2,
        epochs=4,
        constraints=["macs<=1M"],
        remeasure=0,
        seed=1,
        settings={"jointnas": FAST_JOINTNAS},
    )
    run_search(config, tmp_path, evaluator=rising, progress=False)
    for row in candidate_rows(tmp_path):
        last = json.loads(row["metrics"])[-1]["val_top1"]
        assert row["score"] == pytest.approx(last - 10)  # mean of last - 20, last - 10, last
    doc = yaml.safe_load((tmp_path / "best" / "macs_le_1M.yaml").read_text())
    assert doc["measured"]["epoch"] == 4 and doc["measured"]["epochs_averaged"] == 3
    assert "mean top-1 of epochs 2-4" in (tmp_path / "report.md").read_text()
