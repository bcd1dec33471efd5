"""(ArchSpec, recipe) pairs <-> fixed-length vectors in the unit cube.

The predictor, the samplers and the genetic search all work on these vectors;
only evaluation needs the decoded objects.  A choice dimension occupies the
centre of its cell, so ``encode(decode(u))`` snaps ``u`` onto the grid and the
round trip from a pair is exact.  A recipe here is the dict of searched fields
only; the rest comes from the space's base preset at evaluation time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from fbnetv3_zoo.search.space.definition import SearchSpace, SpaceError

from fbnetv3_zoo.models.spec import ArchSpec, BlockSpec


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars (YAML and JSON need plain types)."""
    return value.item() if isinstance(value, np.generic) else value


def decode_columns(space: SearchSpace, u: np.ndarray) -> dict[str, np.ndarray]:
    """Decode a batch ``(n, space.size)`` into one value array per dimension name."""
    u = np.atleast_2d(np.asarray(u, dtype=float))
    if u.shape[1] != space.size:
        raise ValueError(f"expected vectors of length {space.size}, got {u.shape[1]}")
    out, col = {}, 0
    for dim in space.dims():
        if dim.fixed:
            out[dim.name] = np.full(len(u), dim.choices[0], dtype=object)
        else:
            out[dim.name] = dim.decode(u[:, col])
            col += 1
    return out


def snap(space: SearchSpace, u: np.ndarray) -> np.ndarray:
    """Canonical form of vectors: what ``encode(decode(u))`` would give, vectorised."""
    u = np.atleast_2d(np.asarray(u, dtype=float)).copy()
    for col, dim in enumerate(space.free_dims()):
        u[:, col] = dim.snap(u[:, col])
    return u


def _row_name(i: int, j: int, field: str) -> str:
    return f"stages[{i}][{j}].{field}"


def decode(space: SearchSpace, u: np.ndarray) -> tuple[Any, dict[str, Any]]:
    """One vector -> (ArchSpec, searched recipe fields); a recipe-only space gives its ``FixedModel``."""
    cols = {k: _plain(v[0]) for k, v in decode_columns(space, u).items()}
    recipe = {d.name.split(".", 1)[1]: cols[d.name] for d in space.recipe}
    if space.model is not None:
        from fbnetv3_zoo.search.space.fixed_model import FixedModel

        return FixedModel(space.model, int(cols["resolution"])), recipe
    stages = []
    for i, stage in enumerate(space.stages):
        rows, channels = [], None
        for j, row in enumerate(stage):
            if row.channels is not None:
                channels = cols[_row_name(i, j, "channels")]
            kernel, trim = cols[_row_name(i, j, "kernel")], cols[_row_name(i, j, "pad_trim")]
            rows.append(
                BlockSpec(
                    kernel=kernel,
                    expansion=cols[_row_name(i, j, "expansion")],
                    channels=channels,
                    repeats=cols[_row_name(i, j, "repeats")],
                    stride=row.stride,
                    se=row.se,
                    act=row.act,
                    dw_padding=kernel // 2 - trim if trim else None,
                )
            )
        stages.append(tuple(rows))
    spec = ArchSpec(
        stem_channels=cols["stem_channels"],
        stages=tuple(stages),
        input_size=cols["resolution"],
        stem_kernel=space.stem_kernel,
        stem_act=space.stem_act,
        head_expansion=space.head_expansion,
        feature_width=space.feature_width,
        head_act=space.head_act,
        se_ratio=space.se_ratio,
    )
    return spec, recipe


