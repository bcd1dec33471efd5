"""Size limits and the value checks every hand-written file format shares.

One set of limits serves the spec, the search space and the result files, so
a space can never admit a network ``ArchSpec`` refuses.  :class:`Checks`
raises the caller's own error type with the caller's own wording, so each
format keeps messages that name its file and field.
"""

from __future__ import annotations

import math
import os
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

from fbnetv3_zoo.errors import UserError

# Upper bounds, checked before anything is resolved or allocated: far above any
# mobile network (the largest zoo variant has 1984 features and 34 blocks), low
# enough that a typo such as ``repeats: 100000000`` fails at once, not in the allocator.
MAX_CHANNELS = 8192  # stem, block rows and feature_width
MAX_REPEATS = 64  # per block row
MAX_BLOCKS = 256  # in the whole network
MAX_ROWS = 64  # per stage, and stages per network
MAX_KERNEL = 31
MAX_EXPANSION = 32.0  # block rows and head
MAX_INPUT_SIZE = 4096
MIN_INPUT_SIZE = 8
MAX_NUM_CLASSES = 100_000
MAX_PARAMS = 1_000_000_000  # whole network; the largest zoo variant has 16.5 M
DEFAULT_NUM_CLASSES = 1000  # ImageNet: the zoo variants and bare specs are counted with it
MAX_NAME_CHARS = 128


class SpecError(UserError):
    """An ArchSpec field holds a value outside what the builders accept."""


def is_int(value: Any) -> bool:
    """An integer that is not a bool (YAML's ``true`` is no channel count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def interval(low: float, high: float, low_open: bool = False, high_open: bool = False) -> str:
    """``[low, high)``-style text of a range, as every error message writes it."""
    return f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _type_names(kinds: Iterable[type]) -> str:
    return "/".join("null" if k is type(None) else k.__name__ for k in kinds)


def hint_types(hint: Any) -> tuple[type, ...]:
    """The runtime classes a resolved type hint admits (``float`` admits ints too)."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return tuple(k for arg in typing.get_args(hint) for k in hint_types(arg))
    if hint is None or hint is type(None):
        return (type(None),)
    if hint is float:
        return (int, float)
    if hint is Any:
        return (object,)
    return (origin or hint,)


@dataclass(frozen=True)
class Checks:
    """Value checks that raise ``error(message(where, value, allowed))``."""

    error: type[Exception] = UserError
    message: Callable[[str, Any, str], str] = lambda where, value, allowed: (
        f"{where}: invalid value {_short(value)}; allowed: {allowed}"
    )

    def fail(self, where: str, value: Any, allowed: str) -> NoReturn:
        raise self.error(self.message(where, value, allowed))

    def that(self, ok: bool, where: str, value: Any, allowed: str) -> None:
        if not ok:
            self.fail(where, value, allowed)

    def integer(self, value: Any, where: str, low: int = 1, high: int | None = None) -> int:
        ok = is_int(value) and value >= low and (high is None or value <= high)
        allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        self.that(ok, where, value, allowed)
        return value

    def number(
        self,
        value: Any,
        where: str,
        low: float,
        high: float,
        low_open: bool = False,
        high_open: bool = False,
    ) -> float:
        """A number inside the interval; NaN never passes (infinity only as an open bound)."""
        ok = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and not math.isnan(value)
            and (value > low if low_open else value >= low)
            and (value < high if high_open else value <= high)
        )
        self.that(ok, where, value, f"a number in {interval(low, high, low_open, high_open)}")
        return value

    def choice(self, value: Any, where: str, allowed: Iterable[Any]) -> Any:
        allowed = tuple(allowed)
        self.that(value in allowed, where, value, "one of " + ", ".join(map(str, allowed)))
        return value

    def typed(self, value: Any, hint: Any, where: str) -> Any:
        """``value`` against a resolved type hint (``typing.get_type_hints``); bools are no ints."""
        kinds = hint_types(hint)
        ok = isinstance(value, kinds) and (not isinstance(value, bool) or bool in kinds)
        self.that(ok, where, value, f"of type {_type_names(kinds)}")
        return value


SPEC_CHECKS = Checks(SpecError)


def check_num_classes(value: Any, where: str = "num_classes") -> int:
    """A classifier width: an integer in [1, MAX_NUM_CLASSES] (a larger head is a typo)."""
    return SPEC_CHECKS.integer(value, where, 1, MAX_NUM_CLASSES)


def check_input_size(value: Any, where: str = "input_size") -> int:
    """An input resolution in [MIN_INPUT_SIZE, MAX_INPUT_SIZE] pixels."""
    return SPEC_CHECKS.integer(value, where, MIN_INPUT_SIZE, MAX_INPUT_SIZE)


THREADS_PER_CPU = 4  # beyond this many threads per core they only wait on each other


def max_threads() -> int:
    """The most threads a command accepts on this machine: its CPUs x ``THREADS_PER_CPU``."""
    return (os.cpu_count() or 1) * THREADS_PER_CPU


def check_threads(value: Any, where: str = "--threads") -> int:
    """A thread count in [1, max_threads()]: a typo such as 5000 fails at once, not in OpenMP."""
    top = max_threads()
    if not is_int(value) or not 1 <= value <= top:
        raise UserError(
            f"{where} must be an integer in [1, {top}] ({os.cpu_count()} CPUs here x "
            f"{THREADS_PER_CPU}), got {value!r}"
        )
    return value
