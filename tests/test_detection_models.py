"""Detectors on FBNetV3 backbones (issue 39): names, building on A..G and on a spec or search
result, torchvision's train/eval outputs, backbone weights and freezing, hub, ONNX parity."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.ssd import SSD
from torchvision.ops.misc import FrozenBatchNorm2d

from fbnetv3_zoo import VARIANTS, ArchSpec, BlockSpec
from fbnetv3_zoo.detection import DETECTORS, GENERIC_DETECTORS, create_detector
from fbnetv3_zoo.errors import UserError

REPO = Path(__file__).resolve().parents[1]
CLASSES = {"fasterrcnn": FasterRCNN, "retinanet": RetinaNet, "ssdlite": SSD, "maskrcnn": MaskRCNN}
# the loss keys and output keys torchvision's own detectors return
LOSSES = {
    "fasterrcnn": {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"},
    "maskrcnn": {
        "loss_classifier",
        "loss_box_reg",
        "loss_objectness",
        "loss_rpn_box_reg",
        "loss_mask",
    },
    "retinanet": {"classification", "bbox_regression"},
    "ssdlite": {"classification", "bbox_regression"},
}
OUTPUTS = {"boxes", "labels", "scores"}
# small settings so a forward pass on 64 px images takes well under a second
SMALL = {
    "fasterrcnn": dict(
        min_size=64,
        max_size=64,
        rpn_pre_nms_top_n_train=64,
        rpn_post_nms_top_n_train=32,
        rpn_pre_nms_top_n_test=32,
        rpn_post_nms_top_n_test=16,
        box_batch_size_per_image=16,
        box_detections_per_img=10,
        box_score_thresh=0.0,
    ),
    "retinanet": dict(
        min_size=64, max_size=64, topk_candidates=16, detections_per_img=10, score_thresh=0.0
    ),
    "ssdlite": dict(size=64, topk_candidates=16, detections_per_img=10),
}
SMALL["maskrcnn"] = SMALL["fasterrcnn"]
FAMILY_OF = {n: n.split("_")[0] for n in (*DETECTORS, *GENERIC_DETECTORS)}


def small_spec(expansion: float = 2) -> ArchSpec:
    """Five stages (strides 2..32) like the published variants, a few channels each;
    ``expansion=1`` drops each block's 1x1 expansion conv (lowering tests: the same kinds of
    layers, a smaller graph)."""
    rows = [(8, 1), (12, 2), (16, 2), (24, 2), (32, 2)]
    stages = [
        [BlockSpec(3, expansion, ch, 1, stride, se=i == 2)] for i, (ch, stride) in enumerate(rows)
    ]
    return ArchSpec(stem_channels=8, stages=stages, input_size=64, feature_width=64, name="small")


def batch(seed: int = 0) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two seeded images with boxes, labels and masks (torchvision's target format)."""
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, 64, 64, generator=g), torch.rand(3, 48, 64, generator=g)]
    targets = []
    for image in images:
        h, w = image.shape[1:]
        box = torch.tensor([[4.0, 6.0, 30.0, 40.0]])
        mask = torch.zeros(1, h, w, dtype=torch.uint8)
        mask[0, 6:40, 4:30] = 1
        targets.append(dict(boxes=box, labels=torch.tensor([2]), masks=mask))
    return images, targets


def backbone_net(model: nn.Module) -> nn.Module:
    """The FBNetV3 inside a detector (FPN detectors: backbone.body; SSD: backbone.body)."""
    return model.backbone.body.net


def test_names_cover_every_family_on_every_variant():
    assert len(DETECTORS) == len(set(DETECTORS)) == 4 * len(VARIANTS)
    for v in VARIANTS:
        for name in (
            f"fasterrcnn_{v}_fpn",
            f"retinanet_{v}_fpn",
            f"ssdlite_{v}",
            f"maskrcnn_{v}_fpn",
        ):
            assert name in DETECTORS
    assert set(GENERIC_DETECTORS) == {"fasterrcnn_fpn", "retinanet_fpn", "ssdlite", "maskrcnn_fpn"}


