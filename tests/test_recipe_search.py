"""The recipe-only search for a fixed model: space, every strategy, resume, bad input, train roundtrip."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import yaml
from fbnetv3_zoo.recipes import Recipe
from fbnetv3_zoo.search.config import ConfigError
from fbnetv3_zoo.search.driver import SearchConfig, run_search
from fbnetv3_zoo.search.predictor.encoder import pretrain
from fbnetv3_zoo.search.predictor.features import feature_map
from fbnetv3_zoo.search.report.outputs import report_run
from fbnetv3_zoo.search.space.constraints import batch_stats
from fbnetv3_zoo.search.space.definition import SpaceError
from fbnetv3_zoo.search.space.encoding import decode
from fbnetv3_zoo.search.space.fixed_model import FixedModel, fixed_model_space
from fbnetv3_zoo.search.trainer import EvalTask
from search_settings import TINY_JOINTNAS

from fbnetv3_zoo.cli import main
from fbnetv3_zoo.errors import UserError

MODEL = "test_resnet"  # timm's smallest resnet: a real training takes well under a second
DATA = "digits:3"


def fake_evaluate(task: EvalTask) -> dict:
    """A deterministic stand-in for training: sgd near lr 0.3 without dropout is best."""
    r = task.recipe
    final = (
        60 + 10 * (r["optimizer"] == "sgd") - 5 * abs(np.log10(r["lr"] / 0.3)) - 20 * r["dropout"]
    )
    n = task.stop_after or task.epochs
    metrics = [{"epoch": e + 1, "val_top1": final * (e + 1) / task.epochs} for e in range(n)]
    return dict(cid=task.cid, status="done", metrics=metrics, error=None, wall_s=0.0)


def _config(**kw) -> SearchConfig:
    base = dict(
        model=MODEL,
        data=DATA,
        resolution=16,
        budget=6,
        initial=3,
        batch=2,
        full_epochs=4,
        strategy="jointnas",  # the proxy path; the default (jointnas-mf): test_search_jointnas_mf.py
        settings={"jointnas": TINY_JOINTNAS},
    )
    return SearchConfig(**{**base, **kw})


def _rows(out) -> list[dict]:
    db = sqlite3.connect(out / "search.sqlite")
    try:
        return [
            dict(zip(("id", "status"), r, strict=True))
            for r in db.execute("SELECT id, status FROM candidates")
        ]
    finally:
        db.close()


@pytest.fixture(scope="module")
def space():
    return fixed_model_space(MODEL, resolution=16, num_classes=10)


def test_fixed_model_space_has_recipe_columns_only(space):
    fmap = feature_map(space)
    assert fmap.arch_width == 0 and space.size == sum(not d.fixed for d in space.recipe)
    u = np.full((4, space.size), 0.3)
    macs, params, valid = batch_stats(space, u, 10)
    assert valid.all() and len(set(macs)) == 1 and params[0] == space.model_stats[1] > 0
    arch, recipe = decode(space, u[0])
    assert arch == FixedModel(MODEL, 16) and set(recipe) == {d.name[7:] for d in space.recipe}
    skipped = pretrain(space, samples=64, steps=5)  # MACs/params are one value: nothing to learn
    assert skipped.state is None and "fixed model" in skipped.skipped


def test_config_defaults_for_a_fixed_model():
    c = _config(full_epochs=None)
    assert (c.space, c.constraints, c.full_epochs, c.epochs) == ("recipe", ["none"], 100, 10)
    assert c.holdout == 0.2  # ranks on held-out training images, not on the reported split
    arch = SearchConfig()
    assert arch.holdout == 0.0
    # the demo's budget is one the heldout benchmark measured; a fixed model's runs are longer
    assert arch.budget == 24 and SearchConfig(model="resnet18").budget == 7  # jointnas-mf
    assert SearchConfig(model="resnet18", strategy="random").budget == 13  # proxy strategies
    assert SearchConfig(budget=9).budget == 9
    assert "model" not in arch.identity() and "holdout" not in arch.identity()  # unchanged
    with pytest.raises(
        ConfigError, match=r"holdout \(--holdout\) must be a number in \[0.0, 0.5\]"
    ):
        _config(holdout=0.7)
    # the base recipe is the first candidate of a recipe search; an architecture has no base
    assert c.start_at_base is True and arch.start_at_base is False
    assert "start_at_base" in c.identity() and "start_at_base" not in arch.identity()
    with pytest.raises(ConfigError, match=r"start_at_base \(--start-at-base\) must be true only"):
        SearchConfig(start_at_base=True)


def test_the_first_candidate_is_the_base_recipe(tmp_path):
    """Its searched fields are baseline's, so the pick is measured against the recipe to beat."""
    seen: list[tuple[int, dict]] = []

    def recording(task: EvalTask) -> dict:
        seen.append((task.cid, dict(task.recipe)))
        return fake_evaluate(task)

    config = dict(strategy="random", budget=3, initial=2, full_epochs=2, proxy_check=False)
    run_search(_config(**config), tmp_path / "on", evaluator=recording, progress=False)
    first = dict(seen)[min(dict(seen))]
    base = Recipe.load("baseline")
    assert first["optimizer"] == base.optimizer and first["lr"] == pytest.approx(base.lr)
    assert first["weight_decay"] == pytest.approx(base.weight_decay)
    assert first["mixup"] == first["dropout"] == first["ema_decay"] == 0.0
    seen.clear()
    off = dict(config, start_at_base=False)
    run_search(_config(**off), tmp_path / "off", evaluator=recording, progress=False)
    assert first not in [r for _, r in seen]  # the whole first batch drawn
    # a run made before the setting existed (identity without it) started without the base
    with pytest.raises(UserError, match="start_at_base: run has False, now True"):
        run_search(_config(**config), tmp_path / "off", evaluator=recording, progress=False)


