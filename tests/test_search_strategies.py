"""Strategies behind the ask/tell seam: JointNAS must beat random on a known objective, and only
because of its predictor; custom strategies plug in; the GA stays diverse; budgets are exact."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
from fbnetv3_zoo.search.config import ConfigError
from fbnetv3_zoo.search.driver import SearchConfig, run_search
from fbnetv3_zoo.search.sources import SobolSource, VectorSource
from fbnetv3_zoo.search.space.constraints import parse_constraint
from fbnetv3_zoo.search.space.definition import load_space
from fbnetv3_zoo.search.space.sampling import sample_feasible
from fbnetv3_zoo.search.strategies import Proposal, Strategy, draw_unseen
from fbnetv3_zoo.search.strategies.genetic import genetic_search
from fbnetv3_zoo.search.trainer import EvalTask
from search_result import candidate_rows as _rows
from search_settings import FAST_JOINTNAS

from fbnetv3_zoo.errors import UserError

# the proxy space as it stood when these tests were tuned: the shipped one may change
SPACE = """
name: strategy_test
stem: {channels: {min: 8, max: 16, step: 4}, kernel: 3, act: hswish}
resolution: {min: 16, max: 32, step: 8}
head: {expansion: 6.0, feature_width: 128, act: hswish, se_ratio: 0.25}
stages:
  - - {kernel: 3, expansion: 1, channels: {min: 8, max: 12, step: 4}, repeats: 1, stride: 1}
  - - {kernel: [3, 5], expansion: [3, 4, 5, 6], channels: {min: 8, max: 16, step: 4}, repeats: 1, stride: 2}
    - {kernel: [3, 5], expansion: [2, 3, 4], channels: same, repeats: {min: 1, max: 2}}
  - - {kernel: [3, 5], expansion: [3, 4, 5, 6], channels: {min: 12, max: 24, step: 4}, repeats: 1, stride: 2, se: true}
    - {kernel: [3, 5], expansion: [2, 3, 4], channels: same, repeats: {min: 1, max: 2}, se: true}
  - - {kernel: [3, 5], expansion: [3, 4, 5, 6], channels: {min: 16, max: 32, step: 4}, repeats: 1, stride: 2}
    - {kernel: [3, 5], expansion: [2, 3, 4], channels: same, repeats: {min: 1, max: 2}}
    - {kernel: [3, 5], expansion: [3, 4, 5, 6], channels: {min: 24, max: 40, step: 4}, repeats: 1, se: true}
    - {kernel: [3, 5], expansion: [2, 3, 4], channels: same, repeats: {min: 1, max: 2}, se: true}
  - - {kernel: [3, 5], expansion: [4, 5, 6], channels: {min: 32, max: 56, step: 4}, repeats: 1, stride: 2, se: true}
    - {kernel: [3, 5], expansion: [3, 4, 5, 6], channels: same, repeats: {min: 1, max: 2}, se: true}
    - {kernel: [3, 5], expansion: [4, 5, 6], channels: {min: 40, max: 64, step: 4}, repeats: 1, se: true}
recipe:
  base: fbnetv3_proxy
  overrides: {batch_size: 16, warmup_epochs: 0}
  optimizer: [rmsprop, sgd, adamw]
  lr: {min: 0.008, max: 0.25, log: true}
  weight_decay: {min: 1.0e-6, max: 1.0e-3, log: true}
  mixup: {min: 0.0, max: 0.4}
  dropout: {min: 0.0, max: 0.3}
  drop_path: {min: 0.0, max: 0.2}
  ema_decay: [0.0, 0.999]
  label_smoothing: {min: 0.0, max: 0.2}
