"""One dimension of a search space (a fixed value, choices or a range) and how a file states it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fbnetv3_zoo.errors import UserError

MAX_CHOICES = 10_000  # values of one gridded dimension (range / step + 1)


class SpaceError(UserError):
    """A search-space file is malformed; the message carries the field path."""


@dataclass(frozen=True)
class Dim:
    """One searchable quantity: discrete ``choices`` or a range ``[low, high]``."""

    name: str
    choices: tuple[Any, ...] | None = None
    low: float = 0.0
    high: float = 1.0
    log: bool = False

    @property
    def fixed(self) -> bool:
        return self.choices is not None and len(self.choices) == 1

    def decode(self, u: np.ndarray) -> np.ndarray:
        """Map unit-interval values to this dimension's values (vectorised)."""
        u = np.clip(np.asarray(u, dtype=float), 0.0, 1.0)
        if self.choices is not None:
            idx = np.minimum((u * len(self.choices)).astype(int), len(self.choices) - 1)
            return np.asarray(self.choices, dtype=object)[idx]
        if self.log:
            return np.exp(np.log(self.low) + u * (np.log(self.high) - np.log(self.low)))
        return self.low + u * (self.high - self.low)

    def snap(self, u: np.ndarray) -> np.ndarray:
        """The canonical unit value of whatever ``u`` decodes to (cell centres for choices)."""
        u = np.clip(np.asarray(u, dtype=float), 0.0, 1.0)
        if self.choices is None:
            return u
        n = len(self.choices)
        return (np.minimum((u * n).astype(int), n - 1) + 0.5) / n

    def encode(self, value: Any) -> float:
        """Unit-interval position of ``value``; raises SpaceError when it is outside the space."""
        if self.choices is not None:
            for i, choice in enumerate(self.choices):
                if choice == value and type(choice) is not bool or choice is value:
                    return (i + 0.5) / len(self.choices)
            raise SpaceError(f"{self.name}: {value!r} is not one of {list(self.choices)}")
        if not isinstance(value, int | float) or not self.low <= value <= self.high:
            raise SpaceError(f"{self.name}: {value!r} is outside [{self.low}, {self.high}]")
        if self.log:
            return float(
                (np.log(value) - np.log(self.low)) / (np.log(self.high) - np.log(self.low))
            )
        return float((value - self.low) / (self.high - self.low)) if self.high > self.low else 0.5


def fail(where: str, message: str) -> SpaceError:
    return SpaceError(f"{where}: {message}")


def parse_dim(value: Any, where: str, kind: type | tuple[type, ...] = (int, float)) -> Dim:
    """Parse a scalar (fixed), a list (choices) or ``{min, max, step?, log?}`` (range)."""
    numeric = kind in ((int, float), int, float)
    if isinstance(value, Mapping):
        bad = sorted(set(value) - {"min", "max", "step", "log"})
        if bad or "min" not in value or "max" not in value:
            raise fail(
                where, f"a range needs keys min, max (optional step, log); got {dict(value)}"
            )
        lo, hi, step = value["min"], value["max"], value.get("step")
        for key, v in (("min", lo), ("max", hi), ("step", step)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise fail(f"{where}.{key}", f"expected a number, got {v!r}")
        if not numeric or lo > hi or (value.get("log") and lo <= 0):
            raise fail(where, f"invalid range {dict(value)} (need min <= max, min > 0 for log)")
        if step is None and isinstance(lo, int) and isinstance(hi, int) and not value.get("log"):
            step = 1
        if step is not None:
            if step <= 0:
                raise fail(f"{where}.step", f"must be > 0, got {step}")
            count = (hi - lo) / step + 1
            if not count <= MAX_CHOICES:
                raise fail(
                    f"{where}.step",
                    f"range {lo}..{hi} in steps of {step} has {count:.3g} values; at most {MAX_CHOICES} are allowed",
                )
            count = int(round(count - 1)) + 1
            grid = [lo + i * step for i in range(count)]
            if all(isinstance(v, int) for v in (lo, hi, step)):
                grid = [int(v) for v in grid]
            return check_kind(Dim(where, tuple(grid)), where, kind)
        return Dim(where, None, float(lo), float(hi), bool(value.get("log", False)))
    if isinstance(value, list):
        if not value:
            raise fail(where, "an empty list of choices")
        return check_kind(Dim(where, tuple(value)), where, kind)
    if isinstance(value, dict | set | tuple) or value is None:
        raise fail(where, f"expected a value, a list of choices or a range, got {value!r}")
    return check_kind(Dim(where, (value,)), where, kind)


def check_kind(dim: Dim, where: str, kind: type | tuple[type, ...]) -> Dim:
    for v in dim.choices or ():
        if isinstance(v, bool) and kind is not bool or not isinstance(v, kind):
            raise fail(where, f"choice {v!r} has the wrong type (expected {kind})")
    return dim


def check_positive_ints(
    dim: Dim, where: str, minimum: int = 1, odd: bool = False, maximum: int | None = None
) -> None:
    for v in dim.choices or (None,):
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum or (odd and v % 2 == 0):
            what = "odd integers" if odd else "integers"
            raise fail(where, f"choices must be {what} >= {minimum}, got {v!r}")
        if maximum is not None and v > maximum:
            raise fail(where, f"choice {v} is above the limit of {maximum}")