def test_a_base_recipe_outside_the_ranges_is_named(tmp_path):
    from fbnetv3_zoo.search.space.encoding import base_recipe_vector

    path = tmp_path / "narrow.yaml"
    path.write_text(
        "name: narrow\nresolution: 16\nrecipe:\n  base: baseline\n  lr: {min: 0.5, max: 2.0}\n"
    )
    narrow = fixed_model_space(MODEL, space=path, num_classes=10)
    with pytest.raises(
        SpaceError, match=r"recipe.lr: 0.1 is outside .*'baseline' .*--no-start-at-base"
    ):
        base_recipe_vector(narrow)


@pytest.mark.slow
def test_candidates_rank_on_the_held_out_share_and_the_run_says_so(tmp_path):
    seen = []

    def recording(task: EvalTask) -> dict:
        seen.append(task.holdout)
        return fake_evaluate(task)

    run_search(_config(), tmp_path / "held", evaluator=recording, progress=False)
    assert seen and set(seen) == {0.2}  # proxy check included
    recipe = Recipe.load(tmp_path / "held" / "best" / "recipe.yaml")
    assert recipe.extra["search"]["holdout"] == 0.2
    assert (
        "**Ranked on held-out training images.** 20%"
        in (tmp_path / "held" / "report.md").read_text()
    )
    with pytest.raises(UserError, match=r"holdout: run has 0.2, now 0.1"):
        run_search(_config(holdout=0.1), tmp_path / "held", evaluator=recording, progress=False)
    run_search(_config(holdout=0.0), tmp_path / "val", evaluator=fake_evaluate, progress=False)
    assert "**Ranked on the validation split**" in (tmp_path / "val" / "report.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("head", ["linear", "network", "gp"])
def test_every_head_fits_on_recipe_features_alone(space, head):
    from fbnetv3_zoo.search.predictor.fit import fit_with_holdout
    from fbnetv3_zoo.search.space.sampling import sample
    from scipy.stats import spearmanr

    u = sample(space, 16, seed=1)
    y = 50 + 20 * u[:, 1] - 10 * u[:, 3]  # accuracy follows two recipe columns
    model, _ = fit_with_holdout(u, y, pretrain(space), head=head, space=space, members=2)
    assert spearmanr(model.predict(u)[0], y)[0] > 0.8  # it learned them from recipe columns alone


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["random", "jointnas", "optuna-tpe", "successive-halving"])
def test_every_strategy_writes_a_recipe_train_accepts(tmp_path, strategy):
    if strategy == "optuna-tpe":
        pytest.importorskip("optuna")
    summary = run_search(
        _config(strategy=strategy), tmp_path, evaluator=fake_evaluate, progress=False
    )
    assert summary["done"] == 6 and summary["best"]["none"]["arch"]["model"] == MODEL
    recipe = Recipe.load(tmp_path / "best" / "recipe.yaml")
    search = recipe.extra["search"]
    assert (search["model"], search["data"], search["budget"]) == (MODEL, DATA, 6)
    assert search["proxy"]["epochs"] == 1 and recipe.epochs == 4 and recipe.resolution == 16
    assert search["proxy_check"]["n"] == 3 and search["proxy_check"]["spearman"] == 1.0
    report = (tmp_path / "report.md").read_text()
    assert "**Fixed model:**" in report and "Spearman 1.00" in report
    assert "`best/recipe.yaml`" in report
    if strategy == "jointnas":  # pretraining is skipped for a fixed model, and the report says so
        assert "pretrained encoder" not in report and "head on raw features" in report


