"""The baselines a user would pick instead of JointNAS (issue 17): optuna-tpe and successive-halving.

Each must be reproducible from its seed, survive an interruption with the same picks,
stay inside the limits, and do what its name says: TPE concentrates on the good region
of a smooth objective, successive halving promotes the pairs whose partial curves lead.
On a finite pool every continuous proposal lands by the one shared rule.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import sqlite3

import numpy as np
import pytest
from fbnetv3_zoo.search.driver import SearchConfig, run_search
from fbnetv3_zoo.search.pool import (
    PoolEvaluator,
    PoolSource,
    append_records,
    load_pool,
)
from fbnetv3_zoo.search.sources import SobolSource, VectorSource, nearest_unvisited
from fbnetv3_zoo.search.space.constraints import parse_constraint
from fbnetv3_zoo.search.space.definition import load_space
from fbnetv3_zoo.search.space.sampling import sample_feasible
from fbnetv3_zoo.search.store import vector_key
from fbnetv3_zoo.search.strategies import (
    SuccessiveHalvingStrategy,
    epochs_spent,
    make_strategy,
)
from fbnetv3_zoo.search.trainer import EvalTask
from pool_records import pool_meta, rising_curve, run_record

from fbnetv3_zoo.errors import UserError

# optuna is an optional extra ([optuna], in [all]); without it only its tests are skipped
needs_optuna = pytest.mark.skipif(
    importlib.util.find_spec("optuna") is None, reason='needs pip install "fbnetv3-zoo[optuna]"'
)
BASELINES = [pytest.param("optuna-tpe", marks=needs_optuna), "successive-halving"]
EPOCHS = 5  # rungs 2 and 5 for successive halving with eta 3


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    """Plots are tested in test_search_run.py; these tests need the picks."""
    from fbnetv3_zoo.search.report import outputs as report

    monkeypatch.setattr(report, "write_plots", lambda out, store, picks=None, constraints=None: [])


@pytest.fixture(scope="module")
def space():
    return load_space("fbnetv3_proxy")


def truth(task: EvalTask) -> float:
    """A smooth objective of the recipe: lr near 0.1, little mixup and dropout, adamw."""
    r = task.recipe
    return (
        80
        - 10 * math.log(r["lr"] / 0.1) ** 2
        - 1000 * (r["mixup"] - 0.05) ** 2
        - 30 * r["dropout"]
        + 5 * (r["optimizer"] == "adamw")
    )


def curve(final: float, task: EvalTask, bump: float = 0.0) -> dict:
    """A rising learning curve ending at ``final`` after the task's full schedule; ``bump`` shifts it."""
    n = task.stop_after or task.epochs
    metrics = [
        {"epoch": e + 1, "val_top1": final * (e + 1) / task.epochs + bump, "ema_top1": None}
        for e in range(n)
    ]
    return dict(cid=task.cid, status="done", metrics=metrics, error=None, wall_s=0.0)


def evaluator(task: EvalTask) -> dict:
    return curve(truth(task), task)


def config(strategy: str, **kw) -> SearchConfig:
    base = dict(
        strategy=strategy,
        budget=16,
        initial=4,
        batch=3,
        epochs=EPOCHS,
        constraints=["macs<=0.35M", "macs<=1M"],
        remeasure=0,  # rungs and epochs are counted; re-measurement has its own tests
    )
    return SearchConfig(**{**base, **kw})


def rows(out) -> list[dict]:
    db = sqlite3.connect(out / "search.sqlite")
    db.row_factory = sqlite3.Row
    try:
        found = [dict(r) for r in db.execute("SELECT * FROM candidates ORDER BY id")]
    finally:
        db.close()
    for r in found:
        r["vector"] = json.loads(r["vector"])
        r["metrics"] = json.loads(r["metrics"] or "[]")
    return found


def picks(out) -> list[tuple]:
    """What a run chose and how long it trained each: the thing that must reproduce."""
    return [(vector_key(r["vector"]), r["source"], r["epochs"], r["score"]) for r in rows(out)]


