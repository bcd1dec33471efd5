"""Records of a ground-truth pool file written by hand, for tests that need a pool but no training."""

from __future__ import annotations

from typing import Any

import numpy as np
from fbnetv3_zoo.search.pool import POOL_FORMAT
from fbnetv3_zoo.search.space.encoding import decode


def pool_meta(space: Any, epochs: int, data: str = "digits", **extra: Any) -> dict[str, Any]:
    """The meta record a pool file starts with."""
    return dict(
        type="meta",
        format=POOL_FORMAT,
        space=space.name,
        space_fingerprint=space.fingerprint(),
        data=data,
        epochs=epochs,
        overrides=dict(space.recipe_overrides),
        num_classes=10,
        **extra,
    )


def rising_curve(final: float, epochs: int) -> list[dict[str, Any]]:
    """Per-epoch records climbing linearly to ``final`` top-1 at the last epoch."""
    return [dict(epoch=e + 1, val_top1=final * (e + 1) / epochs) for e in range(epochs)]


def run_record(
    space: Any,
    pair: int,
    vector: np.ndarray,
    macs: int,
    params: int,
    seed: int,
    metrics: list[dict[str, Any]],
    wall_s: float = 3.0,
) -> dict[str, Any]:
    """One finished training of pool pair ``pair`` (its decoded arch and recipe included)."""
    spec, recipe = decode(space, vector)
    return dict(
        type="run",
        pair=pair,
        vector=[float(v) for v in vector],
        arch=spec.to_dict(),
        recipe=recipe,
        macs=int(macs),
        params=int(params),
        seed=seed,
        status="done",
        error=None,
        metrics=metrics,
        wall_s=wall_s,
        cpu_s=2.0,
    )
