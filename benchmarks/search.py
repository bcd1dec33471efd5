"""Search strategies on a ground-truth pool: regret to the pool's best at equal trainings and at equal epochs.

    python3 benchmarks/search.py --pool heldout --seeds 200 --jobs 2 --out benchmarks/results/search.md
    python3 benchmarks/search.py --pool tune --seeds 4 --strategies random jointnas --out /tmp/s.md
    python3 benchmarks/search.py --pool benchmarks/data/recipe_pool_resnet18_tune.jsonl.gz --fre 2 3

A recipe pool (``benchmarks/recipe_pool.py``: one fixed model, Sobol recipes
trained at full length) is searched in its recipe-only space (the space
``fbnetv3 search --model`` searches, ``fixed_model_space``), with budgets in
full-run equivalents (``--fre``: a training of e epochs of the pool's E costs
e / E, as ``epochs_spent`` counts the driver's rows), a first batch of one
recipe, batches of one and no re-measurement unless flags say otherwise, and
the presets' pool truth (``baseline``, ``fbnetv3``) as reference rows.

Every search runs through the real driver (``run_search``) with the pool as
its candidate source (``PoolSource``: strategies can only pick pool pairs) and
its evaluator (``search/pool.py``), so a "training" is a table look-up and a
search takes seconds.  Scoring follows issue 17: search seed ``s`` is shown
one training of each pair, drawn from (``s``, pair), and every pick is scored
on the mean of the pair's *other* trainings (``PoolEvaluator.truth``), never
on a number the search saw; the pool's best is the best of those truths, and
strategies run with the same ``s`` see the same noise and the same truths
(paired).  Regret is reported after 8-64 trainings and after the same number
of proxy epochs (trainings x the pool's epochs), so multi-fidelity strategies
that train some pairs for fewer epochs are compared at equal compute.

Strategies are the names registered in ``fbnetv3_zoo.search.strategies``
(all of them by default); ``NAME:field=value,...`` runs a variant with other
``SearchConfig`` fields (e.g. ``jointnas:head=gp``).  Search settings default
to the CLI's own (``SearchConfig()``), so ``jointnas`` runs as shipped.
Nothing is written unless ``--out`` names a results file (its plot goes next
to it as ``.png``); committed results are only replaced when ``--out`` says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent
RESULTS = HERE / "results"
CONSTRAINT = "macs<=1M"  # every pool pair meets it: the whole pool competes
BUDGETS = (8, 12, 16, 24, 32, 40, 48, 64)  # trainings; equal-epoch levels are these x proxy epochs
RECIPE_FRE = (2.0, 3.0)  # a recipe pool's default budgets, in full-run equivalents
# a recipe pool's defaults for the SearchConfig fields the command line may override: one
# full-length first training, one training per batch, no re-measurement (a budget of 2-3 full
# runs has no room for them)
RECIPE_DEFAULTS = {"initial": 1, "batch": 1, "remeasure": 0}
NEAR = 0.5  # a pick "finds the best" when its truth is within this many points of the pool's best
RESAMPLES = 2000  # bootstrap resamples of the seeds
BOOTSTRAP_SEED = 0
# settings the command line may override (default: the CLI's own values): SearchConfig
# fields, then jointnas's own settings
SETTINGS = (
    "initial",
    "batch",
    "remeasure",
    "score_epochs",
    "members",
    "fit_steps",
    "pretrain_steps",
)
JOINTNAS_SETTINGS = ("members", "fit_steps", "pretrain_steps")

# this process's snapshot of the (restricted) pool, set once per worker, and the pretrained
# encoders its jointnas searches share (pretraining is a pure function of the settings)
_POOL: dict[str, Any] = {}


def base_note(pool: Any) -> str:
    """What a recipe pool's pair list holds besides its Sobol recipes."""
    from fbnetv3_zoo.search.pool import BASE_PAIR

    if any(p.index == BASE_PAIR for p in pool.pairs):
        return (
            f"the base preset `{pool_space(pool).recipe_base}` among them: its trainings are a pair, "
            "the first candidate of a search that starts at the base"
        )
    return "no trainings of the base preset: no search can start at it"


def is_recipe_pool(pool: Any) -> bool:
    """True for a pool ``benchmarks/recipe_pool.py`` built (one fixed model, recipes at full length)."""
    return pool.meta[0].get("kind") == "recipe_pool"


def constraint_for(pool: Any) -> str:
    """The one constraint every pool pair meets (a fixed model takes no limits)."""
    from fbnetv3_zoo.search.config import NO_LIMIT

    return NO_LIMIT if is_recipe_pool(pool) else CONSTRAINT


def pool_file(name: str) -> Path:
    """``tune``/``heldout`` name the committed pools; anything else is a path."""
    return HERE / "data" / f"pool_{name}.jsonl.gz" if name in ("tune", "heldout") else Path(name)