def search(space, out, strategy: str, evaluate=evaluator, **kw) -> dict:
    return run_search(
        config(strategy, **kw),
        out,
        evaluator=evaluate,
        progress=False,
        source=SobolSource(space, num_classes=10),
    )


# ------------------------------------------------------------- reproducible
@pytest.mark.parametrize("strategy", BASELINES)
def test_same_seed_same_picks_other_seed_other_picks(space, tmp_path, strategy):
    search(space, tmp_path / "a", strategy)
    search(space, tmp_path / "b", strategy)
    search(space, tmp_path / "c", strategy, seed=1)
    assert picks(tmp_path / "a") == picks(tmp_path / "b")
    assert len(picks(tmp_path / "a")) == 16  # the budget, exactly
    assert [p[0] for p in picks(tmp_path / "a")] != [p[0] for p in picks(tmp_path / "c")]


class Interrupt(BaseException):
    """Stands in for Ctrl-C or a crash in the middle of a batch."""


@pytest.mark.parametrize("strategy", BASELINES)
@pytest.mark.parametrize("stop_at", [6, 11])
def test_resume_after_an_interruption_gives_the_uninterrupted_picks(
    space, tmp_path, strategy, stop_at
):
    search(space, tmp_path / "whole", strategy)
    calls = []

    def flaky(task: EvalTask) -> dict:
        if len(calls) == stop_at:
            raise Interrupt
        calls.append(task.cid)
        return evaluator(task)

    with pytest.raises(Interrupt):
        search(space, tmp_path / "resumed", strategy, evaluate=flaky)
    search(space, tmp_path / "resumed", strategy)
    assert picks(tmp_path / "resumed") == picks(tmp_path / "whole")


# ------------------------------------------------------------- constraints
@pytest.mark.parametrize("strategy", BASELINES)
def test_constraints_are_honoured(space, tmp_path, strategy):
    limits = ["macs<=0.29M", "params<=0.15M"]  # a small corner of the proxy space
    search(space, tmp_path, strategy, constraints=limits, budget=14)
    parsed = [parse_constraint(c) for c in limits]
    found = rows(tmp_path)
    assert len(found) == 14
    for r in found:
        m, p = np.array([r["macs"]]), np.array([r["params"]])
        assert any(bool(c.ok(m, p)[0]) for c in parsed), r
    final = [r for r in found if r["source"].endswith("-final")]
    assert len(final) == len(parsed)
    for r, c in zip(final, parsed, strict=True):  # one final pick inside each limit
        assert bool(c.ok(np.array([r["macs"]]), np.array([r["params"]]))[0])


@needs_optuna
def test_tpe_rejects_infeasible_asks_instead_of_training_them(space, tmp_path):
    """With a limit most of the space misses, every trained pair is inside and none repeats."""
    search(space, tmp_path, "optuna-tpe", constraints=["macs<=0.28M"], budget=12, initial=3)
    found = rows(tmp_path)
    assert len(found) == 12 and all(r["macs"] <= 280_000 for r in found)
    assert len({vector_key(r["vector"]) for r in found}) == 12


# ------------------------------------------------------------ what they do
@pytest.mark.slow
@needs_optuna
def test_tpe_concentrates_on_the_good_region_where_random_does_not(space, tmp_path):
    """Paired seeds: TPE's picks after its random start-up score higher than random search's."""
    gains = []
    for seed in range(3):
        means = {}
        for strategy in ("random", "optuna-tpe"):
            seen: list[float] = []

            def record(task: EvalTask, seen=seen) -> dict:
                seen.append(truth(task))
                return evaluator(task)

            search(
                space,
                tmp_path / f"{strategy}{seed}",
                strategy,
                evaluate=record,
                seed=seed,
                budget=32,
                batch=4,
                constraints=["macs<=1M"],
            )
            means[strategy] = float(np.mean(seen[12:]))  # after TPE's 10 start-up trials
        gains.append(means["optuna-tpe"] - means["random"])
    assert min(gains) > 0 and np.mean(gains) > 3, gains


