"""Training recipes as reusable presets, and the engine that applies them to any backbone.

``Recipe.load("fbnetv3")`` gives a preset; ``recipe.create_model(name)`` and
``recipe.build(model, steps_per_epoch)`` apply it; ``engine.train`` runs it;
``validate(model, data, checkpoint=...)`` evaluates a model.
The torch-dependent names load on first use, so ``fbnetv3 --help`` stays fast.
"""

from typing import Any

from .recipe import Recipe, RecipeError, preset_names
from .validate import validate  # the function, not the module of the same name


def __getattr__(name: str) -> Any:
    if name in ("RecipeParts", "RecipeWarning"):
        from . import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Recipe", "RecipeError", "RecipeParts", "RecipeWarning", "preset_names", "validate"]
