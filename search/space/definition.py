"""Search spaces: which (architecture, recipe) pairs the search may propose.

A space is read from YAML (see ``spaces/*.yaml``) into plain frozen objects.
Every searchable quantity is a :class:`Dim`: a list of choices or a numeric
range.  A dimension with a single choice is fixed and takes no column in the
encoding, so spaces can pin anything without special cases elsewhere.
Errors name the file and the path of the offending field, because a space is
hand-written and a bare ``KeyError`` would not say where to look.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fbnetv3_zoo.search.space.dims import Dim, SpaceError, check_positive_ints, fail, parse_dim

from fbnetv3_zoo.checks import (
    MAX_BLOCKS,
    MAX_CHANNELS,
    MAX_EXPANSION,
    MAX_INPUT_SIZE,
    MAX_KERNEL,
    MAX_REPEATS,
    MAX_ROWS,
    MIN_INPUT_SIZE,
)
from fbnetv3_zoo.yaml_io import load_yaml

SPACES_DIR = Path(__file__).parents[1] / "spaces"
RECIPE_FIELDS = (
    "optimizer",
    "lr",
    "weight_decay",
    "mixup",
    "dropout",
    "drop_path",
    "ema_decay",
    "label_smoothing",
)
ROW_KEYS = ("kernel", "expansion", "channels", "repeats", "stride", "se", "act", "pad_trim")
TOP_KEYS = ("name", "stem", "resolution", "head", "stages", "recipe")
# a recipe-only space: one fixed model (any reference ``fbnetv3 train --model`` takes), its
# resolution and class count, its MACs/params (counted once by ``fixed_model.py``), the recipe ranges
FIXED_MODEL_KEYS = ("name", "model", "resolution", "num_classes", "stats", "recipe")
# sanity bounds, checked before anything is allocated: far above any real network,
# far below what would exhaust memory while sampling or building a candidate
# one set of size limits with the spec, so a space never admits a network ArchSpec refuses
MAX_RESOLUTION = MAX_INPUT_SIZE
MAX_FEATURE_WIDTH = MAX_CHANNELS


@dataclass(frozen=True)
class RowSpace:
    """A row of blocks; ``channels`` is None when the row keeps the previous row's width."""

    kernel: Dim
    expansion: Dim
    channels: Dim | None
    repeats: Dim
    pad_trim: Dim
    stride: int
    se: bool
    act: str


@dataclass(frozen=True)
class SearchSpace:
    """An architecture template plus recipe ranges; see ``spaces/fbnetv3.yaml``."""

    name: str
    stem_channels: Dim
    stem_kernel: int
    stem_act: str
    resolution: Dim
    head_expansion: float
    feature_width: int
    head_act: str
    se_ratio: float
    stages: tuple[tuple[RowSpace, ...], ...]
    recipe_base: str
    recipe: tuple[Dim, ...]
    recipe_overrides: tuple[tuple[str, Any], ...]  # fixed Recipe fields applied over the base
    raw_json: str  # canonical text of the source mapping, for the resume fingerprint
    # a recipe-only space: the one model every candidate trains (None: the architecture template
    # above is searched); its stats stand for every candidate's, as no architecture dim is free
    model: str | None = None
    model_stats: tuple[int, int] = (0, 0)  # (MACs, params) of that model

    def dims(self) -> list[Dim]:
        """Every dimension, fixed or not, in encoding order."""
        out = [self.stem_channels, self.resolution]
        for stage in self.stages:
            for row in stage:
                out += [row.kernel, row.expansion]
                if row.channels is not None:
                    out.append(row.channels)
                out += [row.repeats, row.pad_trim]
        return out + list(self.recipe)

    def free_dims(self) -> list[Dim]:
        """The dimensions that take a column in the encoding."""
        return [d for d in self.dims() if not d.fixed]

    @property
    def size(self) -> int:
        return len(self.free_dims())

    def fingerprint(self) -> str:
        return hashlib.sha256(self.raw_json.encode()).hexdigest()[:16]