def test_successive_halving_promotes_the_leaders_of_the_partial_curves(space, tmp_path):
    """Every promotion is in the top third at its rung when made; random promotion fails this."""

    def noisy(task: EvalTask) -> dict:
        # partial curves rank pairs like their final accuracy, plus a pair-fixed wobble
        spec_key = json.dumps([task.arch, task.recipe], sort_keys=True).encode()
        wobble = np.random.default_rng(int(hashlib.sha256(spec_key).hexdigest()[:8], 16))
        return curve(truth(task) + float(wobble.normal(0, 1)), task)

    search(space, tmp_path, "successive-halving", evaluate=noisy, budget=30, batch=3)
    found = rows(tmp_path)
    assert [r["epochs"] for r in found[:4]] == [EPOCHS] * 4  # the driver's first batch
    later = found[4:]
    assert {r["epochs"] for r in later} == {2, EPOCHS}  # rungs 2 and 5
    promoted = 0
    for r in later:
        if r["epochs"] != EPOCHS or r["source"] != "halving":
            continue
        promoted += 1
        earlier = [x for x in found if x["iteration"] < r["iteration"] and x["status"] == "done"]
        at_two = {}
        for x in earlier:  # every curve counts at epoch 2, the first batch's included
            at_two[vector_key(x["vector"])] = x["metrics"][1]["val_top1"]
        ranked = sorted(at_two.values(), reverse=True)
        assert at_two[vector_key(r["vector"])] >= ranked[len(ranked) // 3 - 1]
        assert any(
            vector_key(x["vector"]) == vector_key(r["vector"]) and x["epochs"] == 2 for x in earlier
        )
    assert promoted >= 4
    # the best partial curve of the run went on to the full proxy
    partial = [r for r in later if r["epochs"] == 2]
    best = max(partial, key=lambda r: r["score"])
    assert any(
        vector_key(r["vector"]) == vector_key(best["vector"]) and r["epochs"] == EPOCHS
        for r in later
    )


def test_successive_halving_rungs_and_epoch_accounting(space, tmp_path):
    strategy = SuccessiveHalvingStrategy()

    class Ctx:  # what rungs() reads: the config and the stored early-stopping epoch
        def __init__(self, epochs: int, stop: int | None) -> None:
            self.config = config("successive-halving", epochs=epochs)
            self.store = type("S", (), {"get": staticmethod(lambda key, d=None: stop)})()

    assert strategy.rungs(Ctx(5, 5)) == [2, 5]
    assert strategy.rungs(Ctx(27, None)) == [3, 9, 27]
    assert strategy.rungs(Ctx(9, 3)) == [3]  # scored at epoch 3: one rung, nothing to halve
    assert SuccessiveHalvingStrategy(min_epochs=1).rungs(Ctx(5, 5)) == [1, 2, 5]
    search(space, tmp_path, "successive-halving")
    found = rows(tmp_path)
    assert epochs_spent(found) == sum(r["epochs"] for r in found)
    promoted = sum(
        2
        for i, r in enumerate(found)
        if any(vector_key(x["vector"]) == vector_key(r["vector"]) for x in found[:i])
    )
    assert epochs_spent(found, resume_promoted=True) == epochs_spent(found) - promoted


# ------------------------------------------------------------ finite pools
def test_nearest_unvisited_is_the_one_landing_rule(space):
    u, _, _ = sample_feasible(space, 12, [parse_constraint("macs<=1M")], 10, seed=5)
    source = VectorSource(space, u, num_classes=10)
    vectors, macs, _ = source.all()
    everything = [parse_constraint("macs<=1M")]
    assert nearest_unvisited(source, vectors[:3], everything, set()) == [0, 1, 2]
    # a point between two pairs goes to the nearer; a visited or taken pair is skipped
    point = 0.8 * vectors[4] + 0.2 * vectors[7]
    assert nearest_unvisited(source, point, everything, set()) == [4]
    assert nearest_unvisited(source, point, everything, {vector_key(vectors[4])}) != [4]
    assert nearest_unvisited(source, np.stack([point, point]), everything, set())[0] == 4
    assert len(set(nearest_unvisited(source, np.stack([point] * 5), everything, set()))) == 5
    # only feasible pairs are landed on, and an exhausted source drops the rest
    tight = [parse_constraint(f"macs<={int(np.sort(macs)[2])}")]
    landed = nearest_unvisited(source, np.stack([point] * 5), tight, set())
    assert len(landed) == 3 and all(macs[i] <= np.sort(macs)[2] for i in landed)


@pytest.fixture(scope="module")
def pool(space, tmp_path_factory):
    """40 pairs, one training each, final accuracy rising with the vector's mean; no training."""
    path = tmp_path_factory.mktemp("pool") / "pool.jsonl.gz"
    u, macs, params = sample_feasible(space, 40, [parse_constraint("macs<=1M")], 10, seed=3)
    records = [pool_meta(space, EPOCHS)]
    for i in range(len(u)):
        final = 40 + 50 * float(np.mean(u[i]))
        curve = rising_curve(final, EPOCHS)
        records.append(run_record(space, i, u[i], macs[i], params[i], 0, curve, wall_s=1.0))
    append_records(path, records)
    return load_pool(path)


@pytest.mark.parametrize("strategy", BASELINES)
def test_baselines_run_on_a_pool_and_pick_only_its_pairs(space, pool, tmp_path, strategy):
    lookups = PoolEvaluator(pool)
    for out in ("a", "b"):
        run_search(
            config(strategy, constraints=["macs<=1M"], budget=14),
            tmp_path / out,
            evaluator=lookups,
            progress=False,
            source=PoolSource(space, pool),
        )
    assert picks(tmp_path / "a") == picks(tmp_path / "b")
    found = rows(tmp_path / "a")
    index = {vector_key(v) for v in pool.vectors()}
    assert len(found) == 14 and all(vector_key(r["vector"]) in index for r in found)
    if strategy == "optuna-tpe":  # each proposal landed on a pair nobody had visited
        assert len({vector_key(r["vector"]) for r in found}) == 14


# --------------------------------------------------------------- install
def test_missing_optuna_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "optuna", None)  # ``import optuna`` now raises ImportError
    with pytest.raises(UserError, match=r'pip install "fbnetv3-zoo\[optuna\]"') as err:
        make_strategy("optuna-tpe")
    assert "\n" not in str(err.value)


