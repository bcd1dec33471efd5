"""Apply a recipe to a model by composing timm's parts, not by re-writing them.

Dropout and stochastic depth are architectural, so they go through the model
constructor (``create_model``); everything else (optimizer, schedule, mixup,
losses, EMA, transforms) works on any ``nn.Module`` (``build``).
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from .recipe import Recipe, RecipeError

# timm's optimizer names for ours: TF-style RMSProp (eps inside the sqrt) is what
# the MobileNet/EfficientNet/FBNet RMSProp settings were tuned with
TIMM_OPTIMIZERS = {"rmsprop": "rmsproptf", "sgd": "sgd", "adamw": "adamw"}
TORCHVISION_PREFIXES = ("torchvision/", "tv/")
APPLIED_ATTR = "recipe_applied"  # set on models built by create_model: which regularisers took


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
    not_applied: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ models
def create_model(
    recipe: Recipe,
    name: str | Path | Any,
    num_classes: int = 1000,
    pretrained: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build a zoo / timm / torchvision model with the recipe's dropout and drop path.

    Zoo names, ArchSpecs and their YAML paths go through ``fbnetv3_zoo.create_model``;
    ``torchvision/<name>`` forces torchvision where timm has the same name.
    """
    import timm

    import fbnetv3_zoo

    text = str(name)
    regs = {"dropout": recipe.dropout, "drop_path": recipe.drop_path}
    is_spec = isinstance(name, fbnetv3_zoo.ArchSpec)
    if is_spec or text.split(".")[0] in fbnetv3_zoo.VARIANTS or text.endswith((".yaml", ".yml")):
        model = fbnetv3_zoo.create_model(
            name,
            pretrained=pretrained,
            num_classes=num_classes,
            drop_rate=recipe.dropout,
            drop_path_rate=recipe.drop_path,
            **kwargs,
        )
        applied = dict.fromkeys(regs, True)
    elif not text.startswith(TORCHVISION_PREFIXES) and timm.is_model(text.split(".")[0]):
        model, applied = _timm_model(text, num_classes, pretrained, regs, kwargs)
    elif _torchvision_name(text) in _torchvision_models():
        model, applied = _torchvision_model(
            _torchvision_name(text), num_classes, pretrained, regs, kwargs
        )
    else:
        raise ValueError(f"unknown model {text!r}{_close_models(text)}")
    missed = [k for k, ok in applied.items() if not ok and regs[k] > 0]
    if missed:
        _warn_not_applied(recipe, model, missed)
    setattr(model, APPLIED_ATTR, applied)
    return model


def _timm_model(
    name: str, num_classes: int, pretrained: bool, regs: dict[str, float], kwargs: dict[str, Any]
) -> tuple[nn.Module, dict[str, bool]]:
    import timm

    extra = {"drop_rate": regs["dropout"], "drop_path_rate": regs["drop_path"]}
    applied = {"dropout": True, "drop_path": True}
    for key, reg in (("drop_path_rate", "drop_path"), ("drop_rate", "dropout"), (None, None)):
        try:
            model = timm.create_model(
                name, pretrained=pretrained, num_classes=num_classes, **extra, **kwargs
            )
            return model, applied
        except TypeError:
            if key is None:
                raise
            extra.pop(key)  # this architecture does not take it
            applied[reg] = False
    raise AssertionError("unreachable")


def _torchvision_name(text: str) -> str:
    for prefix in TORCHVISION_PREFIXES:
        text = text.removeprefix(prefix)
    return text


def _torchvision_models() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def _torchvision_model(
    name: str, num_classes: int, pretrained: bool, regs: dict[str, float], kwargs: dict[str, Any]
) -> tuple[nn.Module, dict[str, bool]]:
    import torchvision
    from torchvision.ops import StochasticDepth

    # torchvision spells the two regularisers per family; try each, drop what a builder refuses
    extra = {"dropout": regs["dropout"], "stochastic_depth_prob": regs["drop_path"]}
    applied = {"dropout": True, "drop_path": True}
    weights = "DEFAULT" if pretrained else None
    while True:
        try:
            model = torchvision.models.get_model(
                name, weights=weights, num_classes=num_classes, **extra, **kwargs
            )
            break
        except TypeError as err:
            refused = [k for k in extra if f"'{k}'" in str(err)]
            if not refused:
                raise
            for key in refused:
                extra.pop(key)
                applied["dropout" if key == "dropout" else "drop_path"] = False
    # some builders swallow unknown keywords: check the layers really are there
    mods = list(model.modules())
    if regs["dropout"] > 0 and not any(
        isinstance(m, nn.Dropout) and m.p == regs["dropout"] for m in mods
    ):
        applied["dropout"] = False
    if regs["drop_path"] > 0 and not any(isinstance(m, StochasticDepth) for m in mods):
        applied["drop_path"] = False
    return model, applied


