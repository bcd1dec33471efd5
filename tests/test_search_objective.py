"""The search as a library a user builds on (issue 36): an objective written as the README shows,
a study that grows like a fresh run, typed results, the built-in trainer as one objective, and
results a newcomer can read (console verdict, untrusted recipes, the accuracy plot)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml
from fbnetv3_zoo.search import SearchConfig, Trial, run_search  # public names only, as shown
from search_result import candidate_rows
from search_settings import TINY_JOINTNAS

from fbnetv3_zoo.errors import UserError

RECIPE_MODEL = "test_resnet"  # timm's smallest resnet
RECIPE_DATA = "digits:3"


# the README's objective (README.md, "or with your own training as the objective"), as shown
def objective(trial: Trial) -> float:
    """Your training: train trial.arch with trial.recipe, return top-1 in %."""
    width = sum(row.channels for stage in trial.arch.stages for row in stage)
    return min(99.0, 20 + width / 10 + trial.arch.input_size / 4)  # a stand-in


def _readme_config(budget: int) -> SearchConfig:
    return SearchConfig(budget=budget, initial=4, batch=2, strategy="random", remeasure=0)


def reporting_objective(trial: Trial) -> None:
    """The same score reported epoch by epoch (``trial.report``), as a training loop would."""
    top1 = objective(trial)
    for epoch in range(1, trial.epochs + 1):
        trial.report(epoch, top1 * epoch / trial.schedule_epochs)


def _trained(out) -> list[tuple]:
    return [(r["vector"], r["epochs"], r["score"]) for r in candidate_rows(out)]


@pytest.mark.slow
@pytest.mark.parametrize("fn", [objective, reporting_objective])
def test_a_objective_grows_a_study_like_a_fresh_run(tmp_path, fn):
    run_search(_readme_config(8), tmp_path / "grown", objective=fn, progress=False)
    assert len(candidate_rows(tmp_path / "grown")) == 8
    grown = run_search(_readme_config(12), tmp_path / "grown", objective=fn, progress=False)
    fresh = run_search(_readme_config(12), tmp_path / "fresh", objective=fn, progress=False)
    assert _trained(tmp_path / "grown") == _trained(tmp_path / "fresh")
    assert len(_trained(tmp_path / "fresh")) == 12
    picks = {c: (r["id"], r["score"]) for c, r in grown["best"].items()}
    assert picks == {c: (r["id"], r["score"]) for c, r in fresh["best"].items()}


def test_an_always_failing_objective_stops_after_the_first_batch(tmp_path):
    from fbnetv3_zoo.search import SearchFailed, run_search

    calls = []

    def objective(trial):
        calls.append(trial.number)
        return trial.recipe["no such field"]

    with pytest.raises(SearchFailed) as err:
        run_search(_readme_config(8), tmp_path, objective=objective, progress=False)
    message = str(err.value)
    assert len(message.splitlines()) == 1
    assert "every candidate of the first batch failed (4 of 4)" in message
    assert "most common error (4x): KeyError: 'no such field'" in message
    assert calls == [1, 2, 3, 4]  # nothing after the first batch


# typed results ---------------------------------------------------------------------------
def test_a_finished_trial_is_frozen_and_typed_from_the_evaluator_dict():
    from fbnetv3_zoo.search import EvalTask, FinishedTrial, Trial

    task = EvalTask(3, {"model": "m", "input_size": 32}, {"lr": 0.1}, "baseline", "digits", 4, 2)
    result = dict(cid=3, status="done", metrics=[{"epoch": 1, "val_top1": 50.0}], wall_s=1)
    done = FinishedTrial.from_result(task, result)
    assert isinstance(done.trial, Trial) and done.number == 3 and done.trial.epochs == 2
    assert done.done and done.metrics() == [{"epoch": 1, "val_top1": 50.0}]
    with pytest.raises(dataclasses.FrozenInstanceError):
        done.status = "failed"
    with pytest.raises(TypeError):
        done.curve[0]["val_top1"] = 99.0
    assert done.replace(score=50.0).score == 50.0 and done.score is None
    with pytest.raises(UserError, match="returned cid 4 for candidate 3"):
        FinishedTrial.from_result(task, {**result, "cid": 4})
    with pytest.raises(UserError, match="no key 'status'"):
        FinishedTrial.from_result(task, {"cid": 3})


# the built-in trainer is one objective ------------------------------------------------------
RECORDS = [
    dict(epoch=1, train_loss=2.0, lr=0.1, val_top1=30.0, ema_top1=None, note="text"),
    dict(epoch=2, train_loss=1.5, lr=0.05, val_top1=40.0, ema_top1=45.0, note="text"),
]


def test_the_builtin_trainer_reports_its_curve_through_the_objective_adapter(monkeypatch):
    from fbnetv3_zoo.search import EvalTask, TrainObjective, evaluate

    seen = []

    def fake_train(self, trial):
        seen.append((self.base_recipe, self.overrides, trial.epochs, trial.schedule_epochs))
        return [dict(r) for r in RECORDS]

    monkeypatch.setattr(TrainObjective, "train", fake_train)
    task = EvalTask(
        7, {"model": "m", "input_size": 32}, {}, "baseline", "digits", 5, 2, 0, None, {"a": 1}
    )
    result = evaluate(task)
    assert seen == [("baseline", {"a": 1}, 2, 5)]
    assert result["status"] == "done" and result["cid"] == 7
    # every number of every epoch kept, in the engine's order; text dropped
    assert result["metrics"] == [{k: v for k, v in r.items() if k != "note"} for r in RECORDS]


def test_a_search_trains_through_the_builtin_objective_by_default(tmp_path, monkeypatch):
    from fbnetv3_zoo.search import Objective, SearchConfig, TrainObjective
    from fbnetv3_zoo.search.driver import Search

    search = Search(SearchConfig(budget=8, initial=4), tmp_path / "run", progress=False)
    assert isinstance(search.evaluator, Objective)
    assert isinstance(search.evaluator.fn, TrainObjective)
    assert search.evaluator.fn.base_recipe == search.space.recipe_base


# results a newcomer can read ------------------------------------------------------------------
def _recipe_evaluator(full_flips: bool, level: float):
    """Recipe scores ordered by lr; the full-length trainings reverse the order if ``full_flips``."""

    def evaluator(task):
        top1 = level + 2 * np.log10(task.recipe["lr"])  # lr 0.003-3: level -5 to +1
        if full_flips and task.epochs == 4:  # the proxy check's full-length trainings
            top1 = level - 2 * np.log10(task.recipe["lr"])
        n = task.stop_after or task.epochs
        metrics = [{"epoch": e + 1, "val_top1": top1} for e in range(n)]
        return dict(cid=task.cid, status="done", metrics=metrics, error=None, wall_s=0.0)

    return evaluator


def _recipe_search(out, evaluator):
    from fbnetv3_zoo.search import SearchConfig, run_search

    config = SearchConfig(
        model=RECIPE_MODEL,
        data=RECIPE_DATA,
        resolution=16,
        budget=6,
        initial=3,
        full_epochs=4,
        epochs=2,
        strategy="jointnas",  # the compressed proxy and its check (jointnas-mf has neither)
        settings={"jointnas": TINY_JOINTNAS},
    )
    return run_search(config, out, evaluator=evaluator, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize(
    "flips, level, reason",
    [(True, 80.0, "proxy check is negative"), (False, 12.0, "near chance")],
)
def test_an_untrustworthy_recipe_search_says_so_and_train_refuses_it(
    tmp_path, monkeypatch, capsys, flips, level, reason
):
    from fbnetv3_zoo.recipes import Recipe
    from fbnetv3_zoo.search.report.outputs import report_run

    from fbnetv3_zoo.cli import main

    summary = _recipe_search(tmp_path / "run", _recipe_evaluator(flips, level))
    assert any(reason in p for p in summary["untrusted"])
    assert any("WARNING" in line and reason in line for line in summary["console"])
    recipe_file = tmp_path / "run" / "best" / "recipe.yaml"
    assert reason in Recipe.load(recipe_file).extra["untrusted"]
    # the CLI's end lines (search-report prints the same summary)
    assert main(["search-report", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    assert "verdict:" in printed and "is marked untrusted" in printed
    assert report_run(tmp_path / "run")["untrusted"] == summary["untrusted"]

    from fbnetv3_zoo.recipes import engine

    def trained(*args, **kwargs):
        raise SystemExit("trained")

    monkeypatch.setattr(engine, "train", trained)
    command = ["train", "--recipe", str(recipe_file), "--data", RECIPE_DATA, "--epochs", "1"]
    assert main(command) == 2
    error = capsys.readouterr().err
    assert "is marked untrusted" in error and reason in error and "pass --force" in error
    with pytest.raises(SystemExit, match="trained"):  # --force gets past the check
        main([*command, "--force"])


@pytest.mark.slow
def test_a_trustworthy_recipe_search_is_not_marked(tmp_path):
    summary = _recipe_search(tmp_path / "run", _recipe_evaluator(False, 80.0))
    assert summary["untrusted"] == []
    text = (tmp_path / "run" / "best" / "recipe.yaml").read_text()
    assert "untrusted" not in yaml.safe_load(text)["extra"]
    assert any("Proxy check:" in line and "Passed." in line for line in summary["console"])
    assert any(line.startswith("  Best recipe: ") for line in summary["console"])


def test_trust_problems_name_the_reason():
    from fbnetv3_zoo.search.report.trust import trust_problems

    assert trust_problems(85.0, 10, {"spearman": 0.5}) == []
    assert trust_problems(85.0, 10, None) == []  # not measured is not a reason
    assert "Spearman -1.00" in trust_problems(85.0, 10, {"spearman": -1.0})[0]
    assert "13.30 %" in trust_problems(13.3, 10, {"spearman": 0.5})[0]
    assert trust_problems(13.3, 100, None) == []  # 100 classes: 1 % chance


def test_the_accuracy_plot_draws_the_limits_and_the_picks(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from fbnetv3_zoo.search.report import plots
    from fbnetv3_zoo.search.space.constraints import parse_constraint

    labels = []

    def keep(fig, path):
        labels.extend(t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts())
        return path

    monkeypatch.setattr(plots, "_save", keep)
    done = [
        dict(id=i, macs=m, score=s, source="sobol", predicted=None, predicted_std=None)
        for i, (m, s) in enumerate([(2e5, 50.0), (3.5e5, 60.0)], start=1)
    ]
    limits = [parse_constraint("macs<=0.3M"), parse_constraint("macs<=0.4M")]
    plots._plot_acc_vs_macs(tmp_path, done, {"macs<=0.3M": done[0], "macs<=0.4M": done[1]}, limits)
    assert "limit macs<=0.3M" in labels and "limit macs<=0.4M" in labels
    assert "pick for macs<=0.3M (50.0 %)" in labels and "pick for macs<=0.4M (60.0 %)" in labels


def test_search_help_puts_the_common_options_first(capsys):
    from fbnetv3_zoo.cli import main

    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = capsys.readouterr().out
    order = [
        text.index(h)
        for h in ("common options:", "space, proxy and schedule details:", "where candidates")
    ]
    assert order == sorted(order)
    common = text[order[0] : order[1]]
    assert all(f in common for f in ("--out", "--model", "--data", "--budget", "--epochs"))
    assert "--device" in text[order[2] :] and "--gpus-per-trial" in text[order[2] :]


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1", "mps", None])
def test_the_device_setting_takes_torch_device_names(device):
    from fbnetv3_zoo.search import SearchConfig

    assert SearchConfig(device=device).device == device


def test_a_bad_device_names_the_accepted_ones():
    from fbnetv3_zoo.search import SearchConfig
    from fbnetv3_zoo.search.config import ConfigError

    with pytest.raises(
        ConfigError, match=r"device \(--device\) must be .*cpu, cuda, cuda:N or mps"
    ):
        SearchConfig(device="gpu")


def test_an_objective_returning_a_dict_of_the_wrong_key_is_one_clear_error(tmp_path):
    from fbnetv3_zoo.search import run_search

    calls = []

    def objective(trial):
        calls.append(trial.number)
        return {"top1": 80.0}

    with pytest.raises(UserError, match="the objective returned a dict for trial 1") as err:
        run_search(_readme_config(8), tmp_path, objective=objective, progress=False)
    assert len(str(err.value).splitlines()) == 1 and calls == [1]


def test_a_device_this_machine_lacks_is_refused_before_any_training(tmp_path, monkeypatch):
    import torch
    from fbnetv3_zoo.search import SearchConfig, run_search

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="--device cuda: no CUDA GPU is available"):
        run_search(SearchConfig(device="cuda"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_strategy_of_your_own_reads_typed_trials(tmp_path):
    from fbnetv3_zoo.search import FinishedTrial, Strategy
    from fbnetv3_zoo.search.strategies import Proposal, draw_unseen

    class Widest(Strategy):
        """Random draws; records what the typed view of the run shows it."""

        name = "widest"
        seen: list[list[FinishedTrial]] = []

        def ask(self, ctx, iteration, n):
            self.seen.append(ctx.trials("done"))
            u, m, p = draw_unseen(ctx, n, ctx.constraints, seed=iteration)
            return Proposal(u, m, p, "widest")

    run_search(_readme_config(8), tmp_path, objective=objective, strategy=Widest(), progress=False)
    rows = {r["id"]: r for r in candidate_rows(tmp_path)}
    last = Widest.seen[-1]
    assert len(Widest.seen) >= 2 and all(isinstance(t, FinishedTrial) for t in last)
    assert [t.number for t in last] == sorted(t.number for t in last)
    assert all(t.score == rows[t.number]["score"] and t.done for t in last)
    assert all(objective(t.trial) == t.score for t in last)  # the Trial it was trained as
