"""The epoch loop: train, validate, commit, one epoch at a time.

Randomness: every epoch reseeds Python, NumPy and torch from
``(seed, epoch, rank)`` and shuffles with ``DistributedSampler(seed=seed)``,
so an epoch's draws never depend on earlier sessions, which is what makes
resuming exact (and possible across a changed number of processes).
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from fbnetv3_zoo.files.outputs import RunLock
from fbnetv3_zoo.provenance import environment

from . import checkpoints as ckpt
from . import distributed
from .apply import RecipeParts
from .devices import precision
from .recipe import Recipe
from .resume import RunLog, epoch_files
from .summary import finite, print_epoch, read_summary, run_summary, write_summary

EpochCallback = Callable[[dict[str, Any]], bool | None]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint (if any) is kept."""


def seed_everything(seed: int) -> None:
    """Seed every RNG a run touches (Python, NumPy for mixup, torch)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """A well-mixed seed for one process's epoch (no overlap between nearby inputs)."""
    return int(np.random.SeedSequence([seed % 2**64, epoch, rank]).generate_state(1)[0])


@dataclass
class Run:
    """One training run's parts: the object every step reads instead of long argument lists.

    ``prepare.start_run`` builds it after checking everything that can be checked.
    """

    model: nn.Module  # the bare model (weights, EMA, evaluation)
    net: nn.Module  # what trains: the model or its DistributedDataParallel wrapper
    recipe: Recipe
    parts: RecipeParts
    train_loader: DataLoader
    sampler: DistributedSampler
    val_loader: DataLoader
    device: torch.device
    out: Path | None
    created_out: bool  # this run made ``out`` (removed again if nothing gets committed)
    group: distributed.Dist
    seed: int
    settings: dict[str, Any]  # what a resume must match
    progress: bool
    log: RunLog
    lock: RunLock | None = None  # held while this process writes ``out`` (rank 0)
    commit_hook: ckpt.CommitHook | None = None  # observes each step of a commit (tests)
    committed: bool = False  # this session committed an epoch
    task: Any = None  # the ``fbnetv3_zoo.tasks.base.Task`` plug-in (data, loss, metrics)
    channels_last: bool = False  # the model's weights are in NHWC memory (engine.train)

    def fit(
        self, stop_after_epochs: int | None, callback: EpochCallback | None, eval_every: int
    ) -> dict[str, Any]:
        """Train the remaining epochs, committing each; return the summary."""
        try:
            trained = self._train_epochs(stop_after_epochs, callback, eval_every)
        except BaseException:
            self._remove_unfinished_folder()
            raise
        return self._finish(trained)

    def _train_epochs(
        self, stop_after_epochs: int | None, callback: EpochCallback | None, eval_every: int
    ) -> bool:
        """The epoch loop proper; True when this session trained at least one epoch."""
        log = self.log
        if log.epoch >= log.total_epochs:
            return False
        memory = "channels_last" if self.channels_last else "contiguous"
        session = environment(self.device, self.group.world_size) | {"memory_format": memory}
        log.sessions.append(session)  # how, by whom
        for epoch in range(log.epoch + 1, log.total_epochs + 1):
            last = epoch == log.total_epochs or (
                stop_after_epochs is not None and epoch >= stop_after_epochs
            )
            record = self.epoch(epoch, validate=last or epoch % eval_every == 0)
            log.history.append(record)
            log.epoch = epoch
            if self.out is not None and self.group.main:
                self.commit()
            stop = callback(record) if callback else False
            if stop or last:
                break
        return True

    def _remove_unfinished_folder(self) -> None:
        """A run that made its folder and committed nothing leaves nothing half-made."""
        if self.created_out and not self.committed and self.group.main and self.out is not None:
            if self.lock is not None:
                self.lock.release()
            shutil.rmtree(self.out, ignore_errors=True)

    def _finish(self, trained: bool) -> dict[str, Any]:
        """The summary, written with the curves (rank 0); a finished run's own when resumed."""
        if not trained and self.out is not None:  # resuming a finished run changes nothing
            kept = read_summary(self.out)
            if kept is not None:
                return kept
        wall = self.log.wall_time if trained else self.log.wall_base
        summary = run_summary(self.log, self.settings, self.parts, wall, self.task)
        if self.out is not None and self.group.main:
            write_summary(self.out, summary)
        return summary

    def epoch(self, epoch: int, validate: bool) -> dict[str, Any]:
        """Train one epoch (all processes), validate on rank 0, share the record."""
        seed_everything(epoch_seed(self.seed, epoch, self.group.rank))
        self.sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        loss_sum, seen, skipped = self.train_epoch(epoch)
        parts = distributed.gather((loss_sum, seen, sorted(skipped)), self.group)
        loss_sum = sum(p[0] for p in parts)
        seen = sum(p[1] for p in parts)
        for p in parts:
            self.log.skipped.update(p[2])
        train_s = time.perf_counter() - t0
        self.log.train_time += train_s
        self.log.train_images += seen
        record: dict[str, Any] = dict(
            epoch=epoch,
            train_loss=loss_sum / seen if seen else None,
            lr=self.parts.optimizer.param_groups[0]["lr"],
            images_per_s=seen / train_s if train_s > 0 else 0.0,
        )
        if self.group.main:
            self._validate_into(record, validate)
            record["epoch_s"] = time.perf_counter() - t0
            if self.progress:
                print_epoch(record, self.log.total_epochs, self.task.headline)
        record, skipped_all = distributed.share((record, sorted(self.log.skipped)), self.group)
        self.log.skipped = set(skipped_all)
        return record

    def _validate_into(self, record: dict[str, Any], validate: bool) -> None:
        """Add the model's (and EMA's) validation numbers to ``record``; None when not validated."""
        raw = ema = None
        if validate:
            raw = self.evaluate(self.model, f"val {record['epoch']}")
            if self.parts.ema is not None:
                ema = self.evaluate(self.parts.ema.module, f"ema {record['epoch']}")
        for prefix, res in (("val", raw), ("ema", ema)):
            for key in self.task.metric_keys():
                if prefix == "val" or key != "loss":
                    record[f"{prefix}_{key}"] = finite(res[key]) if res else None
        losses = [r["loss"] for r in (raw, ema) if r and r["images"] and "loss" in r]
        if any(not math.isfinite(v) for v in losses):
            record["diverged"] = True  # the model's outputs are not numbers (logged as null)

    def train_epoch(self, epoch: int) -> tuple[float, int, set[str]]:
        """One pass over this process's share; returns (loss sum, images, skipped files)."""
        from tqdm import tqdm

        self.net.train()
        total, seen, skipped_files = 0.0, 0, set()
        bar = tqdm(
            self.train_loader,
            desc=f"epoch {epoch}/{self.log.total_epochs}",
            disable=not self.progress,
            leave=False,
        )
        for step, (x, y, skipped) in enumerate(bar, 1):
            skipped_files.update(skipped)
            if self.parts.mixup is not None and len(x) % 2:
                x, y = x[:-1], y[:-1]  # a skipped file left an odd batch
            x, y = self.task.to_device(x, y, self.device)
            empty = len(x) == 0  # every file of the batch was unreadable: no update
            if self.group.active:  # all processes skip together (DDP's forward is collective)
                empty = distributed.sum_all([float(empty)], self.group)[0] > 0
            if empty:
                continue
            loss = self.update(x, y, epoch, step)
            total += loss * len(x)
            seen += len(x)
            lr = self.parts.optimizer.param_groups[0]["lr"]
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
        return total, seen, skipped_files

    def update(self, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int) -> float:
        """One optimizer step on a batch (mixup, loss, NaN check, clip, schedule, EMA)."""
        parts = self.parts
        target = y
        if parts.mixup is not None:
            x, target = parts.mixup(x, y)
        with precision(self.recipe.amp, self.device):
            loss = self.task.loss(self.net, x, target, parts)
        local = value = loss.item()
        if self.group.active:  # every process stops together on a NaN
            value_sum, n_all = distributed.sum_all([local * len(x), len(x)], self.group)
            value = value_sum / n_all
        if not math.isfinite(value):
            self._diverged(value, epoch, step)
        parts.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.recipe.grad_clip:
            nn.utils.clip_grad_norm_(self.net.parameters(), self.recipe.grad_clip)
        parts.optimizer.step()
        self.log.num_updates += 1
        parts.scheduler.step_update(num_updates=self.log.num_updates)
        if parts.ema is not None:
            parts.ema.update(self.model, step=self.log.num_updates)
        return local

    def _diverged(self, value: float, epoch: int, step: int) -> None:
        last = (
            f"{self.out / ckpt.WEIGHTS_FILE} (epoch {self.log.epoch})"
            if self.out is not None and self.log.epoch
            else "none was written"
        )
        raise TrainingDiverged(
            f"loss became {value} at epoch {epoch}, step {step}: training stopped; "
            f"last good checkpoint: {last}. Try a lower lr, warmup or grad_clip."
        )

    def evaluate(self, module: nn.Module, desc: str) -> dict[str, float]:
        return self.task.evaluate(
            module, self.val_loader, self.device, self.log.skipped, self.progress, desc
        )

    def commit(self) -> None:
        """Write this epoch's weights, EMA and state as one unit (rank 0 only)."""
        assert self.out is not None
        files = epoch_files(self.model, self.parts, self.log, self.settings, self.group.world_size)
        ckpt.commit_epoch(self.out, self.log.epoch, files, self.log.history, self.commit_hook)
        self.committed = True
