"""Accuracy heads, registered by name (``base.py``); each head is one file here.

Importing this package loads only the registry: a head's module (and torch)
loads when it is first fitted.
"""

from fbnetv3_zoo.search.predictor.heads.base import (
    AUTO,
    AUTO_LINEAR_BELOW,
    HEADS,
    AccuracyModel,
    FitContext,
    Head,
    HeadEntry,
    UpperConfidenceBound,
    auto_description,
    describe_head,
    head_choices,
    make_head,
    register_head,
    resolve_head,
)

__all__ = [
    "AUTO",
    "AUTO_LINEAR_BELOW",
    "HEADS",
    "AccuracyModel",
    "FitContext",
    "Head",
    "HeadEntry",
    "UpperConfidenceBound",
    "auto_description",
    "describe_head",
    "head_choices",
    "make_head",
    "register_head",
    "resolve_head",
]
