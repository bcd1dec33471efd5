"""Apply a recipe to a model by composing timm's parts, not by re-writing them.

Dropout and stochastic depth are architectural, so they go through the model
constructor (``create_model``, with the names from ``regulariser_kwargs``);
everything else (optimizer, schedule, mixup, losses, EMA, transforms) works on
any ``nn.Module`` (``build``).  ``build`` changes nothing it is given: it reports
what the model lacks (``not_applied``) and how it fitted the recipe to the run
(``notes``).

``Recipe`` is data (fields, validation, YAML); everything that applies it to a
model lives here, so the dependency runs one way: build -> recipe.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from fbnetv3_zoo.models.weight_init import init_weights
from fbnetv3_zoo.weights.resolve import parse_ref

from .recipe import Recipe, RecipeError

# timm's optimizer names for ours: TF-style RMSProp (eps inside the sqrt) is what
# the MobileNet/EfficientNet/FBNet RMSProp settings were tuned with
TIMM_OPTIMIZERS = {"rmsprop": "rmsproptf", "sgd": "sgd", "adamw": "adamw"}
# recipe field -> timm constructor keyword -> torchvision constructor keyword
REGULARISERS = {
    "dropout": ("drop_rate", "dropout"),
    "drop_path": ("drop_path_rate", "stochastic_depth_prob"),
}
DEFAULT_RESOLUTION = 224  # for a model that states no input size (ImageNet's usual)
# a short run: warmup takes at most this share of it, the EMA averages over at
# most this share of its updates (our choice: the paper's recipe is for ~400 epochs)
MAX_WARMUP_SHARE = 0.25
MAX_EMA_HORIZON_SHARE = 0.1
MIN_EMA_DECAY = 0.5


class RecipeWarning(UserWarning):
    """Part of a recipe could not be applied to this model."""


@dataclass
class RecipeParts:
    """Everything a training loop needs, built for one model and one data size."""

    optimizer: Any
    scheduler: Any
    mixup: Any | None
    train_loss: nn.Module
    eval_loss: nn.Module
    ema: Any | None
    train_transform: Callable
    eval_transform: Callable
    lr: float
    epochs: int
    steps_per_epoch: int
    num_classes: int
    resolution: int = DEFAULT_RESOLUTION  # train resolution actually used
    eval_resolution: int = DEFAULT_RESOLUTION
    recipe: Any = None  # the recipe as applied (resolution, warmup, EMA decay resolved)
    # the evaluation transform's settings (``eval_transform_from`` rebuilds it): a run
    # folder records them so ``validate`` measures a checkpoint exactly as training did
    eval_config: dict[str, Any] = field(default_factory=dict)
    not_applied: list[str] = field(default_factory=list)  # regularisers the model lacks
    notes: list[str] = field(default_factory=list)  # one line per adaptation, for the user


# ------------------------------------------------------------------ models
def regulariser_kwargs(recipe: Recipe, torchvision: bool = False) -> dict[str, float]:
    """The recipe's dropout and drop path as model-constructor keywords (timm's or torchvision's).

    The one place that translates them: zoo, timm and torchvision models all get
    their regularisers from here.
    """
    index = 1 if torchvision else 0
    return {names[index]: getattr(recipe, key) for key, names in REGULARISERS.items()}


def create_model(
    recipe: Recipe,
    name: str | Path | Any,
    num_classes: int = 1000,
    pretrained: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build any model reference (``fbnetv3_zoo.weights.resolve``) with the recipe's dropout and drop path.

    ``name`` is a zoo name (with or without its tag), an ``ArchSpec``, an ArchSpec
    (or search-result) YAML path, a timm name, ``torchvision/<name>`` (forces
    torchvision where timm has the same name) or ``local-dir:<folder>``.
    Regularisers the constructor does not take raise a ``RecipeWarning`` and
    are left out; a model built without weights gets the recipe's ``init``.
    """
    facts = parse_ref(name)
    regs = regulariser_kwargs(recipe, torchvision=facts.kind == "torchvision")
    model = facts.create(pretrained, num_classes, optional=regs, **kwargs)
    if not pretrained:
        init_weights(model, recipe.init)
    missed = missing_regularisers(recipe, model)
    if missed:
        values = ", ".join(f"{k}={getattr(recipe, k)}" for k in missed)
        warnings.warn(
            f"recipe {recipe.name!r}: {values} could not be applied to {type(model).__name__} "
            "(its constructor does not take them); the rest of the recipe still applies",
            RecipeWarning,
            stacklevel=3,
        )
    return model