"""


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    """Plots cost ~1 s per run and are tested in test_search_run.py; these tests need the picks."""
    from fbnetv3_zoo.search.report import outputs as report

    monkeypatch.setattr(report, "write_plots", lambda out, store, picks=None, constraints=None: [])


@pytest.fixture(scope="module")
def space_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "strategy_test.yaml"
    path.write_text(SPACE)
    return str(path)


# remeasure=0: these tests count batches and sources; re-measurement has its own tests
FAST = dict(settings={"jointnas": FAST_JOINTNAS}, epochs=2, remeasure=0)


def truth(task: EvalTask) -> float:
    """A smooth objective of the decoded pair: wider, deeper, larger inputs, lr near 0.05, adamw."""
    a, r = task.arch, task.recipe
    width = sum(row["channels"] for stage in a["stages"] for row in stage)
    depth = sum(row.get("repeats", 1) for stage in a["stages"] for row in stage)
    lr = -8 * math.log(r["lr"] / 0.05) ** 2
    adamw = 6 * (r["optimizer"] == "adamw")
    return 0.12 * width + 0.6 * a["input_size"] + 4 * depth + lr + adamw - 20 * r["mixup"]


def synthetic(task: EvalTask) -> dict:
    """``truth`` plus noise seeded by the pair itself, as a learning curve that rises linearly."""
    key = json.dumps([task.arch, task.recipe], sort_keys=True).encode()
    noise = np.random.default_rng(int(hashlib.sha256(key).hexdigest()[:8], 16)).normal(0, 0.5)
    final = truth(task) + noise
    n = task.stop_after or task.epochs
    metrics = [
        {"epoch": e + 1, "val_top1": final * (e + 1) / task.epochs, "ema_top1": None}
        for e in range(n)
    ]
    return dict(cid=task.cid, status="done", metrics=metrics, error=None, wall_s=0.0)


def _pick_truth(strategy: str, seed: int, out, space: str, head: str = "auto") -> float:
    """True value of the pair the search would hand the user (its best measured one)."""
    greedy = dict(head=head, members=1, kappa=0.0)  # the paper's greedy choice
    config = SearchConfig(
        space=space,
        strategy=strategy,
        seed=seed,
        budget=16,
        initial=4,
        batch=4,
        constraints=["macs<=0.6M"],
        epochs=2,
        remeasure=0,  # the predictor's picks are the subject: all 16 trainings go to them
        settings={"jointnas": {**FAST_JOINTNAS, **greedy}},
    )
    trained = {}

    def evaluator(task):
        trained[task.cid] = truth(task)
        return synthetic(task)

    summary = run_search(config, out, evaluator=evaluator, progress=False, plots=False)
    assert len(_rows(out)) == 16
    return trained[summary["best"]["macs<=0.6M"]["id"]]


SEEDS = range(6)


@pytest.fixture(scope="module")
def random_picks(tmp_path_factory, space_path) -> list[float]:
    """Random search's pick per seed: the baseline every head is held against (no head in it)."""
    root = tmp_path_factory.mktemp("random")
    return [_pick_truth("random", s, root / f"r{s}", space_path) for s in SEEDS]


@pytest.mark.slow
@pytest.mark.parametrize("head", ["network", "gp", "linear"])
def test_jointnas_beats_random_only_through_its_predictor(
    tmp_path, monkeypatch, space_path, random_picks, head
):
    seeds = SEEDS
    random_ = random_picks
    joint = [_pick_truth("jointnas", s, tmp_path / f"j{s}", space_path, head) for s in seeds]
    from fbnetv3_zoo.search.predictor.heads import gp, linear, network

    for cls in (network.Predictor, linear.LinearPredictor, gp.GPPredictor):
        real = cls.predict

        def shuffled(self, u, real=real):
            mean, std = real(self, u)
            order = np.random.default_rng(len(mean)).permutation(len(mean))
            return mean[order], std[order]

        monkeypatch.setattr(cls, "predict", shuffled)

    def top_by_shuffled(self, u, n, kappa=0.5):  # the batch rule, blind the same way
        return np.argsort(-self.acquisition(u, kappa), kind="stable")[:n]

    monkeypatch.setattr(linear.LinearPredictor, "pick_batch", top_by_shuffled)
    monkeypatch.setattr(gp.GPPredictor, "pick_batch", top_by_shuffled)
    blind = [_pick_truth("jointnas", s, tmp_path / f"b{s}", space_path, head) for s in seeds]
    gain = np.mean(joint) - np.mean(random_)
    blind_gain = np.mean(blind) - np.mean(random_)
    wins = sum(j > r for j, r in zip(joint, random_, strict=True))
    summary = f"random {np.round(random_, 1)}, jointnas {np.round(joint, 1)}, shuffled {np.round(blind, 1)}"
    assert wins >= 4 and gain >= 3.0, summary
    assert blind_gain <= gain / 2, summary


