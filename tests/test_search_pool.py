"""The ground-truth pool: file round trip, look-ups that refuse what the pool cannot answer,
a finite source over its vectors, and a whole search run against it without training."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from fbnetv3_zoo.search.driver import SearchConfig, run_search
from fbnetv3_zoo.search.early_stop import score_at
from fbnetv3_zoo.search.pool import (
    PoolError,
    PoolEvaluator,
    PoolSource,
    append_records,
    load_pool,
    pair_key,
    shown_seed,
    shown_seeds,
)
from fbnetv3_zoo.search.space.constraints import parse_constraint
from fbnetv3_zoo.search.space.definition import load_space
from fbnetv3_zoo.search.space.encoding import decode
from fbnetv3_zoo.search.space.sampling import sample_feasible
from fbnetv3_zoo.search.trainer import EvalTask
from pool_records import pool_meta, rising_curve, run_record

from fbnetv3_zoo.errors import UserError

DATA, EPOCHS, PAIRS = "digits", 3, 40


@pytest.fixture(scope="module")
def space():
    return load_space("fbnetv3_proxy")


def meta(space) -> dict:
    return pool_meta(space, EPOCHS, DATA, constraints=["macs<=1M"], sample_seed=0)


def fake_curve(vec: np.ndarray, seed: int) -> list[dict]:
    """A known objective: accuracy rises with the mean of the vector; seed adds small noise."""
    final = 40 + 50 * float(np.mean(vec)) + 0.5 * seed
    return [dict(epoch=e + 1, val_top1=final * (e + 1) / EPOCHS) for e in range(EPOCHS)]


@pytest.fixture(scope="module")
def pool_file(space, tmp_path_factory):
    """A tiny pool written in two sessions (as a resumed build would), no training involved."""
    path = tmp_path_factory.mktemp("pool") / "pool.jsonl.gz"
    u, macs, params = sample_feasible(space, PAIRS, [parse_constraint("macs<=1M")], 10, seed=3)

    def record(i: int, seed: int) -> dict:
        return run_record(space, i, u[i], macs[i], params[i], seed, fake_curve(u[i], seed))

    append_records(path, [meta(space)] + [record(i, 0) for i in range(PAIRS // 2)])
    append_records(path, [meta(space)] + [record(i, 0) for i in range(PAIRS // 2, PAIRS)])
    append_records(path, [record(i, s) for i in range(3) for s in (1, 2)])
    return path


def task(space, vec, epochs=EPOCHS, stop=None, data=DATA, cid=0) -> EvalTask:
    spec, recipe = decode(space, vec)
    overrides = dict(space.recipe_overrides)
    return EvalTask(
        cid, spec.to_dict(), recipe, space.recipe_base, data, epochs, stop, 0, 1, overrides
    )


def test_pool_round_trip_groups_seeds_and_means_them(pool_file):
    pool = load_pool(pool_file)
    assert len(pool.meta) == 2 and len(pool.pairs) == PAIRS
    assert sorted(pool.pairs[0].runs) == [0, 1, 2] and sorted(pool.pairs[5].runs) == [0]
    mean, count = pool.quality()
    assert count[0] == 3 and count[5] == 1
    assert mean[0] == pytest.approx(np.mean(pool.pairs[0].scores()))
    assert mean[0] == pytest.approx(pool.pairs[0].score(0) + 0.5)  # seeds 0, 1, 2 add 0, .5, 1


def test_evaluator_answers_pool_pairs_and_refuses_the_rest(space, pool_file):
    pool = load_pool(pool_file)
    evaluator = PoolEvaluator(pool)
    vec = pool.pairs[7].vector
    full = evaluator(task(space, vec))
    assert full["status"] == "done" and len(full["metrics"]) == EPOCHS
    assert full["metrics"][-1]["val_top1"] == pytest.approx(fake_curve(vec, 0)[-1]["val_top1"])
    early = evaluator(task(space, vec, stop=1))
    assert len(early["metrics"]) == 1 and early["wall_s"] == pytest.approx(1.0)
    assert PoolEvaluator(pool, seed=2)(task(space, pool.pairs[1].vector))["metrics"][-1][
        "val_top1"
    ] == pytest.approx(pool.pairs[1].score(0) + 1.0)
    outside = sample_feasible(space, 1, [parse_constraint("macs<=1M")], 10, seed=99)[0][0]
    with pytest.raises(PoolError, match="not in the pool"):
        evaluator(task(space, outside))
    with pytest.raises(PoolError, match="no training with seed 1"):
        PoolEvaluator(pool, seed=1)(task(space, pool.pairs[9].vector))
    with pytest.raises(PoolError, match="digits:40"):
        evaluator(task(space, vec, data="digits:40"))
    with pytest.raises(PoolError, match="4 epochs"):
        evaluator(task(space, vec, epochs=4))
    assert issubclass(PoolError, UserError)


def test_pair_key_ignores_float_noise(space, pool_file):
    pair = load_pool(pool_file).pairs[0]
    noisy = {k: v * (1 + 1e-13) if isinstance(v, float) else v for k, v in pair.recipe.items()}
    assert pair_key(pair.arch, noisy) == pair_key(pair.arch, pair.recipe)
    changed = dict(pair.recipe, lr=pair.recipe["lr"] * 1.01)
    assert pair_key(pair.arch, changed) != pair_key(pair.arch, pair.recipe)


def test_source_serves_only_feasible_pool_vectors(space, pool_file):
    pool = load_pool(pool_file)
    source = PoolSource(space, pool)
    assert source.finite and len(source.all()[0]) == PAIRS
    keys = {tuple(np.round(v, 9)) for v in pool.vectors()}
    limit = [parse_constraint("macs<=0.5M")]
    u, macs, _ = source.draw(10, limit, seed=1)
    assert 0 < len(u) <= 10 and (macs <= 0.5e6).all()
    assert all(tuple(np.round(v, 9)) in keys for v in u)
    assert np.array_equal(u, source.draw(10, limit, seed=1)[0])  # seeded order
    assert not np.array_equal(u, source.draw(10, limit, seed=2)[0])


def test_bad_pool_files_are_named(space, pool_file, tmp_path):
    with pytest.raises(PoolError, match="not found"):
        load_pool(tmp_path / "missing.jsonl.gz")
    junk = tmp_path / "junk.jsonl.gz"
    junk.write_bytes(b"not gzip")
    with pytest.raises(PoolError, match="junk.jsonl.gz"):
        load_pool(junk)
    other = tmp_path / "other.jsonl.gz"
    with gzip.open(pool_file, "rt") as f:
        other.write_bytes(gzip.compress(f.read().replace('"epochs": 3', '"epochs": 5', 1).encode()))
    with pytest.raises(PoolError, match="disagree"):
        load_pool(other)
    wrong = load_pool(pool_file)
    wrong.meta[0] = dict(wrong.meta[0], space_fingerprint="0" * 16)
    with pytest.raises(PoolError, match="fingerprint"):
        PoolSource(space, wrong)


@pytest.mark.parametrize("strategy", ["random", "jointnas"])
def test_search_runs_against_the_pool_without_training(space, pool_file, tmp_path, strategy):
    pool = load_pool(pool_file)
    evaluator = PoolEvaluator(pool)
    config = SearchConfig(
        data=DATA,
        epochs=EPOCHS,
        constraints=["macs<=1M"],
        budget=8,
        initial=4,
        batch=2,
        strategy=strategy,
        settings={"jointnas": dict(pretrain_steps=0, fit_steps=20, members=1)},
    )
    result = run_search(
        config,
        tmp_path / strategy,
        evaluator=evaluator,
        progress=False,
        source=PoolSource(space, pool),
    )
    assert evaluator.calls == 8  # the whole budget answered from the table
    best = result["best"]["macs<=1M"]
    assert pair_key(best["arch"], best["recipe"]) in pool.index()


MARKS = (0.0, 1.0, 2.0, 4.0)  # seed s adds MARKS[s]: the mean of any 3 names the seed left out


@pytest.fixture(scope="module")
def marked_pool_file(space, tmp_path_factory):
    """24 pairs x 4 seeds whose seeds carry distinct marks, plus one pair trained once."""
    path = tmp_path_factory.mktemp("marked") / "pool.jsonl.gz"
    u, macs, params = sample_feasible(space, 25, [parse_constraint("macs<=1M")], 10, seed=5)
    records = [meta(space)]
    for i in range(25):
        for seed in range(4) if i < 24 else (0,):
            final = 40 + 50 * float(np.mean(u[i])) + MARKS[seed]
            curve = rising_curve(final, EPOCHS)
            records.append(run_record(space, i, u[i], macs[i], params[i], seed, curve))
    append_records(path, records)
    return path


@pytest.fixture(scope="module")
def marked_pool(marked_pool_file):
    return load_pool(marked_pool_file)


def test_restrict_keeps_complete_pairs_and_truth_needs_another_seed(marked_pool):
    assert len(marked_pool.pairs) == 25 and list(marked_pool.seed_counts()[-2:]) == [4, 1]
    with pytest.raises(PoolError, match="no training besides seed 0"):
        marked_pool.truth(0)
    pool = marked_pool.restrict(min_seeds=4)
    assert [p.index for p in pool.pairs] == list(range(24))
    shown = [[shown_seed(p, s) for p in pool.pairs] for s in range(20)]
    assert shown[3] == [shown_seed(p, 3) for p in pool.pairs]  # deterministic
    assert len({tuple(row) for row in shown}) == 20  # fresh noise for every search seed
    assert {seed for row in shown for seed in row} == {0, 1, 2, 3}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["random", "jointnas"])
def test_no_search_is_scored_with_a_training_it_was_shown(space, marked_pool, tmp_path, strategy):
    """The leakage test of issue 17: every pick's truth leaves out the seed the search measured.

    The shown seed is recovered from what the search itself stored (its
    measured score carries the seed's mark), not from the evaluator's own
    bookkeeping, so an evaluator that showed one seed and scored another
    would fail here too.
    """
    from fbnetv3_zoo.search.store import Store, vector_key

    pool = marked_pool.restrict(min_seeds=4)
    by_vector = {vector_key(p.vector): p for p in pool.pairs}
    by_index = {p.index: p for p in pool.pairs}
    position = {p.index: k for k, p in enumerate(pool.pairs)}
    seen: dict[int, list[int]] = {}
    for search_seed in range(3):
        evaluator = PoolEvaluator(pool, search_seed=search_seed)
        config = SearchConfig(
            data=DATA,
            epochs=EPOCHS,
            constraints=["macs<=1M"],
            budget=10,
            initial=4,
            batch=2,
            seed=search_seed,
            strategy=strategy,
            settings={"jointnas": dict(pretrain_steps=0, fit_steps=20, members=1)},
        )
        out = tmp_path / f"s{search_seed}"
        run_search(config, out, evaluator=evaluator, progress=False, source=PoolSource(space, pool))
        store = Store(out / "search.sqlite", readonly=True)
        rows = store.candidates()
        store.close()
        truths = evaluator.truths()
        assert len(rows) == 10
        assert sum(r["repeat_of"] is not None for r in rows) == 2  # the re-measured finalists
        shown_here: dict[int, set[int]] = {}
        for row in rows:
            pair = by_vector[vector_key(row["vector"])]
            # what the driver records for each training: the mean of its last epochs
            curves = [pair.runs[s]["metrics"] for s in range(4)]
            marks = [score_at(m, len(m), config.score_epochs) for m in curves]
            shown = min(range(4), key=lambda s: abs(marks[s] - row["score"]))
            assert row["score"] == pytest.approx(marks[shown])  # the search saw one training
            repeat = 0 if row["repeat_of"] is None else 1  # a re-measurement sees the next one
            assert shown == shown_seeds(pair, search_seed, repeat + 1)[repeat]
            assert shown not in shown_here.get(pair.index, set())  # never the same one twice
            shown_here.setdefault(pair.index, set()).add(shown)
            if repeat == 0:
                assert shown == evaluator.shown[pair.index] == shown_seed(pair, search_seed)
                seen.setdefault(pair.index, []).append(shown)
        for index, shown in shown_here.items():
            marks = [by_index[index].final(s) for s in range(4)]
            truth = truths[position[index]]
            hidden = [m for s, m in enumerate(marks) if s not in shown]
            assert truth == pytest.approx(np.mean(hidden))  # the trainings it was not shown
            assert truth == pytest.approx(evaluator.truth(index))
            assert truth != pytest.approx(np.mean(marks))  # the all-seed mean would include them
    assert any(len(set(v)) > 1 for v in seen.values())  # searches were shown different noise


def search_benchmark():
    """benchmarks/search.py as a module (it is a script, not part of the package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "search.py"
    spec = importlib.util.spec_from_file_location("search_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_picks_like_the_driver_and_scores_by_truth():
    bench = search_benchmark()

    def row(score, epochs, status="done"):
        return dict(score=score, epochs=epochs, status=status, macs=5e5, params=1e4)

    # a 2-epoch rung (row 3) measured highest but is not comparable with full trainings
    rows = [row(50.0, 5), row(60.0, 2), row(70.0, 5), row(90.0, 2), row(None, 5, "failed")]
    assert bench.driver_picks(rows, scoring_epoch=5) == [0, 0, 2, 2, 2]
    assert bench.driver_picks(rows[1:2], scoring_epoch=5) == [
        0
    ]  # only short ones: the best of them
    # pool pair 2 is measured best but its truth is low; pair 1 is the truly best
    run = dict(
        pair=[0, 1, 2, 3],
        pick=[0, 1, 2, 2],
        epochs=[5, 2, 2, 5],
        truth=np.array([55.0, 80.0, 58.0, 20.0]),
        best=80.0,  # the pool's best truth for this search seed, the same for every strategy
    )
    trainings, epochs = bench.regrets(run, [1, 2, 3, 4, 5], epochs=5)
    assert list(trainings[:4]) == [25.0, 0.0, 22.0, 22.0] and np.isnan(trainings[4])
    # cumulative epochs 5, 7, 9, 14: level 5 -> 1 training, 10 -> 3, 15 -> never reached
    assert list(epochs[:2]) == [25.0, 22.0] and np.isnan(epochs[2:]).all()
    # the best pair trained so far: 55 after one training, 80 from the second on
    found = bench.trained_best(run, [1, 2, 3, 4, 5])
    assert list(found[:4]) == [25.0, 0.0, 0.0, 0.0] and np.isnan(found[4])
    boot = bench.Paired(4, resamples=200)
    mean, lo, hi = boot.mean(np.array([1.0, 2.0, 3.0, 4.0]))
    assert mean == 2.5 and 1.0 <= lo <= mean <= hi <= 4.0
    assert boot.ratio(np.array([1.0, 1, 1, 1]), np.array([2.0, 2, 2, 2])) == (0.5, 0.5, 0.5)


@pytest.mark.slow
def test_benchmark_script_runs_on_a_pool(marked_pool_file, tmp_path):
    """The script end to end on the marked pool; it re-checks that no truth holds a shown training."""
    bench = search_benchmark()
    out = tmp_path / "s.md"
    bench.main(
        [
            "--pool",
            str(marked_pool_file),
            "--seeds",
            "2",
            "--budget",
            "12",
            "--initial",
            "4",
            "--pretrain-steps",
            "0",
            "--fit-steps",
            "20",
            "--members",
            "1",
            "--strategies",
            "jointnas",
            "random:batch=4",
            "--out",
            str(out),
        ]
    )
    text = out.read_text()
    assert "the 24 pairs with >= 4 seeds compete" in text
    assert "### At equal trainings" in text and "### At equal epochs" in text
    assert "### Where the regret comes from" in text
    assert "| 8 |" in text and "| 36 |" in text and "random:batch=4" in text  # 12 x 3 epochs
    assert out.with_suffix(".png").stat().st_size > 0
    with pytest.raises(SystemExit):
        bench.parse_args(["--strategies", "no-such-strategy"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--min-seeds", "1"])


def test_committed_pool_matches_the_shipped_proxy(space):
    """The committed pool answers searches on the default proxy; changing the proxy means rebuilding it."""
    from pathlib import Path

    from fbnetv3_zoo.search.config import SearchConfig

    pool = load_pool(Path(__file__).parents[1] / "benchmarks" / "data" / "pool_tune.jsonl.gz")
    config = SearchConfig()
    assert pool.proxy["data"] == config.data and pool.proxy["epochs"] == config.epochs
    assert pool.proxy["overrides"] == dict(space.recipe_overrides)
    source = PoolSource(space, pool)  # raises when the space changed since the pool was built
    _, count = pool.quality()
    assert len(source.all()[0]) == len(pool.pairs) >= 150 and (count >= 2).sum() >= 30


def test_the_benchmark_oracles_measure_a_training_the_way_the_driver_scores_it():
    """An oracle's measurement is the driver's score of that training (its last epochs' mean)."""
    from pathlib import Path

    bench = search_benchmark()
    pool = load_pool(Path(__file__).parents[1] / "benchmarks" / "data" / "pool_tune.jsonl.gz")
    pair = pool.pairs[0]
    seed = sorted(pair.runs)[0]
    metrics = pair.runs[seed]["metrics"]
    assert bench.measurement(pair, seed, 1) == pytest.approx(pair.final(seed))
    last3 = np.mean([m["val_top1"] for m in metrics[-3:]])
    assert bench.measurement(pair, seed, 3) == pytest.approx(last3)
    assert bench.measurement(pair, seed, 3) == pytest.approx(score_at(metrics, len(metrics), 3))
    assert bench.parse_args(["--score-epochs", "1"]).score_epochs == 1
