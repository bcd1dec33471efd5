"""A ground-truth pool: (arch, recipe) pairs already trained on the proxy, looked up instead of trained.

NAS benchmarks publish tabular ground truth so that search strategies can be
compared over many seeds in seconds; this is ours for the embedded space.
The pool file (built by ``benchmarks/pool.py``) is gzipped JSON lines: one
``meta`` line per build session (proxy settings, command, package versions,
machine) and one ``run`` line per training (the pair's vector, arch and recipe,
MACs, params, seed, per-epoch metrics, wall and CPU seconds).  Sessions are
appended as gzip members, so an interrupted build loses nothing.

``PoolEvaluator`` answers an :class:`EvalTask` from the table (a pair outside
the pool, or a proxy other than the pool's, is an error, never a silent
retraining); ``PoolSource`` serves the pool's vectors as a finite candidate
source so the strategies only propose pairs the table can answer.

Honest scoring: a search with seed ``s`` is shown ONE training of
each pair, drawn from (``s``, pair index) by :func:`shown_seed`, so every
search sees fresh noise and strategies run with the same ``s`` see the same
noise (paired).  Its picks are scored by :meth:`PoolEvaluator.truth`, the
mean of the pair's *other* trainings, which never contains the measurement
the search saw; scoring against a mean that includes it rewards a search
for trusting its own lucky draws.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fbnetv3_zoo.search.sources import VectorSource
from fbnetv3_zoo.search.space.definition import SearchSpace
from fbnetv3_zoo.search.trainer import EvalTask, epoch_accuracy

from fbnetv3_zoo.errors import UserError

POOL_FORMAT = 1
BASE_PAIR = 1_000_000  # the pair index of a recipe pool's base preset (:meth:`Pool.with_base`)
PROXY_KEYS = ("space", "space_fingerprint", "data", "epochs", "overrides", "num_classes")


class PoolError(UserError):
    """A pool file is unreadable, inconsistent, or asked for a pair it does not hold."""


def _rounded(value: Any) -> Any:
    """Floats to 10 significant digits (recursively), so float noise cannot split a key."""
    if isinstance(value, float):
        return float(f"{value:.10g}") if math.isfinite(value) else repr(value)
    if isinstance(value, Mapping):
        return {str(k): _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def pair_key(arch: Mapping[str, Any], recipe: Mapping[str, Any]) -> str:
    """The canonical identity of an (arch dict, searched recipe fields) pair."""
    return json.dumps({"arch": _rounded(arch), "recipe": _rounded(recipe)}, sort_keys=True)


@dataclass
class PoolPair:
    """One pair of the pool and its trainings, by seed."""

    index: int
    vector: np.ndarray
    arch: dict[str, Any]
    recipe: dict[str, Any]
    macs: int
    params: int
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)  # seed -> run record

    def score(self, seed: int) -> float | None:
        """Final proxy accuracy of the training with ``seed`` (None if it failed)."""
        run = self.runs[seed]
        return epoch_accuracy(run["metrics"][-1]) if run["metrics"] else None

    def scores(self) -> list[float]:
        """Final accuracies of every successful training."""
        return [s for s in (self.score(seed) for seed in sorted(self.runs)) if s is not None]

    def final(self, seed: int) -> float:
        """Final accuracy of the training with ``seed``, a failed training counting 0 % (a diverged recipe is a bad pair)."""
        value = self.score(seed)
        return 0.0 if value is None else value

    def truth_without(self, seed: int | Collection[int]) -> float:
        """The mean final accuracy over every training but ``seed``'s (or those of several seeds): the truth a search shown them is scored on."""
        shown = {seed} if isinstance(seed, int) else set(seed)
        others = [self.final(s) for s in sorted(self.runs) if s not in shown]
        if not others:
            which = ", ".join(str(s) for s in sorted(shown))
            raise PoolError(
                f"pool pair {self.index} has no training besides seed {which}: no held-out truth "
                "(restrict the pool with Pool.restrict(min_seeds=...) to more seeds)"
            )
        return float(np.mean(others))


def shown_seed(pair: PoolPair, search_seed: int) -> int:
    """The one training of ``pair`` that a search with ``search_seed`` is shown.

    Drawn uniformly from the pair's seeds by a generator seeded with
    (search seed, pair index): fresh noise per search, the same noise for
    every strategy run with that search seed, and no dependence on the order
    in which a search visits pairs.
    """
    return shown_seeds(pair, search_seed, 1)[0]


def shown_seeds(pair: PoolPair, search_seed: int, count: int) -> list[int]:
    """The first ``count`` distinct trainings of ``pair`` a search is shown (a re-measurement shows the next).

    The first is :func:`shown_seed`'s; each further one is drawn from the
    seeds not shown yet by the same generator.
    """
    left = sorted(pair.runs)
    if len(left) < count:
        raise PoolError(
            f"pool pair {pair.index} has {len(left)} training(s); a search asked for {count}"
        )
    rng = np.random.default_rng(np.random.SeedSequence([int(search_seed), int(pair.index)]))
    return [left.pop(int(rng.integers(len(left)))) for _ in range(count)]