class Cheapest(Strategy):
    """A custom strategy: always the feasible candidates with the fewest MACs."""

    name = "cheapest"

    def ask(self, ctx, iteration, n):
        u, m, p = draw_unseen(ctx, 64, ctx.constraints, seed=iteration)
        order = np.argsort(m, kind="stable")[:n]
        return Proposal(u[order], m[order], p[order], "cheapest")


def test_a_custom_strategy_plugs_in_and_is_pinned(tmp_path):
    config = SearchConfig(budget=7, initial=3, batch=2, constraints=["macs<=1M"], **FAST)
    run_search(config, tmp_path, evaluator=synthetic, progress=False, strategy=Cheapest())
    rows = _rows(tmp_path)
    assert len(rows) == 7
    assert [r["source"] for r in rows] == ["sobol"] * 3 + ["cheapest"] * 4
    later = [r["macs"] for r in rows if r["iteration"] == 1]
    assert later == sorted(later)
    with pytest.raises(UserError, match=r"strategy: run has 'cheapest', now 'jointnas'"):
        run_search(config, tmp_path, evaluator=synthetic, progress=False)


class Listener(Strategy):
    """Random draws that record what ``tell`` hears; ``crash_at`` ends the run like a kill."""

    name = "listener"

    def __init__(self, crash_at: int | None = None) -> None:
        super().__init__()
        self.heard: list[tuple[int, list[int], set[str]]] = []
        self.crash_at = crash_at

    def tell(self, ctx, iteration, trials):
        from fbnetv3_zoo.search import FinishedTrial

        assert all(isinstance(t, FinishedTrial) and t.iteration == iteration for t in trials)
        self.heard.append((iteration, [t.number for t in trials], {t.status for t in trials}))

    def ask(self, ctx, iteration, n):
        if iteration == self.crash_at:
            raise KeyboardInterrupt
        u, m, p = draw_unseen(ctx, n, ctx.constraints, seed=iteration)
        return Proposal(u, m, p, "listener", notes={"asked": n})


def test_tell_hears_each_finished_batch_once_and_again_after_a_resume(tmp_path):
    config = SearchConfig(budget=9, initial=3, batch=2, constraints=["macs<=1M"], **FAST)
    first = Listener(crash_at=2)
    with pytest.raises(KeyboardInterrupt):
        run_search(config, tmp_path, evaluator=synthetic, progress=False, strategy=first)
    assert first.heard == [(0, [1, 2, 3], {"done"}), (1, [4, 5], {"done"})]
    again = Listener()  # a fresh process: every finished batch is told again, in order
    run_search(config, tmp_path, evaluator=synthetic, progress=False, strategy=again)
    assert [h[0] for h in again.heard] == [0, 1, 2, 3]
    assert again.heard[:2] == first.heard
    from fbnetv3_zoo.search.store import Store

    store = Store(tmp_path / "search.sqlite", readonly=True)
    assert store.notes() == {1: {"asked": 2}, 2: {"asked": 2}, 3: {"asked": 1}, 4: {"asked": 1}}
    store.close()


def test_a_registered_strategy_is_chosen_by_name(tmp_path, monkeypatch):
    from fbnetv3_zoo.search import strategies, strategy_settings

    monkeypatch.setattr(strategies, "STRATEGIES", dict(strategies.STRATEGIES))
    with pytest.raises(ConfigError, match="strategy"):
        SearchConfig(strategy="cheapest")
    # undone when the test ends: the registration below must not leak into other tests
    monkeypatch.setitem(strategy_settings.SETTINGS, "cheapest", strategy_settings.NoSettings)
    strategies.register_strategy("cheapest", Cheapest)
    config = SearchConfig(
        strategy="cheapest", budget=5, initial=3, constraints=["macs<=1M"], **FAST
    )
    run_search(config, tmp_path, evaluator=synthetic, progress=False)
    assert [r["source"] for r in _rows(tmp_path)][3:] == ["cheapest"] * 2


