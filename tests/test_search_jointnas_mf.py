"""jointnas-mf (issue 40): JointNAS on rungs of the full schedule, a predictor with the fidelity as input.

No training: unit tests read a hand-made store; the driver tests answer with made-up curves.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from fbnetv3_zoo.search.config import SearchConfig
from fbnetv3_zoo.search.driver import run_search
from fbnetv3_zoo.search.pool import append_records
from fbnetv3_zoo.search.predictor.features import feature_map
from fbnetv3_zoo.search.predictor.fidelity import (
    fidelity_design,
    fidelity_feature,
    fit_fidelity,
)
from fbnetv3_zoo.search.sources import VectorSource
from fbnetv3_zoo.search.space.constraints import batch_stats, parse_constraint
from fbnetv3_zoo.search.space.fixed_model import fixed_model_space
from fbnetv3_zoo.search.space.sampling import sample_feasible
from fbnetv3_zoo.search.store import DIVERGED, Store, vector_key
from fbnetv3_zoo.search.strategies import (
    STRATEGIES,
    Context,
    JointNASMFStrategy,
    SuccessiveHalvingStrategy,
)
from fbnetv3_zoo.search.strategies.halving import rung_epochs
from fbnetv3_zoo.search.strategies.jointnas_mf import fidelity_points
from fbnetv3_zoo.search.strategy_settings import SettingsError
from fbnetv3_zoo.search.trainer import EvalTask
from pool_records import pool_meta, run_record

from fbnetv3_zoo.errors import UserError

FULL = 40
NONE = parse_constraint("none")


@pytest.fixture(scope="module")
def space():
    return fixed_model_space("test_resnet", resolution=16, num_classes=10)


@pytest.fixture(scope="module")
def vectors(space):
    return sample_feasible(space, 24, [NONE], 10, seed=0)[0]


def rising(final: float, epochs: int, full: int = FULL, late: float = 0.0) -> list[dict]:
    """A curve rising to ``final`` at ``full`` epochs, cut at ``epochs``; ``late`` > 0 climbs later."""
    out = []
    for e in range(1, epochs + 1):
        share = (e / full) ** (1.0 + late)
        out.append(dict(epoch=e, val_top1=10.0 + (final - 10.0) * share))
    return out


class FakeStore:
    """What the strategy reads from a store: its rows and the early-stopping epoch."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def candidates(self, status: str | None = None) -> list[dict]:
        return [r for r in self.rows if status is None or r["status"] == status]

    def get(self, key: str, default=None):
        return FULL if key == "stop_epoch" else default

    def known_vectors(self) -> set:
        return {vector_key(r["vector"]) for r in self.rows}

    def count(self) -> int:
        return len(self.rows)


def row(cid: int, vector: np.ndarray, metrics: list[dict], status: str = "done", **kw) -> dict:
    return dict(
        id=cid,
        vector=[float(v) for v in vector],
        status=status,
        metrics=metrics,
        planned_epochs=kw.pop("planned", None if len(metrics) >= FULL else len(metrics)),
        repeat_of=kw.pop("repeat_of", None),
        error=kw.pop("error", None),
        macs=1,
        params=1,
        **kw,
    )


def context(space, vectors, rows: list[dict]) -> Context:
    config = SearchConfig(model="test_resnet", epochs=FULL, full_epochs=FULL, constraints=["none"])
    source = VectorSource(space, vectors, num_classes=10)
    return Context(space, source, [NONE], 10, config, FakeStore(rows))