def _arch_values(space: SearchSpace, spec: ArchSpec) -> dict[str, Any]:
    """Read every architecture dimension's value off ``spec``; raise if the structure differs."""
    fixed = {
        "stem_kernel": (spec.stem_kernel, space.stem_kernel),
        "stem_act": (spec.stem_act, space.stem_act),
        "head_expansion": (spec.head_expansion, space.head_expansion),
        "feature_width": (spec.feature_width, space.feature_width),
        "head_act": (spec.head_act, space.head_act),
        "se_ratio": (spec.se_ratio, space.se_ratio),
        "number of stages": (len(spec.stages), len(space.stages)),
    }
    for key, (have, want) in fixed.items():
        if have != want:
            raise SpaceError(f"{key}: {have!r} differs from the space's fixed {want!r}")
    values: dict[str, Any] = {"stem_channels": spec.stem_channels, "resolution": spec.input_size}
    for i, (stage, rows) in enumerate(zip(spec.stages, space.stages, strict=True)):
        if len(stage) != len(rows):
            raise SpaceError(f"stages[{i}]: {len(stage)} rows; the space has {len(rows)}")
        for j, (block, row) in enumerate(zip(stage, rows, strict=True)):
            where = f"stages[{i}][{j}]"
            for key in ("stride", "se", "act"):
                if getattr(block, key) != getattr(row, key):
                    raise SpaceError(
                        f"{where}.{key}: {getattr(block, key)!r} is fixed to {getattr(row, key)!r}"
                    )
            if row.channels is None and block.channels != stage[j - 1].channels:
                raise SpaceError(f"{where}.channels: must equal the previous row's width")
            pad = block.kernel // 2 if block.dw_padding is None else block.dw_padding
            values[_row_name(i, j, "kernel")] = block.kernel
            values[_row_name(i, j, "expansion")] = block.expansion
            values[_row_name(i, j, "channels")] = block.channels
            values[_row_name(i, j, "repeats")] = block.repeats
            values[_row_name(i, j, "pad_trim")] = block.kernel // 2 - pad
    return values


def encode(
    space: SearchSpace, spec: ArchSpec, recipe: Mapping[str, Any] | None = None
) -> np.ndarray:
    """(ArchSpec, recipe fields) -> unit vector; SpaceError names the first field outside the space.

    Recipe fields that are missing take the middle of their range (useful to
    place an architecture alone, e.g. a published variant).
    """
    values = _arch_values(space, spec)
    recipe = dict(recipe or {})
    out = []
    for dim in space.dims():
        if dim.name.startswith("recipe."):
            key = dim.name.split(".", 1)[1]
            if key not in recipe:
                if not dim.fixed:
                    out.append(0.5)
                continue
            value = recipe[key]
        else:
            value = values[dim.name]
        position = dim.encode(value)  # raises for values outside the space
        if not dim.fixed:
            out.append(position)
    return np.asarray(out, dtype=float)


def contains(space: SearchSpace, spec: ArchSpec) -> bool:
    """True when ``spec`` is a point of ``space`` (any recipe)."""
    try:
        encode(space, spec)
    except SpaceError:
        return False
    return True


def base_recipe_vector(space: SearchSpace) -> np.ndarray:
    """The encoding of a recipe-only space's base preset (one snapped row, shape ``(1, d)``):
    the search's first candidate.

    Every searched field takes the base recipe's value after the space's fixed
    overrides (an unset optional field such as ``ema_decay: null`` is off, 0);
    SpaceError names the first field whose base value the ranges leave out.
    """
    from fbnetv3_zoo.recipes.recipe import Recipe

    if space.model is None:
        raise SpaceError(f"{space.name}: an architecture space has no base point")
    base = Recipe.load(space.recipe_base).to_dict() | dict(space.recipe_overrides)
    out = []
    for dim in space.free_dims():  # a recipe-only space's free columns are recipe fields
        key = dim.name.split(".", 1)[1]
        value = 0.0 if base.get(key) is None else base[key]
        try:
            out.append(dim.encode(value))
        except SpaceError as err:
            raise SpaceError(
                f"{err}: the space's base recipe {space.recipe_base!r} lies outside its ranges; "
                "widen the range or turn start_at_base off (--no-start-at-base)"
            ) from None
    return snap(space, np.asarray([out], dtype=float))
