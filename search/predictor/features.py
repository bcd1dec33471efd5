"""Genome vectors -> predictor features: one-hot choices, min-max numbers, arch apart from recipe.

The genome (``encoding.py``) puts every free dimension on [0, 1], which is
right for sampling and mutation but wrong for a regressor: the optimizer
``rmsprop/sgd/adamw`` or the kernel ``3/5`` would become ordinal positions
whose order means nothing.  Here a dimension declared as a list of choices
becomes one column per choice (one-hot) and a dimension declared as a range
(``{min, max, step?, log?}``) one column scaled min-max to [0, 1] (on the log
scale for log ranges).  Architecture columns come first and are reported
apart from the recipe columns, because the predictor's encoder sees only the
architecture (it is pretrained on MACs/params, which the recipe does not
change) and the recipe joins at the accuracy head.

One recipe number is conditional on a recipe choice: a learning rate means
something different for each optimizer (SGD's best rate is about ten times
AdamW's).  When the space searches both, the features add the rate once per
optimizer, zero for the optimizers not chosen, so a regressor can give each
optimizer its own best rate from a handful of pairs instead of having to learn
the interaction (``CONDITIONAL``; tuning libraries call these conditional
hyperparameters).  These columns are derived, so ``inverse`` ignores them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from fbnetv3_zoo.search.space.definition import Dim, SearchSpace

# numeric recipe dim -> the categorical recipe dim its meaning depends on
CONDITIONAL = {"recipe.lr": "recipe.optimizer"}


@dataclass(frozen=True)
class Column:
    """How one free dimension is featurised: ``width`` columns starting at ``start``."""

    name: str
    onehot: bool
    recipe: bool
    start: int
    width: int


def _declarations(space: SearchSpace) -> dict[str, Any]:
    """Each dimension's value as written in the space file (list, range mapping or scalar)."""
    try:
        data = json.loads(space.raw_json)
    except (TypeError, ValueError):
        return {}
    if not isinstance(data, Mapping):
        return {}
    out: dict[str, Any] = {}
    stem = data.get("stem")
    if isinstance(stem, Mapping) and "channels" in stem:
        out["stem_channels"] = stem["channels"]
    if "resolution" in data:
        out["resolution"] = data["resolution"]
    for i, stage in enumerate(data.get("stages") or []):
        for j, row in enumerate(stage if isinstance(stage, list) else []):
            for key, value in row.items() if isinstance(row, Mapping) else []:
                out[f"stages[{i}][{j}].{key}"] = value
    recipe = data.get("recipe")
    for key, value in recipe.items() if isinstance(recipe, Mapping) else []:
        out[f"recipe.{key}"] = value
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def is_categorical(dim: Dim, declared: Any = None) -> bool:
    """A set of choices (one-hot) rather than a numeric range (min-max).

    ``declared`` is the dimension as written in the space file: a list is a set
    of choices even when its items are numbers (kernels, expansions); a
    ``{min, max, step}`` mapping is a range.  Without it, only non-numeric
    choices count as categorical.
    """
    if dim.choices is None:
        return False
    if not all(_is_number(v) for v in dim.choices):
        return True
    return isinstance(declared, list)


class FeatureMap:
    """The featurisation of one space; ``transform`` and ``inverse`` are vectorised."""

    def __init__(self, space: SearchSpace) -> None:
        declared = _declarations(space)
        self.dims = space.free_dims()
        arch = [d for d in self.dims if not d.name.startswith("recipe.")]
        recipe = [d for d in self.dims if d.name.startswith("recipe.")]
        # genome column of each dim, so arch columns can come first whatever the genome order
        self._genome_col = {d.name: k for k, d in enumerate(self.dims)}
        self.columns: list[Column] = []
        start = 0
        for dim in arch + recipe:
            onehot = is_categorical(dim, declared.get(dim.name))
            width = len(dim.choices) if onehot else 1
            self.columns.append(
                Column(dim.name, onehot, dim.name.startswith("recipe."), start, width)
            )
            start += width
        self._by_name = {d.name: d for d in self.dims}
        by_col = {c.name: c for c in self.columns}
        # (numeric column, categorical column, first derived column) for each conditional pair
        self.conditional: list[tuple[Column, Column, int]] = []
        for number, choice in CONDITIONAL.items():
            num, cat = by_col.get(number), by_col.get(choice)
            if num is not None and cat is not None and not num.onehot and cat.onehot:
                self.conditional.append((num, cat, start))
                start += cat.width
        self.width = start
        self.arch_width = sum(c.width for c in self.columns if not c.recipe)

    @property
    def names(self) -> list[str]:
        """One label per feature column, e.g. ``recipe.optimizer=sgd`` or ``resolution``."""
        out = []
        for col in self.columns:
            choices = self._by_name[col.name].choices
            out += [f"{col.name}={c}" for c in choices] if col.onehot else [col.name]
        for num, cat, _ in self.conditional:
            out += [f"{num.name}|{cat.name}={c}" for c in self._by_name[cat.name].choices]
        return out

    def transform(self, u: np.ndarray) -> np.ndarray:
        """``(n, space.size)`` genomes -> ``(n, width)`` features, arch columns first."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        if u.shape[1] != len(self.dims):
            raise ValueError(f"expected vectors of length {len(self.dims)}, got {u.shape[1]}")
        u = np.clip(u, 0.0, 1.0)
        x = np.zeros((len(u), self.width))
        for col in self.columns:
            dim = self._by_name[col.name]
            g = u[:, self._genome_col[col.name]]
            if dim.choices is None:  # continuous range: the genome already is min-max (log-)scaled
                x[:, col.start] = g
                continue
            n = len(dim.choices)
            idx = np.minimum((g * n).astype(int), n - 1)
            if col.onehot:
                x[np.arange(len(u)), col.start + idx] = 1.0
            else:  # numeric grid: min-max of the value itself
                values = np.asarray(dim.choices, dtype=float)
                span = values.max() - values.min()
                x[:, col.start] = (values[idx] - values.min()) / span if span else 0.5
        for num, cat, start in self.conditional:
            chosen = x[:, cat.start : cat.start + cat.width]
            x[:, start : start + cat.width] = chosen * x[:, num.start : num.start + 1]
        return x

    def split(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(architecture features, recipe features) of genomes ``u``."""
        x = self.transform(u)
        return x[:, : self.arch_width], x[:, self.arch_width :]

    def inverse(self, x: np.ndarray) -> np.ndarray:
        """Features -> snapped genomes (argmax for one-hot, nearest grid value for numbers)."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        if x.shape[1] != self.width:
            raise ValueError(f"expected {self.width} feature columns, got {x.shape[1]}")
        u = np.zeros((len(x), len(self.dims)))
        for col in self.columns:
            dim = self._by_name[col.name]
            block = x[:, col.start : col.start + col.width]
            if dim.choices is None:
                u[:, self._genome_col[col.name]] = np.clip(block[:, 0], 0.0, 1.0)
                continue
            n = len(dim.choices)
            if col.onehot:
                idx = block.argmax(axis=1)
            else:
                values = np.asarray(dim.choices, dtype=float)
                span = values.max() - values.min()
                scaled = (values - values.min()) / span if span else np.full(n, 0.5)
                idx = np.abs(block[:, :1] - scaled[None, :]).argmin(axis=1)
            u[:, self._genome_col[col.name]] = (idx + 0.5) / n
        return u


def feature_map(space: SearchSpace) -> FeatureMap:
    """The featurisation of ``space`` (cheap to build; build once per space and reuse)."""
    return FeatureMap(space)
