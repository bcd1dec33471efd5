"""The training recipe: one validated, YAML-round-trippable record of every knob.

The FBNetV3 paper searches the recipe jointly with the architecture, so a
recipe has to be a value that can be stored, diffed, mutated with
``dataclasses.replace`` and applied to any backbone.  Field names are part of
the public interface: the search space YAML refers to them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fbnetv3_zoo.checks import Checks, hint_types
from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.models.result_file import (
    YAML_SUFFIXES,
    is_result_document,
    parse_result,
    read_result_file,
)
from fbnetv3_zoo.models.weight_init import INIT_SCHEMES
from fbnetv3_zoo.yaml_io import load_yaml

from .names import close_names


class RecipeError(UserError):
    """A recipe field is unknown or out of range (a UserError: the CLI reports it in one line)."""


PRESET_DIR = Path(__file__).parent / "presets"

OPTIMIZERS = ("rmsprop", "sgd", "adamw")
SCHEDULES = ("cosine", "step", "exponential")
LR_SCALING = ("linear", "sqrt", "none")
AUTO_AUGMENT_PREFIXES = ("original", "originalr", "v0", "v0r", "3a", "rand-", "augmix-")


@dataclass(frozen=True)
class Recipe:
    """Every hyper-parameter of a training run; see ``recipes/presets/*.yaml`` for annotated values.

    ``lr`` is the learning rate for ``lr_batch_size`` images; the rate actually
    used is scaled to ``batch_size`` by ``lr_scaling`` (see ``scaled_lr``).
    ``rmsprop`` is TF-style RMSProp (timm's ``rmsproptf``: eps inside the square
    root, squared-gradient average starting at 1), which the MobileNet /
    EfficientNet / FBNet settings were tuned with; its first few dozen updates
    are small, so it wants a few hundred updates.  ``ema_decay`` 0 or None is off.

    ``resolution`` None trains at the model's own input size (its pretrained
    config's, or its ArchSpec's): in FBNetV3 resolution is searched together
    with the architecture, so it belongs to the model.  ``warmup_epochs`` and the
    EMA horizon shrink to fit a run shorter than they are (``build`` says so).
    """

    name: str = "custom"
    description: str = ""
    # optimizer
    optimizer: str = "sgd"
    lr: float = 0.1
    lr_batch_size: int = 256
    lr_scaling: str = "linear"
    momentum: float = 0.9
    opt_eps: float = 1e-8
    rmsprop_alpha: float = 0.9
    weight_decay: float = 5e-5
    # schedule
    schedule: str = "cosine"
    epochs: int = 100
    warmup_epochs: float = 0.0
    warmup_lr: float = 1e-6
    min_lr: float = 0.0
    decay_epochs: float = 2.4
    decay_rate: float = 0.97
    batch_size: int = 128
    # regularisation
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    dropout: float = 0.0
    drop_path: float = 0.0
    ema_decay: float | None = None
    ema_warmup: bool = True
    # data
    resolution: int | None = None
    eval_resolution: int | None = None
    crop_pct: float = 0.875
    train_crop_scale: tuple[float, float] = (0.08, 1.0)
    hflip: float = 0.5
    color_jitter: float = 0.0
    auto_augment: str | None = None
    random_erasing: float = 0.0
    interpolation: str = "bilinear"
    # model: "torch" keeps PyTorch's default weights, "efficientnet" redraws them
    # (fbnetv3_zoo.models.weight_init; benchmarks/results/init.md); pretrained weights are never redrawn
    init: str = "torch"
    # numerics
    grad_clip: float | None = None
    amp: bool = False
    extra: dict[str, Any] = field(
        default_factory=dict, hash=False
    )  # free-form notes, e.g. provenance

    def __post_init__(self) -> None:
        if isinstance(self.train_crop_scale, list):
            object.__setattr__(self, "train_crop_scale", tuple(self.train_crop_scale))
        if self.ema_decay == 0:
            object.__setattr__(self, "ema_decay", None)
        for name, hint in _hints().items():  # YAML 1.1 reads "1e-3" as a string
            value = getattr(self, name)
            if float in hint_types(hint) and isinstance(value, str):
                with contextlib.suppress(ValueError):
                    object.__setattr__(self, name, float(value))
        self.validate()

    # ------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise RecipeError naming the first field whose value is not allowed."""
        _types(self)
        _choice(self, "optimizer", OPTIMIZERS)
        _choice(self, "schedule", SCHEDULES)
        _choice(self, "lr_scaling", LR_SCALING)
        _choice(self, "interpolation", ("bilinear", "bicubic", "nearest", "random"))
        _choice(self, "init", INIT_SCHEMES)
        _range(self, "lr", 0, 10, low_open=True)
        _range(self, "lr_batch_size", 1, math.inf)
        _range(self, "momentum", 0, 1, high_open=True)
        _range(self, "opt_eps", 0, 1, low_open=True)
        _range(self, "rmsprop_alpha", 0, 1, low_open=True, high_open=True)
        _range(self, "weight_decay", 0, 1)
        _range(self, "epochs", 1, math.inf)
        _range(self, "warmup_epochs", 0, math.inf)  # build() shrinks it to fit a short run
        _range(self, "warmup_lr", 0, 10)
        _range(self, "min_lr", 0, 10)
        _range(self, "decay_epochs", 0, math.inf, low_open=True)
        _range(self, "decay_rate", 0, 1, low_open=True)
        _range(self, "batch_size", 1, math.inf)
        _range(self, "label_smoothing", 0, 1, high_open=True)
        _range(self, "mixup", 0, math.inf)
        _range(self, "cutmix", 0, math.inf)
        _range(self, "mixup_prob", 0, 1)
        _range(self, "mixup_switch_prob", 0, 1)
        _range(self, "dropout", 0, 1, high_open=True)
        _range(self, "drop_path", 0, 1, high_open=True)
        if self.ema_decay is not None:
            _range(self, "ema_decay", 0, 1, low_open=True, high_open=True)
        if self.resolution is not None:
            _range(self, "resolution", 8, 4096)
        if self.eval_resolution is not None:
            _range(self, "eval_resolution", 8, 4096)
        _range(self, "crop_pct", 0, 1, low_open=True)
        lo, hi = self.train_crop_scale
        if not (0 < lo <= hi <= 1):
            _fail("train_crop_scale", self.train_crop_scale, "two numbers 0 < min <= max <= 1")
        _range(self, "hflip", 0, 1)
        _range(self, "color_jitter", 0, 10)
        _range(self, "random_erasing", 0, 1)
        if self.grad_clip is not None:
            _range(self, "grad_clip", 0, math.inf, low_open=True)
        aa = self.auto_augment
        if aa is not None and not aa.startswith(AUTO_AUGMENT_PREFIXES):
            allowed = "null or a timm policy string starting with " + ", ".join(
                AUTO_AUGMENT_PREFIXES
            )
            _fail("auto_augment", aa, allowed + " (e.g. 'original', 'rand-m9-mstd0.5')")

    # ----------------------------------------------------------- conversions
    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready values (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["train_crop_scale"] = list(self.train_crop_scale)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "recipe") -> Recipe:
        """Build from a mapping, rejecting unknown keys with the closest valid name."""
        if not isinstance(data, dict):
            raise RecipeError(
                f"{source}: expected a mapping of recipe fields, got {type(data).__name__}"
            )
        names = [f.name for f in fields(cls)]
        for key in data:
            if key not in names:
                close = close_names(str(key), names)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise RecipeError(
                    f"{source}: unknown recipe field {key!r}{hint} (allowed: {', '.join(names)})"
                )
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Recipe:
        """A recipe YAML, or the ``recipe:`` section of a search result file."""
        path = Path(path)
        if not path.is_file():
            raise RecipeError(f"recipe file not found: {path}")
        data = load_yaml(path)
        data = {} if data is None else data
        source = str(path)
        if is_result_document(data):  # a search result: the recipe is one section of it
            recipe = parse_result(data, source).recipe
            if recipe is None:
                raise RecipeError(f"{path}: a search result / ArchSpec file without a recipe")
            data, source = dict(recipe), f"{path}: recipe"
        if isinstance(data, dict):
            data.setdefault("name", path.stem)
        return cls.from_dict(data, source=source)

    @classmethod
    def from_result_file(cls, path: str | Path) -> Recipe | None:
        """The recipe stored beside an ``arch:`` in a search-result YAML, if any."""
        path = Path(path)
        if path.suffix not in YAML_SUFFIXES or not path.is_file():
            return None
        recipe = read_result_file(path).recipe
        if recipe is None:
            return None
        data = {"name": path.stem, **recipe}
        return cls.from_dict(data, source=f"{path}: recipe")

    def to_yaml(self, path: str | Path | None = None) -> str:
        """Write (when ``path`` is given) and return the YAML text."""
        import yaml

        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def load(cls, name_or_path: str | Path) -> Recipe:
        """A preset name (``fbnetv3``, ``baseline``, ...) or a YAML file path."""
        text = str(name_or_path)
        if text in preset_names():
            return cls.from_yaml(PRESET_DIR / f"{text}.yaml")
        if text.endswith((".yaml", ".yml")) or Path(text).exists():
            return cls.from_yaml(text)
        close = close_names(text, preset_names())
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise RecipeError(
            f"unknown recipe {text!r}{hint} (presets: {', '.join(preset_names())}; or a YAML path)"
        )

    # ------------------------------------------------------------- derived
    @property
    def scaled_lr(self) -> float:
        """The learning rate for ``batch_size`` images under the scaling rule."""
        ratio = self.batch_size / self.lr_batch_size
        if self.lr_scaling == "linear":
            return self.lr * ratio
        if self.lr_scaling == "sqrt":
            return self.lr * math.sqrt(ratio)
        return self.lr

    @property
    def test_resolution(self) -> int | None:
        """The evaluation resolution (None: the model's own, like ``resolution``)."""
        return self.eval_resolution or self.resolution

    @property
    def uses_mixup(self) -> bool:
        return (self.mixup > 0 or self.cutmix > 0) and self.mixup_prob > 0


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _message(name: str, value: Any, allowed: str) -> str:
    return f"recipe field {name!r} = {value!r} is not allowed: must be {allowed}"


CHECKS = Checks(RecipeError, _message)


@functools.cache
def _hints() -> dict[str, Any]:
    """Each field's resolved type hint (``typing.get_type_hints``, not annotation text)."""
    return typing.get_type_hints(Recipe)


def _fail(name: str, value: Any, allowed: str) -> None:
    CHECKS.fail(name, value, allowed)


def _choice(recipe: Recipe, name: str, allowed: tuple[str, ...]) -> None:
    CHECKS.choice(getattr(recipe, name), name, allowed)


def _range(
    recipe: Recipe,
    name: str,
    low: float,
    high: float,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    CHECKS.number(getattr(recipe, name), name, low, high, low_open, high_open)


def _types(recipe: Recipe) -> None:
    """Check each value against its type hint (ints accepted where floats are)."""
    for f in fields(recipe):
        CHECKS.typed(getattr(recipe, f.name), _hints()[f.name], f.name)
    if len(recipe.train_crop_scale) != 2:
        _fail("train_crop_scale", recipe.train_crop_scale, "two numbers [min, max]")