@pytest.mark.parametrize("name", DETECTORS)
def test_every_detector_builds_on_its_variant(name):
    """Built on the meta device (no memory, no init cost): class, class count and the stages read."""
    with torch.device("meta"):
        model = create_detector(name, num_classes=4)
    family = FAMILY_OF[name]
    assert type(model) is CLASSES[family]
    spec = VARIANTS[name.split("_", 1)[1].removesuffix("_fpn")].spec
    body = model.backbone.body
    want_stages = {
        "fasterrcnn": [1, 2, 3, 4],
        "maskrcnn": [1, 2, 3, 4],
        "retinanet": [2, 3, 4],
        "ssdlite": [3, 4],
    }
    assert body.stages == want_stages[family]
    assert body.channels[: len(body.stages)] == [spec.stage_channels()[i] for i in body.stages]
    if family in ("fasterrcnn", "maskrcnn"):
        assert model.roi_heads.box_predictor.cls_score.out_features == 4
    # the classification head and the final expansion are gone: no unused parameters
    assert not any(
        k.startswith(("classifier", "conv_head", "conv_expand"))
        for k, _ in body.net.named_parameters()
    )


@pytest.mark.parametrize(
    "generic",
    [
        "fasterrcnn_fpn",
        "retinanet_fpn",
        "ssdlite",
        pytest.param("maskrcnn_fpn", marks=pytest.mark.slow),
    ],
)
def test_train_and_eval_outputs_are_torchvisions(generic):
    """Train mode: torchvision's loss dict (finite, with gradients); eval: its output keys."""
    torch.manual_seed(0)
    family = FAMILY_OF[generic]
    model = create_detector(generic, num_classes=3, backbone=small_spec(), **SMALL[family])
    images, targets = batch()
    losses = model.train()(images, targets)
    assert set(losses) == LOSSES[family]
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is not None for p in backbone_net(model).parameters())
    with torch.no_grad():
        out = model.eval()(images)
    want = OUTPUTS | ({"masks"} if family == "maskrcnn" else set())
    assert len(out) == 2 and all(set(o) == want for o in out)
    assert out[0]["boxes"].shape[1] == 4 and len(out[0]["boxes"]) == len(out[0]["scores"]) > 0
    if family == "maskrcnn":
        assert out[1]["masks"].shape[-2:] == (48, 64)  # pasted back at the image's own size


def test_builds_on_archspec_yaml_and_search_result(tmp_path):
    spec = small_spec()
    path = tmp_path / "small.yaml"
    path.write_text(spec.to_yaml())
    for ref in (spec, spec.to_dict(), str(path)):
        with torch.device("meta"):
            model = create_detector("fasterrcnn_fpn", num_classes=3, backbone=ref)
        assert backbone_net(model).arch == spec