def _close_models(text: str) -> str:
    import timm

    import fbnetv3_zoo

    names = list(fbnetv3_zoo.VARIANTS) + timm.list_models() + _torchvision_models()
    close = difflib.get_close_matches(text, list(dict.fromkeys(names)), n=5, cutoff=0.6)
    if not close:
        close = timm.list_models(f"*{text[:6]}*")[:5]
    hint = f"; close matches: {', '.join(close)}" if close else ""
    return hint + " (a timm or torchvision name, fbnetv3_a…g, or an ArchSpec YAML path)"


def _warn_not_applied(
    recipe: Recipe,
    model: nn.Module,
    missed: list[str],
    why: str = "its constructor does not take them",
) -> None:
    values = ", ".join(f"{k}={getattr(recipe, k)}" for k in missed)
    warnings.warn(
        f"recipe {recipe.name!r}: {values} could not be applied to {type(model).__name__} "
        f"({why}); the rest of the recipe still applies",
        RecipeWarning,
        stacklevel=3,
    )


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
    """Optimizer, per-step scheduler, mixup, losses, EMA and transforms for ``model``."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, Mixup, create_transform
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.utils import ModelEmaV3

    if steps_per_epoch < 1:
        raise RecipeError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    epochs = epochs or recipe.epochs
    num_classes = num_classes or infer_num_classes(model)
    if num_classes is None:
        raise RecipeError("cannot tell the number of classes of this model: pass num_classes")
    not_applied = _apply_regularisers(recipe, model)

    opt_args: dict[str, Any] = {}
    if recipe.optimizer == "rmsprop":
        opt_args = {"eps": recipe.opt_eps, "alpha": recipe.rmsprop_alpha}
    elif recipe.optimizer == "adamw":
        opt_args = {"eps": recipe.opt_eps}
    optimizer = create_optimizer_v2(
        model,
        opt=TIMM_OPTIMIZERS[recipe.optimizer],
        lr=recipe.scaled_lr,
        weight_decay=recipe.weight_decay,
        momentum=recipe.momentum,
        filter_bias_and_bn=True,  # no weight decay on norm layers and biases
        **opt_args,
    )
    scheduler = _scheduler(recipe, optimizer, steps_per_epoch, epochs)

    mixup = None
    if recipe.uses_mixup:
        mixup = Mixup(
            mixup_alpha=recipe.mixup,
            cutmix_alpha=recipe.cutmix,
            prob=recipe.mixup_prob,
            switch_prob=recipe.mixup_switch_prob,
            label_smoothing=recipe.label_smoothing,
            num_classes=num_classes,
        )
        train_loss: nn.Module = SoftTargetCrossEntropy()
    elif recipe.label_smoothing > 0:
        train_loss = LabelSmoothingCrossEntropy(smoothing=recipe.label_smoothing)
    else:
        train_loss = nn.CrossEntropyLoss()

    ema = None
    if recipe.ema_decay:
        ema = ModelEmaV3(model, decay=recipe.ema_decay, use_warmup=recipe.ema_warmup)

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
    eval_transform = create_transform(
        recipe.test_resolution,
        is_training=False,
        crop_pct=recipe.crop_pct,
        interpolation="bilinear" if recipe.interpolation == "random" else recipe.interpolation,
        mean=mean,
        std=std,
    )
    return RecipeParts(
        optimizer=optimizer,
        scheduler=scheduler,
        mixup=mixup,
        train_loss=train_loss,
        eval_loss=nn.CrossEntropyLoss(),
        ema=ema,
        train_transform=train_transform,
        eval_transform=eval_transform,
        lr=recipe.scaled_lr,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        num_classes=num_classes,
        not_applied=not_applied,
    )


def _apply_regularisers(recipe: Recipe, model: nn.Module) -> list[str]:
    """Check dropout / drop path took; set timm's ``drop_rate`` when it can be set late."""
    applied = dict(getattr(model, APPLIED_ATTR, {}))
    if not applied.get("dropout") and isinstance(getattr(model, "drop_rate", None), float | int):
        model.drop_rate = recipe.dropout  # timm heads read this attribute in forward
        applied["dropout"] = True
    missed = [k for k in ("dropout", "drop_path") if not applied.get(k) and getattr(recipe, k) > 0]
    if missed and APPLIED_ATTR not in vars(model):  # create_model already warned otherwise
        why = "only Recipe.create_model can pass them to a model's constructor"
        _warn_not_applied(recipe, model, missed, why)
    return missed


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
        warmup_epochs=min(recipe.warmup_epochs, epochs - 1) if epochs > 1 else 0,
        step_on_epochs=False,
        updates_per_epoch=steps_per_epoch,
    )
    return scheduler
