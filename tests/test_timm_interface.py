import subprocess
import sys

import pytest
import timm
import torch

import fbnetv3_zoo
from fbnetv3_zoo import VARIANTS, FBNetV3


@pytest.mark.slow
def test_import_registers_every_variant_without_warnings():
    code = (
        "import sys, timm, fbnetv3_zoo; print(sorted(timm.list_models('fbnetv3*')));"
        "print([m for m in ('scipy', 'ray', 'onnx', 'sklearn', 'matplotlib') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stderr == ""
    assert all(name in out.stdout for name in VARIANTS)
    assert out.stdout.strip().endswith("[]")  # the core imports nothing only search/export need


def test_timm_tags_still_build_timms_own_architecture():
    theirs = timm.create_model("fbnetv3_b.ra2_in1k")
    ours = timm.create_model("fbnetv3_b")
    tagged = timm.create_model("fbnetv3_b.fb_in1k")
    assert not isinstance(theirs, FBNetV3)
    assert isinstance(ours, FBNetV3) and isinstance(tagged, FBNetV3)
    assert "fbnetv3_b.ra2_in1k" in timm.list_pretrained("fbnetv3_b*")
    assert timm.models.get_pretrained_cfg("fbnetv3_b").tag == "fb_in1k"


def test_pretrained_cfg_carries_official_eval_settings():
    cfg = timm.create_model("fbnetv3_c").pretrained_cfg
    assert cfg["input_size"] == (3, 248, 248)
    assert cfg["crop_pct"] == pytest.approx(248 / 272, abs=1e-4)
    assert cfg["url"] == VARIANTS["fbnetv3_c"].weights_url
    data_cfg = timm.data.resolve_data_config({}, model=timm.create_model("fbnetv3_c"))
    assert data_cfg["input_size"] == (3, 248, 248)


def test_num_classes_in_chans_and_head_interface():
    model = timm.create_model("fbnetv3_a", num_classes=10, in_chans=1).eval()
    x = torch.randn(2, 1, 64, 64)
    assert model(x).shape == (2, 10)
    features = model.forward_features(x)
    assert features.shape[1] == model.num_features
    assert model.forward_head(features, pre_logits=True).shape == (2, 1984)
    model.reset_classifier(5)
    assert model.get_classifier().out_features == 5 and model(x).shape == (2, 5)
    model.reset_classifier(0)
    assert model(x).shape == (2, 1984)


@pytest.mark.slow
def test_drop_path_scales_with_depth_and_drop_rate_is_used():
    model = timm.create_model("fbnetv3_g", num_classes=10, drop_path_rate=0.2, drop_rate=0.3)
    rates = [b.drop_path.drop_prob for stage in model.blocks for b in stage if b.has_skip]
    assert rates == sorted(rates) and 0 < rates[0] < rates[-1] < 0.2
    assert model.drop_rate == 0.3
    model.train()
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, model(x))  # stochastic in training
    model.eval()
    assert torch.allclose(model(x), model(x))


def test_features_only_pyramid():
    feats = timm.create_model("fbnetv3_a", features_only=True).eval()
    outs = feats(torch.randn(1, 3, 224, 224))
    assert feats.feature_info.reduction() == [2, 4, 8, 16, 32]
    assert [o.shape[1] for o in outs] == feats.feature_info.channels() == [16, 24, 40, 120, 224]
    assert [o.shape[-1] for o in outs] == [112, 56, 28, 13, 6]  # A's padding overrides shrink maps
    some = timm.create_model("fbnetv3_b", features_only=True, out_indices=(2, 4)).eval()
    assert len(some(torch.randn(1, 3, 64, 64))) == 2


@pytest.mark.slow
def test_torchscript_matches_eager():
    model = timm.create_model("fbnetv3_d", num_classes=7).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(scripted(x), model(x), atol=1e-5)


@pytest.mark.slow
def test_torch_compile_matches_eager():
    spec = VARIANTS["fbnetv3_a"].spec
    model = fbnetv3_zoo.create_model(spec, num_classes=3).eval()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-5)


def test_build_from_spec_yaml_and_dict(tmp_path):
    spec = VARIANTS["fbnetv3_e"].spec.replace(input_size=128, name="")
    path = tmp_path / "e.yaml"
    spec.to_yaml(path)
    for arch in (spec, str(path), spec.to_dict()):
        model = timm.create_model("fbnetv3", arch=arch, num_classes=3)
        assert model.arch == spec
        assert model.pretrained_cfg["input_size"] == (3, 128, 128)
    assert fbnetv3_zoo.create_model(path).arch == spec


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(KeyError, match="fbnetv3_a, fbnetv3_b"):
        fbnetv3_zoo.create_model("fbnetv3_h")
    with pytest.raises(KeyError, match="valid names"):
        fbnetv3_zoo.get_variant("resnet50")