def _row(data: Any, where: str, first: bool) -> RowSpace:
    if not isinstance(data, Mapping):
        raise fail(where, f"expected a mapping with keys {list(ROW_KEYS)}, got {data!r}")
    bad = sorted(set(data) - set(ROW_KEYS))
    if bad:
        raise fail(where, f"unknown key(s) {bad}; allowed: {', '.join(ROW_KEYS)}")
    for key in ("kernel", "expansion", "channels", "repeats"):
        if key not in data:
            raise fail(where, f"missing required key {key!r}")
    kernel = parse_dim(data["kernel"], f"{where}.kernel", int)
    check_positive_ints(kernel, f"{where}.kernel", odd=True, maximum=MAX_KERNEL)
    expansion = parse_dim(data["expansion"], f"{where}.expansion")
    if any(not 1 <= v <= MAX_EXPANSION for v in expansion.choices or (0,)):
        raise fail(f"{where}.expansion", f"choices must be numbers in [1, {MAX_EXPANSION}]")
    channels = None
    if data["channels"] == "same":
        if first:
            raise fail(f"{where}.channels", "'same' needs a previous row in the stage")
    else:
        channels = parse_dim(data["channels"], f"{where}.channels", int)
        check_positive_ints(channels, f"{where}.channels", maximum=MAX_CHANNELS)
    repeats = parse_dim(data["repeats"], f"{where}.repeats", int)
    check_positive_ints(repeats, f"{where}.repeats", maximum=MAX_REPEATS)
    pad_trim = parse_dim(data.get("pad_trim", 0), f"{where}.pad_trim", int)
    if any(v not in (0, 1) for v in pad_trim.choices or ()) or (
        pad_trim.choices != (0,) and min(kernel.choices or (1,)) < 3
    ):
        raise fail(f"{where}.pad_trim", "choices must be 0 or 1, with kernels >= 3")
    stride, se, act = data.get("stride", 1), data.get("se", False), data.get("act", "hswish")
    if stride not in (1, 2):
        raise fail(f"{where}.stride", f"must be 1 or 2, got {stride!r}")
    if not isinstance(se, bool):
        raise fail(f"{where}.se", f"must be true or false, got {se!r}")
    from fbnetv3_zoo.models.spec import ACTIVATIONS

    if act not in ACTIVATIONS:
        raise fail(f"{where}.act", f"must be one of {', '.join(ACTIVATIONS)}, got {act!r}")
    return RowSpace(kernel, expansion, channels, repeats, pad_trim, stride, se, act)


def _section(data: Mapping[str, Any], key: str, source: str) -> Any:
    if key not in data:
        raise fail(source, f"missing required key {key!r}")
    return data[key]


def parse_space(data: Any, source: str = "search space") -> SearchSpace:
    """Validate a space mapping; every error names ``source`` and the bad field's path."""
    if not isinstance(data, Mapping):
        raise fail(source, f"expected a mapping with keys {list(TOP_KEYS)}")
    if "model" in data:
        return _fixed_model_space(data, source)
    if "stages" not in data and "stem" not in data and "recipe" in data:
        raise fail(
            source,
            "a recipe-only space (no stem/stages): search it for one model with "
            "`fbnetv3 search --model <name> --space <this file>`",
        )
    bad = sorted(set(data) - set(TOP_KEYS))
    if bad:
        raise fail(source, f"unknown key(s) {bad}; allowed: {', '.join(TOP_KEYS)}")
    stem = _section(data, "stem", source)
    head = data.get("head", {})
    recipe = _section(data, "recipe", source)
    stages = _section(data, "stages", source)
    for key, value in (("stem", stem), ("head", head), ("recipe", recipe)):
        if not isinstance(value, Mapping):
            raise fail(f"{source}: {key}", f"expected a mapping, got {value!r}")
    if not isinstance(stages, list) or not stages:
        raise fail(f"{source}: stages", "expected a non-empty list of stages")
    try:
        stem_channels = parse_dim(
            _section(stem, "channels", f"{source}: stem"), "stem_channels", int
        )
        resolution = parse_dim(_section(data, "resolution", source), "resolution", int)
    except SpaceError as err:
        raise SpaceError(f"{source}: {err}") from None
    check_positive_ints(stem_channels, f"{source}: stem.channels", maximum=MAX_CHANNELS)
    check_positive_ints(
        resolution, f"{source}: resolution", minimum=MIN_INPUT_SIZE, maximum=MAX_RESOLUTION
    )
    lists = [stage for stage in stages if isinstance(stage, list)]
    if len(stages) > MAX_ROWS or any(len(stage) > MAX_ROWS for stage in lists):
        raise fail(f"{source}: stages", f"at most {MAX_ROWS} stages of at most {MAX_ROWS} rows")
    rows = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, list) or not stage:
            raise fail(f"{source}: stages[{i}]", "expected a non-empty list of block rows")
        try:
            rows.append(
                tuple(_row(r, f"stages[{i}][{j}]", first=j == 0) for j, r in enumerate(stage))
            )
        except SpaceError as err:
            raise SpaceError(f"{source}: {err}") from None
    deepest = sum(max(row.repeats.choices or (1,)) for stage in rows for row in stage)
    if deepest > MAX_BLOCKS:  # the spec's limit, reached by the deepest candidate
        raise fail(f"{source}: stages", f"up to {deepest} blocks; at most {MAX_BLOCKS} allowed")
    base, recipe_dims, overrides = parse_recipe_section(
        recipe, min(resolution.choices or (32,)), source
    )
    stem_kernel = _scalar(stem, "kernel", 3, int, 1, MAX_KERNEL, f"{source}: stem")
    if stem_kernel % 2 == 0:
        raise fail(f"{source}: stem.kernel", f"must be odd, got {stem_kernel}")
    return SearchSpace(
        name=str(data.get("name", Path(source).stem)),
        stem_channels=stem_channels,
        stem_kernel=stem_kernel,
        stem_act=str(stem.get("act", "hswish")),
        resolution=resolution,
        head_expansion=_scalar(
            head, "expansion", 6.0, (int, float), 1, MAX_EXPANSION, f"{source}: head"
        ),
        feature_width=_scalar(
            head, "feature_width", 1984, int, 1, MAX_FEATURE_WIDTH, f"{source}: head"
        ),
        head_act=str(head.get("act", "hswish")),
        se_ratio=_scalar(head, "se_ratio", 0.25, (int, float), 0.01, 1.0, f"{source}: head"),
        stages=tuple(rows),
        recipe_base=str(base),
        recipe=tuple(recipe_dims),
        recipe_overrides=overrides,
        raw_json=json.dumps(data, sort_keys=True, default=str),
    )


