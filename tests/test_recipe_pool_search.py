"""benchmarks/search.py on a recipe pool, and optuna-tpe-pruned, on a hand-written pool (no training)."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from fbnetv3_zoo.search.pool import append_records
from fbnetv3_zoo.search.space.constraints import parse_constraint
from fbnetv3_zoo.search.space.fixed_model import fixed_model_space
from fbnetv3_zoo.search.space.sampling import sample_feasible
from fbnetv3_zoo.search.strategies.optuna_pruned import checkpoints
from pool_records import pool_meta, run_record

from fbnetv3_zoo.errors import UserError

EPOCHS, RECIPES, SEEDS = 9, 10, 3  # Optuna's pruner (min 1, factor 3) acts at epochs 1 and 3
DATA = "digits:3"
PRESETS = {"baseline": 50.0, "fbnetv3": 40.0}  # final top-1 of every preset training


def curve(final: float, bump: float) -> list[dict]:
    """A curve ending at ``final`` whose early epochs are shifted by ``bump`` (so rungs can mislead)."""
    return [
        dict(epoch=e, val_top1=max(0.0, final * e / EPOCHS + bump * (EPOCHS - e) / EPOCHS))
        for e in range(1, EPOCHS + 1)
    ]


@pytest.fixture(scope="module")
def space():
    return fixed_model_space("test_resnet", resolution=16, num_classes=10)


@pytest.fixture(scope="module")
def pool_path(space, tmp_path_factory) -> Path:
    """Recipes whose final top-1 grows with the vector's mean; presets with a known truth."""
    path = tmp_path_factory.mktemp("recipe_pool") / "pool.jsonl.gz"
    u, macs, params = sample_feasible(space, RECIPES, [parse_constraint("none")], 10, seed=0)
    meta = pool_meta(space, EPOCHS, DATA, kind="recipe_pool", model="test_resnet", resolution=16)
    records = [meta]
    for name, final in PRESETS.items():
        for s in range(SEEDS):
            preset = dict(type="preset", preset=name, seed=s, metrics=curve(final, 0.0))
            records.append(preset | dict(status="done", error=None, wall_s=3.0, cpu_s=2.0))
    for i in range(RECIPES):
        final = 30 + 60 * float(np.mean(u[i]))
        for s in range(SEEDS):
            metrics = curve(final + s, bump=20.0 * ((i * 7) % 3 - 1))
            records.append(run_record(space, i, u[i], macs[i], params[i], s, metrics))
    append_records(path, records)
    return path