@dataclass
class Pool:
    """The proxy settings and every trained pair of a pool file."""

    meta: list[dict[str, Any]]
    pairs: list[PoolPair]
    # a recipe pool's preset trainings (``benchmarks/recipe_pool.py``): name -> seed -> record;
    # not candidates unless :meth:`with_base` makes the space's base one
    presets: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)

    @property
    def proxy(self) -> dict[str, Any]:
        return {k: self.meta[0][k] for k in PROXY_KEYS}

    def index(self) -> dict[str, PoolPair]:
        return {pair_key(p.arch, p.recipe): p for p in self.pairs}

    def vectors(self) -> np.ndarray:
        return np.array([p.vector for p in self.pairs])

    def quality(self) -> tuple[np.ndarray, np.ndarray]:
        """Per pair: the mean final accuracy over its seeds and how many seeds that is.

        For summaries of the pool (``benchmarks/pool.py``); searches are scored
        on :meth:`truth` instead, which leaves out the training they were shown.
        Failed trainings count as 0 % (a diverged recipe is a bad pair).
        """
        mean, count = np.zeros(len(self.pairs)), np.zeros(len(self.pairs), dtype=int)
        for i, p in enumerate(self.pairs):
            values = [0.0 if p.score(s) is None else p.score(s) for s in p.runs]
            mean[i], count[i] = (float(np.mean(values)), len(values)) if values else (np.nan, 0)
        return mean, count

    def seed_counts(self) -> np.ndarray:
        """How many trainings each pair has (a build in progress has fewer for later pairs)."""
        return np.array([len(p.runs) for p in self.pairs], dtype=int)

    def restrict(self, min_seeds: int) -> Pool:
        """The pairs trained with at least ``min_seeds`` seeds (pair indices kept).

        Held-out truth needs ``min_seeds >= 2``; a pool still being built can be
        used as it is complete.
        """
        if min_seeds < 1:
            raise PoolError(f"min_seeds must be >= 1, got {min_seeds}")
        return Pool(self.meta, [p for p in self.pairs if len(p.runs) >= min_seeds], self.presets)

    def with_base(self, space: SearchSpace) -> Pool:
        """This pool with the space's base preset as one more pair, as a search that starts at
        the base (``SearchConfig.start_at_base``) trains it: its vector, its decoded recipe and
        the preset's trainings.  Unchanged when the file holds no trainings of that preset."""
        from fbnetv3_zoo.search.space.encoding import base_recipe_vector, decode

        runs = self.presets.get(space.recipe_base)
        if not runs or not self.pairs or any(p.index == BASE_PAIR for p in self.pairs):
            return self
        u = base_recipe_vector(space)[0]
        model = self.pairs[0]  # a recipe pool's pairs all train the one model
        recipe = decode(space, u)[1]
        pair = PoolPair(BASE_PAIR, u, model.arch, recipe, model.macs, model.params)
        pair.runs = dict(runs)
        return Pool(self.meta, [*self.pairs, pair], self.presets)

    def truth(self, search_seed: int) -> np.ndarray:
        """Per pair, the held-out truth for the search with ``search_seed``: the mean of every training but the one it is shown."""
        return np.array([p.truth_without(shown_seed(p, search_seed)) for p in self.pairs])


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every JSON record of a (multi-member) gzipped JSON-lines file."""
    path = Path(path)
    if not path.is_file():
        raise PoolError(f"pool file not found: {path}")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, EOFError, json.JSONDecodeError) as err:
        raise PoolError(f"{path}: not a readable pool file ({err})") from None


def append_records(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Append records as one new gzip member (a crash mid-write loses only this member)."""
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "at", encoding="utf-8") as f:
        f.write(text)


def load_pool(path: str | Path) -> Pool:
    """Read a pool file; PoolError names the file and the first inconsistent record."""
    records = read_records(path)
    meta = [r for r in records if r.get("type") == "meta"]
    if not meta:
        raise PoolError(f"{path}: no meta record (not a pool file?)")
    for m in meta:
        if m.get("format") != POOL_FORMAT:
            raise PoolError(f"{path}: pool format {m.get('format')!r}, expected {POOL_FORMAT}")
        if any(m.get(k) != meta[0].get(k) for k in PROXY_KEYS):
            raise PoolError(f"{path}: build sessions disagree on the proxy settings {PROXY_KEYS}")
    by_index: dict[int, PoolPair] = {}
    presets: dict[str, dict[int, dict[str, Any]]] = {}
    for n, r in enumerate(records, 1):
        if r.get("type") == "preset":
            try:
                presets.setdefault(str(r["preset"]), {})[int(r["seed"])] = r
            except (KeyError, TypeError, ValueError) as err:
                raise PoolError(
                    f"{path}: record {n}: a preset record needs a name and an integer seed ({err!r})"
                ) from None
        if r.get("type") != "run":
            continue
        i = int(r["pair"])
        pair = by_index.get(i)
        if pair is None:
            pair = by_index[i] = PoolPair(
                i,
                np.asarray(r["vector"], dtype=float),
                r["arch"],
                r["recipe"],
                r["macs"],
                r["params"],
            )
        elif pair_key(pair.arch, pair.recipe) != pair_key(r["arch"], r["recipe"]):
            raise PoolError(f"{path}: pair {i} holds two different (arch, recipe) pairs")
        pair.runs[int(r["seed"])] = r
    return Pool(meta, [by_index[i] for i in sorted(by_index)], presets)