def parse_recipe_section(
    recipe: Mapping[str, Any], resolution: int, source: str
) -> tuple[str, list[Dim], tuple[tuple[str, Any], ...]]:
    """(base preset, recipe dims, fixed overrides) of a space's ``recipe:`` mapping, checked."""
    bad = sorted(set(recipe) - {"base", "overrides", *RECIPE_FIELDS})
    if bad:
        allowed = ", ".join(("base", "overrides", *RECIPE_FIELDS))
        raise fail(f"{source}: recipe", f"unknown key(s) {bad}; allowed: {allowed}")
    overrides = _overrides(recipe.get("overrides", {}), f"{source}: recipe.overrides")
    recipe_dims = []
    for key in RECIPE_FIELDS:
        if key in recipe:
            kind = str if key == "optimizer" else (int, float)
            try:
                recipe_dims.append(parse_dim(recipe[key], f"recipe.{key}", kind))
            except SpaceError as err:
                raise SpaceError(f"{source}: {err}") from None
    base = recipe.get("base", "fbnetv3_proxy")
    _check_recipe_ranges(base, overrides, recipe_dims, resolution, source)
    return str(base), recipe_dims, overrides


def _fixed_model_space(data: Mapping[str, Any], source: str) -> SearchSpace:
    """A recipe-only space: every architecture dim fixed (no encoding column), the recipe free.

    Written by ``fixed_model.fixed_model_space`` (which counts the stats) or by
    hand; the architecture template fields hold placeholders that nothing reads,
    because ``decode`` and ``batch_stats`` answer from ``model`` and ``stats``.
    """
    bad = sorted(set(data) - set(FIXED_MODEL_KEYS))
    if bad:
        raise fail(
            source,
            f"unknown key(s) {bad} in a fixed-model space; allowed: {', '.join(FIXED_MODEL_KEYS)}",
        )
    model = data["model"]
    if not isinstance(model, str) or not model:
        raise fail(
            f"{source}: model", f"expected a model reference such as resnet18, got {model!r}"
        )
    resolution = _section(data, "resolution", source)
    if (
        isinstance(resolution, bool)
        or not isinstance(resolution, int)
        or not MIN_INPUT_SIZE <= resolution <= MAX_RESOLUTION
    ):
        raise fail(
            f"{source}: resolution",
            f"a fixed model needs one integer resolution in [{MIN_INPUT_SIZE}, {MAX_RESOLUTION}], got {resolution!r}",
        )
    recipe = _section(data, "recipe", source)
    if not isinstance(recipe, Mapping):
        raise fail(f"{source}: recipe", f"expected a mapping, got {recipe!r}")
    base, dims, overrides = parse_recipe_section(recipe, resolution, source)
    if not any(not d.fixed for d in dims):
        raise fail(
            f"{source}: recipe",
            "no recipe ranges to search (every field fixed or absent); give at least one of "
            + ", ".join(RECIPE_FIELDS)
            + " as a list or a {min, max} range",
        )
    stats = data.get("stats") or {}
    if not isinstance(stats, Mapping) or any(
        isinstance(stats.get(k, 0), bool) or not isinstance(stats.get(k, 0), int)
        for k in ("macs", "params")
    ):
        raise fail(f"{source}: stats", f"expected {{macs: int, params: int}}, got {stats!r}")
    return SearchSpace(
        name=str(data.get("name", Path(source).stem)),
        stem_channels=Dim("stem_channels", (0,)),
        stem_kernel=1,
        stem_act="none",
        resolution=Dim("resolution", (resolution,)),
        head_expansion=1.0,
        feature_width=0,
        head_act="none",
        se_ratio=0.0,
        stages=(),
        recipe_base=base,
        recipe=tuple(dims),
        recipe_overrides=overrides,
        raw_json=json.dumps(data, sort_keys=True, default=str),
        model=model,
        model_stats=(int(stats.get("macs", 0)), int(stats.get("params", 0))),
    )