@pytest.mark.slow
def test_builds_on_a_search_result(tmp_path):
    from search_result import write_search_run

    from fbnetv3_zoo import read_result_file

    result = write_search_run(tmp_path / "run")
    want = ArchSpec.from_dict(read_result_file(result).arch)
    for name in GENERIC_DETECTORS:
        with torch.device("meta"):
            model = create_detector(name, num_classes=3, backbone=result)
        assert backbone_net(model).arch == want


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A seeded checkpoint of ``small_spec`` in our own layout (as training writes it)."""
    from fbnetv3_zoo import create_model

    torch.manual_seed(1)
    net = create_model(small_spec(), num_classes=7)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("weights") / "small.pth"
    torch.save(net.state_dict(), path)
    return path


META_LOAD = pytest.mark.filterwarnings("ignore:.*copying from a non-meta parameter")


@META_LOAD
@pytest.mark.parametrize("trainable", [0, 1, 3, 5])
def test_trainable_backbone_layers_freezes_exactly_the_lower_stages(weights_file, trainable):
    with torch.device("meta"):
        model = create_detector(
            "fasterrcnn_fpn",
            num_classes=3,
            backbone=small_spec(),
            weights_backbone=weights_file,
            trainable_backbone_layers=trainable,
        )
    frozen = {"stem", *(f"blocks.{i}" for i in range(5 - trainable))} if trainable < 5 else set()
    for key, param in backbone_net(model).named_parameters():
        unit = "stem" if key.startswith("stem.") else ".".join(key.split(".")[:2])
        assert param.requires_grad == (unit not in frozen), (trainable, key)
    # with weights, BatchNorm is frozen as torchvision does it; the FPN and heads train
    norms = [
        m
        for m in backbone_net(model).modules()
        if isinstance(m, nn.BatchNorm2d | FrozenBatchNorm2d)
    ]
    assert norms and all(isinstance(m, FrozenBatchNorm2d) for m in norms)
    assert all(p.requires_grad for p in model.backbone.fpn.parameters())


def test_without_weights_everything_trains_and_batchnorm_stays(recwarn):
    with torch.device("meta"):
        model = create_detector(
            "fasterrcnn_fpn", num_classes=3, backbone=small_spec(), trainable_backbone_layers=2
        )
    assert any("no effect without weights_backbone" in str(w.message) for w in recwarn)
    assert all(p.requires_grad for p in backbone_net(model).parameters())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())


@META_LOAD
def test_ssdlite_keeps_batchnorm_trainable_with_weights(weights_file):
    with torch.device("meta"):
        model = create_detector(
            "ssdlite", num_classes=3, backbone=small_spec(), weights_backbone=weights_file
        )
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    assert [p.requires_grad for p in backbone_net(model).blocks[4].parameters()] and not any(
        p.requires_grad for p in backbone_net(model).stem.parameters()
    )


def test_weights_backbone_from_a_file_are_the_files(weights_file):
    torch.manual_seed(0)
    model = create_detector(
        "retinanet_fpn", num_classes=3, backbone=small_spec(), weights_backbone=weights_file
    )
    saved = torch.load(weights_file, weights_only=True)
    own = backbone_net(model).state_dict()
    kept = [k for k in own if not k.startswith(("classifier", "conv_head"))]
    assert len(kept) > 20
    for key in kept:
        assert torch.equal(own[key], saved[key]), key
    plain = create_detector("retinanet_fpn", num_classes=3, backbone=small_spec())
    assert not torch.equal(backbone_net(plain).stem.conv.weight, saved["stem.conv.weight"])


def test_weights_backbone_in_the_official_layout(reference_checkpoint):
    """The FBNet authors' key layout (what fb_in1k downloads) loads through the same route."""
    from reference import reference_state_dict

    model = create_detector(
        "ssdlite_fbnetv3_a", num_classes=3, weights_backbone=reference_checkpoint("fbnetv3_a")
    )
    official = reference_state_dict("fbnetv3_a")
    assert torch.equal(
        backbone_net(model).stem.conv.weight, official["backbone.stages.xif0_0.conv.weight"]
    )


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: create_detector("fasterrcnn_fbnetv3_h_fpn"), "did you mean fasterrcnn_fbnetv3_"),
        (lambda: create_detector("yolo"), "Accepted names: fasterrcnn_fbnetv3_a_fpn"),
        (lambda: create_detector("fasterrcnn_fpn"), "needs backbone="),
        (lambda: create_detector("ssdlite_fbnetv3_a", min_size=128), "pass size="),
        (lambda: create_detector("ssdlite_fbnetv3_a", backbone="fbnetv3_b"), "fixes its backbone"),
        (
            lambda: create_detector("fasterrcnn_fpn", backbone="torchvision/resnet18"),
            "not an FBNetV3 network",
        ),
        (lambda: create_detector("fasterrcnn_fbnetv3_a_fpn", num_classes=1), "num_classes must be"),
        (
            lambda: create_detector("ssdlite_fbnetv3_a", weights_backbone="missing.pth"),
            "no such file",
        ),
        (
            lambda: create_detector("ssdlite", backbone=small_spec(), weights_backbone="fb_in1k"),
            "no published",
        ),
    ],
)
def test_bad_input_is_one_clear_error(call, needle):
    with pytest.raises(UserError, match=None) as err:
        call()
    assert needle in str(err.value)


def test_bad_trainable_layers_and_anchor_sizes(weights_file):
    with pytest.raises(UserError, match=r"trainable_backbone_layers must be an integer in 0\.\.5"):
        create_detector(
            "fasterrcnn_fpn",
            backbone=small_spec(),
            weights_backbone=weights_file,
            trainable_backbone_layers=6,
        )
    with pytest.raises(UserError, match="anchor_sizes must hold 5 positive sizes"):
        create_detector("fasterrcnn_fpn", backbone=small_spec(), anchor_sizes=(16, 32))