# ------------------------------------------------------------------ rungs
def test_rung_schedule_is_the_halving_rule_at_shares_of_the_full_schedule(space, vectors):
    assert rung_epochs(40, 4, 10) == [10, 40]
    assert rung_epochs(40, 3, 2) == [2, 5, 14, 40]  # successive-halving's own schedule
    ctx = context(space, vectors, [])
    assert SuccessiveHalvingStrategy().rungs(ctx) == [2, 5, 14, 40]
    assert JointNASMFStrategy().rungs(ctx) == [8, 40]  # default: factor 5, a fifth at least
    assert JointNASMFStrategy(rung_factor=2, min_share=0.25).rungs(ctx) == [10, 20, 40]
    assert JointNASMFStrategy(rung_factor=3, min_share=0.1).rungs(ctx) == [5, 14, 40]
    assert JointNASMFStrategy(min_share=1.0).rungs(ctx) == [40]  # one rung: no halving
    assert "jointnas-mf" in STRATEGIES
    with pytest.raises(SettingsError, match="promote"):
        JointNASMFStrategy(promote="best")
    # the settings path every strategy shares: SearchConfig keys, pinned with the run
    config = SearchConfig(strategy="jointnas-mf", settings={"jointnas-mf": {"rung_factor": 3}})
    assert (
        config.strategy_settings().rung_factor == 3 and config.strategy_settings().min_share == 0.2
    )


# -------------------------------------------------------------- predictor
def test_the_fidelity_is_an_input_of_the_predictor(space, vectors):
    assert fidelity_feature(np.array([1, 40, 80]), 40).tolist() == [-1.0, 0.0, 0.0]
    fmap = feature_map(space)
    design, recipe, pair = fidelity_design(fmap, vectors[:3], fidelity_feature(10, 40))
    assert design.shape[1] == 2 * pair + 2 and recipe <= pair
    z = math.log(10 / 40) / math.log(40)
    assert np.allclose(design[:, pair], z) and np.allclose(design[:, pair + 1], z * z)
    assert np.allclose(design[:, pair + 2 :], design[:, :pair] * z)
    # every curve gives a point per rung it covers: the full one 2, the 10-epoch one 1
    ctx = context(
        space, vectors, [row(1, vectors[0], rising(80, 40)), row(2, vectors[1], rising(60, 10))]
    )
    strategy = JointNASMFStrategy(rung_factor=4, min_share=0.25)  # rungs 10 and 40
    lad = strategy.ladder(ctx)
    u, epochs, y = fidelity_points(ctx, lad, chance=10.0)
    assert sorted(epochs.tolist()) == [10, 10, 40] and len(u) == len(y) == 3
    # short curves sit lower than long ones: the head learns it from the fidelity alone
    rows = [row(k + 1, vectors[k], rising(70 + k, 40)) for k in range(6)]
    u, epochs, y = fidelity_points(ctx := context(space, vectors, rows), strategy.ladder(ctx), 10.0)
    model = fit_fidelity(u, epochs, y, FULL, space)
    assert (model.predict_at(vectors[:6], 10)[0] + 20 < model.predict(vectors[:6])[0]).all()
    assert np.allclose(model.predict(vectors[:6])[0], model.predict_at(vectors[:6], FULL)[0])


# -------------------------------------------------------------- promotion
def ladder_rows(vectors, finals: list[float], epochs: int) -> list[dict]:
    """One full-length first batch, then pairs measured at ``epochs``."""
    rows = [row(1, vectors[0], rising(50, FULL))]
    for k, final in enumerate(finals):
        rows.append(row(k + 2, vectors[k + 1], rising(final, epochs)))
    return rows


def test_promotions_take_the_best_third_by_the_chosen_rule(space, vectors):
    finals = [30, 90, 60, 80, 40, 70, 50, 20]  # 8 pairs at rung 5, plus the first batch: N = 9
    ctx = context(space, vectors, ladder_rows(vectors, finals, 5))
    measured = JointNASMFStrategy(rung_factor=3, min_share=0.1, promote="measured")
    picks = measured.ask(ctx, 1, 5)
    assert picks.epochs[:3] == [14, 14, 14]  # floor(9 / 3) promoted to the next rung
    best = [vector_key(vectors[k + 1]) for k in np.argsort(finals)[::-1][:3]]
    assert [vector_key(v) for v in picks.u[:3]] == best
    assert picks.epochs[3:] == [5, 5]  # the rest: new starts at the lowest rung
    predicted = JointNASMFStrategy(rung_factor=3, min_share=0.1, promote="predicted")
    lad = predicted.ladder(ctx)
    assert lad.model is not None
    keys = list(lad.curves)  # the first batch's full curve covers rung 5 and is ranked too
    full = lad.model.predict(np.array([lad.curves[k]["vector"] for k in keys]))[0]
    top = [keys[i] for i in np.argsort(-full, kind="stable")[:3]]
    order = [k for k in top if len(lad.curves[k]["metrics"]) < FULL]  # not the full one again
    proposal = predicted.ask(ctx, 1, 3)
    assert [
        vector_key(v) for v, e in zip(proposal.u, proposal.epochs, strict=True) if e == 14
    ] == order
    # a promoted pair is not promoted again to the rung it reached
    promoted = ladder_rows(vectors, finals, 5) + [row(20, picks.u[0], rising(90, 14))]
    again = measured.ask(context(space, vectors, promoted), 2, 3)
    assert vector_key(picks.u[0]) not in {
        vector_key(v) for v, e in zip(again.u, again.epochs, strict=True) if e == 14
    }


