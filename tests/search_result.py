"""A search run folder as the demo search leaves it, without training anything.

One candidate of the ``fbnetv3_proxy`` space is stored as measured in a real
``search.sqlite`` (the search's own ``Store``), with the statistics the search's
vectorised counter gives at a 10-class head (digits); the search's own
``write_outputs`` then writes ``best/macs_le_1M.yaml``, ``report.md`` and the
plots.  Tests of the tools that read such folders (info, export, arch_stats,
benchmark, train, search-report) so see exactly the demo's files, in ~2 s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NUM_CLASSES = 10
CONSTRAINT = "macs<=1M"


def write_search_run(out: Path, seed: int = 0) -> Path:
    """Fill run folder ``out``; return the path of its ``best/<constraint>.yaml``."""
    from fbnetv3_zoo.search.constraints import batch_stats, parse_constraint
    from fbnetv3_zoo.search.encoding import decode
    from fbnetv3_zoo.search.report import write_outputs
    from fbnetv3_zoo.search.space import load_space
    from fbnetv3_zoo.search.store import Store

    space = load_space("fbnetv3_proxy")
    u = np.random.default_rng(seed).random((1, space.size))
    spec, searched = decode(space, u[0])
    macs, params, valid = batch_stats(space, u, num_classes=NUM_CLASSES)
    assert valid[0], "the seeded candidate must be a valid network"
    out.mkdir(parents=True, exist_ok=True)
    store = Store(out / "search.sqlite")
    try:
        config = dict(
            space="fbnetv3_proxy", data="digits", constraints=[CONSTRAINT], epochs=1, budget=1
        )
        store.set("config", {**config, "seed": seed})
        store.set("num_classes", NUM_CLASSES)
        row = dict(
            vector=u[0], arch=spec.to_dict(), recipe=searched, macs=macs[0], params=params[0]
        )
        (cid,) = store.add_candidates(0, "sobol", [row])
        curve = [{"epoch": 1, "val_top1": 50.0, "ema_top1": 50.0}]
        store.record(cid, "done", epochs=1, score=50.0, metrics=curve, wall_s=1.0)
        constraint = parse_constraint(CONSTRAINT)
        write_outputs(out, store, space, [constraint])
    finally:
        store.close()
    return out / "best" / f"{constraint.slug}.yaml"