def bench():
    """benchmarks/search.py as a module (a script, not part of the package)."""
    path = Path(__file__).parents[1] / "benchmarks" / "search.py"
    spec = importlib.util.spec_from_file_location("search_benchmark_recipes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one(module, pool_path: Path, strategy: str, seed: int, *flags: str) -> dict:
    flags = ("--min-seeds", str(SEEDS), *flags)
    args = module.parse_args(["--pool", str(pool_path), "--strategies", strategy, *flags])
    _, pool = module.load_snapshot(Path(args.pool), args.min_seeds)
    module._set_pool(pool)
    return module.one_search((args, strategy, seed))


def test_checkpoints_are_where_optuna_pruners_act():
    assert checkpoints(1, 3, 40) == [1, 3, 9, 27, 40]
    assert checkpoints(4, 4, 16) == [4, 16]  # the full schedule itself closes the list


def test_budget_levels_are_full_run_equivalents(pool_path):
    module = bench()
    run = dict(
        pair=[0, 1, 2, 3, 4],
        pick=[0, 0, 0, 3, 3],
        epochs=[EPOCHS, 1, 3, EPOCHS, EPOCHS],
        spent=[9, 10, 13, 22, 31],
        truth=np.array([50.0, 60.0, 70.0, 80.0, 40.0]),
        best=80.0,
    )
    _, at_fre = module.regrets(run, [1.5, 2.0, 3.0, 3.5], EPOCHS)
    # 1.5 runs = 13.5 epochs: the first three rows fit, the pick is row 0; 2 runs (18 epochs)
    # still leave row 3 out (22 epochs so far); 3 runs (27) take it; 3.5 runs were never spent
    assert at_fre[:3].tolist() == [30.0, 30.0, 0.0] and np.isnan(at_fre[3])
    pool = module.load_snapshot(pool_path, 2)[1]
    assert module.is_recipe_pool(pool) and module.constraint_for(pool) == "none"
    assert module.preset_truths(pool_path) == PRESETS


def test_a_search_starts_at_the_base_preset_unless_told_not_to(pool_path, tmp_path):
    """The base recipe (baseline) is a pair of the replayed pool and every search's first training."""
    from fbnetv3_zoo.search.pool import BASE_PAIR, PoolError, load_pool
    from fbnetv3_zoo.search.space.encoding import decode

    module = bench()
    full, pool = module.load_snapshot(pool_path, SEEDS)
    base = next(p for p in pool.pairs if p.index == BASE_PAIR)
    assert sorted(base.runs) == list(range(SEEDS)) and base.scores() == [PRESETS["baseline"]] * 3
    recipe = decode(module.pool_space(pool), base.vector)[1]
    assert recipe["optimizer"] == "sgd" and recipe["lr"] == pytest.approx(0.1)
    assert recipe["ema_decay"] == recipe["mixup"] == 0.0
    assert full.with_base(module.pool_space(pool)) is full  # added once
    for seed in (0, 1):
        run = one(module, pool_path, "random", seed, "--fre", "3")
        assert pool.pairs[run["pair"][0]] is base and run["epochs"][0] == EPOCHS
        off = one(module, pool_path, "random:start_at_base=false", seed, "--fre", "3")
        assert pool.pairs[off["pair"][0]] is not base
    # a pool file without the base preset's trainings cannot serve a search that starts at it
    bare = tmp_path / "bare.jsonl.gz"
    with gzip.open(pool_path, "rt") as f:
        lines = f.read().splitlines()
    bare.write_bytes(
        gzip.compress("".join(x + "\n" for x in lines if '"preset"' not in x).encode())
    )
    assert load_pool(bare).presets == {}
    broken = tmp_path / "broken.jsonl.gz"  # a file read back is untrusted: one line naming it
    broken.write_bytes(gzip.compress((lines[0] + '\n{"type": "preset", "preset": "x"}\n').encode()))
    with pytest.raises(PoolError, match=r"broken.jsonl.gz: record 2: a preset record needs"):
        load_pool(broken)
    with pytest.raises(
        UserError, match="start_at_base: the candidate source does not hold the base"
    ):
        one(module, bare, "random", 0, "--fre", "3")


@pytest.mark.slow
def test_pruned_tpe_trains_in_chunks_and_is_seeded(pool_path):
    pytest.importorskip("optuna")
    module = bench()
    run = one(module, pool_path, "optuna-tpe-pruned", 0, "--fre", "3")
    again = one(module, pool_path, "optuna-tpe-pruned", 0, "--fre", "3")
    for key in ("pair", "epochs", "score", "pick", "shown"):
        assert run[key] == again[key]  # same seed, same search
    assert run["spent"][-1] == sum(run["epochs"]) >= 3 * EPOCHS  # rerun until it spent 3 runs
    halving = one(module, pool_path, "optuna-tpe-pruned:pruner=halving", 0, "--fre", "3")
    for r in (run, halving):
        assert set(r["epochs"]) <= {1, 3, EPOCHS} and r["epochs"][0] == EPOCHS  # first batch: full
        longest: dict[int, int] = {}
        for pair, epochs in zip(r["pair"], r["epochs"], strict=True):
            assert epochs > longest.get(pair, 0)  # a pair only comes back for a longer chunk
            longest[pair] = epochs
    # SuccessiveHalvingPruner stopped some trials at a rung and never brought them back
    assert any(e < EPOCHS for e in longest.values())


@pytest.mark.slow
def test_a_fitted_search_stays_inside_its_budget(pool_path):
    """Random at 2 full runs: the search with 2 trainings (3 would cost 3 runs), judged on its final pick."""
    module = bench()
    args = module.parse_args(["--pool", str(pool_path), "--min-seeds", str(SEEDS)])
    _, pool = module.load_snapshot(Path(args.pool), args.min_seeds)
    module._set_pool(pool)
    rows, evaluator, epoch = module.search_once(args, pool, "random", 0, 2)
    assert [r["epochs"] for r in rows] == [EPOCHS, EPOCHS]
    pick = rows[module.driver_picks(rows, epoch, "none")[-1]]
    k = [list(p.vector) for p in pool.pairs].index(list(pick["vector"]))
    expected = float(np.max(pool.truth(0))) - evaluator.truths()[k]
    assert module.fitted_regret(args, pool, "random", 0, 2 * EPOCHS) == pytest.approx(expected)
    assert np.isnan(module.fitted_regret(args, pool, "random", 0, 1.5 * EPOCHS))  # 2 are too many


@pytest.mark.slow
def test_recipe_pool_table(pool_path, tmp_path):
    pytest.importorskip("optuna")
    out = tmp_path / "results" / "recipes.md"
    bench().main(["--pool", str(pool_path), "--min-seeds", "3", "--seeds", "2", "--fre", "2", "3",
                  "--strategies", "random", "optuna-tpe-pruned", "--out", str(out)])  # fmt: skip
    text = out.read_text()
    assert (
        "# Recipe search on the recipe pool" in text and "### At equal full-run equivalents" in text
    )
    assert "preset `baseline`" in text and "Pick's truth - `baseline`'s truth (50.00 %)" in text
    rows = [line for line in text.splitlines() if line.startswith(("| 2 |", "| 3 |"))]
    assert len(rows) >= 6 and not any("n/a" in r for r in rows)  # every level has a pick
    assert list(out.parent.iterdir()) == [out]  # no plot for a recipe pool
