"""A search result file as the demo search writes it, without running a search.

One candidate of the ``fbnetv3_proxy`` space, its statistics from the search's own
vectorised counter at a 10-class head (digits), written by the search's own
``result_document``, so tests of the tools that read such files (info, export,
arch_stats, benchmark, train) see exactly the demo's layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

NUM_CLASSES = 10


def write_search_result(path: Path, seed: int = 0) -> dict[str, Any]:
    """Write ``best/<constraint>.yaml``-style content to ``path``; return the document."""
    from fbnetv3_zoo.search.constraints import batch_stats
    from fbnetv3_zoo.search.encoding import decode
    from fbnetv3_zoo.search.report import result_document
    from fbnetv3_zoo.search.space import load_space

    space = load_space("fbnetv3_proxy")
    u = np.random.default_rng(seed).random((1, space.size))
    spec, searched = decode(space, u[0])
    macs, params, valid = batch_stats(space, u, num_classes=NUM_CLASSES)
    assert valid[0], "the seeded candidate must be a valid network"
    row = dict(
        arch=spec.to_dict(),
        recipe=searched,
        predicted=None,
        predicted_std=None,
        score=50.0,
        epochs=1,
        macs=macs[0],
        params=params[0],
        id=1,
        source="sobol",
    )
    doc = result_document(row, space, "macs<=1M", "digits", num_classes=NUM_CLASSES)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return doc
