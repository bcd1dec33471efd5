"""Suggesting a valid name for a mistyped one, without suggesting unrelated ones."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

SIMILARITY = 0.75  # difflib ratio: "lerning_rate" ~ "learning_rate", "nosuch" !~ "epochs"


def close_names(name: str, valid: Sequence[str], limit: int = 3) -> list[str]:
    """Valid names that are spelled alike or that contain / are contained in ``name``.

    A plain difflib cutoff of 0.5 suggested "epochs" for "nosuch"; a high cutoff
    alone misses "lr" for "lrate", so names that are part of each other count too.
    """
    key = name.lower()
    close = difflib.get_close_matches(key, list(valid), n=limit, cutoff=SIMILARITY)
    parts = [v for v in valid if (len(v) >= 2 and v in key) or (len(key) >= 3 and key in v.lower())]
    return list(dict.fromkeys(close + parts))[:limit]
