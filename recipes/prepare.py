"""Setting a run up: everything that can be checked is checked before a byte is written.

``start_run`` is a list of named steps (the run folder, data, model, batch,
cost and input-size checks, recipe parts, loaders, settings, resume, claiming
the folder); each step is a function here so a change touches one of them.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from fbnetv3_zoo.data import DataSplits
from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.files.outputs import (
    RunLock,
    check_run_folder,
    claim_run_folder,
    refuse_inside_input,
)

from . import checkpoints as ckpt
from . import distributed
from .apply import RecipeParts, build, for_model
from .loop import Run, seed_everything
from .recipe import Recipe
from .resume import RunLog, restore
from .tasks import CLASSIFICATION, make_task

VAL_BATCH = 64  # the smallest validation batch (the training batch when larger)


def start_run(
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
    commit_hook: ckpt.CommitHook | None = None,
    holdout: float = 0.0,
    task: str = CLASSIFICATION,
    task_options: dict[str, Any] | None = None,
    channels_last: bool = False,
) -> Run:
    """Check everything that can be checked before writing a byte, then build the run."""
    resuming = check_out(out, resume)
    if out is not None:
        refuse_inside_input(out, data)
    seed_everything(seed)
    plugin = make_task(task, task_options)
    splits = plugin.load(
        data,
        recipe,
        data_root=data_root,
        download=download,
        holdout=holdout,
        num_classes=num_classes,
    )
    num_classes = class_count(num_classes, splits)
    model, model_name = plugin.build_model(model, recipe, num_classes, pretrained)
    recipe = for_model(recipe, model)  # resolution None: the model's own input size
    memory = torch.channels_last if channels_last else torch.preserve_format
    model.to(device, memory_format=memory)  # before the optimizer and the EMA copy are made
    recipe, local_batch = batch_sizes(recipe, splits, group)
    plugin.check_model(model, model_name, recipe, local_batch, device)
    total_epochs = epochs or recipe.epochs
    parts = build_parts(model, recipe, splits, num_classes, total_epochs, group, progress, plugin)
    sampler, train_loader, val_loader = loaders(
        splits, local_batch, seed, group, workers, device, plugin.collate
    )
    settings = run_settings(model_name, data, seed, total_epochs, recipe, parts, local_batch)
    if holdout:  # absent otherwise, so runs made before it existed still resume
        settings["holdout"] = holdout
    if plugin.name != CLASSIFICATION:  # absent for classification, so older runs still resume
        settings["task"] = plugin.name
    log = RunLog(total_epochs)
    if resuming:
        assert out is not None
        log = restore(out, settings, model, model_name, parts)
    created, lock = claim_out(out, resuming, log, group)
    return Run(
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
        commit_hook=commit_hook,
        task=plugin,
        channels_last=channels_last,
    )


def check_out(out: Path | None, resume: bool) -> bool:
    """Whether ``out`` holds a run to continue; refuses a folder that does not fit ``resume``."""
    if out is None:
        return False
    resuming = ckpt.has_run(out)
    if resume and not resuming:
        raise UserError(
            f"--resume: {out} holds no run to continue (the folder is missing or has no "
            "finished epoch); drop --resume to start a new run"
        )
    if resuming and not resume:
        raise UserError(
            f"{out} already holds a run: pass --resume to continue it or choose another --out"
        )
    check_run_folder(out, "train", holds_run=resuming, what="training")
    check_writable(out)
    return resuming


def check_writable(out: Path) -> None:
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


def batch_sizes(recipe: Recipe, splits: DataSplits, group: distributed.Dist) -> tuple[Recipe, int]:
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


def build_parts(
    model: nn.Module,
    recipe: Recipe,
    splits: DataSplits,
    num_classes: int,
    total_epochs: int,
    group: distributed.Dist,
    progress: bool,
    task: Any,
) -> RecipeParts:
    """The recipe applied to this model and data (optimizer, schedule, EMA, transforms).

    The task fits the parts to itself (its transforms; mixup dropped and listed
    in ``not_applied`` where it has no meaning).
    """
    steps = len(splits.train) // recipe.batch_size
    parts = build(recipe, model, steps, num_classes=num_classes, epochs=total_epochs)
    if not group.main:
        parts = dataclasses.replace(parts, ema=None)  # EMA, metrics, files: rank 0
    parts = task.configure(parts, splits, parts.recipe)
    for note in parts.notes if progress and group.main else ():
        print(f"note: {note}", flush=True)  # how the recipe was fitted to this run
    return parts


def class_count(asked: int | None, splits: Any) -> int:
    """The model's class count: ``asked`` (never fewer than the data's labels), else the data's."""
    if asked is not None and asked < splits.num_classes:
        raise UserError(
            f"num_classes={asked}: the data {splits.name} has {splits.num_classes} classes; "
            "give at least that many"
        )
    return asked or splits.num_classes


def loaders(
    splits: DataSplits,
    local_batch: int,
    seed: int,
    group: distributed.Dist,
    workers: int,
    device: torch.device,
    collate: Any,
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
    args = dict(num_workers=workers, collate_fn=collate, pin_memory=device.type == "cuda")
    train_loader = DataLoader(splits.train, local_batch, sampler=sampler, drop_last=True, **args)
    val_loader = DataLoader(splits.val, max(local_batch, VAL_BATCH), shuffle=False, **args)
    return sampler, train_loader, val_loader


def run_settings(
    model_name: str,
    data: str | Path,
    seed: int,
    total_epochs: int,
    recipe: Recipe,
    parts: RecipeParts,
    local_batch: int,
) -> dict[str, Any]:
    """What a resume must match, and the evaluation transform ``validate`` reuses."""
    path = Path(data)
    return dict(
        model=model_name,
        data=str(path.resolve()) if path.is_dir() else str(data),
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


def claim_out(
    out: Path | None, resuming: bool, log: RunLog, group: distributed.Dist
) -> tuple[bool, RunLock | None]:
    """Lock ``out`` for this run (rank 0); every process raises if that failed.

    Returns (whether this run created the folder, the lock).
    """
    if out is None:
        return False, None
    created, lock, error = False, None, None
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
    return created, lock
