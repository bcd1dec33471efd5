"""What a trained candidate is, once trained: a typed, frozen :class:`FinishedTrial`.

An evaluator returns a plain dict (``RESULT_KEYS``; plain data crosses Ray
and process boundaries); :func:`check_result` is the gate that refuses any
other shape, and :meth:`FinishedTrial.from_result` turns an accepted dict into
the typed object that the executors yield, the driver scores and stores, and
``Strategy.tell`` hears.  Only the store's boundary (``Store.finish`` and
:meth:`FinishedTrial.from_row`) sees SQLite rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from fbnetv3_zoo.search.objective import Trial
from fbnetv3_zoo.search.trainer import EvalTask, epoch_accuracy

from fbnetv3_zoo.errors import UserError

__all__ = ["RESULT_KEYS", "FinishedTrial", "check_result"]

RESULT_KEYS = "{cid, status: 'done'|'failed', metrics: [{epoch, val_top1, ...}], error, wall_s}"
STATUSES = ("done", "failed")


def check_result(result: Any) -> None:
    """Refuse an evaluator's result that is not the documented shape, naming what is wrong.

    An evaluator returns ``RESULT_KEYS`` (see ``fbnetv3_zoo.search.trainer.evaluate``); a
    done candidate needs ``val_top1`` or ``ema_top1`` (percent) in at least one epoch.

    Raises:
        UserError: one line naming the missing key, the wrong type or the bad status.
    """

    def wrong(what: str) -> UserError:
        return UserError(f"the evaluator returned {what}; expected a dict {RESULT_KEYS}")

    if not isinstance(result, dict):
        raise wrong(f"a {type(result).__name__}")
    for key, kind in (("cid", int), ("status", str), ("metrics", list)):
        if key not in result:
            raise wrong(f"no key {key!r} (keys: {', '.join(map(str, result)) or 'none'})")
        if not isinstance(result[key], kind) or isinstance(result[key], bool):
            raise wrong(f"{key!r} as a {type(result[key]).__name__}, not a {kind.__name__}")
    if result["status"] not in STATUSES:
        raise wrong(f"status {result['status']!r}")
    epochs = result["metrics"]
    if not all(isinstance(e, dict) for e in epochs):
        raise wrong("'metrics' entries that are not dicts")
    if result["status"] == "done" and not any(epoch_accuracy(e) is not None for e in epochs):
        seen = sorted({str(k) for e in epochs for k in e}) or ["none"]
        raise wrong(f"a done candidate with no 'val_top1' in any epoch (keys: {', '.join(seen)})")


def _frozen_curve(records: Any) -> tuple[Mapping[str, Any], ...]:
    return tuple(MappingProxyType(dict(r)) for r in records or ())


@dataclass(frozen=True)
class FinishedTrial:
    """One trained (or failed) candidate: its :class:`Trial`, what training measured, where it came from.

    ``curve``: the per-epoch records (``epoch``, ``val_top1`` and whatever else the
    evaluator reported), read-only; ``score``: the proxy top-1 the search ranks it by
    (set once the driver has scored it, at the early-stopping epoch); ``error``: why a
    failed one failed.  The rest says where the pair came from: ``iteration`` (0: the
    first batch), ``source`` (sobol, acquisition, genetic, repeat...), its encoding
    ``vector``, ``macs``/``params``, the strategy's ``predicted`` score and, for a
    re-measurement, ``repeat_of`` (the candidate id it trains again).
    """

    trial: Trial
    status: str
    curve: tuple[Mapping[str, Any], ...] = ()
    score: float | None = None
    error: str | None = None
    wall_s: float | None = None
    iteration: int | None = None
    source: str | None = None
    vector: tuple[float, ...] = ()
    macs: int | None = None
    params: int | None = None
    predicted: float | None = None
    repeat_of: int | None = None

    @property
    def number(self) -> int:
        """The candidate id (the store's row id)."""
        return self.trial.number

    @property
    def done(self) -> bool:
        return self.status == "done"

    def metrics(self) -> list[dict[str, Any]]:
        """The curve as plain dicts (a copy: JSON, or score_at)."""
        return [dict(r) for r in self.curve]

    def replace(self, **changes: Any) -> FinishedTrial:
        """A copy with ``changes`` (the object itself never changes)."""
        if "curve" in changes:
            changes["curve"] = _frozen_curve(changes["curve"])
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_result(cls, task: EvalTask, result: Any) -> FinishedTrial:
        """An evaluator's dict for ``task``, checked by :func:`check_result` first.

        Raises:
            UserError: the result's shape is wrong, or it answers another candidate.
        """
        check_result(result)
        if result["cid"] != task.cid:
            raise UserError(
                f"the evaluator returned cid {result['cid']} for candidate {task.cid}; "
                "return the cid of the task it was given"
            )
        wall = result.get("wall_s")
        return cls(
            trial=Trial.from_task(task, strict=False),
            status=result["status"],
            curve=_frozen_curve(result["metrics"]),
            error=result.get("error"),
            wall_s=None if wall is None else float(wall),
        )

    @classmethod
    def failure(cls, task: EvalTask, error: str) -> FinishedTrial:
        """A candidate the executor lost (e.g. a Ray worker died twice)."""
        return cls(trial=Trial.from_task(task, strict=False), status="failed", error=error)

    @classmethod
    def from_row(cls, row: dict[str, Any], task: EvalTask) -> FinishedTrial:
        """A finished store row (``Store.candidates()``); ``task`` is how it was (or is) trained."""
        return cls(
            trial=Trial.from_task(task, strict=False),
            status=row["status"],
            curve=_frozen_curve(row.get("metrics")),
            score=row.get("score"),
            error=row.get("error"),
            wall_s=row.get("wall_s"),
            iteration=row.get("iteration"),
            source=row.get("source"),
            vector=tuple(float(v) for v in row.get("vector") or ()),
            macs=row.get("macs"),
            params=row.get("params"),
            predicted=row.get("predicted"),
            repeat_of=row.get("repeat_of"),
        )
