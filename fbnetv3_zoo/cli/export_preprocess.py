"""``fbnetv3 export``: which eval transform an export is checked with (and writes beside it).

A checkpoint inside a training run folder is exported with the transform that
run measured its numbers with (``summary.json``'s ``evaluation``, read by the
training area's own reader); any other model with its pretrained config's.
The training area is named here as the command modules are in
``fbnetv3_zoo.cli``, so the core never imports the recipes and an install
without them still exports (with the pretrained config's transform).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from fbnetv3_zoo.deploy.preprocess import Preprocess

# (module, function): a run folder's recorded evaluation, (settings, source) or None
RUN_EVALUATION_READER = ("fbnetv3_zoo.recipes.validate", "run_evaluation")


def recorded_evaluation(checkpoint: str | os.PathLike) -> tuple[dict[str, Any], str] | None:
    """The evaluation settings of the training run holding ``checkpoint``, if any."""
    module_name, function = RUN_EVALUATION_READER
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name in ("fbnetv3_zoo.recipes", module_name):
            return None  # no training area in this install
        raise
    return getattr(module, function)(checkpoint)


def checkpoint_classes(checkpoint: str | os.PathLike) -> int | None:
    """The class count of a zoo checkpoint's classifier (None when it has none).

    ``load_weights`` leaves a classifier of another width freshly initialised
    (fine-tuning), so a 10-class run exported at the default 1000 classes would
    silently export a random head; the checkpoint's own width avoids that.
    """
    from fbnetv3_zoo.weights.checkpoint import read_checkpoint

    weight = read_checkpoint(checkpoint).get("classifier.weight")
    return int(weight.shape[0]) if weight is not None and weight.ndim == 2 else None


def export_preprocess(
    args: argparse.Namespace, model: nn.Module, labels: list[str] | None = None
) -> Preprocess:
    """The transform the export is checked with: the run's when ``--checkpoint`` is a run's."""
    from fbnetv3_zoo.deploy.preprocess import from_evaluation, from_model

    known: dict[str, Any] = dict(num_classes=getattr(model, "num_classes", None))
    if labels is not None:
        known["label_names"] = tuple(labels)
    recorded = recorded_evaluation(args.checkpoint) if args.checkpoint is not None else None
    if recorded is None:
        return from_model(model, args.input_size, **known)
    found = from_evaluation(*recorded, **known)
    if args.input_size and args.input_size != found.input_size:
        found = dataclasses.replace(
            found,
            input_size=args.input_size,
            source=f"{found.source}, input size from --input-size",
        )
    return found


def data_labels(data: str | None) -> list[str] | None:
    """Class names of ``data`` (``--calibration``) when it loads, for the sidecar."""
    if data is None:
        return None
    from fbnetv3_zoo.data import load_data

    return list(load_data(data, None, train=False).classes)