def missing_regularisers(recipe: Recipe, model: nn.Module) -> list[str]:
    """The recipe's non-zero regularisers that ``model`` does not contain, read from its layers.

    Dropout counts when timm's ``drop_rate`` equals the recipe's or an ``nn.Dropout``
    of that rate exists; drop path when any layer drops paths (timm ``DropPath``,
    torchvision ``StochasticDepth``), since per-block rates grow with depth.
    """
    missed = []
    if recipe.dropout > 0:
        rate = getattr(model, "drop_rate", None)
        has = (isinstance(rate, float | int) and abs(rate - recipe.dropout) < 1e-9) or any(
            isinstance(m, nn.Dropout) and abs(m.p - recipe.dropout) < 1e-9 for m in model.modules()
        )
        if not has:
            missed.append("dropout")
    if recipe.drop_path > 0:
        has = any(
            (getattr(m, "drop_prob", 0) or 0) > 0
            or (type(m).__name__ == "StochasticDepth" and m.p > 0)
            for m in model.modules()
        )
        if not has:
            missed.append("drop_path")
    return missed


# --------------------------------------------------------- fitting the run
def for_model(recipe: Recipe, model: nn.Module) -> Recipe:
    """``recipe`` with ``resolution`` None replaced by the model's own input size."""
    if recipe.resolution is not None:
        return recipe
    size = model_input_size(model) or DEFAULT_RESOLUTION
    return dataclasses.replace(recipe, resolution=size)


def model_input_size(model: nn.Module) -> int | None:
    """The input size the model was designed for: its pretrained config's, or its ArchSpec's."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = cfg.get("input_size") if isinstance(cfg, dict) else None
    if size:
        return int(size[-1])
    arch = getattr(model, "arch", None)
    return getattr(arch, "input_size", None)


def fit_to_run(
    recipe: Recipe, model: nn.Module, steps_per_epoch: int, epochs: int
) -> tuple[Recipe, list[str]]:
    """The recipe with resolution, warmup and EMA decay set for this model and run length.

    Returns it with one line per change.  Resolution None becomes the model's own
    input size; a warmup longer than a quarter of the run shrinks to that quarter;
    an EMA whose horizon (1 / (1 - decay) updates) exceeds a tenth of the run's
    updates gets that tenth, unless ``ema_warmup`` already ramps the decay up (then
    only a note says what the average reaches).  A preset's defaults never make a
    short run fail.
    """
    notes: list[str] = []
    changes: dict[str, Any] = {}
    if recipe.resolution is None:
        size = model_input_size(model)
        if size is None:
            size = DEFAULT_RESOLUTION
            notes.append(
                f"resolution: {type(model).__name__} states no input size, using {size} px"
            )
        changes["resolution"] = size
    if recipe.warmup_epochs > MAX_WARMUP_SHARE * epochs:
        warmup = MAX_WARMUP_SHARE * epochs
        notes.append(
            f"warmup_epochs: {recipe.warmup_epochs:g} -> {warmup:g} "
            f"(at most {MAX_WARMUP_SHARE:.0%} of this {epochs}-epoch run)"
        )
        changes["warmup_epochs"] = warmup
    updates = steps_per_epoch * epochs
    horizon = 1.0 / (1.0 - recipe.ema_decay) if recipe.ema_decay else 0.0
    if horizon > MAX_EMA_HORIZON_SHARE * updates:
        if recipe.ema_warmup:  # timm's warmup ramps the decay: 1 - (1 + step) ** (-2/3)
            end = min(recipe.ema_decay, 1.0 - (1.0 + updates) ** (-2 / 3))
            notes.append(
                f"ema_decay: {recipe.ema_decay:g} averages over ~{horizon:.0f} updates, this run has "
                f"{updates}; ema_warmup ramps it, reaching {end:.4g} (~{1 / (1 - end):.0f} updates) "
                "at the end"
            )
        else:
            decay = max(MIN_EMA_DECAY, 1.0 - 1.0 / (MAX_EMA_HORIZON_SHARE * updates))
            notes.append(
                f"ema_decay: {recipe.ema_decay:g} -> {decay:.4g} (averages over "
                f"~{1 / (1 - decay):.0f} of this run's {updates} updates instead of ~{horizon:.0f})"
            )
            changes["ema_decay"] = decay
    return (dataclasses.replace(recipe, **changes) if changes else recipe), notes


# ------------------------------------------------------------------- parts
def infer_num_classes(model: nn.Module) -> int | None:
    """The model's class count: timm's attribute, else the last Linear layer's width."""
    n = getattr(model, "num_classes", None)
    if isinstance(n, int) and n > 0:
        return n
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None


