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

The engine in parts, one concern a module: ``devices.py`` and
``distributed.py`` (where and on how many processes), ``prepare.py`` (the
checks and set-up before any byte is written), ``loop.py`` (the epoch loop and
its seeding), ``resume.py`` and ``checkpoints.py`` (what an epoch keeps, how it
is committed and resumed), ``evaluation.py`` (top-1/top-5, the input-size
probe) and ``summary.py`` (``summary.json``, console lines, curves).  This
module keeps ``train`` and the names callers import from here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import distributed
from .checkpoints import EMA_FILE, STATE_FILE, WEIGHTS_FILE, CommitHook
from .devices import auto_device, resolve_device
from .evaluation import evaluate
from .loop import EpochCallback, TrainingDiverged, epoch_seed, seed_everything
from .prepare import batch_sizes as _batch_sizes
from .prepare import start_run
from .recipe import Recipe
from .summary import MAX_SUMMARY_BYTES, SUMMARY_FILE

__all__ = [
    "EMA_FILE",
    "MAX_SUMMARY_BYTES",
    "STATE_FILE",
    "SUMMARY_FILE",
    "WEIGHTS_FILE",
    "TrainingDiverged",
    "_batch_sizes",
    "epoch_seed",
    "evaluate",
    "resolve_device",
    "seed_everything",
    "train",
]


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
    callback: EpochCallback | None = None,
    data_root: str | Path | None = None,
    download: bool = False,
    workers: int = 0,
    eval_every: int = 1,
    device: str | torch.device | None = None,
    commit_hook: CommitHook | None = None,
    holdout: float = 0.0,
    task: str = "classification",
    task_options: dict[str, Any] | None = None,
    channels_last: bool = False,
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
    ``commit_hook(stage, epoch)`` is called after each step of an epoch's
    commit (``checkpoints.CommitHook``); the crash tests die inside it.
    ``holdout`` > 0 validates on that share of the training images, held out
    of training (a search's selection split; ``fbnetv3_zoo.data``).
    ``task`` is ``classification``, ``detection`` or ``segmentation``
    (``tasks.py``): the data, model, loss and metrics change, the rest of the
    engine does not.  ``task_options`` change the task's defaults (detection:
    ``{"model_options": {"min_size": ..., ...}}``; segmentation: ``{"size": N}``).
    ``channels_last``: NHWC weights (``benchmarks/memory_format.py``: FBNetV3 trains
    faster on a CPU); like a thread count it changes only the last bits, so a resume may differ.
    """
    start_wall = time.perf_counter()
    group, dev = distributed.setup(resolve_device(device))
    run = None
    try:
        run = start_run(
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
            device=dev or auto_device(),
            group=group,
            commit_hook=commit_hook,
            holdout=holdout,
            task=task,
            task_options=task_options,
            channels_last=channels_last,
        )
        run.log.wall_start = start_wall
        return run.fit(stop_after_epochs, callback, eval_every)
    finally:
        if run is not None and run.lock is not None:
            run.lock.release()
        distributed.teardown(group)
