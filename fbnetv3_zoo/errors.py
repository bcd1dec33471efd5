"""One exception type for mistakes a user can fix (bad file, flag, value).

The CLI turns a :class:`UserError` into one line on stderr and exit code 2;
anything else is a bug and keeps its traceback.  Module-specific errors
(``SpecError``, ``RecipeError``, ...) subclass it so callers can catch either.
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem with the user's input; the message names the file, key or field at fault."""


def first_line(err: BaseException) -> str:
    """The first line of ``err``'s message (its type name when empty), for one-line errors."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