def build(
    recipe: Recipe,
    model: nn.Module,
    steps_per_epoch: int,
    num_classes: int | None = None,
    epochs: int | None = None,
) -> RecipeParts:
    """Optimizer, per-step scheduler, mixup, losses, EMA and transforms for ``model``.

    Pure: ``model`` is not changed.  Regularisers it lacks are listed in
    ``not_applied`` (build the model with ``create_model(recipe, ...)`` to get them);
    adaptations to the run (``fit_to_run``) are listed in ``notes``.
    """
    if steps_per_epoch < 1:
        raise RecipeError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    epochs = epochs or recipe.epochs
    num_classes = num_classes or infer_num_classes(model)
    if num_classes is None:
        raise RecipeError("cannot tell the number of classes of this model: pass num_classes")
    recipe, notes = fit_to_run(recipe, model, steps_per_epoch, epochs)
    not_applied = _note_missing_regularisers(recipe, model, notes)
    optimizer = _optimizer(recipe, model)
    mixup, train_loss = _mixup_and_loss(recipe, num_classes)
    train_transform, eval_config = _transforms(recipe, model)
    return RecipeParts(
        optimizer=optimizer,
        scheduler=_scheduler(recipe, optimizer, steps_per_epoch, epochs),
        mixup=mixup,
        train_loss=train_loss,
        eval_loss=nn.CrossEntropyLoss(),
        ema=_ema(recipe, model),
        train_transform=train_transform,
        eval_transform=eval_transform_from(eval_config),
        lr=recipe.scaled_lr,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        num_classes=num_classes,
        resolution=recipe.resolution,
        eval_resolution=recipe.test_resolution,
        recipe=recipe,
        not_applied=not_applied,
        notes=notes,
        eval_config=eval_config,
    )


def _note_missing_regularisers(recipe: Recipe, model: nn.Module, notes: list[str]) -> list[str]:
    """The regularisers ``model`` lacks, each also said once in ``notes``."""
    not_applied = missing_regularisers(recipe, model)
    if not_applied:
        values = ", ".join(f"{k}={getattr(recipe, k)}" for k in not_applied)
        notes.append(
            f"{values} not applied: {type(model).__name__} has no such layers "
            "(Recipe.create_model passes them to a model's constructor)"
        )
    return not_applied


def _optimizer(recipe: Recipe, model: nn.Module) -> Any:
    """timm's optimizer; no weight decay on norm layers and biases."""
    from timm.optim import create_optimizer_v2

    opt_args: dict[str, Any] = {}
    if recipe.optimizer == "rmsprop":
        opt_args = {"eps": recipe.opt_eps, "alpha": recipe.rmsprop_alpha}
    elif recipe.optimizer == "adamw":
        opt_args = {"eps": recipe.opt_eps}
    return create_optimizer_v2(
        model,
        opt=TIMM_OPTIMIZERS[recipe.optimizer],
        lr=recipe.scaled_lr,
        weight_decay=recipe.weight_decay,
        momentum=recipe.momentum,
        filter_bias_and_bn=True,
        **opt_args,
    )


