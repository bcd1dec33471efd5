"""The search result file (``best/<constraint>.yaml``): its one reader and one writer.

A result holds ``arch`` (ArchSpec fields), ``recipe`` (Recipe fields),
``num_classes`` (the class count its statistics were computed with),
``stats``, and the search's own sections (``predicted``, ``measured``,
``search``).  An ArchSpec YAML (its fields at the top, or under ``arch:``)
reads as a result with only ``arch``.  The spec, the recipes and the search
report all go through here; the core never imports the recipes, so the
recipe stays a mapping (``Recipe.from_result_file`` builds it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fbnetv3_zoo.checks import SpecError, check_num_classes
from fbnetv3_zoo.yaml_io import load_yaml

# the sections in the order the writer puts them; any other key is kept after these
SECTIONS = ("arch", "recipe", "num_classes", "stats", "predicted", "measured", "search")
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ResultFile:
    """One result (or bare spec) document; ``arch`` and ``recipe`` stay plain mappings."""

    arch: Mapping[str, Any]
    recipe: Mapping[str, Any] | None = None
    num_classes: int | None = None
    stats: Mapping[str, Any] | None = None
    sections: Mapping[str, Any] = field(default_factory=dict)  # predicted, measured, search, ...
    source: str = "result"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"arch": dict(self.arch)}
        if self.recipe is not None:
            out["recipe"] = dict(self.recipe)
        if self.num_classes is not None:
            out["num_classes"] = int(self.num_classes)
        if self.stats is not None:
            out["stats"] = dict(self.stats)
        out.update(self.sections)
        return out

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The document's YAML text (written to ``path`` when given)."""
        import yaml

        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text


def is_result_document(data: Any) -> bool:
    """A mapping with an ``arch:`` section (a result file, or a spec written by ``to_yaml``)."""
    return isinstance(data, Mapping) and "arch" in data


def parse_result(data: Any, source: str = "result") -> ResultFile:
    """A parsed document: a result file's sections, or a bare spec's fields as ``arch``."""
    if not isinstance(data, Mapping):
        raise SpecError(
            f"{source}: expected a mapping of ArchSpec fields, got {type(data).__name__}"
        )
    if not is_result_document(data):
        return ResultFile(arch=data, source=source)
    recipe, stats = data.get("recipe"), data.get("stats")
    for key, value in (("recipe", recipe), ("stats", stats)):
        if value is not None and not isinstance(value, Mapping):
            raise SpecError(f"{source}: {key} must be a mapping, got {type(value).__name__}")
    classes = data.get("num_classes")
    if classes is not None:
        classes = check_num_classes(classes, f"{source}: num_classes")
    return ResultFile(
        arch=data["arch"],
        recipe=recipe,
        num_classes=classes,
        stats=stats,
        sections={k: v for k, v in data.items() if k not in SECTIONS[:4]},
        source=source,
    )


def read_result_file(path: str | Path) -> ResultFile:
    """Read a result file or an ArchSpec YAML (errors name the path)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ArchSpec YAML not found: {path}")
    return parse_result(load_yaml(path), str(path))
