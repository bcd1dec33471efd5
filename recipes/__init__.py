"""Training recipes as reusable presets, and the engine that applies them to any backbone.

``Recipe.load("fbnetv3")`` gives a preset; ``recipe.create_model(name)`` and
``recipe.build(model, steps_per_epoch)`` apply it; ``engine.train`` runs it.
"""

from .build import RecipeParts, RecipeWarning
from .recipe import Recipe, RecipeError, preset_names

__all__ = ["Recipe", "RecipeError", "RecipeParts", "RecipeWarning", "preset_names"]
