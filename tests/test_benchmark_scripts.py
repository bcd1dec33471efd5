"""Every benchmark script takes its options through argparse: ``--help`` prints usage and
writes nothing (issue 38: two scripts used to ignore the flag, run for minutes and overwrite
their committed results).  The scripts' tiny real runs are tested beside their subjects
(``test_bench``, ``test_search_pool``, ``test_recipe_search``, ``test_recipe_pool``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py"))


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file, except the recipe pools, which a long build running
    beside the tests may append to (recipe_pool.py's ``--help`` also runs here: a pool file
    it wrote would show up under a name of its own, ``tmp_path``, or as a new results file)."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith("recipe_pool_")
    }


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_usage_and_writes_nothing(script, tmp_path):
    before = _tree(BENCHMARKS)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage:"), done.stdout[:300]
    assert _tree(BENCHMARKS) == before
    assert list(tmp_path.iterdir()) == []
