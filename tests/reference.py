"""Rebuild the seeded reference checkpoints described in tests/data/reference.

The rule (from the reference data's notes): walk the official key manifest in
order with ``numpy.random.default_rng(seed)``; every key except
``num_batches_tracked`` takes one float64 draw chosen by its suffix; BN running
statistics are then replaced by the calibrated arrays stored in the ``.npz``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).parent / "data" / "reference"
FACTS = json.loads((DATA / "facts.json").read_text())


def _draw(key: str, shape: list[int], rng: np.random.Generator) -> np.ndarray:
    rules = (
        ("running_var", lambda: rng.uniform(0.8, 1.2, shape)),
        ("running_mean", lambda: rng.normal(0.0, 0.05, shape)),
        (".pwl.bn.weight", lambda: rng.uniform(0.2, 0.4, shape)),
        (".bn.weight", lambda: rng.uniform(0.8, 1.2, shape)),
        (".bn.bias", lambda: rng.normal(0.0, 0.05, shape)),
        ("bias", lambda: rng.normal(0.0, 0.02, shape)),
    )
    for suffix, draw in rules:
        if key.endswith(suffix):
            return draw()
    fan_in = int(np.prod(shape[1:]))
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)


def reference_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The seeded checkpoint of variant ``name`` in the official key layout."""
    facts = FACTS[name]
    stats = np.load(DATA / facts["reference_data"])
    rng = np.random.default_rng(seed)
    out = {}
    for line in (DATA / facts["state_dict_manifest"]).read_text().splitlines():
        key, shape_text = line.split("\t")
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(0, dtype=torch.int64)
            continue
        shape = [] if shape_text == "scalar" else [int(s) for s in shape_text.split("x")]
        value = _draw(key, shape, rng).astype(np.float32)
        if "bn:" + key in stats:
            value = stats["bn:" + key]
        out[key] = torch.from_numpy(np.array(value))
    return out


def write_reference_checkpoint(name: str, path: Path, seed: int = 0) -> Path:
    """Save in the official file layout: module. prefix, state_dict and model_ema."""
    sd = {"module." + k: v for k, v in reference_state_dict(name, seed).items()}
    torch.save({"state_dict": sd, "model_ema": sd}, path)
    return path


def reference_io(name: str, seed: int = 0) -> tuple[torch.Tensor, np.lib.npyio.NpzFile]:
    """The seeded input image and the expected outputs for variant ``name``."""
    facts = FACTS[name]
    res = facts["input_size"]
    x = np.random.default_rng(seed + 1000).normal(0, 1, (1, 3, res, res)).astype(np.float32)
    return torch.from_numpy(x), np.load(DATA / facts["reference_data"])
