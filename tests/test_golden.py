"""The seven variants reproduce the reference network's outputs through timm's public path."""

import numpy as np
import pytest
import timm
import torch
from reference import FACTS, reference_io

from fbnetv3_zoo import VARIANTS


def _relative_error(got: torch.Tensor, want: np.ndarray) -> float:
    return float(np.abs(got.detach().numpy() - want).max() / np.abs(want).max())


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_matches_reference_outputs(name, reference_checkpoint):
    model = timm.create_model(
        name, pretrained=True, pretrained_cfg_overlay=dict(file=str(reference_checkpoint(name)))
    ).eval()
    assert sum(p.numel() for p in model.parameters()) == FACTS[name]["torch_param_count"]
    x, ref = reference_io(name)
    with torch.no_grad():
        stage_out = model.blocks(model.stem(x))
        logits = model(x)
    assert stage_out.shape == ref["stage_out"].shape
    assert _relative_error(stage_out, ref["stage_out"]) < 1e-4
    assert _relative_error(logits, ref["logits"]) < 1e-4
