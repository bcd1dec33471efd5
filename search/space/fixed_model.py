"""A recipe-only search space for one fixed model: the recipe half of JointNAS for any backbone.

The model is any reference ``fbnetv3 train --model`` takes (a timm name,
``torchvision/<name>``, a zoo name, a search-result YAML), resolved by
``fbnetv3_zoo.weights.resolve``.  The space keeps the architecture as one fixed
point, so the encoding has recipe columns only and everything downstream
(sources, strategies, heads, store, report) runs unchanged: a candidate is
(this model, a recipe).  The model is built once here, to fail early on a bad
reference and to count its MACs and params for the report; resource limits
on MACs or params are moot for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fbnetv3_zoo.search.space.definition import SearchSpace, parse_space, space_path
from fbnetv3_zoo.search.space.dims import fail

from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.yaml_io import load_yaml

DEFAULT_RECIPE_SPACE = "recipe"  # spaces/recipe.yaml


@dataclass(frozen=True)
class FixedModel:
    """The architecture part of a recipe-only candidate, as the store and the evaluator keep it."""

    model: str
    input_size: int

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "input_size": self.input_size}


def model_of(arch: Mapping[str, Any]) -> Any:
    """What ``Recipe.create_model`` builds for a stored ``arch``: the fixed model's reference or an ArchSpec."""
    if "model" in arch:
        return str(arch["model"])
    from fbnetv3_zoo.models.spec import ArchSpec

    return ArchSpec.from_dict(dict(arch))


def _space_file(name_or_path: str | Path) -> tuple[dict[str, Any], str]:
    """The mapping and source name of a shipped space (by name) or a YAML file."""
    path = space_path(name_or_path)
    data = load_yaml(path)
    if not isinstance(data, Mapping):
        raise fail(str(path), "expected a mapping with a recipe: section")
    return dict(data), str(path)


def fixed_model_space(
    model: str,
    space: str | Path = DEFAULT_RECIPE_SPACE,
    resolution: int | None = None,
    num_classes: int = 1000,
) -> SearchSpace:
    """The recipe ranges of ``space`` (a shipped name or YAML path) around the fixed ``model``.

    ``resolution`` None takes the file's own (it must be one value); the
    file's ``recipe:`` section must search at least one field.
    """
    from fbnetv3_zoo.weights.resolve import parse_ref

    data, source = _space_file(space)
    if "recipe" not in data:
        raise fail(source, "no recipe: section; a recipe search needs the recipe ranges to search")
    if resolution is None:
        resolution = data.get("resolution")
        if not isinstance(resolution, int) or isinstance(resolution, bool):
            raise fail(
                f"{source}: resolution",
                f"a fixed model trains at one resolution; the file has {resolution!r}: give --resolution",
            )
    try:
        facts = parse_ref(model)
    except (OSError, ValueError) as err:
        raise UserError(f"--model {model}: {err}") from None
    stats = _stats(facts, resolution, num_classes)
    mapping = dict(
        name=f"{data.get('name', Path(source).stem)}@{model}",
        model=model,
        resolution=resolution,
        num_classes=num_classes,
        stats=stats,
        recipe=data["recipe"],
    )
    return parse_space(mapping, source=source)


def _stats(facts: Any, resolution: int, num_classes: int) -> dict[str, int]:
    """MACs per image (convolutions and linear layers) and parameters of the built model."""
    import torch

    from fbnetv3_zoo.deploy.bench import count_macs

    try:
        model = facts.create(pretrained=False, num_classes=num_classes).eval()
    except (RuntimeError, ValueError, TypeError) as err:
        raise UserError(f"--model {facts.text}: cannot be built ({err})") from None
    try:
        with torch.no_grad():
            macs = count_macs(model, resolution)
    except RuntimeError as err:  # e.g. feature maps that vanish at a small input
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"--model {facts.text} cannot take a {resolution}x{resolution} input ({first}); "
            "give a larger --resolution"
        ) from None
    return dict(macs=int(macs), params=int(sum(p.numel() for p in model.parameters())))
