"""Every benchmark script takes its options through argparse: ``--help`` prints usage and
writes nothing (issue 38: two scripts used to ignore the flag, run for minutes and overwrite
their committed results).  The scripts' tiny real runs are in ``test_benchmark_smoke``, and
beside their subjects (``test_bench``, ``test_search_pool``, ``test_recipe_search``,
``test_recipe_pool``); ``test_every_script_has_a_smoke_test`` keeps that list whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench_script import BENCHMARKS, tree

SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_usage_and_writes_nothing(script, tmp_path):
    before = tree()
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
    assert tree() == before
    assert list(tmp_path.iterdir()) == []


# where each script's tiny real run is tested (on_device.py: flags and tables only, see there)
SMOKE_TESTS = {
    "cli_startup.py": "test_benchmark_smoke.py",
    "detection.py": "test_tasks_training.py",
    "golden.py": "test_benchmark_smoke.py",
    "inference.py": "test_bench.py",
    "init.py": "test_benchmark_smoke.py",
    "latency.py": "test_benchmark_smoke.py",
    "memory_format.py": "test_channels_last.py",
    "on_device.py": "test_benchmark_smoke.py",
    "pool.py": "test_benchmark_smoke.py",
    "predictor.py": "test_benchmark_smoke.py",
    "proxy.py": "test_benchmark_smoke.py",
    "recipe_pool.py": "test_recipe_pool.py",
    "recipe_search.py": "test_recipe_search.py",
    "recipes.py": "test_benchmark_smoke.py",
    "search.py": "test_search_pool.py",
    "stats.py": "test_benchmark_smoke.py",
    "threads.py": "test_benchmark_smoke.py",
}


def test_every_script_has_a_smoke_test():
    """A new script in benchmarks/ needs a tiny run somewhere, and that test runs the script."""
    assert sorted(SMOKE_TESTS) == SCRIPTS
    tests = Path(__file__).parent
    for script, test in SMOKE_TESTS.items():
        text = (tests / test).read_text()
        name = script.removesuffix(".py")
        assert f'load_script("{name}")' in text or f"{script}" in text, (script, test)
