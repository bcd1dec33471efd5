"""Deviation of each variant from the reference network's outputs (seeded checkpoints).

    python benchmarks/golden.py       # prints a markdown table, writes benchmarks/results/golden.md
    python benchmarks/golden.py --variants fbnetv3_a --out ''   # one variant, print only

Loads every variant through the public path (timm.create_model(..., pretrained=True,
pretrained_cfg_overlay=dict(file=...))) with the seeded official-layout checkpoint
rebuilt from tests/data/reference, and reports the largest deviation of the logits and
of the last block's output, relative to their largest magnitude (the tests require < 1e-4).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch

TESTS = Path(__file__).resolve().parents[1] / "tests"
# the variants tests/reference.py knows, read without it: it imports torch, --help should not
FACTS = json.loads((TESTS / "data" / "reference" / "facts.json").read_text())


def relative(got: torch.Tensor, want: np.ndarray) -> float:
    import numpy as np

    return float(np.abs(got.numpy() - want).max() / np.abs(want).max())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out",
        default=str(Path(__file__).parent / "results" / "golden.md"),
        help="results file ('' = print only; default benchmarks/results/golden.md)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(FACTS),
        default=list(FACTS),
        metavar="NAME",
        help=f"variants to check (default all: {' '.join(FACTS)})",
    )
    args = parser.parse_args(argv)
    import timm
    import torch

    import fbnetv3_zoo  # noqa: F401  (registers the variants with timm)

    sys.path.insert(0, str(TESTS))
    from reference import reference_io, write_reference_checkpoint

    lines = [
        "| variant | input | logits max rel. dev. | stage_out max rel. dev. | params = reference |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants:
            facts = FACTS[name]
            path = write_reference_checkpoint(name, Path(tmp) / f"{name}.pth")
            model = timm.create_model(
                name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))
            ).eval()
            x, ref = reference_io(name)
            with torch.no_grad():
                stage_out = model.blocks(model.stem(x))
                logits = model(x)
            params = sum(p.numel() for p in model.parameters()) == facts["torch_param_count"]
            lines.append(
                f"| {name} | {facts['input_size']} | {relative(logits, ref['logits']):.2e} | "
                f"{relative(stage_out, ref['stage_out']):.2e} | {'yes' if params else 'NO'} |"
            )
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
