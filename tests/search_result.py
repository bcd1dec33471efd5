"""A search run folder as the demo search leaves it, without training anything.

One candidate of the ``fbnetv3_proxy`` space is stored as measured in a real
``search.sqlite`` (the search's own ``Store``), with the statistics the search's
vectorised counter gives at a 10-class head (digits); the search's own
``write_outputs`` then writes ``best/macs_le_0.4M.yaml``, ``report.md`` and the
plots.  Tests of the tools that read such folders (info, export, arch_stats,
benchmark, train, search-report) so see exactly the demo's files, in ~2 s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NUM_CLASSES = 10
CONSTRAINT = "macs<=0.4M"  # the looser of the demo's default limits


def write_search_run(out: Path, seed: int = 0) -> Path:
    """Fill run folder ``out``; return the path of its ``best/<constraint>.yaml``."""
    from fbnetv3_zoo.search.report.outputs import write_outputs
    from fbnetv3_zoo.search.space.constraints import batch_stats, parse_constraint
    from fbnetv3_zoo.search.space.definition import load_space
    from fbnetv3_zoo.search.space.encoding import decode
    from fbnetv3_zoo.search.store import Store

    from fbnetv3_zoo.files.outputs import write_marker

    space = load_space("fbnetv3_proxy")
    constraint = parse_constraint(CONSTRAINT)
    draws = np.random.default_rng(seed).random((64, space.size))
    all_macs, all_params, valid = batch_stats(space, draws, num_classes=NUM_CLASSES)
    ok = valid & constraint.ok(all_macs, all_params)
    first = int(np.flatnonzero(ok)[0])  # the seed's first valid draw inside the limit
    u = draws[first : first + 1]
    macs, params = all_macs[first : first + 1], all_params[first : first + 1]
    spec, searched = decode(space, u[0])
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, "search")  # what `fbnetv3 search` leaves: the folder is a search's
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
        write_outputs(out, store, space, [constraint])
    finally:
        store.close()
    return out / "best" / f"{constraint.slug}.yaml"


def candidate_rows(out: Path) -> list[dict]:
    """Every candidate row of the run in ``out``, in id order, read straight from SQLite."""
    import sqlite3

    db = sqlite3.connect(Path(out) / "search.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM candidates ORDER BY id")]
    finally:
        db.close()