def parse_variant(text: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``NAME[:field=value,...]`` -> (strategy name, SearchConfig fields, the strategy's settings)."""
    from fbnetv3_zoo.search.strategy_settings import SETTINGS as STRATEGY_SETTINGS

    name, _, rest = text.partition(":")
    common: dict[str, Any] = {}
    own: dict[str, Any] = {}
    shared = {f.name for f in dataclasses.fields(_config_class())} - {
        "strategy",
        "seed",
        "budget",
        "settings",
    }
    mine = STRATEGY_SETTINGS.get(name)
    theirs = {f.name for f in dataclasses.fields(mine)} if mine else set()
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or key not in shared | theirs:
            raise SystemExit(
                f"--strategies {text!r}: {item!r} is not field=value of SearchConfig or of {name}"
            )
        (own if key in theirs else common)[key] = _value(value.strip())
    return name, common, own


def _value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _config_class() -> Any:
    from fbnetv3_zoo.search.config import SearchConfig

    return SearchConfig


def registered() -> list[str]:
    """Every strategy name the package has registered (baselines added later are included)."""
    from fbnetv3_zoo.search.strategies import STRATEGIES

    return list(STRATEGIES)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--pool",
        default="tune",
        help="tune, heldout or a pool file (default tune: tune on it, report heldout once, explicitly)",
    )
    p.add_argument(
        "--min-seeds",
        type=int,
        default=4,
        help="use only pairs trained with at least this many seeds (default 4; >= 2 for a held-out truth)",
    )
    p.add_argument("--seeds", type=int, default=200, help="paired search seeds (default 200)")
    p.add_argument("--seed-start", type=int, default=0, help="first search seed (default 0)")
    p.add_argument(
        "--budget", type=int, default=max(BUDGETS), help="trainings per search (default 64)"
    )
    for name in SETTINGS:
        p.add_argument(
            "--" + name.replace("_", "-"),
            type=int,
            help=f"SearchConfig.{name} (default: the CLI's)",
        )
    p.add_argument(
        "--strategies",
        nargs="+",
        metavar="NAME",
        help="registered strategies or NAME:field=value,... variants (default: every registered one)",
    )
    p.add_argument(
        "--resume-promoted",
        action="store_true",
        help="count a re-trained pair's epochs only beyond its longest earlier training "
        "(as if resumed from a checkpoint); default: what the driver trains, from scratch",
    )
    p.add_argument(
        "--fre",
        type=float,
        nargs="+",
        help="recipe pool: budgets in full-run equivalents (default "
        + " ".join(f"{b:g}" for b in RECIPE_FRE)
        + "); ignored on an arch pool",
    )
    p.add_argument(
        "--top-k", type=int, default=10, help="the oracle reference's top k (default 10)"
    )
    p.add_argument("--jobs", type=int, default=1, help="searches at once (1 thread each)")
    p.add_argument(
        "--note", default="", help="a sentence printed under the title (what the run is for)"
    )
    p.add_argument(
        "--out", help="results file (.md; the plot goes next to it); default: print only"
    )
    args = p.parse_args(argv)
    if args.min_seeds < 2:
        p.error(
            "--min-seeds must be >= 2: the truth is the mean of the seeds a search was not shown"
        )
    if args.seeds < 2:
        p.error("--seeds must be >= 2 for a bootstrap interval")
    names = registered()
    args.strategies = args.strategies or names
    if "random" not in args.strategies:
        args.strategies = ["random"] + args.strategies  # every comparison is paired with random
    for text in args.strategies:
        if parse_variant(text)[0] not in names:
            p.error(f"unknown strategy {text!r}; registered: {', '.join(names)}")
    return args


def search_config(args: argparse.Namespace, pool: Any, text: str, seed: int, budget: int) -> Any:
    """The CLI's settings, the pool's proxy, and the strategy's (variant) fields."""
    name, fields, own = parse_variant(text)
    proxy = pool.proxy
    chosen = {k: getattr(args, k) for k in SETTINGS if getattr(args, k) is not None}
    jointnas = {k: chosen.pop(k) for k in JOINTNAS_SETTINGS if k in chosen}
    settings = {"jointnas": jointnas}
    settings[name] = {**settings.get(name, {}), **own}
    common = dict(
        data=proxy["data"],
        epochs=proxy["epochs"],
        budget=budget,
        seed=seed,
        strategy=name,
        settings=settings,
    )
    if is_recipe_pool(pool):
        meta = pool.meta[0]
        common.update(
            model=meta["model"],
            resolution=meta["resolution"],
            full_epochs=proxy["epochs"],  # every recipe is trained at full length
            proxy_check=False,
            holdout=meta.get("holdout", 0.0),
            **RECIPE_DEFAULTS,
        )
    else:
        common.update(space=proxy["space"], constraints=[CONSTRAINT])
    return _config_class()(**{**common, **chosen, **fields})


def _set_pool(pool: Any) -> None:
    """Give a worker the main process's snapshot (the pool files grow while builds run)."""
    from fbnetv3_zoo.search.predictor.encoder import PretrainCache

    _POOL.clear()
    _POOL["pool"] = pool
    _POOL["pretrained"] = PretrainCache()


def make_strategy(config: Any) -> Any:
    """A fresh strategy for ``config``; jointnas shares this process's pretrained encoders."""
    from fbnetv3_zoo.search.strategies import JointNASStrategy
    from fbnetv3_zoo.search.strategies import make_strategy as by_name

    settings = config.strategy_settings()
    if config.strategy == "jointnas":
        return JointNASStrategy(settings, pretrain_cache=_POOL["pretrained"])
    return by_name(config.strategy, settings)


def one_search(job: tuple[argparse.Namespace, str, int]) -> dict[str, Any]:
    """One search on the pool: per training, its pool position, measured score and epochs, in order.

    A search whose trainings were cut short (early stopping, multi-fidelity)
    has spent fewer epochs than the equal-epoch comparison needs; it is rerun
    with a larger training budget (same seed, so the same prefix) until it
    reaches the largest epoch level, the pool runs dry, or it reaches three
    trainings per pool pair.
    """
    import torch
    from fbnetv3_zoo.search.store import vector_key
    from fbnetv3_zoo.search.strategies import epochs_spent

    torch.set_num_threads(1)
    args, text, seed = job
    pool = _POOL["pool"]
    where = {vector_key(p.vector): k for k, p in enumerate(pool.pairs)}
    epochs = pool.proxy["epochs"]
    target = max(budgets_for(args, pool)) * epochs
    budget = min(args.budget, len(pool.pairs))
    cap = 3 * len(pool.pairs)  # a multi-fidelity run may train a pair more than once
    if is_recipe_pool(pool):  # full-length trainings: start near the budget, rungs may need more
        budget = min(budget, math.ceil(target / epochs) + 1)
        cap = 6 * len(pool.pairs)
    start = time.perf_counter()
    for _ in range(4):
        rows, evaluator, scoring_epoch = search_once(args, pool, text, seed, budget)
        spent = epochs_spent(rows, args.resume_promoted)
        if spent >= target or len(rows) < budget or budget >= cap:
            break  # enough compute, the source ran dry, or as it may go
        budget = min(cap, math.ceil(budget * target / max(spent, 1)) + 1)
    fits = (
        [fitted_search(args, pool, text, seed, b * epochs) for b in budgets_for(args, pool)]
        if is_recipe_pool(pool)
        else None
    )
    return dict(
        name=text,
        seed=seed,
        budget=budget,
        pair=[where[vector_key(r["vector"])] for r in rows],
        score=[r["score"] if r["status"] == "done" else None for r in rows],
        pick=driver_picks(rows, scoring_epoch, constraint_for(pool)),
        epochs=[r["epochs"] or 0 for r in rows],
        spent=[epochs_spent(rows[: n + 1], args.resume_promoted) for n in range(len(rows))],
        shown=[evaluator.answered[r["id"]] for r in rows],  # the training each row was shown
        truth=evaluator.truths(),  # the evaluator that answered the search scores it
        best=float(np.max(pool.truth(seed))),  # one yardstick for every strategy with this seed
        # recipe pool: per level, the regret of a search sized to fit in it, and the pairs it
        # dropped near chance at a rung (NaN: the strategy drops none by design)
        fitted=None if fits is None else [f[0] for f in fits],
        dropped=None if fits is None else [f[1] for f in fits],
        wall_s=time.perf_counter() - start,
    )


def search_once(
    args: argparse.Namespace,
    pool: Any,
    text: str,
    seed: int,
    budget: int,
    notes: dict[int, Any] | None = None,
) -> tuple:
    """One driver run on the pool with a budget of ``budget`` trainings: (rows, evaluator, scoring epoch).

    ``notes``, when given, receives the strategy's notes per iteration (``Store.notes``).
    """
    from fbnetv3_zoo.search.driver import run_search
    from fbnetv3_zoo.search.pool import PoolEvaluator, PoolSource
    from fbnetv3_zoo.search.store import Store

    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # the store commits every write
    evaluator = PoolEvaluator(pool, search_seed=seed)
    config = search_config(args, pool, text, seed, budget)
    with tempfile.TemporaryDirectory(dir=shm) as tmp:
        run_search(
            config,
            Path(tmp) / "run",
            evaluator=evaluator,
            progress=False,
            source=PoolSource(pool_space(pool), pool),
            strategy=make_strategy(config),
            plots=False,  # only the store is read back: plots cost most of a pool search's time
        )
        store = Store(Path(tmp) / "run" / "search.sqlite", readonly=True)
        rows = store.candidates()
        scoring_epoch = store.get("stop_epoch") or pool.proxy["epochs"]
        if notes is not None:
            notes.update(store.notes())
        store.close()
    return rows, evaluator, scoring_epoch


def fitted_regret(args: argparse.Namespace, pool: Any, text: str, seed: int, level: float) -> float:
    """Regret of the final pick of the largest search whose trainings cost at most ``level`` epochs."""
    return fitted_search(args, pool, text, seed, level)[0]


def dropped_count(notes: dict[int, Any]) -> float:
    """Pairs a multi-fidelity strategy dropped at a rung (its last ``dropped`` note; NaN: none kept)."""
    counts = [n["dropped"] for _, n in sorted(notes.items()) if "dropped" in n]
    return float(counts[-1]) if counts else float("nan")


def fitted_search(
    args: argparse.Namespace, pool: Any, text: str, seed: int, level: float
) -> tuple[float, float]:
    """(regret, pairs dropped at a rung) of the largest search whose trainings cost at most ``level`` epochs.

    The search a user would run with that budget: its last steps (the
    strategy's ``fine`` pick, a multi-fidelity strategy's full-length
    finalist) happen inside the budget, unlike an anytime curve cut at the
    level.  Training budgets are tried from 2 up (estimated from the epochs
    the last one spent, then bisected); a search whose source ran dry stands
    with its final pick.  NaN when even 2 trainings cost more than ``level``.
    The dropped count is NaN for a strategy that does not note one.
    """
    from fbnetv3_zoo.search.strategies import epochs_spent

    fits: dict[int, tuple] = {}
    lo, hi, budget = 0, None, 2
    while budget not in fits and (hi is None or budget < hi) and budget <= 6 * len(pool.pairs):
        notes: dict[int, Any] = {}
        rows, evaluator, scoring_epoch = search_once(args, pool, text, seed, budget, notes)
        spent = epochs_spent(rows, args.resume_promoted)
        if spent > level:
            hi = budget
        else:
            fits[budget], lo = (rows, evaluator, scoring_epoch, dropped_count(notes)), budget
            if len(rows) < budget:
                break  # the source ran dry: a larger budget trains nothing more
        guess = budget * level / max(spent, 1)
        budget = (lo + hi) // 2 if hi is not None else max(budget + 1, math.floor(guess))
        if hi is not None and budget <= max(lo, 1):
            break  # bisected down to neighbours (or 2 trainings are already too many)
    if not fits:
        return float("nan"), float("nan")
    rows, evaluator, scoring_epoch, dropped = fits[lo]
    pick = driver_picks(rows, scoring_epoch, constraint_for(pool))[-1]
    best = float(np.max(pool.truth(seed)))
    if pick is None:
        return best, dropped
    from fbnetv3_zoo.search.store import vector_key

    where = {vector_key(p.vector): k for k, p in enumerate(pool.pairs)}
    truth = float(evaluator.truths()[where[vector_key(rows[pick]["vector"])]])
    return best - truth, dropped


def pool_space(pool: Any) -> Any:
    """The space the pool was built on: a space file, or a fixed model's recipe space (built once)."""
    if "space" not in _POOL:
        from fbnetv3_zoo.search.space.definition import load_space
        from fbnetv3_zoo.search.space.fixed_model import fixed_model_space

        meta, proxy = pool.meta[0], pool.proxy
        _POOL["space"] = (
            fixed_model_space(
                meta["model"], resolution=meta["resolution"], num_classes=proxy["num_classes"]
            )
            if is_recipe_pool(pool)
            else load_space(proxy["space"])
        )
    return _POOL["space"]


def budgets_for(args: argparse.Namespace, pool: Any) -> list[int]:
    """The training budgets that fit the run's budget and leave the search pool pairs to choose from.

    On a recipe pool: the ``--fre`` levels (full-run equivalents), compared at equal epochs only.
    """
    if is_recipe_pool(pool):
        return list(args.fre or RECIPE_FRE)
    return [b for b in BUDGETS if b <= args.budget and b < len(pool.pairs)]


def driver_picks(
    rows: list[dict[str, Any]], scoring_epoch: int, constraint: str = CONSTRAINT
) -> list[int | None]:
    """After each training, the row the driver would report as ``best/<constraint>.yaml`` had the run stopped there.

    Uses the driver's own rule (``report.best_per_constraint``: the best
    measured score among trainings that reached the scoring epoch, so a short
    multi-fidelity rung does not win on a lower epoch).  None before any
    training succeeded.
    """
    from fbnetv3_zoo.search.report.outputs import best_per_constraint
    from fbnetv3_zoo.search.space.constraints import parse_constraint

    constraints = [parse_constraint(constraint)]
    rows = [dict(r, id=r.get("id", k)) for k, r in enumerate(rows)]  # store rows carry their id
    position = {r["id"]: k for k, r in enumerate(rows)}
    picks: list[int | None] = []
    for n in range(1, len(rows) + 1):
        done = [r for r in rows[:n] if r["status"] == "done" and r["score"] is not None]
        best = best_per_constraint(done, constraints, scoring_epoch)[constraint] if done else None
        picks.append(None if best is None else position[best["id"]])
    return picks


def pick_regret(run: dict[str, Any], n: int, best: float) -> float:
    """Regret of the pick after the first ``n`` trainings: the driver's measured best, judged by its held-out truth.

    NaN when the run trained fewer than ``n`` pairs; ``best`` (as if the pick
    were worth 0 %) when none of them succeeded.
    """
    if n > len(run["pair"]) or n < 1:
        return float("nan")
    row = run["pick"][n - 1]
    return best if row is None else best - float(run["truth"][run["pair"][row]])


def regrets(run: dict[str, Any], budgets: list[int], epochs: int) -> tuple[np.ndarray, np.ndarray]:
    """Regret at each training budget and at each epoch level (budget x proxy epochs)."""
    best = float(run["best"])
    trainings = np.array([pick_regret(run, int(b), best) for b in budgets])
    spent = np.asarray(run.get("spent", np.cumsum(run["epochs"])))  # epochs after each training
    at_epochs = []
    for b in budgets:
        level = b * epochs
        if not len(spent) or spent[-1] < level:
            at_epochs.append(float("nan"))  # this run never spent that much
            continue
        n = int(np.searchsorted(spent, level, side="right"))
        at_epochs.append(pick_regret(run, n, best))
    return trainings, np.array(at_epochs)


def trained_best(run: dict[str, Any], budgets: list[int]) -> np.ndarray:
    """Regret of the truly best pair among the first b trainings, per budget b.

    What a perfect pick over the search's own trainings would get: the part of
    the regret the search's choice of pairs to train leaves; the rest of its
    regret is lost when it picks among them on noisy measurements.
    """
    truth, best = np.asarray(run["truth"]), float(run["best"])
    return np.array(
        [
            best - truth[run["pair"][: int(b)]].max() if b <= len(run["pair"]) else np.nan
            for b in budgets
        ]
    )


def selection_table(
    budgets: list[int], picked: dict[str, np.ndarray], sets: dict[str, np.ndarray], boot: Paired
) -> list[str]:
    """Per strategy: the regret of the best pair it trained, and what its pick lost on top of it."""
    names = list(sets)
    out = [
        "### Where the regret comes from",
        "",
        "Per strategy, at equal trainings: the regret of the truly best pair among the ones it "
        "trained (a perfect pick over its own trainings; what its choice of pairs leaves) / the "
        "extra regret of its actual pick (lost choosing among them on noisy measurements), "
        "mean [95 % interval]:",
        "",
        "| trainings | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for j, b in enumerate(budgets):
        cells = []
        for n in names:
            found, lost = sets[n][:, j], picked[n][:, j] - sets[n][:, j]
            ok = not (np.isnan(found).any() or np.isnan(lost).any())
            cells.append(f"{fmt(boot.mean(found))} / {fmt(boot.mean(lost))}" if ok else "n/a")
        out.append(f"| {b} | " + " | ".join(cells) + " |")
    return out + [""]


def measurement(pair: Any, seed: int, window: int) -> float:
    """The score the driver records for ``pair``'s training ``seed``: its mean top-1 over the last ``window`` epochs (0 % if it failed)."""
    from fbnetv3_zoo.search.early_stop import score_at

    metrics = pair.runs[seed]["metrics"]
    value = score_at(metrics, len(metrics), window) if metrics else None
    return 0.0 if value is None else value


def references(
    pool: Any, seed: int, budgets: list[int], top_k: int, remeasure: int = 0, window: int = 1
) -> dict[str, np.ndarray]:
    """Oracles that know each pair's held-out truth (no search does): reference points, not bounds.

    ``top-k``: a pick uniformly within the true top k (expected regret, the
    same at every budget).  ``top-b``: train the true top b pairs once each
    (the shown seed) and keep the best measurement, the regret that one noisy
    measurement per pair leaves even when the search knows where to look.
    With ``remeasure`` r > 0, also: train the true top b - r once, train the r
    best measured again (the next shown seed) and keep the best mean, scored on
    the trainings it saw neither time (the driver's rule, given the truth).  A
    measurement is what the driver records (:func:`measurement`, the mean top-1
    of the last ``window`` epochs); truths are final-epoch accuracies.
    """
    from fbnetv3_zoo.search.pool import shown_seed, shown_seeds

    truth = pool.truth(seed)
    measured = np.array([measurement(p, shown_seed(p, seed), window) for p in pool.pairs])
    order = np.argsort(-truth, kind="stable")
    best = truth[order[0]]
    top_k_regret = float(np.mean(best - truth[order[:top_k]]))
    top_b = [best - truth[order[:b]][int(np.argmax(measured[order[:b]]))] for b in budgets]
    out = {
        f"oracle: random pick in the true top {top_k}": np.full(len(budgets), top_k_regret),
        "oracle: trains the true top b, keeps its best measurement": np.array(top_b),
    }
    if remeasure:
        # the true order on the trainings this oracle will never be shown (ranking on a truth
        # that holds the re-measured seed would pick pairs that regress when it is left out)
        hidden = np.array([p.truth_without(shown_seeds(p, seed, 2)) for p in pool.pairs])
        hidden_order = np.argsort(-hidden, kind="stable")
        regrets = []
        for b in budgets:
            tried = hidden_order[: max(1, b - remeasure)]
            finalists = tried[np.argsort(-measured[tried], kind="stable")[:remeasure]]
            means = []
            for k in finalists:
                first, again = shown_seeds(pool.pairs[k], seed, 2)
                pair = pool.pairs[k]
                means.append(
                    (measurement(pair, first, window) + measurement(pair, again, window)) / 2
                )
            k = finalists[int(np.argmax(means))]
            regrets.append(best - pool.pairs[k].truth_without(shown_seeds(pool.pairs[k], seed, 2)))
        out[
            f"oracle: trains the true top b - {remeasure}, re-measures its best {remeasure}, keeps the best mean"
        ] = np.array(regrets)
    return out


class Paired:
    """Percentile-bootstrap statistics over seeds, one resampling shared by every strategy (paired)."""

    def __init__(self, n: int, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> None:
        self.idx = np.random.default_rng(seed).integers(0, n, (resamples, n))

    def mean(self, v: np.ndarray) -> tuple[float, float, float]:
        means = v[self.idx].mean(axis=1)
        return float(v.mean()), *np.percentile(means, [2.5, 97.5]).tolist()

    def ratio(self, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
        num, den = a[self.idx].mean(axis=1), b[self.idx].mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = num / den
        point = a.mean() / b.mean() if b.mean() > 0 else float("nan")
        lo, hi = (
            np.nanpercentile(ratios, [2.5, 97.5]) if np.isfinite(ratios).any() else (np.nan,) * 2
        )
        return float(point), float(lo), float(hi)


def seed_noise(pool: Any) -> float:
    """The median over pairs of one training's seed-to-seed standard deviation (failed trainings as 0 %)."""
    spreads = [
        float(np.std([p.final(s) for s in p.runs], ddof=1)) for p in pool.pairs if len(p.runs) >= 2
    ]
    return float(np.median(spreads)) if spreads else float("nan")


def fmt(stats: tuple[float, float, float], digits: int = 2) -> str:
    if not np.isfinite(stats[0]):
        return "n/a"
    return f"{stats[0]:.{digits}f} [{stats[1]:.{digits}f}, {stats[2]:.{digits}f}]"


def is_jointnas(text: str) -> bool:
    """JointNAS and its multi-fidelity form (``jointnas-mf``): the contenders of the tables."""
    return parse_variant(text)[0] in ("jointnas", "jointnas-mf")


def tables(
    axis: str,
    levels: list[int],
    table: dict[str, np.ndarray],
    refs: dict[str, np.ndarray],
    boot: Paired,
) -> list[str]:
    """Mean regret, paired differences and ratios, and the near-best rate along one axis."""
    names = list(table)
    ok = {n: ~np.isnan(v).any(axis=0) for n, v in table.items()}  # a level every seed reached

    def mean_cell(v: np.ndarray, j: int, reached: bool = True) -> str:
        return fmt(boot.mean(v[:, j])) if reached else "n/a"

    def versus(n: str, ref: str, j: int) -> str:
        if not (ok[n][j] and ok[ref][j]):
            return "n/a"
        a, b = table[n][:, j], table[ref][:, j]
        return f"{fmt(boot.mean(a - b))}; {fmt(boot.ratio(a, b))}x"

    out = [
        f"### At equal {axis}",
        "",
        "Mean regret in points [95 % interval]; the oracle columns know the truth (references, not bounds):",
        "",
        f"| {axis} | " + " | ".join(names + list(refs)) + " |",
        "|---|" + "---|" * (len(names) + len(refs)),
    ]
    for j, c in enumerate(levels):
        cells = [mean_cell(table[n], j, ok[n][j]) for n in names]
        cells += [mean_cell(refs[r], j) for r in refs]
        out.append(f"| {c} | " + " | ".join(cells) + " |")
    others = [n for n in names if n != "random"]
    if others:
        out += [
            "",
            "Paired difference to `random` (negative: closer to the best) [95 % interval]; ratio of mean regrets [95 % interval]:",
            "",
            f"| {axis} | " + " | ".join(others) + " |",
            "|---|" + "---|" * len(others),
        ]
    for j, c in enumerate(levels if others else []):
        out.append(f"| {c} | " + " | ".join(versus(n, "random", j) for n in others) + " |")
    baselines = [n for n in names if not is_jointnas(n)]
    contenders = [n for n in names if is_jointnas(n)]
    if contenders:
        out += [
            "",
            "Paired difference and ratio to the best non-jointnas baseline at that level "
            "(lowest mean regret among " + ", ".join(f"`{n}`" for n in baselines) + "; chosen on "
            "these same seeds, which favours the baseline):",
            "",
            f"| {axis} | best baseline | " + " | ".join(contenders) + " |",
            "|---|---|" + "---|" * len(contenders),
        ]
        for j, c in enumerate(levels):
            reached = [n for n in baselines if ok[n][j]]
            if not reached:
                out.append(f"| {c} | n/a | " + " | ".join("n/a" for _ in contenders) + " |")
                continue
            base = min(reached, key=lambda n: table[n][:, j].mean())
            out.append(
                f"| {c} | `{base}` | " + " | ".join(versus(n, base, j) for n in contenders) + " |"
            )
    out += [
        "",
        f"Rate of picking a pair whose truth is within {NEAR} points of the pool's best [95 % interval]:",
        "",
        f"| {axis} | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for j, c in enumerate(levels):
        cells = [
            fmt(boot.mean((table[n][:, j] <= NEAR).astype(float))) if ok[n][j] else "n/a"
            for n in names
        ]
        out.append(f"| {c} | " + " | ".join(cells) + " |")
    return out + [""]


def plot(
    path: Path,
    budgets: list[int],
    epochs: int,
    by_epochs: dict[str, np.ndarray],
    by_trainings: dict[str, np.ndarray],
    refs: dict[str, np.ndarray],
    boot: Paired,
    title: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, table, x, label in (
        (axes[0], by_epochs, [b * epochs for b in budgets], "proxy epochs spent"),
        (axes[1], by_trainings, budgets, "trainings"),
    ):
        for name, regret in table.items():
            ok = ~np.isnan(regret).any(axis=0)
            xs = np.array(x)[ok]
            stats = np.array([boot.mean(regret[:, j]) for j in np.flatnonzero(ok)])
            if not len(stats):
                continue
            (line,) = ax.plot(xs, stats[:, 0], marker="o", label=name)
            ax.fill_between(xs, stats[:, 1], stats[:, 2], color=line.get_color(), alpha=0.15)
        for (name, regret), style in zip(refs.items(), (":", "--"), strict=False):
            stats = np.array([boot.mean(regret[:, j]) for j in range(len(budgets))])
            ax.plot(x, stats[:, 0], color="grey", linestyle=style, label=name)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("regret to the pool's best (top-1 points)")
    axes[1].legend(fontsize=7)
    fig.suptitle(title + " (mean, 95 % bootstrap band)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def load_snapshot(path: Path, min_seeds: int) -> tuple[Any, Any]:
    """The pool as read now (retried: a build may be appending a member) and its restriction."""
    from fbnetv3_zoo.search.pool import PoolError, load_pool

    for attempt in range(5):
        try:
            full = load_pool(path)
            break
        except PoolError:
            if attempt == 4:
                raise
            time.sleep(2)
    if is_recipe_pool(full):  # a search that starts at the base trains the base preset's pair
        full = full.with_base(pool_space(full))
    return full, full.restrict(min_seeds)


def git_state() -> str:
    """The commit the run used, and whether the search code differed from it."""
    try:
        root = HERE.parent
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "search", "benchmarks/search.py"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + (" (search code modified after it)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def landing() -> str:
    """How strategies end up on pool pairs (the rule lives in the driver's sources, one for all)."""
    from fbnetv3_zoo.search import sources

    text = "Strategies choose among the pool's pairs (`PoolSource`, a finite source)"
    if hasattr(sources, "nearest_unvisited"):
        text += (
            "; a point a strategy proposes in the continuous space lands on the nearest unvisited "
            "feasible pool pair in the encoded space (`sources.nearest_unvisited`)"
        )
    return text + "."


def shown_path(path: str | Path) -> str:
    """A path relative to the repository when it is inside it."""
    p = Path(path).resolve()
    return str(p.relative_to(HERE.parent)) if p.is_relative_to(HERE.parent) else str(path)


def main(argv: list[str] | None = None) -> None:
    import torch

    args = parse_args(argv)
    start = time.perf_counter()
    path = pool_file(args.pool)
    full, pool = load_snapshot(path, args.min_seeds)
    budgets = budgets_for(args, pool)
    if not budgets or len(pool.pairs) < 2:
        raise SystemExit(
            f"{path}: {len(pool.pairs)} pairs have >= {args.min_seeds} seeds; a search needs more "
            f"than {BUDGETS[0]} (or lower --budget/--min-seeds)"
        )
    epochs = pool.proxy["epochs"]
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    runs = run_all(args, pool, seeds)
    by_trainings: dict[str, np.ndarray] = {}
    by_epochs: dict[str, np.ndarray] = {}
    sets: dict[str, np.ndarray] = {}
    for name in args.strategies:
        mine = sorted((r for r in runs if r["name"] == name), key=lambda r: r["seed"])
        both = [regrets(r, budgets, epochs) for r in mine]
        by_trainings[name] = np.array([t for t, _ in both])
        by_epochs[name] = np.array([e for _, e in both])
        if is_recipe_pool(pool):  # a search sized to each level, not an anytime curve
            by_epochs[name] = np.array([r["fitted"] for r in mine])
        sets[name] = np.array([trained_best(r, budgets) for r in mine])
    used = search_config(args, pool, "random", args.seed_start, args.budget)
    levels = [max(1, int(b)) for b in budgets]  # the oracles train whole pairs
    per_seed = [
        references(pool, s, levels, args.top_k, used.remeasure, used.score_epochs) for s in seeds
    ]
    refs = {k: np.array([r[k] for r in per_seed]) for k in per_seed[0]}
    boot = Paired(len(seeds))
    total = time.perf_counter() - start
    if is_recipe_pool(pool):
        text = recipe_report(args, path, full, pool, budgets, runs, by_epochs, refs, boot, total)
    else:
        text = report(
            args, path, full, pool, budgets, runs, by_trainings, by_epochs, refs, boot, total
        )
        text += "\n".join(selection_table(budgets, by_trainings, sets, boot))
    text += (
        f"\nMachine: {platform.machine()}, {os.cpu_count()} cores (shared with other jobs), "
        f"torch {torch.__version__}, {args.jobs} search(es) at once, 1 thread each.\n"
    )
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        title = f"pool {args.pool}, {len(pool.pairs)} pairs, seeds {seeds[0]}-{seeds[-1]}"
        if not is_recipe_pool(pool):  # two budget levels: the tables say it all
            plot(
                out.with_suffix(".png"), budgets, epochs, by_epochs, by_trainings, refs, boot, title
            )
        out.write_text(text)


def run_all(args: argparse.Namespace, pool: Any, seeds: list[int]) -> list[dict[str, Any]]:
    """Every (strategy, seed) search, checked: no pick is scored on a training it was shown."""
    jobs = [(args, name, s) for name in args.strategies for s in seeds]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, initializer=_set_pool, initargs=(pool,)) as ex:
            runs = list(ex.map(one_search, jobs, chunksize=4))
    else:
        _set_pool(pool)
        runs = [one_search(j) for j in jobs]
    for run in runs:  # the scoring never sees a shown training (tests/test_search_pool.py)
        seen: dict[int, set[int]] = {}
        for k, seed in zip(run["pair"], run["shown"], strict=True):
            seen.setdefault(k, set()).add(seed)
        for k, shown in seen.items():
            assert run["truth"][k] == pool.pairs[k].truth_without(shown)
    return runs


def preset_truths(path: Path) -> dict[str, float]:
    """Each preset's pool truth: the mean final top-1 of all its trainings (failed: 0 %).

    No search is shown a preset's training, so none is left out.
    """
    from fbnetv3_zoo.search.trainer import epoch_accuracy

    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from recipe_pool import preset_runs  # the recipe pool's own reader

    from fbnetv3_zoo.files.untrusted import field

    out = {}
    for name, by_seed in sorted(preset_runs(path).items()):
        curves = [field(r, "metrics", list, path) for r in by_seed.values()]
        finals = [epoch_accuracy(c[-1]) if c else None for c in curves]
        out[name] = float(np.mean([0.0 if v is None else v for v in finals]))
    return out


def level_table(
    title: str, budgets: list[float], names: list[str], cell: Callable[[str, int], str]
) -> list[str]:
    """A table with one row per budget level and one column per name; ``cell(name, j)`` fills it."""
    out = [
        title,
        "",
        "| full-run equivalents | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for j, b in enumerate(budgets):
        out.append(f"| {b:g} | " + " | ".join(cell(n, j) for n in names) + " |")
    return out + [""]


def preset_table(
    budgets: list[float], by_fre: dict[str, np.ndarray], bests: np.ndarray, presets: dict, boot
) -> list[str]:
    """Per preset: the search's pick minus the preset, in points, per strategy and budget."""
    out = []
    for preset, value in presets.items():

        def gain(n: str, j: int, value: float = value) -> str:
            v = bests - by_fre[n][:, j] - value
            return "n/a" if np.isnan(v).any() else fmt(boot.mean(v))

        title = (
            f"Pick's truth - `{preset}`'s truth ({value:.2f} %), in top-1 points (positive: the "
            "pick trains better) [95 % interval over search seeds]:"
        )
        out += level_table(title, budgets, list(by_fre), gain)
    return out


def report(
    args, path, full, pool, budgets, runs, by_trainings, by_epochs, refs, boot, total
) -> str:
    epochs = pool.proxy["epochs"]
    counts = full.seed_counts()
    spread = ", ".join(
        f"{int((counts == c).sum())} with {c}" for c in sorted(set(counts.tolist()), reverse=True)
    )
    per_run = np.mean([r["wall_s"] for r in runs])
    extended = sorted({r["name"] for r in runs if r["budget"] > args.budget})
    config = search_config(args, pool, "random", args.seed_start, args.budget)
    jointnas = config.strategy_settings("jointnas")
    command = "python3 benchmarks/search.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    bests = np.array([r["best"] for r in runs if r["name"] == "random"])
    chosen = [
        f"--{k.replace('_', '-')} {getattr(args, k)}"
        for k in SETTINGS
        if getattr(args, k) is not None
    ]
    overridden = f" with {', '.join(chosen)}" if chosen else ""
    lines = [
        f"# Search strategies on the `{args.pool}` pool",
        "",
        *([f"**{args.note}**", ""] if args.note else []),
        f"Command: `{command}` (commit {git_state()}); run time {total / 60:.1f} min "
        f"({per_run:.1f} s per search on average).",
        f"Pool: `{shown_path(path)}` as read at the start: {len(full.pairs)} pairs ({spread} seeds); "
        f"the {len(pool.pairs)} pairs with >= {args.min_seeds} seeds compete (`--min-seeds {args.min_seeds}`).",
        f"Search seeds {args.seed_start}-{args.seed_start + args.seeds - 1} ({args.seeds}, paired: seed s gives "
        "every strategy the same first batch, the same shown trainings and the same truths).",
        f"Settings: `SearchConfig()` defaults (the CLI's own){overridden}: first batch {config.initial}, "
        f"batches of {config.batch}, {config.remeasure} re-measured finalist(s), scores averaged over the last {config.score_epochs} epoch(s), {jointnas.members} predictor members, {jointnas.fit_steps} fit steps, "
        f"{jointnas.pretrain_steps} pretraining steps, head `{jointnas.head}`; constraint {CONSTRAINT} (every "
        f"pool pair meets it); budget {args.budget} trainings"
        + (
            f" (runs that spent fewer than {budgets[-1] * epochs} epochs were rerun with more trainings: {extended})"
            if extended
            else ""
        )
        + f". {landing()}",
        "",
        "**How regret is computed.** A search with seed s is shown one training of each pair it "
        "trains, drawn from (s, pair), and a re-measured finalist (`remeasure`) one more; the "
        "truth of a pair for that search is the mean final "
        f"accuracy of the pair's other trainings (a failed one counts 0 %), so a pick is never "
        "scored with a number the search saw (`tests/test_search_pool.py` checks this, and the "
        "script re-checks every run). The pool's best is the best truth for that seed, each pair "
        "leaving out its first shown training, the same yardstick for every strategy "
        f"(mean {bests.mean():.2f} %). After b trainings (or c epochs) the search's pick "
        "is what `best/<constraint>.yaml` would report had it stopped there (the driver's rule: "
        "the best measured score among trainings that reached the scoring epoch; re-measured "
        "finalists first, on the mean of their trainings), and regret = "
        "the best truth - the pick's truth, in top-1 points. Curves are "
        f"anytime curves of one run per seed (a strategy's final step, e.g. jointnas's ranked "
        "pick, comes at the end of the run's budget, not at each b). Equal epochs: level c = b x {epochs} proxy epochs, "
        + (
            "counting a re-trained pair only beyond its longest earlier training (`--resume-promoted`, "
            "as if resumed from a checkpoint)"
            if args.resume_promoted
            else "counting every epoch the driver trained (a promoted pair is retrained from scratch)"
        )
        + " (n/a where a run never spent that much). "
        f"Intervals: 95 % percentile bootstrap over seeds ({RESAMPLES} resamples, one paired "
        f"resampling for every column, seed {BOOTSTRAP_SEED}).",
        "",
    ]
    noise = seed_noise(pool)
    lines += [
        f"Noise, for reading the numbers: one training's seed-to-seed standard deviation is "
        f"{noise:.2f} points here (median over pairs), so a truth of k other seeds carries about "
        f"{noise:.2f}/sqrt(k); the best truth is the maximum of {len(pool.pairs)} such means and "
        "sits above the best pair's real quality, which puts a floor under every column (see the "
        "oracles) and pulls ratios towards 1; differences between strategies are unaffected.",
        "",
    ]
    lines += tables("trainings", budgets, by_trainings, refs, boot)
    lines += tables("epochs", [b * epochs for b in budgets], by_epochs, refs, boot)
    return "\n".join(lines)


def recipe_report(args, path, full, pool, budgets, runs, by_fre, refs, boot, total) -> str:
    """The results of a recipe pool: regret at equal full-run equivalents, picks against the presets."""
    epochs = pool.proxy["epochs"]
    meta = pool.meta[0]
    config = search_config(args, pool, "random", args.seed_start, args.budget)
    command = "python3 benchmarks/search.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    bests = np.array(
        [r["best"] for r in sorted(runs, key=lambda r: r["seed"]) if r["name"] == "random"]
    )
    presets = preset_truths(path)
    columns = dict(refs)
    for name, value in presets.items():
        columns[f"preset `{name}`"] = np.repeat((bests - value)[:, None], len(budgets), axis=1)
    settings = {
        n: search_config(args, pool, n, 0, args.budget).strategy_settings() for n in args.strategies
    }
    lines = [
        f"# Recipe search on the recipe pool `{shown_path(path)}`",
        "",
        *([f"**{args.note}**", ""] if args.note else []),
        f"Command: `{command}` (commit {git_state()}); run time {total / 60:.1f} min "
        f"({np.mean([r['wall_s'] for r in runs]):.1f} s per search on average).",
        f"Pool: {meta['model']} at {meta['resolution']} px on `{meta['data']}`, every recipe trained "
        f"{epochs} epochs (the full schedule); {len(full.pairs)} recipes as read at the start "
        f"({base_note(full)}), the {len(pool.pairs)} with >= {args.min_seeds} seeds compete; "
        "presets "
        + ", ".join(f"`{n}` {v:.2f} %" for n, v in presets.items())
        + " (mean of all their trainings).",
        f"Search seeds {args.seed_start}-{args.seed_start + args.seeds - 1} (paired). Settings: "
        f"first batch {config.initial} (full length), batches of {config.batch}, "
        f"{config.remeasure} re-measured finalists, score = top-1 of the last "
        f"{config.score_epochs} epoch(s); strategy settings: "
        + "; ".join(f"`{n}` {s.as_dict()}" for n, s in settings.items() if s.as_dict())
        + ".",
        "",
        "**Budgets** are full-run equivalents: a training of e of the pool's "
        f"{epochs} epochs costs e / {epochs}, "
        + (
            "a re-trained pair counting only the epochs beyond its longest earlier training "
            "(`--resume-promoted`, as a trainer resuming a checkpoint spends)"
            if args.resume_promoted
            else "every row counted as the driver trains it (from scratch, a promoted or "
            "continued pair included)"
        )
        + ". The pick at a budget B is the final pick of the search a user would run with B: "
        "per strategy and seed, the largest training budget whose rows cost at most B (tried "
        "from 2 trainings up, then bisected; `fitted_regret`), so its fine step or full-length "
        "finalist happens inside B; the pick is the driver's `best/` rule (the best measured "
        "score among full-length trainings), scored on the recipe's "
        "held-out truth (the mean of the trainings the search was not shown); regret = the "
        "pool's best truth - the pick's truth, in top-1 points. Intervals: 95 % percentile "
        f"bootstrap over search seeds ({RESAMPLES} resamples, paired, seed {BOOTSTRAP_SEED}). "
        f"One training's seed-to-seed standard deviation here: {seed_noise(pool):.2f} points "
        "(median over recipes).",
        "",
    ]
    lines += tables("full-run equivalents", [f"{b:g}" for b in budgets], by_fre, columns, boot)
    lines += pick_tables(budgets, runs, by_fre, bests, presets, boot)
    return "\n".join(lines)


def pick_tables(budgets, runs, by_fre, bests, presets, boot) -> list[str]:
    """After the regret tables: against optuna-tpe-pruned, the dropped counts, against the presets."""
    out = versus_table(PRUNED, budgets, by_fre, boot)
    out += dropped_table(budgets, runs, list(by_fre), boot)
    return out + preset_table(budgets, by_fre, bests, presets, boot)


PRUNED = "optuna-tpe-pruned"  # issue 40's yardstick: the multi-fidelity setup an Optuna user writes


def versus_table(ref: str, budgets: list[float], by_fre: dict[str, np.ndarray], boot) -> list[str]:
    """Each contender's paired difference and ratio of mean regrets to strategy ``ref``."""
    contenders = [n for n in by_fre if is_jointnas(n)]
    if ref not in by_fre or not contenders:
        return []

    def cell(n: str, j: int) -> str:
        a, r = by_fre[n][:, j], by_fre[ref][:, j]
        if np.isnan(a).any() or np.isnan(r).any():
            return "n/a"
        return f"{fmt(boot.mean(a - r))}; {fmt(boot.ratio(a, r))}x"

    title = (
        f"Paired difference to `{ref}` (negative: closer to the best) [95 % interval]; ratio of "
        "mean regrets [95 % interval]:"
    )
    return level_table(title, budgets, contenders, cell)


def dropped_table(budgets: list[float], runs: list[dict], names: list[str], boot) -> list[str]:
    """Per strategy that drops pairs at a rung: how many its search dropped, per budget."""
    counts = {}
    for n in names:
        mine = sorted((r for r in runs if r["name"] == n), key=lambda r: r["seed"])
        values = np.array([r.get("dropped") or [np.nan] * len(budgets) for r in mine], float)
        if not np.isnan(values).all():
            counts[n] = values
    if not counts:
        return []

    def cell(n: str, j: int) -> str:
        v = counts[n][:, j]
        return "n/a" if np.isnan(v).any() else fmt(boot.mean(v))

    title = (
        "Recipes dropped at a rung (top-1 near chance or diverged: never promoted, never a "
        "finalist), per search at that budget, mean [95 % interval]:"
    )
    return level_table(title, budgets, list(counts), cell)


if __name__ == "__main__":
    main()