def _scalar(
    section: Mapping[str, Any],
    key: str,
    default: Any,
    kind: Any,
    low: float,
    high: float,
    where: str,
) -> Any:
    """A fixed number of the space, type- and bound-checked with its path in the error."""
    v = section.get(key, default)
    if isinstance(v, bool) or not isinstance(v, kind) or not low <= v <= high:
        raise fail(f"{where}.{key}", f"must be a number in [{low}, {high}], got {v!r}")
    return int(v) if kind is int else float(v)


def _check_recipe_ranges(
    base: Any,
    overrides: tuple[tuple[str, Any], ...],
    dims: list[Dim],
    resolution: int,
    source: str,
) -> None:
    """Every end of every recipe range must be a value ``Recipe`` itself accepts.

    Checked when the space loads, so a space with ``lr: {min: 20, max: 50}``
    or ``optimizer: [lbfgs]`` is refused at once instead of failing every
    candidate later.
    """
    from fbnetv3_zoo.recipes import Recipe

    if not isinstance(base, str):
        raise fail(f"{source}: recipe.base", f"expected a preset name or a YAML path, got {base!r}")
    try:
        start = {**Recipe.load(base).to_dict(), **dict(overrides), "resolution": resolution}
    except (ValueError, OSError) as err:
        raise fail(f"{source}: recipe.base", f"{base!r}: {err}") from None
    try:
        Recipe.from_dict(start)
    except (ValueError, TypeError) as err:
        raise fail(f"{source}: recipe.overrides", str(err)) from None
    for dim in dims:
        key = dim.name.split(".", 1)[1]
        values = dim.choices if dim.choices is not None else (dim.low, dim.high)
        for value in values:
            try:
                Recipe.from_dict({**start, key: value})
            except (ValueError, TypeError) as err:
                raise fail(
                    f"{source}: {dim.name}", f"{value!r} is not a valid recipe value ({err})"
                ) from None


def _overrides(data: Any, where: str) -> tuple[tuple[str, Any], ...]:
    """Fixed recipe fields (e.g. a smaller batch for the proxy); names checked against Recipe."""
    if not isinstance(data, Mapping):
        raise fail(where, f"expected a mapping of recipe fields, got {data!r}")
    from dataclasses import fields

    from fbnetv3_zoo.recipes import Recipe

    names = [f.name for f in fields(Recipe)]
    for key in data:
        if key not in names or key in RECIPE_FIELDS or key == "resolution":
            raise fail(
                f"{where}.{key}",
                "not a fixed recipe field (searched fields and resolution come from the space; allowed: "
                + ", ".join(n for n in names if n not in RECIPE_FIELDS and n != "resolution")
                + ")",
            )
    return tuple(sorted(data.items()))


def available_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def space_path(name_or_path: str | Path) -> Path:
    """The file of a shipped space (by name) or a YAML path; a missing one is a SpaceError."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SPACES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise SpaceError(
                f"unknown search space {str(name_or_path)!r}; shipped: {', '.join(available_spaces())} (or give a YAML path)"
            )
    if not path.is_file():
        raise SpaceError(f"search space file not found: {path}")
    return path


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Load a shipped space by name (``fbnetv3``, ``fbnetv3_proxy``) or any YAML file."""
    path = space_path(name_or_path)
    return parse_space(load_yaml(path), source=str(path))
