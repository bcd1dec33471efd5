import random

import pytest
import torch
from conftest import random_spec
from reference import FACTS
from torch import nn

from fbnetv3_zoo import VARIANTS, FBNetV3, arch_stats


@pytest.mark.parametrize("name", list(VARIANTS))
def test_analytic_stats_equal_the_official_table(name):
    facts = FACTS[name]
    stats = arch_stats(VARIANTS[name].spec)
    assert stats.conv_macs == facts["conv_macs"]
    assert stats.pool_macs == facts["pool_macs"]
    assert stats.torch_params == facts["torch_param_count"]
    assert stats.params == round(facts["official_params_m"] * 1e6)
    assert stats.macs == round(facts["official_macs_m"] * 1e6)


def measured_counts(model: nn.Module, size: int) -> tuple[int, int, int]:
    """(weights of convs/linears, their MACs, pooling reads) measured by running the model."""
    macs, pool = [0], [0]

    def on_layer(module, inputs, output):
        positions = output.shape[2] * output.shape[3] if output.dim() == 4 else 1
        macs[0] += module.weight.numel() * positions

    def on_pool(module, inputs, output):
        pool[0] += inputs[0][0].numel()

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            hooks.append(m.register_forward_hook(on_layer))
    # global pools: SE squeezes (x.mean) are counted through their first conv's input
    for m in model.modules():
        if type(m).__name__ == "SEModule":
            hooks.append(m.fc1.register_forward_hook(lambda mod, i, o: None))
            hooks.append(
                m.register_forward_hook(
                    lambda mod, i, o: pool.__setitem__(0, pool[0] + i[0][0].numel())
                )
            )
    hooks.append(model.global_pool.register_forward_hook(on_pool))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear))
    return weights, macs[0], pool[0]


@pytest.mark.parametrize("seed", range(8))
def test_analytic_stats_equal_the_built_model(seed):
    rng = random.Random(seed)
    spec = random_spec(rng, input_size=rng.choice([96, 112, 128]))
    classes = rng.choice([10, 1000])
    model = FBNetV3(spec, num_classes=classes)
    stats = arch_stats(spec, num_classes=classes)
    weights, macs, pool = measured_counts(model, spec.input_size)
    assert stats.torch_params == sum(p.numel() for p in model.parameters())
    assert stats.params == weights
    assert stats.conv_macs == macs
    # the official count adds one read of the 1x1 feature vector by the classifier's pool
    assert stats.pool_macs == pool + spec.feature_width


def test_stats_follow_the_requested_input_size():
    spec = VARIANTS["fbnetv3_a"].spec
    assert arch_stats(spec, input_size=160).macs < arch_stats(spec).macs
    assert arch_stats(spec, input_size=160).params == arch_stats(spec).params
