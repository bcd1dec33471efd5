"""What timm's own model suite checks, for all seven variants, fast (tiny inputs, meta device).

timm selects its forward_intermediates / feature-getter / pruning tests by module
name, so they would not reach every variant; these do.  The full suite of the
installed timm runs separately: ``python3 tests/timm_suite/run.py`` (see README).
"""

import copy

import pytest
import timm
import torch
from timm.models import get_notrace_functions, get_notrace_modules
from torchvision.models.feature_extraction import create_feature_extractor

import fbnetv3_zoo
from fbnetv3_zoo import VARIANTS

NAMES = sorted(VARIANTS)
SIZE = 64  # every variant still has >= 1 pixel after its last stage


def _model(name, **kwargs):
    torch.manual_seed(0)
    return timm.create_model(name, **kwargs).eval()


def _x(batch=1):
    return torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", NAMES)
def test_forward_intermediates_indices_stop_early_and_formats(name):
    model, x = _model(name), _x()
    channels = [info["num_chs"] for info in model.feature_info]
    with torch.no_grad():
        final, taps = model.forward_intermediates(x)
        assert [t.shape[1] for t in taps] == channels
        torch.testing.assert_close(final, model.forward_features(x))
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
        assert [t.shape[1] for t in last_two] == channels[-2:]
        early = model.forward_intermediates(
            x, indices=[1], stop_early=True, intermediates_only=True, norm=True
        )
        torch.testing.assert_close(early[0], taps[1])
    with pytest.raises(ValueError, match="NCHW"):
        model.forward_intermediates(x, output_fmt="NHWC")
    with pytest.raises(ValueError, match="intermediates_only"):
        model.forward_intermediates(x, stop_early=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_prune_intermediate_layers_keeps_taps_and_trains(name):
    model, x = _model(name), _x(2)
    with torch.no_grad():
        expected = model(x)
        taps = model.forward_intermediates(x, intermediates_only=True)
        kept = copy.deepcopy(model)
        kept.prune_intermediate_layers([len(taps) - 1], prune_head=False)
        torch.testing.assert_close(kept(x), expected)
    for i in (1, len(taps) - 2):
        pruned = copy.deepcopy(model)
        take = pruned.prune_intermediate_layers([i])
        assert take == [i] and len(pruned.blocks) == i + 1
        with torch.no_grad():
            torch.testing.assert_close(pruned.forward_features(x), taps[i])
            torch.testing.assert_close(pruned(x), taps[i])  # no head, no pooling (timm's rule)
        pruned.train()
        pruned.forward_features(x).sum().backward()
        assert all(p.grad is not None for p in pruned.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_features_only_hook_and_getter_wrappers_agree(name):
    x = _x()
    hooked = _model(name, features_only=True)
    getter = _model(name, features_only=True, feature_cls="getter")
    with torch.no_grad():
        a, b = hooked(x), getter(x)
    assert hooked.feature_info.channels() == getter.feature_info.channels()
    assert hooked.feature_info.reduction() == [2, 4, 8, 16, 32]
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v)
    some = _model(name, features_only=True, feature_cls="getter", out_indices=(1, 3))
    assert len(some.model.blocks) == 4  # stages after the last tap are pruned away
    assert [o.shape[1] for o in some(x)] == some.feature_info.channels()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_fx_trace_matches_eager_and_scripts(name):
    model, x = _model(name, num_classes=5), _x()
    fx = create_feature_extractor(
        model,
        return_nodes=["classifier"],
        tracer_kwargs=dict(
            leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions()
        ),
    )
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(fx(x)["classifier"], want)
    # scripting costs ~5 s per variant here: A (trimmed padding) and G (largest) stand for
    # all seven; timm's own suite (tests/timm_suite/run.py) scripts every one
    if name in ("fbnetv3_a", "fbnetv3_g"):
        with torch.no_grad():
            got = torch.jit.script(fx)(x)["classifier"]
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", [*NAMES, "fbnetv3"])
def test_meta_device_construction_and_default_cfg(name):
    model = timm.create_model(name, device="meta", dtype=torch.float64)
    tensors = [*model.parameters(), *model.buffers()]
    assert all(t.device.type == "meta" for t in tensors)
    assert all(t.dtype == torch.float64 for t in model.parameters())
    cfg = model.pretrained_cfg
    for field in ("input_size", "pool_size", "first_conv", "classifier", "paper_ids"):
        assert cfg.get(field), f"{name}: pretrained_cfg lacks {field}"
    if name != "fbnetv3":
        assert cfg["license"] and cfg["origin_url"] and cfg["url"]
    x = torch.empty(1, *cfg["input_size"], device="meta", dtype=torch.float64)
    assert tuple(model.forward_features(x).shape[-2:]) == cfg["pool_size"]
    model.reset_classifier(3)
    assert model.classifier.weight.device.type == "meta"
    assert model.classifier.weight.dtype == torch.float64
    assert model.classifier.training is model.training


def test_generic_entry_point_sizes_its_cfg_per_spec():
    spec = VARIANTS["fbnetv3_e"].spec.replace(input_size=128, name="")
    model = fbnetv3_zoo.create_model(spec, device="meta")
    assert model.pretrained_cfg["input_size"] == (3, 128, 128)
    x = torch.empty(1, 3, 128, 128, device="meta")
    assert tuple(model.forward_features(x).shape[-2:]) == model.pretrained_cfg["pool_size"]


def _count_block_forwards(model, run):
    """Run ``run()`` and backward; count forward calls of each stage's first block."""
    calls = []
    # a pre-hook: torch stops a recomputation early once it has what backward needs
    hooks = [
        stage[0].register_forward_pre_hook(lambda *_: calls.append(1)) for stage in model.blocks
    ]
    try:
        run().sum().backward()
    finally:
        for hook in hooks:
            hook.remove()
    return len(calls)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_grad_checkpointing_recomputes_blocks_during_backward(name):
    model, x = _model(name, num_classes=3), _x()
    stages = len(model.blocks)
    assert _count_block_forwards(model, lambda: model(x)) == stages
    plain = model.stem.conv.weight.grad.clone()
    model.zero_grad()
    model.set_grad_checkpointing(True)
    # checkpointed blocks run again in backward: two calls each
    assert _count_block_forwards(model, lambda: model(x)) == 2 * stages
    torch.testing.assert_close(model.stem.conv.weight.grad, plain)

    def intermediates():
        return model.forward_intermediates(x)[0]

    assert _count_block_forwards(model, intermediates) == 2 * stages
    model.set_grad_checkpointing(False)
    assert _count_block_forwards(model, intermediates) == stages


def _suite_runner():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent / "timm_suite" / "run.py"
    spec = importlib.util.spec_from_file_location("timm_suite_run", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_suite_runner_fails_loudly_without_the_sdist(tmp_path, monkeypatch):
    import subprocess

    run = _suite_runner()

    def offline(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(run.subprocess, "run", offline)
    with pytest.raises(SystemExit, match=r"FAILED.*timm==1\.0\.31.*did NOT run"):
        run.fetch_sdist("1.0.31", tmp_path)


def test_suite_runner_counts_failures_and_untested_names(tmp_path, capsys):
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase name="test_model_forward[fbnetv3_a-1]"/>'
        '<testcase name="test_model_default_cfgs[1-fbnetv3_a.fb_in1k]"><failure/></testcase>'
        '<testcase name="test_model_backward[2-fbnetv3_b]"><skipped/></testcase>'
        "</testsuite></testsuites>"
    )
    passed, failed = _suite_runner().summarise(junit, ["fbnetv3_a", "fbnetv3_b", "fbnetv3_c"])
    out = capsys.readouterr().out
    assert (passed, failed) == (1, 2)  # one failed case, and fbnetv3_c never ran
    assert "FAILED test_model_default_cfgs[1-fbnetv3_a.fb_in1k]" in out
    assert "no case ran for fbnetv3_c" in out


def test_suite_plugin_lists_to_timm_every_name_the_runner_selects():
    """The plugin's filtered ``timm.list_models`` keeps exactly what run.py's -k selects."""
    import importlib.util
    from pathlib import Path

    import timm

    path = Path(__file__).parent / "timm_suite" / "fbnetv3_plugin.py"
    spec = importlib.util.spec_from_file_location("fbnetv3_plugin", path)
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    run = _suite_runner()
    assert run.selection("fx").startswith(f"{plugin.OURS} and ") and plugin.OURS == run.OURS
    listed = plugin.only_ours(timm.list_models)()
    assert set(run.our_names()) <= set(listed) and all(run.OURS in n for n in listed)
    assert len(listed) < len(timm.list_models()) // 10  # the others' cases are never built
    tagged = plugin.only_ours(timm.list_pretrained)()
    assert tagged and all(name.startswith("fbnetv3") for name in tagged)
