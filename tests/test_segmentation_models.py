"""Segmenters on FBNetV3 backbones (issue 39): names, building on A..G and on a spec, torchvision's
outputs and losses, backbone weights, hub, bad names, ONNX parity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_detection_models import small_spec
from torch import nn
from torchvision.models.segmentation import LRASPP, DeepLabV3

from fbnetv3_zoo import VARIANTS
from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.segmentation import GENERIC_SEGMENTERS, SEGMENTERS, create_segmenter

REPO = Path(__file__).resolve().parents[1]
CLASSES = {"lraspp": LRASPP, "deeplabv3": DeepLabV3}


def test_names_cover_both_families_on_every_variant():
    assert len(SEGMENTERS) == len(set(SEGMENTERS)) == 2 * len(VARIANTS)
    assert {f"lraspp_{v}" for v in VARIANTS} | {f"deeplabv3_{v}" for v in VARIANTS} == set(
        SEGMENTERS
    )
    assert set(GENERIC_SEGMENTERS) == {"lraspp", "deeplabv3"}


@pytest.mark.parametrize("name", SEGMENTERS)
def test_every_segmenter_builds_on_its_variant(name):
    with torch.device("meta"):
        model = create_segmenter(name, num_classes=4)
    family, variant = name.split("_", 1)
    assert type(model) is CLASSES[family]
    spec = VARIANTS[variant].spec
    body = model.backbone
    # LR-ASPP: the stride-8 stage (low) and the last (high); DeepLabV3: the last stage
    want = [2, 4] if family == "lraspp" else [4]
    assert body.stages == want and body.channels == [spec.stage_channels()[i] for i in want]
    assert [spec.stage_reductions()[i] for i in want] == ([8, 32] if family == "lraspp" else [32])


@pytest.mark.parametrize(("name", "kwargs"), [("lraspp", {}), ("deeplabv3", {"aux_loss": True})])
def test_forward_gives_torchvisions_outputs_and_trains(name, kwargs):
    """``{"out": logits}`` (+ ``aux``) at the input's size; a loss on it reaches the backbone."""
    torch.manual_seed(0)
    model = create_segmenter(name, num_classes=5, backbone=small_spec(), **kwargs).train()
    x = torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    out = model(x)
    assert set(out) == {"out", *(["aux"] if kwargs else [])}
    assert all(v.shape == (2, 5, 64, 48) for v in out.values())
    target = torch.randint(0, 5, (2, 64, 48), generator=torch.Generator().manual_seed(1))
    nn.functional.cross_entropy(out["out"], target).backward()
    assert all(p.grad is not None for p in model.backbone.net.parameters())
    with torch.no_grad():
        assert model.eval()(x[:1])["out"].shape == (1, 5, 64, 48)


def test_builds_on_an_archspec_yaml(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(small_spec().to_yaml())
    with torch.device("meta"):
        model = create_segmenter("deeplabv3", num_classes=3, backbone=str(path))
    assert model.backbone.net.arch == small_spec()


def test_weights_backbone_from_a_file_are_the_files(tmp_path):
    from fbnetv3_zoo import create_model

    torch.manual_seed(3)
    net = create_model(small_spec(), num_classes=10)
    path = tmp_path / "w.pth"
    torch.save(net.state_dict(), path)
    model = create_segmenter("lraspp", num_classes=3, backbone=small_spec(), weights_backbone=path)
    own = model.backbone.net.state_dict()
    assert [k for k, v in own.items() if not torch.equal(v, net.state_dict()[k])] == []
    # segmenters keep BatchNorm and every stage trainable (as torchvision's do)
    assert all(p.requires_grad for p in model.parameters())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.backbone.modules())


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: create_segmenter("lraspp_fbnetv3_z"), "did you mean lraspp_fbnetv3_"),
        (lambda: create_segmenter("unet"), "Accepted names: lraspp_fbnetv3_a"),
        (lambda: create_segmenter("deeplabv3"), "needs backbone="),
        (lambda: create_segmenter("lraspp_fbnetv3_a", num_classes=0), "num_classes must be"),
    ],
)
def test_bad_input_is_one_clear_error(call, needle):
    with pytest.raises(UserError) as err:
        call()
    assert needle in str(err.value)


@pytest.mark.slow
def test_torch_hub_loads_segmenters_by_name():
    hubconf = torch.hub._import_module("hubconf", str(REPO / "hubconf.py"))
    assert set(SEGMENTERS) <= set(dir(hubconf))
    with torch.device("meta"):
        model = torch.hub.load(str(REPO), "deeplabv3_fbnetv3_e", source="local", num_classes=5)
    assert type(model) is DeepLabV3


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lraspp_fbnetv3_a", "deeplabv3_fbnetv3_a"])
def test_onnx_export_matches_eager(tmp_path, name):
    from fbnetv3_zoo.deploy.detection_export import export_segmenter_onnx
    from fbnetv3_zoo.deploy.export import randomize_weights_

    torch.manual_seed(0)
    model = randomize_weights_(create_segmenter(name, num_classes=4))
    result = export_segmenter_onnx(model, tmp_path / "seg.onnx", 64)
    assert result.path.is_file() and result.output_scale > 0.01
    assert result.max_rel_diff <= 1e-4


@pytest.mark.slow
def test_lraspp_lowers_to_executorch(tmp_path):
    pytest.importorskip("executorch.exir")
    from fbnetv3_zoo.deploy.detection_executorch import export_segmenter_executorch
    from fbnetv3_zoo.deploy.export import randomize_weights_

    torch.manual_seed(0)
    backbone = small_spec(expansion=1)  # the same kinds of layers, a smaller graph to lower
    model = create_segmenter("lraspp", num_classes=4, backbone=backbone, inter_channels=16)
    result = export_segmenter_executorch(randomize_weights_(model), tmp_path / "seg.pte", 64)
    assert result.path.is_file() and result.output_scale > 0.01 and result.max_rel_diff <= 1e-4


def test_dilated_gives_stride_16_features_with_the_same_weights():
    """torchvision's ``dilated=True``: the last stage stops downsampling and dilates instead."""
    torch.manual_seed(0)
    plain = create_segmenter("lraspp", num_classes=3, backbone=small_spec()).eval()
    torch.manual_seed(0)
    dilated = create_segmenter("lraspp", num_classes=3, backbone=small_spec(), dilated=True).eval()
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert plain.backbone(x)["high"].shape[-2:] == (2, 3)
        assert dilated.backbone(x)["high"].shape[-2:] == (4, 6)
        assert dilated(x)["out"].shape == (1, 3, 64, 96)
    assert dilated.backbone.net.feature_info[-1]["reduction"] == 16
    assert plain.state_dict().keys() == dilated.state_dict().keys()
    assert all(torch.equal(v, dilated.state_dict()[k]) for k, v in plain.state_dict().items())
