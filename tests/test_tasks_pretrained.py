"""``fbnetv3 train --task detection|segmentation --pretrained``: the backbone's ImageNet weights.

A download for users with a network; here the request is recorded and the
network built without weights, on the meta device (nothing is allocated).
"""

from __future__ import annotations

import pytest
import torch
from fbnetv3_zoo.recipes import Recipe
from fbnetv3_zoo.recipes.tasks import make_task

from fbnetv3_zoo.weights.resolve import ModelRef


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Every zoo network built: (its reference, whether published weights were asked for)."""
    calls: list[tuple[str, bool]] = []
    create = ModelRef.create

    def record(self, pretrained=None, *args, **kwargs):
        calls.append((self.text, bool(pretrained)))
        return create(self, False, *args, **kwargs)

    monkeypatch.setattr(ModelRef, "create", record)
    return calls


@pytest.mark.parametrize(
    ("task", "model"),
    [("detection", "fasterrcnn_fbnetv3_a_fpn"), ("segmentation", "lraspp_fbnetv3_a")],
)
@pytest.mark.parametrize("pretrained", [False, True])
def test_pretrained_asks_for_the_backbones_published_weights(
    task: str, model: str, pretrained: bool, asked: list
) -> None:
    with torch.device("meta"):
        net, name = make_task(task).build_model(model, Recipe.load("baseline"), 11, pretrained)
    assert name == model and asked == [
        ("fbnetv3_a.fb_in1k" if pretrained else "fbnetv3_a", pretrained)
    ]
    assert sum(p.numel() for p in net.parameters()) > 0