@pytest.mark.parametrize("strategy", ["random", "jointnas"])
@pytest.mark.parametrize("budget, batch, constraints", [(8, 3, 2), (9, 2, 1), (6, 5, 2)])
def test_budget_is_spent_exactly(tmp_path, strategy, budget, batch, constraints):
    limits = ["macs<=0.6M", "macs<=1M"][:constraints]
    config = SearchConfig(
        strategy=strategy,
        budget=budget,
        initial=3,
        batch=batch,
        constraints=limits,
        epochs=2,  # a small GA that used to collapse:
        settings={"jointnas": {**FAST_JOINTNAS, "ga_population": 4, "ga_generations": 6}},
    )
    run_search(config, tmp_path, evaluator=synthetic, progress=False)
    rows = _rows(tmp_path)
    assert len(rows) == budget  # re-measurements included
    repeats = [r for r in rows if r["repeat_of"] is not None]
    assert len(repeats) == config.remeasured() and rows[len(rows) - len(repeats) :] == repeats
    own = rows[: len(rows) - len(repeats)]
    assert len({r["vector"] for r in own}) == len(own)  # never the same pair twice
    assert {r["repeat_of"] for r in repeats} <= {r["id"] for r in own}
    if strategy == "jointnas":
        assert [r["source"] for r in own][-constraints:] == ["genetic"] * constraints


def test_genetic_population_stays_duplicate_free():
    space = load_space("fbnetv3_proxy")
    target = sample_feasible(space, 1, [parse_constraint("macs<=1M")], 10, seed=3)[0][0]
    results = genetic_search(
        space,
        lambda u: -np.abs(u - target).sum(1),  # one sharp peak: populations want to collapse
        [parse_constraint("macs<=1M"), parse_constraint("macs<=0.5M")],
        num_classes=10,
        population=12,
        generations=25,
        seed=0,
    )
    for r in results:
        assert len(r.ranked) == 12
        assert len(np.unique(np.round(r.ranked, 9), axis=0)) == 12
        assert r.history[-1] >= r.history[0]


def test_finite_source_ranks_every_vector_in_the_fine_step(tmp_path):
    space = load_space("fbnetv3_proxy")
    u, _, _ = SobolSource(space, 10).draw(40, [parse_constraint("macs<=1M")], seed=5)
    source = VectorSource(space, u, num_classes=10)
    config = SearchConfig(budget=9, initial=4, batch=2, constraints=["macs<=1M"], **FAST)
    run_search(config, tmp_path, evaluator=synthetic, progress=False, source=source)
    rows = _rows(tmp_path)
    pool = {tuple(np.round(v, 9)) for v in source.all()[0]}
    assert len(rows) == 9 and all(tuple(np.round(json.loads(r["vector"]), 9)) in pool for r in rows)
    assert rows[-1]["source"] == "ranked"


@pytest.mark.parametrize(
    "field, value",
    [
        ("batch", 0),
        ("budget", -1),
        ("initial", 0),
        ("epochs", 0),
        ("min_stop_curves", 0),
        ("threads", -1),
        ("executor", "dask"),
        ("strategy", "bayes"),
        ("early_stop_tau", 1.5),
        ("constraints", []),
        ("seed", 1.5),
    ],
)
def test_config_fields_are_checked(field, value):
    with pytest.raises(ConfigError, match=f"search setting {field} "):
        SearchConfig(**{field: value})


@pytest.mark.parametrize(
    "strategy, field, value",
    [
        ("jointnas", "members", 0),
        ("jointnas", "kappa", -0.1),
        ("jointnas", "pool", 0),
        ("jointnas", "ga_population", 2),
        ("jointnas", "ga_generations", -1),
        ("jointnas", "fit_steps", 1.5),
        ("jointnas", "head", "forest"),
        ("optuna-tpe", "max_tries", 0),
        ("successive-halving", "eta", 1),
        ("successive-halving", "min_epochs", True),
    ],
)
def test_strategy_settings_are_checked_by_their_strategy(strategy, field, value):
    """Moved from SearchConfig (issue 19): each strategy's dataclass checks its own fields."""
    with pytest.raises(ConfigError, match=f"search setting {field} .* of {strategy} must"):
        SearchConfig(settings={strategy: {field: value}})
    with pytest.raises(ConfigError, match=f"setting {field} is not one of strategy random's"):
        SearchConfig(settings={"random": {field: value}})


def test_run_search_refuses_a_bad_config_at_once(tmp_path):
    config = SearchConfig()
    config.batch = 0  # changed after creation: run_search checks again
    with pytest.raises(ConfigError, match="batch"):
        run_search(config, tmp_path / "x", evaluator=synthetic, progress=False)
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="budget 5 is too small"):
        SearchConfig(budget=5, initial=4)
