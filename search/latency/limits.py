"""``latency_ms`` limits inside a search run: bind each to this machine's predictor, measure the picks.

A latency limit needs a table of this machine's block latencies (built first
if missing, with a message saying how long that takes) and, at the end of
the run, real measurements of the finished candidates, so each limit's pick
honours the limit when measured and ``best/<limit>.yaml`` records predicted
and measured latency side by side (``latency_picks.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fbnetv3_zoo.search.latency.table import (
    CALIBRATION_NETWORKS,
    LatencyPredictor,
    build_table,
    space_keys,
)
from fbnetv3_zoo.search.space.constraints import Constraint
from fbnetv3_zoo.search.space.definition import SearchSpace

from fbnetv3_zoo.deploy.runtimes import backend
from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.latency.table import LatencyTable
from fbnetv3_zoo.latency.timing import require_backend


def bind_latency(
    constraints: list[Constraint],
    space: SearchSpace,
    num_classes: int,
    build: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[Constraint]:
    """Attach this machine's table predictor to each ``latency_ms`` constraint.

    A missing or incomplete table is built first (``build``), with a line
    saying how long that should take; otherwise the error says which
    ``fbnetv3 latency build`` command makes it.
    """
    import dataclasses
    import os

    out, tables = [], {}
    for c in constraints:
        if c.metric != "latency_ms":
            out.append(c)
            continue
        key = (c.backend, c.threads)
        require_backend(c.backend, f"constraint {c.text}")
        if key not in tables:
            table = LatencyTable.for_machine(c.backend, c.threads)
            pred = LatencyPredictor(space, table, num_classes)
            missing = table.missing(space_keys(space, num_classes))
            if missing or pred.correction is None:
                command = (
                    f"fbnetv3 latency build --backend {c.backend} --threads {c.threads} "
                    f"--space {space.name} --num-classes {num_classes}"
                )
                if not build:
                    raise UserError(
                        f"constraint {c.text}: this machine's latency table for space "
                        f"{space.name!r} is incomplete ({len(missing)} entries missing); run: {command}"
                    )
                minutes = (len(missing) * backend(c.backend, "latency").entry_s + 30) / 60
                log(
                    f"constraint {c.text}: measuring this machine's latency table for space "
                    f"{space.name!r} first: {len(missing)} block configurations and "
                    f"{CALIBRATION_NETWORKS} whole networks, roughly {minutes:.0f} min on "
                    f"{os.cpu_count()} cores; cached in {table.path} for every later search "
                    f"(`{command}` does it ahead of time)"
                )
                build_table(
                    space,
                    c.backend,
                    c.threads,
                    num_classes,
                    progress=progress,
                    log=log,
                    table=table,
                )
            else:
                log(
                    f"constraint {c.text}: latency table {table.path} ({len(table.entries)} entries)"
                )
            tables[key] = pred
        out.append(dataclasses.replace(c, predict=tables[key].predict))
    return out


def record_latency(
    store: Any,
    space: SearchSpace,
    constraints: list[Constraint],
    num_classes: int,
    log: Callable[[str], None] = print,
) -> None:
    """Time the finished candidates end to end and keep each latency limit's verified pick.

    The pick is the best-scoring candidate whose *measured* latency is within
    the limit plus the table's noise (:mod:`.latency_picks`); it is stored
    under ``latency/<slug>``, so ``best/<slug>.yaml`` carries predicted and
    measured latency and a re-render does not re-measure.
    """
    from fbnetv3_zoo.search.latency.picks import verify_picks

    verify_picks(store, constraints, num_classes, log)