@pytest.mark.slow
def test_same_seed_same_recipe(tmp_path):
    picks = []
    for run in ("a", "b"):
        run_search(_config(), tmp_path / run, evaluator=fake_evaluate, progress=False)
        recipe = Recipe.load(tmp_path / run / "best" / "recipe.yaml").to_dict()
        recipe["extra"]["search"].pop("made_by")  # the command line names the folder
        picks.append(recipe)
    assert picks[0] == picks[1]


class Interrupt(Exception):
    """Stands in for Ctrl-C in the middle of the run."""


@pytest.mark.slow
def test_resume_trains_nothing_twice_and_refuses_another_model(tmp_path):
    calls: list[tuple[int, int]] = []

    def flaky(task):
        if len(calls) == 5:  # after the first batch and two of its full-length trainings
            raise Interrupt
        calls.append((task.cid, task.epochs))
        return fake_evaluate(task)

    with pytest.raises(Interrupt):
        run_search(_config(), tmp_path, evaluator=flaky, progress=False)
    again: list[tuple[int, int]] = []
    run_search(
        _config(),
        tmp_path,
        evaluator=lambda t: again.append((t.cid, t.epochs)) or fake_evaluate(t),
        progress=False,
    )
    assert not set(calls) & set(again)
    assert sorted(c for c, e in calls + again if e == 4) == [1, 2, 3]  # full length: once each
    assert all(r["status"] == "done" for r in _rows(tmp_path)) and len(_rows(tmp_path)) == 6
    (tmp_path / "best" / "recipe.yaml").unlink()
    assert (
        report_run(tmp_path)["best"]["none"]["arch"]["model"] == MODEL
    )  # search-report re-renders
    assert Recipe.load(tmp_path / "best" / "recipe.yaml").extra["search"]["proxy_check"]["n"] == 3
    with pytest.raises(UserError, match="model: run has 'test_resnet', now 'resnet18'"):
        run_search(_config(model="resnet18"), tmp_path, evaluator=fake_evaluate, progress=False)


def test_bad_inputs_are_one_line_naming_them(tmp_path):
    with pytest.raises(UserError, match="unknown model 'no_such_net'"):
        fixed_model_space("no_such_net", resolution=16, num_classes=10)
    no_ranges = tmp_path / "fixed.yaml"
    no_ranges.write_text(
        yaml.safe_dump({"resolution": 16, "recipe": {"base": "baseline", "lr": 0.1}})
    )
    with pytest.raises(SpaceError, match=r"fixed.yaml: recipe: no recipe ranges"):
        fixed_model_space(MODEL, no_ranges, num_classes=10)
    no_recipe = tmp_path / "arch.yaml"
    no_recipe.write_text(yaml.safe_dump({"resolution": 16}))
    with pytest.raises(SpaceError, match=r"arch.yaml: no recipe: section"):
        fixed_model_space(MODEL, no_recipe, num_classes=10)
    with pytest.raises(UserError, match="cannot take a 8x8 input .*larger --resolution"):
        fixed_model_space("fbnetv3_a", resolution=8, num_classes=10)
    with pytest.raises(ConfigError, match="moot for a fixed model"):
        _config(constraints=["macs<=1M"])
    with pytest.raises(SpaceError, match="recipe-only space"):
        run_search(SearchConfig(space="recipe", data=DATA), tmp_path / "r", progress=False)