class PoolEvaluator:
    """An evaluator that looks a task's pair up in the pool instead of training it.

    With ``search_seed`` (the honest mode) each pair answers with the
    training :func:`shown_seed` draws for that search; without it every pair
    answers with its training ``seed`` (the old fixed-noise mode, kept for
    callers that want one frozen table).  A re-measurement (``EvalTask.repeat``
    k) answers with the pair's next unshown training.  Either way
    :meth:`truth` scores a pair on its other trainings only: ``shown`` records
    the first seed each answered pair showed, ``seen`` every seed it showed.  A task stopped early gets the first ``stop_after``
    epochs of the curve and a proportional share of the recorded wall time.
    """

    def __init__(self, pool: Pool, seed: int = 0, search_seed: int | None = None) -> None:
        self.pool = pool
        self.seed = seed
        self.search_seed = search_seed
        self._index = pool.index()
        self._by_number = {p.index: p for p in pool.pairs}
        self.calls = 0
        self.shown: dict[int, int] = {}  # pool pair index -> the seed its first answer came from
        self.seen: dict[int, list[int]] = {}  # pool pair index -> every seed it answered with
        self.answered: dict[int, int] = {}  # task cid -> the seed its answer came from

    def seed_for(self, pair: PoolPair, repeat: int = 0) -> int:
        """The training of ``pair`` this evaluator answers with (``repeat``: its k-th re-measurement)."""
        if self.search_seed is not None:
            return shown_seeds(pair, self.search_seed, repeat + 1)[repeat]
        seeds = sorted(pair.runs)
        if self.seed not in seeds:
            return self.seed  # reported as missing by the caller
        return seeds[(seeds.index(self.seed) + repeat) % len(seeds)]

    def truth(self, pair: PoolPair | int) -> float:
        """The held-out truth of ``pair`` (or pool pair index): the mean of its trainings other than those shown."""
        if not isinstance(pair, PoolPair):
            if pair not in self._by_number:
                raise PoolError(f"pool pair {pair} is not in this pool")
            pair = self._by_number[pair]
        return pair.truth_without(self.seen.get(pair.index, [self.seed_for(pair)]))

    def truths(self) -> np.ndarray:
        """The held-out truth of every pool pair, in ``pool.pairs`` order."""
        return np.array([self.truth(p) for p in self.pool.pairs])

    def __call__(self, task: EvalTask) -> dict[str, Any]:
        proxy = self.pool.proxy
        if task.data != proxy["data"] or task.epochs != proxy["epochs"]:
            raise PoolError(
                f"the pool was trained on data {proxy['data']!r} for {proxy['epochs']} epochs; "
                f"the task asks for {task.data!r}, {task.epochs} epochs"
            )
        if dict(task.overrides) != proxy["overrides"]:
            raise PoolError(
                f"the pool's recipe overrides {proxy['overrides']} differ from the task's {dict(task.overrides)}"
            )
        pair = self._index.get(pair_key(task.arch, task.recipe))
        if pair is None:
            raise PoolError(f"candidate {task.cid}: this (arch, recipe) pair is not in the pool")
        seed = self.seed_for(pair, task.repeat)
        if seed not in pair.runs:
            raise PoolError(
                f"pool pair {pair.index} has no training with seed {seed} (has {sorted(pair.runs)})"
            )
        self.calls += 1
        self.answered[task.cid] = seed
        self.shown.setdefault(pair.index, seed)
        if seed not in self.seen.setdefault(pair.index, []):
            self.seen[pair.index].append(seed)
        run = pair.runs[seed]
        epochs = len(run["metrics"]) if task.stop_after is None else task.stop_after
        share = min(1.0, epochs / max(1, task.epochs))
        return dict(
            cid=task.cid,
            status=run["status"],
            metrics=[dict(m) for m in run["metrics"][:epochs]],
            error=run.get("error"),
            wall_s=float(run["wall_s"]) * share,
        )


class PoolSource(VectorSource):
    """The pool's pairs as a finite candidate source (the strategies can only pick what it holds)."""

    def __init__(self, space: SearchSpace, pool: Pool) -> None:
        proxy = pool.proxy
        if proxy["space_fingerprint"] != space.fingerprint():
            raise PoolError(
                f"the pool was built on space {proxy['space']!r} (fingerprint {proxy['space_fingerprint']}); "
                f"{space.name!r} has fingerprint {space.fingerprint()}"
            )
        super().__init__(space, pool.vectors(), num_classes=proxy["num_classes"])
