"""The training engine: one recipe, one model, one dataset -> metrics and checkpoints.

The search trains every candidate through ``train`` (``out_dir=None`` keeps
nothing on disk); ``fbnetv3 train`` is the same function behind a CLI, and
``torchrun --nproc_per_node N`` runs it on N processes (see ``distributed.py``).

A run folder holds ``metrics.jsonl`` (one strict-JSON line per epoch),
``summary.json`` (numbers, the recipe as run, the evaluation transform that
``validate`` reuses, and how the run was made), ``curves.png``,
``model.safetensors`` / ``model_ema.safetensors`` (last finished epoch; the
EMA file only when the recipe keeps one) and ``state.pt`` (optimizer,
scheduler, history; loads with ``torch.load(weights_only=True)``).  Each epoch
is committed as one unit (``checkpoints.py``), so a run killed at any moment
resumes (``resume=True``) from its last whole epoch and ends bit-identical to
an uninterrupted run with the same number of processes.

Randomness: the model is initialised from ``seed``; every epoch then reseeds
Python, NumPy and torch from ``(seed, epoch, rank)`` and shuffles with
``DistributedSampler(seed=seed)``, so an epoch's draws never depend on
earlier sessions, which is what makes resuming exact (and possible across a
changed number of processes).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.outputs import RunLock, check_run_folder, claim_run_folder
from fbnetv3_zoo.provenance import environment
from fbnetv3_zoo.spec import ArchSpec
from fbnetv3_zoo.stats import check_forward_cost

from . import checkpoints as ckpt
from . import distributed
from .build import RecipeParts
from .data import DataSplits, collate_skipping, load_data
from .recipe import Recipe

STATE_FILE = ckpt.STATE_FILE
WEIGHTS_FILE = ckpt.WEIGHTS_FILE
EMA_FILE = ckpt.EMA_FILE
SUMMARY_FILE = "summary.json"
MAX_SUMMARY_BYTES = 64 << 20
VAL_BATCH = 64  # the smallest validation batch (the training batch when larger)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint (if any) is kept."""