def test_anchor_sizes_and_returned_layers_reach_the_detector():
    with torch.device("meta"):
        model = create_detector(
            "fasterrcnn_fpn",
            num_classes=3,
            backbone=small_spec(),
            returned_layers=[2, 3],
            anchor_sizes=(8, 16, 32),
        )
    assert model.backbone.body.stages == [2, 3]
    assert model.rpn.anchor_generator.sizes == ((8,), (16,), (32,))
    assert model.roi_heads.box_roi_pool.featmap_names == ["0", "1"]


@pytest.mark.slow
def test_torch_hub_loads_detectors_by_name():
    hubconf = torch.hub._import_module("hubconf", str(REPO / "hubconf.py"))  # what hub.list reads
    assert set(DETECTORS) <= set(dir(hubconf))
    assert all(getattr(hubconf, name).__doc__ for name in DETECTORS)
    with torch.device("meta"):
        model = torch.hub.load(str(REPO), "maskrcnn_fbnetv3_c_fpn", source="local", num_classes=5)
    assert type(model) is MaskRCNN


@pytest.mark.slow
def test_importing_the_package_stays_light():
    code = (
        "import sys, fbnetv3_zoo.detection, fbnetv3_zoo.segmentation; "
        "print(sorted(m for m in ('torch', 'torchvision', 'timm') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
@pytest.mark.parametrize("generic", ["fasterrcnn_fpn", "retinanet_fpn", "ssdlite", "maskrcnn_fpn"])
def test_onnx_export_matches_eager(tmp_path, generic):
    from fbnetv3_zoo.deploy.detection_export import export_detector_onnx
    from fbnetv3_zoo.deploy.export import randomize_weights_

    torch.manual_seed(0)
    model = create_detector(
        generic, num_classes=4, backbone=small_spec(), **SMALL[FAMILY_OF[generic]]
    )
    result = export_detector_onnx(randomize_weights_(model), tmp_path / "det.onnx", 64)
    assert result.path.is_file() and result.detections == 10
    assert result.max_box_diff < 1e-2 and result.max_score_diff < 1e-4
    assert (result.max_mask_diff is not None) == (generic == "maskrcnn_fpn")


@pytest.mark.slow
def test_ssdlite_network_lowers_to_executorch(tmp_path):
    """The network part of SSDLite (backbone, extras, head) through ExecuTorch with parity;
    the default boxes line up with its rows, so an app can decode them."""
    pytest.importorskip("executorch.exir")
    from fbnetv3_zoo.deploy.detection_executorch import (
        SSDLiteNetwork,
        default_boxes,
        export_ssdlite_executorch,
    )
    from fbnetv3_zoo.deploy.export import randomize_weights_

    torch.manual_seed(0)
    model = create_detector(
        "ssdlite", num_classes=4, backbone=small_spec(expansion=1), size=64, extra_channels=(16,)
    )  # one extra block: backbone, extras and head all lower, in a graph half the size
    result = export_ssdlite_executorch(randomize_weights_(model), tmp_path / "ssd.pte")
    assert result.path.is_file() and result.max_rel_diff <= 1e-4
    with torch.no_grad():
        rows = SSDLiteNetwork(model.eval())(torch.zeros(1, 3, 64, 64))
    assert rows.shape == (1, len(default_boxes(model)), 4 + 4)


@META_LOAD
def test_fb_in1k_asks_for_the_variants_published_weights(monkeypatch):
    """``weights_backbone="fb_in1k"`` builds ``<variant>.fb_in1k`` with pretrained=True (a download
    for users with network; here the build is recorded and given local weights instead)."""
    from fbnetv3_zoo.weights.resolve import ModelRef

    asked = []
    create = ModelRef.create

    def record(self, pretrained=None, *args, **kwargs):
        asked.append((self.text, pretrained))
        return create(self, False, *args, **kwargs)

    monkeypatch.setattr(ModelRef, "create", record)
    with torch.device("meta"):
        model = create_detector(
            "retinanet_fbnetv3_b_fpn", num_classes=3, weights_backbone="fb_in1k"
        )
    assert asked == [("fbnetv3_b.fb_in1k", True)]
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())  # treated as trained