# ------------------------------------------------------------------ drops
def test_pairs_near_chance_or_diverged_at_a_rung_are_dropped_and_counted(space, vectors):
    rows = ladder_rows(vectors, [11.0, 60.0, 70.0], 10)  # the first sits at chance at rung 10
    rows.append(
        row(9, vectors[9], [], status="failed", planned=10, error=f"{DIVERGED}: loss is nan")
    )
    ctx = context(space, vectors, rows)
    strategy = JointNASMFStrategy(rung_factor=4, min_share=0.25, promote="measured")
    final = strategy.fine(ctx, 5)
    assert final.notes["dropped"] == 2
    why = {d["id"]: d["why"] for d in final.notes["dropped_pairs"]}
    assert why == {2: "near chance", 9: "diverged"}
    assert vector_key(final.u[0]) == vector_key(vectors[3])  # the best survivor, at full length
    assert final.epochs == [None]
    # the only pair on a rung sits at chance: it is no finalist, a new pair is
    lone = context(space, vectors, ladder_rows(vectors, [11.0], 10))
    fresh = strategy.fine(lone, 2)
    assert fresh.notes["dropped"] == 1 and vector_key(fresh.u[0]) not in lone.store.known_vectors()


# ----------------------------------------------------- the driver, end to end
def made_up(task: EvalTask) -> dict:
    """A made-up curve: the final top-1 grows with the learning rate's log, ending at the schedule."""
    final = 40.0 + 8.0 * math.log10(task.recipe["lr"] / 1e-4)
    n = task.stop_after or task.epochs
    metrics = [
        dict(epoch=e, val_top1=10 + (final - 10) * e / task.epochs, ema_top1=None)
        for e in range(1, n + 1)
    ]
    return dict(cid=task.cid, status="done", metrics=metrics, error=None, wall_s=0.0)


def stored(out) -> list[dict]:
    store = Store(out / "search.sqlite", readonly=True)
    try:
        return store.candidates()
    finally:
        store.close()


def mf_search(space, vectors, out, seed: int = 0, remeasure: int = 1) -> list[dict]:
    config = SearchConfig(
        model="test_resnet",
        epochs=8,
        full_epochs=8,
        proxy_check=False,
        strategy="jointnas-mf",
        budget=9,
        initial=2,
        batch=2,
        remeasure=remeasure,
        seed=seed,
        settings={"jointnas-mf": {"rung_factor": 2, "min_share": 0.25, "pool": 64}},
        start_at_base=False,  # made-up vectors: the source does not hold the base recipe
    )
    source = VectorSource(space, vectors, num_classes=10)
    run_search(config, out, evaluator=made_up, progress=False, source=source)
    return stored(out)


def test_finalists_train_at_full_length_and_are_re_measured(space, vectors, tmp_path, monkeypatch):
    from fbnetv3_zoo.search.report import outputs as report

    monkeypatch.setattr(report, "write_plots", lambda *a, **k: [])
    rows = mf_search(space, vectors, tmp_path / "a")
    assert {r["epochs"] for r in rows if r["iteration"] == 0} == {8}
    rungs = [r for r in rows if r["source"] == "mf-rung"]
    assert rungs and {r["epochs"] for r in rungs} <= {2, 4}  # rungs 2, 4 (8: finalists only)
    final = [r for r in rows if r["source"] == "mf-final"]
    assert len(final) == 1 and final[0]["epochs"] == 8
    assert vector_key(final[0]["vector"]) in {vector_key(r["vector"]) for r in rungs}
    again = [r for r in rows if r["repeat_of"] is not None]
    full = [r for r in rows if r["epochs"] == 8 and r["repeat_of"] is None]
    assert len(again) == 1 and again[0]["epochs"] == 8
    assert again[0]["repeat_of"] == max(full, key=lambda r: (r["score"], -r["id"]))["id"]
    assert len(rows) == 9