def _mixup_and_loss(recipe: Recipe, num_classes: int) -> tuple[Any | None, nn.Module]:
    """Mixup/CutMix (soft targets) or label smoothing, and the training loss that goes with it."""
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if recipe.uses_mixup:
        mixup = Mixup(
            mixup_alpha=recipe.mixup,
            cutmix_alpha=recipe.cutmix,
            prob=recipe.mixup_prob,
            switch_prob=recipe.mixup_switch_prob,
            label_smoothing=recipe.label_smoothing,
            num_classes=num_classes,
        )
        return mixup, SoftTargetCrossEntropy()
    if recipe.label_smoothing > 0:
        return None, LabelSmoothingCrossEntropy(smoothing=recipe.label_smoothing)
    return None, nn.CrossEntropyLoss()


def _ema(recipe: Recipe, model: nn.Module) -> Any | None:
    """timm's weight average, or None when the recipe has no ``ema_decay``."""
    from timm.utils import ModelEmaV3

    if not recipe.ema_decay:
        return None
    return ModelEmaV3(model, decay=recipe.ema_decay, use_warmup=recipe.ema_warmup)


def _transforms(recipe: Recipe, model: nn.Module) -> tuple[Callable, dict[str, Any]]:
    """The training transform and the evaluation settings, normalised as the model expects."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform

    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean = tuple(cfg.get("mean", IMAGENET_DEFAULT_MEAN))
    std = tuple(cfg.get("std", IMAGENET_DEFAULT_STD))
    train_transform = create_transform(
        recipe.resolution,
        is_training=True,
        scale=recipe.train_crop_scale,
        hflip=recipe.hflip,
        color_jitter=recipe.color_jitter or None,
        auto_augment=recipe.auto_augment,
        interpolation=recipe.interpolation,
        re_prob=recipe.random_erasing,
        mean=mean,
        std=std,
    )
    eval_config = dict(
        input_size=recipe.test_resolution,
        crop_pct=recipe.crop_pct,
        interpolation="bilinear" if recipe.interpolation == "random" else recipe.interpolation,
        mean=list(mean),
        std=list(std),
    )
    return train_transform, eval_config


def eval_transform_from(config: dict[str, Any]) -> Callable:
    """The evaluation transform of ``config`` (``RecipeParts.eval_config``).

    Training, ``validate`` and ``fbnetv3 export`` (which writes these settings
    beside every exported file) all build it through
    ``fbnetv3_zoo.deploy.preprocess``, so a run folder's recorded settings give
    the very transform its reported numbers were measured with.
    """
    from fbnetv3_zoo.deploy.preprocess import from_evaluation

    return from_evaluation(config, "the run's evaluation settings").transform


def _scheduler(recipe: Recipe, optimizer: Any, steps_per_epoch: int, epochs: int) -> Any:
    """timm's scheduler, stepped per update so short runs still get warmup and decay."""
    from timm.scheduler import create_scheduler_v2

    sched, decay_epochs, decay_rate = recipe.schedule, recipe.decay_epochs, recipe.decay_rate
    if sched == "exponential":  # a smooth decay: a step of one update with the per-update rate
        sched = "step"
        decay_rate = decay_rate ** (1.0 / (decay_epochs * steps_per_epoch))
        decay_epochs = 1.0 / steps_per_epoch
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=sched,
        num_epochs=epochs,
        decay_epochs=decay_epochs,
        decay_rate=decay_rate,
        min_lr=recipe.min_lr,
        warmup_lr=recipe.warmup_lr,
        warmup_epochs=recipe.warmup_epochs,
        step_on_epochs=False,
        updates_per_epoch=steps_per_epoch,
    )
    return scheduler
