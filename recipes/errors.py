"""The recipes' error type, apart so that ``recipe`` and ``build`` need not import each other."""

from __future__ import annotations

from fbnetv3_zoo.errors import UserError


class RecipeError(UserError):
    """A recipe field is unknown or out of range (a UserError: the CLI reports it in one line)."""