@pytest.mark.slow
def test_cli_search_then_train_with_the_recipe(tmp_path, capsys):
    """Real trainings (a tiny model on 30 images), then `fbnetv3 train --recipe` with no --model."""
    out = tmp_path / "r"
    argv = ["search", "--model", MODEL, "--data", DATA, "--resolution", "16", "--budget", "3"]
    argv += ["--initial", "2", "--full-epochs", "2", "--strategy", "random", "--out", str(out)]
    assert main([*argv, "--quiet"]) == 0
    assert "best recipe for test_resnet" in capsys.readouterr().out
    recipe_file = out / "best" / "recipe.yaml"
    facts = Recipe.from_yaml(recipe_file).extra["search"]
    assert facts["proxy_check"]["n"] == 2 and facts["holdout"] == 0.2  # the CLI's default
    train = ["train", "--recipe", str(recipe_file), "--data", DATA, "--epochs", "1"]
    if Recipe.from_yaml(recipe_file).extra.get("untrusted"):  # a near-chance tiny search
        assert main([*train, "--no-progress"]) == 2
        assert "pass --force" in capsys.readouterr().err
        train.append("--force")
    assert main([*train, "--no-progress"]) == 0
    assert "test_resnet on digits" in capsys.readouterr().out


@pytest.mark.slow
def test_benchmark_script_end_to_end(tmp_path):
    """benchmarks/recipe_search.py on a tiny model: the table row, the interval, the searched recipe."""
    import importlib.util
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "benchmarks" / "recipe_search.py"  # run as a script
    # once: its worker processes import their functions from it as __main__
    out = tmp_path / "rs.md"
    argv = ["--models", "test_resnet:16", "--regimes", "low", "--low-epochs", "2", "--budget", "3",
            "--initial", "2", "--seeds", "2", "--no-proxy-check", "--jobs", "1", "--strategy", "random",
            "--low-per-class", "10", "--runs", str(tmp_path / "runs"), "--results", str(out)]  # fmt: skip
    subprocess.run([sys.executable, str(script), *argv], check=True, capture_output=True)
    text = out.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| test_resnet | low |"))
    assert "(n=2)" in row and ("vs baseline" in row or "vs fbnetv3" in row)
    assert "- test_resnet, low: " in text  # the searched recipe, as its changes from baseline
    # a search that hands back baseline (it starts there) reports baseline's runs as its own
    kept_baseline = "- test_resnet, low: baseline\n" in text
    runs = 4 if kept_baseline else 6  # 2 or 3 recipes x 2 seeds, kept for a rerun to skip
    assert f", {runs} final runs " in text  # the compute behind the table, final runs included
    finals = (tmp_path / "runs" / "final.jsonl").read_text().splitlines()
    assert len(finals) == runs
    cells = row.split(" | ")
    assert (cells[3] == cells[5]) == kept_baseline  # searched column = baseline column
    out.unlink()
    search_dir = next(p for p in (tmp_path / "runs").iterdir() if p.name.startswith("test_resnet@"))
    shutil.rmtree(search_dir)  # the table needs only the two jsonl files, not the search folder
    # the rest runs in this process, no worker started (a torch import fewer each)
    spec = importlib.util.spec_from_file_location("recipe_search_benchmark", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([*argv, "--report-only"]) == 0
    assert row in out.read_text().splitlines()  # the same table, from the records alone
    assert (tmp_path / "runs" / "final.jsonl").read_text().splitlines() == finals
    # a search that hands back another recipe gets its final runs trained afresh, presets do not
    log = tmp_path / "runs" / "searches.jsonl"
    summary = json.loads(log.read_text())
    summary["recipe"]["lr"] *= 0.5
    log.write_text(json.dumps(summary) + "\n")
    assert module.main([*argv, "--jobs", "0"]) == 0  # its two final runs, in this process
    rerun = (tmp_path / "runs" / "final.jsonl").read_text().splitlines()
    assert rerun[:runs] == finals
    assert [json.loads(r)["name"] for r in rerun[runs:]] == ["searched", "searched"]
    # other search settings, the same training: the presets' final runs serve this search too
    assert module.main([*argv, "--jobs", "0", "--budget", "4"]) == 0
    again = (tmp_path / "runs" / "final.jsonl").read_text().splitlines()
    assert again[: runs + 2] == rerun
    assert {json.loads(r)["name"] for r in again[runs + 2 :]} <= {"searched"}
    row = next(line for line in out.read_text().splitlines() if line.startswith("| test_resnet"))
    assert row.count("(n=2)") == 3  # baseline, fbnetv3 and the new search's pick


def test_the_predictor_learns_from_diverged_trainings_not_from_crashes(tmp_path):
    """A NaN loss is what a recipe does (scored as chance); a crash says nothing about it."""
    from fbnetv3_zoo.recipes.loop import TrainingDiverged
    from fbnetv3_zoo.search.store import DIVERGED, Store

    assert TrainingDiverged.__name__ == DIVERGED  # the name evaluate() records

    def unstable(task: EvalTask) -> dict:
        if task.recipe["lr"] > 0.3:
            error = "TrainingDiverged: loss became nan at epoch 1, step 3"
        elif task.recipe["dropout"] > 0.2:
            error = "RuntimeError: worker crashed"
        else:
            return fake_evaluate(task)
        return dict(cid=task.cid, status="failed", metrics=[], error=error, wall_s=0.0)

    run_search(_config(budget=8, proxy_check=False), tmp_path, evaluator=unstable, progress=False)
    store = Store(tmp_path / "search.sqlite", readonly=True)
    try:
        rows = store.candidates()
        notes = store.notes()
        _, _, y = store.measured(diverged_score=10.0)
    finally:
        store.close()
    report = (tmp_path / "report.md").read_text()
    assert "training(s) diverged** (NaN loss" in report and "chance top-1 (10.0 %)" in report
    kinds = [r["status"] if r["status"] == "done" else r["error"].split(":")[0] for r in rows]
    assert {"done", "TrainingDiverged", "RuntimeError"} <= set(kinds)
    assert int((y == 10.0).sum()) == kinds.count("TrainingDiverged")
    assert any("fit" in note for note in notes.values())
    for it, note in notes.items():
        if "fit" in note:  # fitted on every earlier done or diverged candidate, no crashed one
            earlier = [k for r, k in zip(rows, kinds, strict=True) if r["iteration"] < it]
            assert note["fit"]["n"] == len(earlier) - earlier.count("RuntimeError")


def test_the_benchmark_searches_with_the_cli_defaults_unless_told(tmp_path):
    """benchmarks/recipe_search.py: the CLI's recipe-search default (jointnas-mf at 3 full-run
    equivalents) when no flag is given; the committed table's flags still name its searches."""
    import argparse
    import importlib.util
    from pathlib import Path

    script = Path(__file__).parents[1] / "benchmarks" / "recipe_search.py"
    spec = importlib.util.spec_from_file_location("recipe_search_cells", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    common = dict(models="resnet18:32", regimes="low", low_per_class=30, low_epochs=100,
                  full_epochs=30, proxy_share=10, no_proxy_check=True, runs=str(tmp_path))  # fmt: skip
    plain = argparse.Namespace(**common, budget=None, initial=None, batch=None, strategy=None)
    (cell,) = module.cells_of(plain)
    assert cell["key"] == "resnet18@32_low_e100_b7_i1_jointnas-mf"
    assert (cell["batch"], cell["proxy_epochs"]) == (1, None)  # rungs: a fifth of the run
    old = argparse.Namespace(**common, budget=24, initial=8, batch=4, strategy="jointnas")
    (cell,) = module.cells_of(old)
    committed = Path(__file__).parents[1] / "benchmarks" / "results" / "recipe_search_runs"
    assert (committed / cell["key"]).is_dir() and cell["proxy_epochs"] == 10
