"""What a run keeps between sessions: its progress log, its epoch files, and resuming them.

``checkpoints.py`` makes an epoch's files durable as one unit; this module
decides what goes into them (weights, EMA, optimizer, scheduler, log, the
settings a resume must match) and loads them back into a new session's parts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from . import checkpoints as ckpt
from .apply import RecipeParts


@dataclass
class RunLog:
    """What a resumed run needs besides weights and optimizer: progress and history."""

    total_epochs: int
    epoch: int = 0
    num_updates: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_time: float = 0.0
    train_images: int = 0
    wall_base: float = 0.0  # wall time of earlier (resumed-from) sessions
    wall_start: float = field(default_factory=time.perf_counter)
    skipped: set[str] = field(default_factory=set)
    sessions: list[dict[str, Any]] = field(default_factory=list)  # who trained it, how

    @property
    def wall_time(self) -> float:
        return self.wall_base + time.perf_counter() - self.wall_start

    def to_state(self) -> dict[str, Any]:
        return dict(
            epoch=self.epoch,
            total_epochs=self.total_epochs,
            num_updates=self.num_updates,
            history=self.history,
            train_time=self.train_time,
            train_images=self.train_images,
            wall_time=self.wall_time,
            skipped=sorted(self.skipped),
            sessions=self.sessions,
        )

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RunLog:
        return cls(
            total_epochs=state["total_epochs"],
            epoch=state["epoch"],
            num_updates=state["num_updates"],
            history=state["history"],
            train_time=state["train_time"],
            train_images=state["train_images"],
            wall_base=state["wall_time"],
            skipped=set(state["skipped"]),
            sessions=list(state.get("sessions") or []),  # runs before 0.1.0's record: none
        )


def epoch_files(
    model: nn.Module,
    parts: RecipeParts,
    log: RunLog,
    settings: dict[str, Any],
    world_size: int,
) -> dict[str, bytes]:
    """The files of the epoch ``log`` has reached: weights, EMA weights (if kept) and state."""
    epoch = log.epoch
    files = {ckpt.WEIGHTS_FILE: ckpt.weights_bytes(model, epoch)}
    if parts.ema is not None:
        files[ckpt.EMA_FILE] = ckpt.weights_bytes(parts.ema.module, epoch)
    state = dict(
        **log.to_state(),
        optimizer=parts.optimizer.state_dict(),
        scheduler=parts.scheduler.state_dict(),
        settings=settings,
        world_size=world_size,
    )
    files[ckpt.STATE_FILE] = ckpt.state_bytes(state)
    return files


def restore(
    out: Path, settings: dict[str, Any], model: nn.Module, model_name: str, parts: RecipeParts
) -> RunLog:
    """Load the committed epoch into the run's parts; name every setting that differs."""
    state, paths = ckpt.read_committed(out)
    saved = state.get("settings")
    if not isinstance(saved, dict):
        raise ckpt.ResumeError(f"{paths[ckpt.STATE_FILE]} holds no run settings")
    diffs = differences(saved, settings)
    if diffs:
        raise ckpt.ResumeError(
            f"{out} holds a run with other settings: {'; '.join(diffs)}. Resume with the "
            "run's own settings or choose another --out"
        )
    ckpt.load_weights(paths[ckpt.WEIGHTS_FILE], model, f"--model {model_name}")
    if parts.ema is not None:
        if ckpt.EMA_FILE not in paths:
            raise ckpt.ResumeError(f"{out} holds no {ckpt.EMA_FILE} to resume the EMA from")
        ckpt.load_weights(paths[ckpt.EMA_FILE], parts.ema.module, f"--model {model_name}")
    try:
        parts.optimizer.load_state_dict(state["optimizer"])
        parts.scheduler.load_state_dict(state["scheduler"])
        return RunLog.from_state(state)
    except (KeyError, ValueError, TypeError) as err:
        raise ckpt.ResumeError(f"{paths[ckpt.STATE_FILE]} does not fit this run: {err}") from None


def differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """'setting: run X, now Y' for each setting (and recipe field) that changed."""
    diffs = []
    labels = dict(model="--model", data="--data", seed="--seed", epochs="--epochs")
    for key, label in labels.items():
        if saved.get(key) != now[key]:
            diffs.append(f"{label} was {saved.get(key)!r}, now {now[key]!r}")
    if saved.get("holdout", 0.0) != now.get("holdout", 0.0):  # the split validated on
        diffs.append(f"holdout was {saved.get('holdout', 0.0)!r}, now {now.get('holdout', 0.0)!r}")
    if saved.get("task", "classification") != now.get("task", "classification"):
        diffs.append(
            f"--task was {saved.get('task', 'classification')!r}, now {now.get('task', 'classification')!r}"
        )
    old, new = saved.get("recipe") or {}, now["recipe"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            diffs.append(f"recipe {key} was {old.get(key)!r}, now {new.get(key)!r}")
    return diffs
