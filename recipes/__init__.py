"""Training recipes as reusable presets, and the engine that applies them to any backbone.

``Recipe.load("fbnetv3")`` gives a preset (plain data); ``create_model(recipe, name)``
and ``build(recipe, model, steps_per_epoch)`` apply it; ``engine.train`` runs it;
``validate(model, data, checkpoint=...)`` evaluates a model.
The torch-dependent names load on first use, so ``fbnetv3 --help`` stays fast.
"""

from typing import Any

from .recipe import Recipe, RecipeError, preset_names
from .validate import validate  # the function, not the module of the same name

APPLY = ("RecipeParts", "RecipeWarning", "build", "create_model", "for_model")


def __getattr__(name: str) -> Any:
    if name in APPLY:  # recipes.apply needs torch and timm: loaded on first use
        from . import apply

        return getattr(apply, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Recipe",
    "RecipeError",
    "RecipeParts",
    "RecipeWarning",
    "build",
    "create_model",
    "for_model",
    "preset_names",
    "validate",
]