def train(
    model: nn.Module | str | Path | Any,
    recipe: Recipe,
    data: str | Path = "digits",
    epochs: int | None = None,
    out_dir: str | Path | None = None,
    seed: int = 0,
    num_classes: int | None = None,
    progress: bool = True,
    resume: bool = False,
    *,
    pretrained: bool = False,
    stop_after_epochs: int | None = None,
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
    data_root: str | Path | None = None,
    download: bool = False,
    workers: int = 0,
    eval_every: int = 1,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Train ``model`` with ``recipe`` on ``data``; return the JSON-ready summary.

    ``model`` is a module, or a timm / torchvision / zoo name, ArchSpec or its
    YAML path, built by ``recipe.create_model`` with the data's class count.

    ``stop_after_epochs`` ends the run early as if it were killed (the schedule
    still spans ``epochs``); ``callback(epoch_record)`` returning True does the same.
    ``eval_every`` > 1 validates only every that many epochs and at the end (the
    other records hold None), which saves time when only the final score matters.
    Under torchrun ``recipe.batch_size`` is the global batch, split evenly
    over the processes, so the learning rate (scaled to it) does not change.
    """
    start_wall = time.perf_counter()
    group, dev = distributed.setup(resolve_device(device))
    run = None
    try:
        run = _Run.start(
            model,
            recipe,
            data,
            epochs=epochs,
            out=Path(out_dir) if out_dir is not None else None,
            seed=seed,
            num_classes=num_classes,
            progress=progress and group.main,
            resume=resume,
            pretrained=pretrained,
            data_root=data_root,
            download=download,
            workers=workers,
            device=dev or _auto_device(),
            group=group,
        )
        run.log.wall_start = start_wall
        return run.fit(stop_after_epochs, callback, eval_every)
    finally:
        if run is not None and run.lock is not None:
            run.lock.release()
        distributed.teardown(group)


def seed_everything(seed: int) -> None:
    """Seed every RNG a run touches (Python, NumPy for mixup, torch)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """A well-mixed seed for one process's epoch (no overlap between nearby inputs)."""
    return int(np.random.SeedSequence([seed % 2**64, epoch, rank]).generate_state(1)[0])


def resolve_device(device: str | torch.device | None) -> torch.device | None:
    """The user's ``device`` checked against this machine (None: choose automatically)."""
    if device is None or device == "":
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(
            f"--device {device!r} is not a device: use cpu, cuda, cuda:N or mps"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: no CUDA GPU is available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA GPU(s) are visible"
            )
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if not (mps and mps.is_available()):
            raise UserError(f"--device {device}: Apple MPS is not available on this machine")
    elif dev.type != "cpu":
        raise UserError(f"--device {device}: the engine trains on cpu, cuda or mps")
    return dev


def _auto_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class _Log:
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
    def from_state(cls, state: dict[str, Any]) -> _Log:
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


@dataclass
class _Run:
    """One training run's parts: the object every step reads instead of long argument lists."""

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
    log: _Log
    lock: RunLock | None = None  # held while this process writes ``out`` (rank 0)

    # ------------------------------------------------------------ set-up
    @classmethod
    def start(
        cls,
        model: Any,
        recipe: Recipe,
        data: str | Path,
        *,
        epochs: int | None,
        out: Path | None,
        seed: int,
        num_classes: int | None,
        progress: bool,
        resume: bool,
        pretrained: bool,
        data_root: str | Path | None,
        download: bool,
        workers: int,
        device: torch.device,
        group: distributed.Dist,
    ) -> _Run:
        """Check everything that can be checked before writing a byte, then build the run."""
        resuming = out is not None and ckpt.has_run(out)
        if resume and out is not None and not resuming:
            raise UserError(
                f"--resume: {out} holds no run to continue (the folder is missing or has no "
                "finished epoch); drop --resume to start a new run"
            )
        if resuming and not resume:
            raise UserError(
                f"{out} already holds a run: pass --resume to continue it or choose another --out"
            )
        if out is not None:
            check_run_folder(out, "train", holds_run=resuming)
            _check_writable(out)
        seed_everything(seed)
        splits = load_data(data, recipe.resolution, data_root=data_root, download=download)
        num_classes = num_classes or splits.num_classes
        model, model_name = _build_model(model, recipe, num_classes, pretrained)
        recipe = recipe.for_model(model)  # resolution None: the model's own input size
        model.to(device)
        recipe, local_batch = _batch_sizes(recipe, splits, group)
        arch = getattr(model, "arch", None)
        if isinstance(arch, ArchSpec):  # an absurd whole network fails before it allocates
            size = max(recipe.resolution, recipe.test_resolution)
            check_forward_cost(arch, size, local_batch, where=f"model {model_name}")
        _check_input_size(model, model_name, recipe, device)
        total_epochs = epochs or recipe.epochs
        steps = len(splits.train) // recipe.batch_size
        parts = recipe.build(model, steps, num_classes=num_classes, epochs=total_epochs)
        if not group.main:
            parts = dataclasses.replace(parts, ema=None)  # EMA, metrics, files: rank 0
        splits.set_transforms(parts.train_transform, parts.eval_transform, parts.resolution)
        for note in parts.notes if progress and group.main else ():
            print(f"note: {note}", flush=True)  # how the recipe was fitted to this run
        sampler, train_loader, val_loader = _loaders(
            splits, local_batch, seed, group, workers, device
        )
        settings = dict(
            model=model_name,
            data=_data_name(data),
            seed=seed,
            epochs=total_epochs,
            recipe=recipe.to_dict(),
            # what ``validate`` needs to measure a checkpoint of this run as training did
            evaluation=dict(
                **parts.eval_config,
                image_resolution=parts.resolution,  # in-memory images (digits) are sized so
                batch_size=max(local_batch, VAL_BATCH),
            ),
        )
        log = _Log(total_epochs)
        if resuming:
            assert out is not None
            log = _resume(out, settings, model, model_name, parts)
        created, lock = False, None
        if out is not None:
            error = None
            if group.main:
                try:  # the lock refuses a second process on this folder, naming its pid
                    lock, created = claim_run_folder(out, "train", "training")
                    if resuming:  # finish a publication a kill may have cut short
                        ckpt.publish(out, log.history)
                    elif ckpt.has_run(out):  # another process committed a run meanwhile
                        error = f"{out} already holds a run: pass --resume to continue it or choose another --out"
                except UserError as err:
                    error = str(err)
                except OSError as err:
                    error = f"cannot write to --out {out}: {err.strerror or err}"
                if error is not None and lock is not None:
                    lock.release()
            distributed.agree_on_error(error, group)
        return cls(
            model=model,
            net=distributed.wrap(model, group, device),
            recipe=recipe,
            parts=parts,
            train_loader=train_loader,
            sampler=sampler,
            val_loader=val_loader,
            device=device,
            out=out,
            created_out=created,
            group=group,
            seed=seed,
            settings=settings,
            progress=progress,
            log=log,
            lock=lock,
        )

    # ---------------------------------------------------------- training
    def fit(
        self,
        stop_after_epochs: int | None,
        callback: Callable[[dict[str, Any]], bool | None] | None,
        eval_every: int,
    ) -> dict[str, Any]:
        """Train the remaining epochs, committing each; return the summary."""
        committed = self.log.epoch > 0
        trained = False
        try:
            if self.log.epoch < self.log.total_epochs:  # this session trains: record how
                self.log.sessions.append(environment(self.device, self.group.world_size))
            for epoch in range(self.log.epoch + 1, self.log.total_epochs + 1):
                last = epoch == self.log.total_epochs or (
                    stop_after_epochs is not None and epoch >= stop_after_epochs
                )
                record = self.epoch(epoch, validate=last or epoch % eval_every == 0)
                trained = True
                self.log.history.append(record)
                self.log.epoch = epoch
                if self.out is not None and self.group.main:
                    self.commit()
                    committed = True
                stop = callback(record) if callback else False
                if stop or last:
                    break
        except BaseException:
            if self.created_out and not committed and self.group.main and self.out is not None:
                if self.lock is not None:
                    self.lock.release()
                shutil.rmtree(self.out, ignore_errors=True)  # we made it: leave nothing half-made
            raise
        if not trained and self.out is not None:  # resuming a finished run changes nothing
            kept = _read_summary(self.out)
            if kept is not None:
                return kept
        wall = self.log.wall_time if trained else self.log.wall_base
        summary = _summary(self.log, self.settings, self.parts, wall)
        if self.out is not None and self.group.main:
            payload = json.dumps(summary, indent=2, allow_nan=False).encode()
            ckpt.atomic_write(self.out / SUMMARY_FILE, payload)
            _plot_curves(self.log.history, self.out / "curves.png")
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
            raw = ema = None
            if validate:
                raw = self.evaluate(self.model, f"val {epoch}")
                if self.parts.ema is not None:
                    ema = self.evaluate(self.parts.ema.module, f"ema {epoch}")
            for prefix, res in (("val", raw), ("ema", ema)):
                for key in ("loss", "top1", "top5"):
                    if prefix == "val" or key != "loss":
                        record[f"{prefix}_{key}"] = _finite(res[key]) if res else None
            if any(r and r["images"] and not math.isfinite(r["loss"]) for r in (raw, ema)):
                record["diverged"] = True  # the model's outputs are not numbers (logged as null)
            record["epoch_s"] = time.perf_counter() - t0
            if self.progress:
                _print_epoch(record, self.log.total_epochs)
        record, skipped_all = distributed.share((record, sorted(self.log.skipped)), self.group)
        self.log.skipped = set(skipped_all)
        return record

    def train_epoch(self, epoch: int) -> tuple[float, int, set[str]]:
        """One pass over this process's share; returns (loss sum, images, skipped files)."""
        from tqdm import tqdm

        parts, net = self.parts, self.net
        net.train()
        total, seen, skipped_files = 0.0, 0, set()
        bar = tqdm(
            self.train_loader,
            desc=f"epoch {epoch}/{self.log.total_epochs}",
            disable=not self.progress,
            leave=False,
        )
        for step, (x, y, skipped) in enumerate(bar, 1):
            skipped_files.update(skipped)
            if parts.mixup is not None and len(x) % 2:
                x, y = x[:-1], y[:-1]  # a skipped file left an odd batch
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            empty = len(x) == 0  # every file of the batch was unreadable: no update
            if self.group.active:  # all processes skip together (DDP's forward is collective)
                empty = distributed.sum_all([float(empty)], self.group)[0] > 0
            if empty:
                continue
            target = y
            if parts.mixup is not None:
                x, target = parts.mixup(x, y)
            with self.precision():
                loss = parts.train_loss(net(x), target)
            local = value = loss.item()
            if self.group.active:  # every process stops together on a NaN
                value_sum, n_all = distributed.sum_all([local * len(x), len(x)], self.group)
                value = value_sum / n_all
            if not math.isfinite(value):
                self._diverged(value, epoch, step)
            parts.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.recipe.grad_clip:
                nn.utils.clip_grad_norm_(net.parameters(), self.recipe.grad_clip)
            parts.optimizer.step()
            self.log.num_updates += 1
            parts.scheduler.step_update(num_updates=self.log.num_updates)
            if parts.ema is not None:
                parts.ema.update(self.model, step=self.log.num_updates)
            total += local * len(x)
            seen += len(x)
            bar.set_postfix(loss=f"{local:.3f}", lr=f"{parts.optimizer.param_groups[0]['lr']:.2e}")
        return total, seen, skipped_files

    def precision(self) -> AbstractContextManager:
        """bfloat16 autocast on CUDA when the recipe asks for ``amp``; full precision elsewhere."""
        if self.recipe.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _diverged(self, value: float, epoch: int, step: int) -> None:
        last = (
            f"{self.out / WEIGHTS_FILE} (epoch {self.log.epoch})"
            if self.out is not None and self.log.epoch
            else "none was written"
        )
        raise TrainingDiverged(
            f"loss became {value} at epoch {epoch}, step {step}: training stopped; "
            f"last good checkpoint: {last}. Try a lower lr, warmup or grad_clip."
        )

    def evaluate(self, module: nn.Module, desc: str) -> dict[str, float]:
        return evaluate(module, self.val_loader, self.device, self.log.skipped, self.progress, desc)

    # ------------------------------------------------------- checkpoints
    def commit(self) -> None:
        """Write this epoch's weights, EMA and state as one unit (rank 0 only)."""
        assert self.out is not None
        epoch = self.log.epoch
        files = {WEIGHTS_FILE: ckpt.weights_bytes(self.model, epoch)}
        if self.parts.ema is not None:
            files[EMA_FILE] = ckpt.weights_bytes(self.parts.ema.module, epoch)
        state = dict(
            **self.log.to_state(),
            optimizer=self.parts.optimizer.state_dict(),
            scheduler=self.parts.scheduler.state_dict(),
            settings=self.settings,
            world_size=self.group.world_size,
        )
        files[STATE_FILE] = ckpt.state_bytes(state)
        ckpt.commit_epoch(self.out, epoch, files, self.log.history)


# ---------------------------------------------------------------- helpers
def _check_writable(out: Path) -> None:
    """Refuse an ``--out`` that cannot be written before any work is done."""
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UserError(f"--out {out}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to --out {out}: {probe} is not writable")


def _build_model(
    model: Any, recipe: Recipe, num_classes: int, pretrained: bool
) -> tuple[nn.Module, str]:
    from fbnetv3_zoo import ArchSpec

    if isinstance(model, nn.Module):
        return model, type(model).__name__
    # an ArchSpec, or a name / ArchSpec YAML path
    name = (model.name or "ArchSpec") if isinstance(model, ArchSpec) else str(model)
    return recipe.create_model(model, num_classes=num_classes, pretrained=pretrained), name


def _batch_sizes(recipe: Recipe, splits: DataSplits, group: distributed.Dist) -> tuple[Recipe, int]:
    """The global batch (shrunk to a small dataset; the lr follows) and each process's share."""
    assert splits.train is not None
    n_train = len(splits.train)
    batch = min(recipe.batch_size, n_train)
    if recipe.uses_mixup:
        batch -= batch % (2 * group.world_size)  # mixup pairs images within a process's batch
    if batch < group.world_size or n_train // batch < 1:
        raise UserError(f"{n_train} training image(s) are too few for one batch")
    if batch % group.world_size:
        raise UserError(
            f"batch_size {batch} (the global batch) does not split evenly over "
            f"{group.world_size} processes: choose a multiple of {group.world_size}"
        )
    if batch != recipe.batch_size:  # the lr scaling rule follows the real batch
        recipe = dataclasses.replace(recipe, batch_size=batch)
    return recipe, batch // group.world_size


def _check_input_size(model: nn.Module, name: str, recipe: Recipe, device: torch.device) -> None:
    """One forward pass in eval mode on a blank image, so a too-small input fails clearly."""
    was_training = model.training
    model.eval()
    try:
        for size in sorted({recipe.resolution, recipe.test_resolution}):
            try:
                with torch.no_grad():
                    model(torch.zeros(1, 3, size, size, device=device))
            except (RuntimeError, AssertionError, ValueError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                raise UserError(
                    f"model {name} cannot take a {size}x{size} input (resolution): {first}"
                ) from None
    finally:
        model.train(was_training)


def _loaders(
    splits: DataSplits,
    local_batch: int,
    seed: int,
    group: distributed.Dist,
    workers: int,
    device: torch.device,
) -> tuple[DistributedSampler, DataLoader, DataLoader]:
    """Seeded shuffling shared by all processes: process r takes every N-th image.

    With one process the same sampler yields the same global batches, so one and
    N processes see the same images per update.
    """
    sampler = DistributedSampler(
        splits.train,
        num_replicas=group.world_size,
        rank=group.rank,
        shuffle=True,
        seed=seed,
        drop_last=True,
    )
    args = dict(num_workers=workers, collate_fn=collate_skipping, pin_memory=device.type == "cuda")
    train_loader = DataLoader(splits.train, local_batch, sampler=sampler, drop_last=True, **args)
    val_loader = DataLoader(splits.val, max(local_batch, VAL_BATCH), shuffle=False, **args)
    return sampler, train_loader, val_loader


def _data_name(data: str | Path) -> str:
    path = Path(data)
    return str(path.resolve()) if path.is_dir() else str(data)


def _resume(
    out: Path, settings: dict[str, Any], model: nn.Module, model_name: str, parts: RecipeParts
) -> _Log:
    """Load the committed epoch into the run's parts; name every setting that differs."""
    state, paths = ckpt.read_committed(out)
    saved = state.get("settings")
    if not isinstance(saved, dict):
        raise ckpt.ResumeError(f"{paths[STATE_FILE]} holds no run settings")
    diffs = _differences(saved, settings)
    if diffs:
        raise ckpt.ResumeError(
            f"{out} holds a run with other settings: {'; '.join(diffs)}. Resume with the "
            "run's own settings or choose another --out"
        )
    ckpt.load_weights(paths[WEIGHTS_FILE], model, f"--model {model_name}")
    if parts.ema is not None:
        if EMA_FILE not in paths:
            raise ckpt.ResumeError(f"{out} holds no {EMA_FILE} to resume the EMA from")
        ckpt.load_weights(paths[EMA_FILE], parts.ema.module, f"--model {model_name}")
    try:
        parts.optimizer.load_state_dict(state["optimizer"])
        parts.scheduler.load_state_dict(state["scheduler"])
        return _Log.from_state(state)
    except (KeyError, ValueError, TypeError) as err:
        raise ckpt.ResumeError(f"{paths[STATE_FILE]} does not fit this run: {err}") from None


def _differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """'setting: run X, now Y' for each setting (and recipe field) that changed."""
    diffs = []
    labels = dict(model="--model", data="--data", seed="--seed", epochs="--epochs")
    for key, label in labels.items():
        if saved.get(key) != now[key]:
            diffs.append(f"{label} was {saved.get(key)!r}, now {now[key]!r}")
    old, new = saved.get("recipe") or {}, now["recipe"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            diffs.append(f"recipe {key} was {old.get(key)!r}, now {new.get(key)!r}")
    return diffs


def _finite(value: float | None) -> float | None:
    """JSON has no NaN: a value that is not a number is recorded as null."""
    return value if value is None or math.isfinite(value) else None


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device | str = "cpu",
    skipped: set[str] | None = None,
    progress: bool = False,
    desc: str = "eval",
) -> dict[str, float]:
    """Top-1 / top-5 (percent), mean loss and images/s of ``model`` over ``loader``."""
    from tqdm import tqdm

    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    loss = correct1 = correct5 = n = 0.0
    t0 = time.perf_counter()
    for x, y, bad in tqdm(loader, desc=desc, disable=not progress, leave=False):
        if skipped is not None:
            skipped.update(bad)
        if len(x) == 0:
            continue
        x, y = x.to(device), y.to(device)
        logits = model(x).float()
        loss += loss_fn(logits, y).item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top.eq(y[:, None])
        correct1 += hits[:, 0].sum().item()
        correct5 += hits.any(dim=1).sum().item()
        n += len(x)
    elapsed = time.perf_counter() - t0
    if n == 0:
        return dict(loss=math.nan, top1=0.0, top5=0.0, images=0, images_per_s=0.0)
    return dict(
        loss=loss / n,
        top1=100 * correct1 / n,
        top5=100 * correct5 / n,
        images=int(n),
        images_per_s=n / elapsed if elapsed > 0 else 0.0,
    )


def _print_epoch(r: dict[str, Any], total: int) -> None:
    from tqdm import tqdm

    loss = f"{r['train_loss']:.4f}" if r["train_loss"] is not None else "n/a"
    text = f"epoch {r['epoch']}/{total}: train loss {loss}, lr {r['lr']:.2e}"
    if r["val_top1"] is not None:
        text += f", val top-1 {r['val_top1']:.2f} top-5 {r['val_top5']:.2f}"
    if r["ema_top1"] is not None:
        text += f", EMA top-1 {r['ema_top1']:.2f}"
    tqdm.write(text + f", {r['images_per_s']:.1f} images/s")


def _read_summary(out: Path) -> dict[str, Any] | None:
    """A finished run's ``summary.json`` as written, or None when missing or damaged."""
    from fbnetv3_zoo.outputs import read_regular

    try:
        doc = json.loads(read_regular(out / SUMMARY_FILE, MAX_SUMMARY_BYTES))
    except (OSError, ValueError, UserError):
        return None
    return doc if isinstance(doc, dict) and "final_top1" in doc else None


def _summary(
    log: _Log, settings: dict[str, Any], parts: RecipeParts, wall_s: float
) -> dict[str, Any]:
    """The run's result file: numbers, the recipe as run, how and where it was made.

    ``recipe`` is the recipe as actually run (after ``fit_to_run`` shrank the
    warmup or EMA horizon, ``recipe_notes`` say how); ``recipe_given`` is what
    was asked for.  ``evaluation`` is the transform the top-1/top-5 numbers were
    measured with (``fbnetv3 validate`` reuses it); ``command``, ``processes``,
    ``device`` and ``versions`` come from the session that trained the last
    epoch, ``sessions`` lists every session's record.
    """
    evaluated = [h for h in log.history if h.get("val_top1") is not None]
    last = evaluated[-1] if evaluated else {}
    tops = [h[k] for h in evaluated for k in ("val_top1", "ema_top1") if h.get(k) is not None]
    last_session = log.sessions[-1] if log.sessions else {}
    return dict(
        model=settings["model"],
        data=settings["data"],
        seed=settings["seed"],
        recipe=parts.recipe.to_dict(),
        recipe_given=settings["recipe"],
        recipe_notes=list(parts.notes),
        evaluation=settings["evaluation"],
        weights=sorted(
            name for name, kept in ((WEIGHTS_FILE, True), (EMA_FILE, parts.ema is not None)) if kept
        ),
        epochs_done=log.epoch,
        epochs_planned=log.total_epochs,
        final_top1=last.get("val_top1"),
        final_top5=last.get("val_top5"),
        ema_top1=last.get("ema_top1"),
        ema_top5=last.get("ema_top5"),
        best_top1=max(tops) if tops else None,
        images_per_s=log.train_images / log.train_time if log.train_time else 0.0,
        train_s=log.train_time,
        wall_s=wall_s,
        **{k: last_session.get(k) for k in ("command", "processes", "device", "versions")},
        sessions=log.sessions,
        skipped_files=len(log.skipped),
        skipped_paths=sorted(log.skipped)[:100],
        epochs=log.history,
    )


def _plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Loss and accuracy per epoch; skipped quietly when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    if not history:
        return

    def series(key: str) -> tuple[list[int], list[float]]:
        pts = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    for key, label in (("train_loss", "train"), ("val_loss", "val")):
        a.plot(*series(key), marker=".", label=label)
    a.set(xlabel="epoch", ylabel="loss")
    a.legend()
    for key, label in (("val_top1", "top-1"), ("ema_top1", "EMA top-1")):
        if series(key)[0]:
            b.plot(*series(key), marker=".", label=label)
    b.set(xlabel="epoch", ylabel="val accuracy (%)")
    b.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    if os.path.lexists(tmp):
        tmp.unlink()
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