def test_cli_offers_both_baselines(capsys):
    from fbnetv3_zoo.cli import main

    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "optuna-tpe" in text and "successive-halving" in text
    assert 'pip install "fbnetv3-zoo[optuna]"' in text


def test_best_pair_per_limit_comes_from_full_trainings():
    """A short rung's score (another epoch) never outranks pairs trained to the scoring epoch."""
    from fbnetv3_zoo.search.report.outputs import best_per_constraint
    from fbnetv3_zoo.search.space.constraints import parse_constraint

    rows = [
        dict(id=1, macs=100, params=10, score=70.0, epochs=5),
        dict(id=2, macs=100, params=10, score=90.0, epochs=2),  # a rung of successive halving
        dict(id=3, macs=900, params=10, score=60.0, epochs=2),  # the only pair under no limit
    ]
    tight, loose = parse_constraint("macs<=200"), parse_constraint("macs<=1000")
    best = best_per_constraint(rows, [tight, loose], scoring_epoch=5)
    assert best[tight.text]["id"] == 1 and best[loose.text]["id"] == 1
    assert best_per_constraint(rows, [tight], scoring_epoch=None)[tight.text]["id"] == 2
    only_short = best_per_constraint(rows[1:], [loose], scoring_epoch=5)
    assert only_short[loose.text]["id"] == 2  # nothing full fits: the best short one still counts