def test_same_seed_same_proposals(space, vectors, tmp_path, monkeypatch):
    from fbnetv3_zoo.search.report import outputs as report

    monkeypatch.setattr(report, "write_plots", lambda *a, **k: [])

    def trace(rows):
        return [(vector_key(r["vector"]), r["epochs"], r["source"]) for r in rows]

    first = trace(mf_search(space, vectors, tmp_path / "a", seed=3, remeasure=0))
    assert first == trace(mf_search(space, vectors, tmp_path / "b", seed=3, remeasure=0))
    assert first != trace(mf_search(space, vectors, tmp_path / "c", seed=4, remeasure=0))


# ------------------------------------------------- the recipe-pool benchmark
def bench():
    """benchmarks/search.py as a module (a script, not part of the package)."""
    path = Path(__file__).parents[1] / "benchmarks" / "search.py"
    spec = importlib.util.spec_from_file_location("search_benchmark_mf", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pool_path(space, vectors, tmp_path_factory) -> Path:
    """8 recipes x 2 seeds of 8 epochs; recipe 0 sits at chance (10 classes)."""
    path = tmp_path_factory.mktemp("mf_pool") / "pool.jsonl.gz"
    meta = pool_meta(space, 8, "digits:3", kind="recipe_pool", model="test_resnet", resolution=16)
    records = [meta]
    macs, params, _ = batch_stats(space, vectors[:8], 10)
    for i in range(8):
        final = 10.0 if i == 0 else 40.0 + 6.0 * i
        for s in range(2):
            metrics = (
                rising(final + s, 8, full=8)
                if i
                else [dict(epoch=e, val_top1=10.0) for e in range(1, 9)]
            )
            records.append(run_record(space, i, vectors[i], macs[i], params[i], s, metrics))
    append_records(path, records)
    return path


@pytest.mark.slow
def test_the_pool_report_counts_dropped_recipes_and_compares_to_pruned_tpe(pool_path):
    module = bench()
    flags = ["--pool", str(pool_path), "--min-seeds", "2", "--fre", "3"]
    args = module.parse_args(
        [*flags, "--strategies", "jointnas-mf:rung_factor=4,start_at_base=false"]
    )
    _, pool = module.load_snapshot(Path(args.pool), args.min_seeds)
    module._set_pool(pool)
    run = module.one_search((args, "jointnas-mf:rung_factor=4,start_at_base=false", 0))
    assert len(run["dropped"]) == 1 and run["dropped"][0] >= 0 and len(run["fitted"]) == 1
    boot = module.Paired(2)
    runs = [dict(name="random", seed=s, dropped=None) for s in (0, 1)]
    runs += [dict(name="jointnas-mf", seed=s, dropped=[s, 2.0]) for s in (0, 1)]
    table = module.dropped_table([2.0, 3.0], runs, ["random", "jointnas-mf"], boot)
    assert table[2] == "| full-run equivalents | jointnas-mf |"  # random drops nothing by design
    assert table[4].startswith("| 2 | 0.50 ") and table[5].startswith("| 3 | 2.00 ")
    by_fre = {
        "optuna-tpe-pruned": np.array([[4.0], [6.0]]),
        "jointnas-mf": np.array([[2.0], [3.0]]),
    }
    versus = module.versus_table("optuna-tpe-pruned", [3.0], by_fre, boot)
    assert versus[4].startswith("| 3 | -2.50 ") and "0.50 [" in versus[4]
    assert (
        module.versus_table("optuna-tpe-pruned", [3.0], {"random": by_fre["jointnas-mf"]}, boot)
        == []
    )


# ------------------------------------------------------------- the CLI default
def test_jointnas_mf_with_a_model_runs_on_prefixes_of_the_full_run():
    from fbnetv3_zoo.search.cli import strategy_options

    default = SearchConfig(model="resnet18")  # the default of a recipe search (the tune pool's)
    assert (default.strategy, default.epochs, default.proxy_check) == ("jointnas-mf", 100, False)
    # 3 full-run equivalents: the base at full length, 5 rung trainings at a fifth, 1 finalist
    shape = (default.initial, default.batch, default.remeasure, default.budget)
    assert shape == (1, 1, 0, 7) and default.strategy_settings().promote == "measured"
    assert SearchConfig(model="resnet18", budget=9, initial=2).budget == 9  # given values win
    plain = SearchConfig(model="resnet18", strategy="jointnas-mf")
    assert (plain.strategy, plain.epochs, plain.full_epochs, plain.proxy_check) == (
        "jointnas-mf",
        100,
        100,
        False,
    )
    arch = SearchConfig()  # the architecture search: as before
    assert (arch.strategy, arch.epochs, arch.initial, arch.batch, arch.remeasure) == (
        "jointnas",
        5,
        5,
        2,
        2,
    )
    proxy = SearchConfig(model="resnet18", strategy="jointnas")  # the compressed proxy, as before
    assert (proxy.epochs, proxy.proxy_check, proxy.initial, proxy.budget) == (10, True, 5, 13)
    # the README's demo flags: --epochs is the shortest rung of the --full-epochs schedule
    demo = SearchConfig(
        model="resnet18", full_epochs=20, epochs=10, budget=6, initial=3, strategy="jointnas-mf"
    )
    assert demo.epochs == 20 and demo.settings["jointnas-mf"] == {
        "rung_factor": 2,
        "min_share": 0.5,
    }
    ctx = context_for(demo)
    assert JointNASMFStrategy(demo.strategy_settings()).rungs(ctx) == [10, 20]
    given = SearchConfig(
        model="resnet18",
        full_epochs=40,
        epochs=5,
        strategy="jointnas-mf",
        settings={"jointnas-mf": {"rung_factor": 3}},
    )
    assert given.settings["jointnas-mf"]["rung_factor"] == 3  # a setting given wins
    args = type("Args", (), dict(strategy="jointnas-mf", model="resnet18", promote="gap"))()
    assert strategy_options(args) == {"jointnas-mf": {"promote": "gap"}}
    args.strategy = None  # a recipe search's default strategy takes it
    assert strategy_options(args) == {"jointnas-mf": {"promote": "gap"}}
    args.model = None  # the architecture search's default strategy has no --promote
    with pytest.raises(
        UserError, match="--promote is a setting of jointnas-mf, not of --strategy jointnas"
    ):
        strategy_options(args)


def context_for(config: SearchConfig) -> Context:
    class Store(FakeStore):
        def get(self, key: str, default=None):
            return default

    return Context(None, None, [NONE], 10, config, Store([]))


def test_a_jointnas_mf_recipe_search_runs_on_rungs_of_the_full_run(
    space, vectors, tmp_path, monkeypatch
):
    """What `fbnetv3 search --model M --strategy jointnas-mf --full-epochs 8 --epochs 2` runs, with made-up curves."""
    from fbnetv3_zoo.search.report import outputs as report

    monkeypatch.setattr(report, "write_plots", lambda *a, **k: [])
    config = SearchConfig(
        model="test_resnet",
        full_epochs=8,
        epochs=2,
        budget=8,
        initial=2,
        batch=1,
        strategy="jointnas-mf",
        start_at_base=False,  # made-up vectors: the source does not hold the base recipe
    )
    source = VectorSource(space, vectors, num_classes=10)
    run_search(config, tmp_path, evaluator=made_up, progress=False, source=source)
    rows = stored(tmp_path)
    assert config.strategy == "jointnas-mf" and len(rows) == 8
    assert {r["epochs"] for r in rows} <= {2, 8} and any(
        r["epochs"] == 2 for r in rows
    )  # rungs 2, 8
    assert (tmp_path / "best" / "recipe.yaml").is_file()
    report = (tmp_path / "report.md").read_text()  # no proxy, so no check to miss
    assert "**Proxy check:** none needed: jointnas-mf trains candidates on prefixes" in report
