"""Full CPU inference benchmark: writes benchmarks/results/inference.md and the top-1 plot.

Same options as ``fbnetv3 benchmark`` (see ``--help``); this script only adds
the default output paths, so a plain ``python benchmarks/inference.py``
re-measures everything in the results file.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fbnetv3_zoo.cli import main

RESULTS = Path(__file__).resolve().parent / "results"


def run(argv: list[str]) -> int:
    """Run ``fbnetv3 benchmark`` with the results folder as default destination."""
    if "--out" not in argv:
        argv += ["--out", str(RESULTS / "inference.md")]
    if "--plot" not in argv:
        argv += ["--plot", str(RESULTS / "inference_top1_vs_latency.png")]
    return main(["benchmark", *argv])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
