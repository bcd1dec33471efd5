"""The search as a library (issue 36): public names, the evaluator contract checked on the
first result, loud stops when candidates fail, and studies that grow."""

from __future__ import annotations

import json

import pytest
from search_result import candidate_rows
from test_search_run import _config, fake_evaluate

from fbnetv3_zoo.errors import UserError


def test_the_public_api_imports_from_the_package():
    from fbnetv3_zoo.search import (
        SearchConfig,
        Strategy,
        load_space,
        register_strategy,
        run_search,
    )

    assert callable(run_search) and callable(register_strategy) and callable(load_space)
    assert SearchConfig(budget=30).budget == 30 and isinstance(Strategy, type)


@pytest.mark.parametrize(
    "result, expect",
    [
        ({"top1": 80.0}, "no key 'cid'"),
        ([1, 2], "a list"),
        (
            dict(cid=0, status="done", metrics=[{"epoch": 1, "top1": 80.0}], error=None),
            "no 'val_top1' in any epoch (keys: epoch, top1)",
        ),
        (dict(cid=0, status="ok", metrics=[], error=None), "status 'ok'"),
        (dict(cid=0, status="done", metrics={"val_top1": 1.0}), "'metrics' as a dict"),
    ],
)
def test_a_wrong_evaluator_result_is_one_clear_error(tmp_path, result, expect):
    from fbnetv3_zoo.search import run_search

    def evaluator(task):
        return (
            {**result, "cid": task.cid} if isinstance(result, dict) and "cid" in result else result
        )

    with pytest.raises(UserError, match="the evaluator returned") as err:
        run_search(_config(), tmp_path, evaluator=evaluator, progress=False)
    assert expect in str(err.value) and len(str(err.value).splitlines()) == 1


def _failing(share_failing: float):
    """fake_evaluate, failing the first ``share_failing`` of every 10 candidate ids."""

    def evaluator(task):
        if task.cid % 10 < share_failing * 10:
            return dict(cid=task.cid, status="failed", metrics=[], error="KeyError: 'x'")
        return fake_evaluate(task)

    return evaluator


def test_too_many_failures_stop_and_the_same_command_retrains_them(tmp_path):
    from fbnetv3_zoo.search import SearchFailed, run_search

    with pytest.raises(SearchFailed, match=r"most common error \(\d+x\): KeyError: 'x'"):
        run_search(_config(), tmp_path, evaluator=_failing(0.7), progress=False)
    failed = [r for r in candidate_rows(tmp_path) if r["status"] == "failed"]
    assert failed
    summary = run_search(_config(), tmp_path, evaluator=fake_evaluate, progress=False)
    rows = candidate_rows(tmp_path)
    assert summary["failed"] == 0 and all(r["status"] == "done" for r in rows)
    assert len(rows) == 8


def test_a_few_failures_do_not_stop_a_search(tmp_path):
    from fbnetv3_zoo.search import run_search

    summary = run_search(_config(), tmp_path, evaluator=_failing(0.2), progress=False)
    assert summary["failed"] >= 1 and summary["done"] + summary["failed"] == 8


def test_a_study_grows_and_never_shrinks(tmp_path):
    from fbnetv3_zoo.search import run_search

    run_search(_config(budget=8), tmp_path, evaluator=fake_evaluate, progress=False)
    assert len(candidate_rows(tmp_path)) == 8
    summary = run_search(_config(budget=12), tmp_path, evaluator=fake_evaluate, progress=False)
    rows = candidate_rows(tmp_path)
    assert len(rows) == 12 and summary["done"] == 12
    assert max(r["iteration"] for r in rows) > max(r["iteration"] for r in rows[:8])
    with pytest.raises(UserError, match="budget: run has 12, now 8; a search can grow, not shrink"):
        run_search(_config(budget=8), tmp_path, evaluator=fake_evaluate, progress=False)


def _score(trial) -> float:
    """A deterministic objective: wider and higher-resolution pairs score higher."""
    width = sum(row.channels for stage in trial.arch.stages for row in stage)
    return 20 + width / 10 + trial.arch.input_size


def test_an_objective_returning_a_float_runs_a_search(tmp_path):
    from fbnetv3_zoo.search import run_search

    summary = run_search(_config(), tmp_path, objective=_score, progress=False)
    rows = candidate_rows(tmp_path)
    assert summary["done"] == 8 and all(r["status"] == "done" for r in rows)
    curves = [json.loads(r["metrics"]) for r in rows]
    assert all(len(c) == 1 and c[0]["val_top1"] > 20 for c in curves)


def test_an_objective_reporting_curves_feeds_early_stopping(tmp_path):
    from fbnetv3_zoo.search import Trial, run_search

    seen: list[Trial] = []

    def objective(trial: Trial) -> None:
        seen.append(trial)
        for epoch in range(1, trial.epochs + 1):
            trial.report(epoch, _score(trial) * epoch / trial.schedule_epochs)

    run_search(_config(), tmp_path, objective=objective, progress=False)
    rows = candidate_rows(tmp_path)
    first = [json.loads(r["metrics"]) for r in rows[:4]]
    assert all([m["epoch"] for m in c] == [1, 2, 3] for c in first)
    assert seen[0].seed == 0 and seen[0].schedule_epochs == 3 and seen[0].repeat == 0


@pytest.mark.parametrize(
    "returns, expect",
    [("80", "returned a str"), (None, "returned None for trial 1 and reported nothing")],
)
def test_an_objective_returning_the_wrong_thing_is_one_clear_error(tmp_path, returns, expect):
    from fbnetv3_zoo.search import run_search

    with pytest.raises(UserError, match=expect):
        run_search(_config(), tmp_path, objective=lambda trial: returns, progress=False)


def test_an_objective_that_raises_or_returns_nan_fails_that_candidate(tmp_path):
    from fbnetv3_zoo.search import run_search

    def objective(trial):
        if trial.number == 1:
            raise ValueError("bad recipe")
        return float("nan") if trial.number == 2 else _score(trial)

    summary = run_search(_config(), tmp_path, objective=objective, progress=False)
    errors = {r["id"]: r["error"] for r in candidate_rows(tmp_path) if r["status"] == "failed"}
    assert "ValueError: bad recipe" in errors[1] and "returned nan" in errors[2]
    assert summary["failed"] == 2