def d2go_checkpoint(path: Path, prefix: str = "backbone.bottom_up") -> dict[str, torch.Tensor]:
    """A synthetic d2go detector checkpoint of FBNetV3-A: the stem and stages 1..4 in the trunk
    (``<prefix>.trunk<S>.fbnetv2_<S>_<J>.*``), the last stage in the RoI head, FPN and RPN
    weights beside them, as d2go's C4/FPN models lay them out; returns the ImageNet-layout
    tensors it was made from."""
    from reference import reference_state_dict

    official = reference_state_dict("fbnetv3_a")
    model = {}
    for key, value in official.items():
        parts = key.split(".")  # backbone.stages.xif<S>_<J>.<rest>
        if key.startswith("backbone.stages.xif"):
            stage, block = parts[2][3:].split("_")
            rest = ".".join(parts[3:])
            if int(stage) <= 4:
                model[f"{prefix}.trunk{stage}.fbnetv2_{stage}_{block}.{rest}"] = value
            elif int(stage) == 5:
                model[f"roi_heads.box_head.roi_box_conv.fbnetv2_{stage}_{block}.{rest}"] = value
    model["backbone.fpn_lateral2.weight"] = torch.zeros(256, 24, 1, 1)
    model["proposal_generator.rpn_head.rpn_regressor.cls_logits.weight"] = torch.zeros(
        15, 256, 1, 1
    )
    torch.save({"model": model, "iteration": 90000}, path)
    return official


@pytest.mark.slow
@pytest.mark.parametrize("prefix", ["backbone.bottom_up", "backbone.body"])
def test_weights_backbone_from_a_d2go_checkpoint_loads_its_trunk(tmp_path, prefix):
    official = d2go_checkpoint(tmp_path / "model_final.pth", prefix)
    with pytest.warns(UserWarning, match=r"holds no weights for blocks\.4 \("):
        model = create_detector(
            "fasterrcnn_fbnetv3_a_fpn", num_classes=3, weights_backbone=tmp_path / "model_final.pth"
        )
    net = backbone_net(model)
    assert torch.equal(net.stem.conv.weight, official["backbone.stages.xif0_0.conv.weight"])
    assert torch.equal(
        net.blocks[3][0].pw.conv.weight, official["backbone.stages.xif4_0.pw.conv.weight"]
    )
    frozen = net.blocks[3][0].pw.bn  # loaded BN statistics, frozen as for any trained backbone
    assert isinstance(frozen, FrozenBatchNorm2d)
    assert torch.equal(frozen.running_var, official["backbone.stages.xif4_0.pw.bn.running_var"])


def test_a_d2go_checkpoint_of_another_architecture_is_one_error(tmp_path):
    d2go_checkpoint(tmp_path / "model_final.pth")
    with pytest.raises(UserError, match=r"d2go trunk tensor for stem\.conv\.weight has shape"):
        create_detector(
            "fasterrcnn_fbnetv3_d_fpn", num_classes=3, weights_backbone=tmp_path / "model_final.pth"
        )


@pytest.mark.parametrize(
    ("name", "channels"),
    [
        ("fasterrcnn_efficientnet_b0_fpn", [24, 40, 112, 320]),
        ("ssdlite_mobilenetv3_large_100", [112, 960]),
    ],
)
def test_a_timm_backbone_can_take_the_variants_place(name, channels):
    """For comparisons in the same detector (the benchmark's EfficientNet-B0 / MobileNetV3 rows)."""
    from fbnetv3_zoo.detection import is_detector

    assert (
        is_detector(name) and is_detector("maskrcnn_fbnetv3_a_fpn") and not is_detector("yolo_v8")
    )
    family = name.split("_")[0]
    torch.manual_seed(0)
    model = create_detector(name, num_classes=3, **SMALL[family])
    assert type(model) is CLASSES[family] and model.backbone.body.channels == channels
    losses = model.train()(*batch())
    assert set(losses) == LOSSES[family] and torch.isfinite(sum(losses.values()))
    with pytest.raises(UserError, match="freezing stages is defined for FBNetV3 backbones"):
        create_detector(name, trainable_backbone_layers=2)
