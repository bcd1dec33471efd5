"""The facts typed into variants.py agree with the reference data (tests/data/reference/facts.json)."""

import pytest
import timm
import torch
from reference import FACTS

from fbnetv3_zoo import VARIANTS


def test_every_reference_variant_is_in_the_zoo_and_back():
    assert sorted(FACTS) == sorted(VARIANTS)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_typed_in_facts_match_the_reference(name):
    variant, facts = VARIANTS[name], FACTS[name]
    typed = {
        "input_size": variant.input_size,
        "eval_resize": variant.eval_resize,
        "imagenet_top1": variant.top1,
        "imagenet_top5": variant.top5,
        "official_params_m": variant.params_m,
        "official_macs_m": variant.macs_m,
        "official_weights_url": variant.weights_url,
    }
    assert typed == {key: facts[key] for key in typed}
    assert variant.spec.name == name


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_built_network_and_its_cfg_match_the_reference(name):
    facts = FACTS[name]
    model = timm.create_model(name, device="meta")  # shapes only, no memory
    assert sum(p.numel() for p in model.parameters()) == facts["torch_param_count"]
    cfg = model.pretrained_cfg
    res = facts["input_size"]
    assert cfg["url"] == facts["official_weights_url"]
    assert cfg["input_size"] == cfg["test_input_size"] == (3, res, res)
    assert cfg["crop_pct"] == pytest.approx(res / facts["eval_resize"], abs=1e-4)
    assert str(facts["imagenet_top1"]) in cfg["notes"]
    features = model.forward_features(torch.empty(1, 3, res, res, device="meta"))
    assert tuple(features.shape[-2:]) == cfg["pool_size"]
