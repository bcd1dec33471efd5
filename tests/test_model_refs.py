"""Every model reference form through every entry point (all go through fbnetv3_zoo.weights.resolve).

Offline: weights come from files this module writes (the seeded reference
checkpoint, a converted ``local-dir:`` folder); any network connection fails
the test, so a hub download can never be attempted silently.
"""

from __future__ import annotations

import json
import socket
import warnings
from pathlib import Path

import pytest
import torch
from conftest import TINY_ARCH
from fbnetv3_zoo.recipes import Recipe, create_model

import fbnetv3_zoo
from fbnetv3_zoo.cli import main

REPO = Path(__file__).resolve().parents[1]
RESULT_CLASSES = 7  # a search result's own class count, different from 1000 and from digits' 10
FORMS = ("zoo", "zoo_tag", "timm", "torchvision", "spec_yaml", "result_yaml", "local_dir")
SPEC_FORMS = ("zoo", "zoo_tag", "spec_yaml", "result_yaml", "local_dir")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model reference tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def refs(tmp_path_factory) -> dict[str, str]:
    """One reference of each textual form; the files are written here."""
    folder = tmp_path_factory.mktemp("refs")
    spec_yaml = folder / "tiny.yaml"
    spec_yaml.write_text(TINY_ARCH)
    spec = fbnetv3_zoo.ArchSpec.from_yaml(spec_yaml)
    result = fbnetv3_zoo.ResultFile(
        arch=spec.to_dict(),
        recipe=Recipe.load("fbnetv3_proxy").to_dict(),
        num_classes=RESULT_CLASSES,
        stats=dict(
            macs=fbnetv3_zoo.arch_stats(spec, num_classes=RESULT_CLASSES).macs,
            params=fbnetv3_zoo.arch_stats(spec, num_classes=RESULT_CLASSES).params,
        ),
    )
    result_yaml = folder / "best.yaml"
    result.to_yaml(result_yaml)
    torch.manual_seed(0)
    weights = folder / "tiny.pth"
    torch.save(fbnetv3_zoo.create_model(spec_yaml, num_classes=5).state_dict(), weights)
    from fbnetv3_zoo.weights.convert import convert_checkpoint

    local = convert_checkpoint(weights, str(spec_yaml), folder / "local")
    return dict(
        zoo="fbnetv3_a",
        zoo_tag="fbnetv3_a.fb_in1k",
        timm="test_resnet",
        torchvision="torchvision/mobilenet_v3_small",
        spec_yaml=str(spec_yaml),
        result_yaml=str(result_yaml),
        local_dir=f"local-dir:{local}",
    )


def _size(form: str) -> int:
    return 16 if form in ("spec_yaml", "result_yaml", "local_dir") else 64


def test_the_forms_resolve_to_what_they_name(refs):
    kinds = {form: fbnetv3_zoo.parse_ref(refs[form]).kind for form in FORMS}
    assert kinds == dict(
        zoo="zoo",
        zoo_tag="zoo",
        timm="timm",
        torchvision="torchvision",
        spec_yaml="file",
        result_yaml="file",
        local_dir="folder",
    )
    assert fbnetv3_zoo.parse_ref(refs["zoo_tag"]).variant.name == "fbnetv3_a"
    assert fbnetv3_zoo.parse_ref(refs["result_yaml"]).num_classes() == RESULT_CLASSES
    spec = fbnetv3_zoo.ArchSpec.from_yaml(refs["spec_yaml"])
    assert fbnetv3_zoo.parse_ref(spec).spec == spec == fbnetv3_zoo.parse_ref(spec.to_dict()).spec


@pytest.mark.parametrize("form", FORMS)
def test_info(form, refs, capsys):
    assert main(["info", refs[form]]) == 0
    out = capsys.readouterr().out
    facts = json.loads(out[: out.index("\n}\n") + 2])
    assert facts["params_m"] > 0 and facts["macs_m"] > 0
    if form == "result_yaml":
        assert facts["num_classes"] == RESULT_CLASSES
    if form == "zoo_tag":
        assert facts["pretrained_tag"] == "fb_in1k" and facts["imagenet_top1"] > 79
    if form in SPEC_FORMS:
        assert "stem_channels" in out  # the spec follows the facts


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
def test_export(form, refs, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    argv = ["export", refs[form], "--out", str(out), "--input-size", str(_size(form))]
    assert main(argv) == 0
    assert out.stat().st_size > 0 and "max abs diff" in capsys.readouterr().out


@pytest.mark.parametrize("form", FORMS)
def test_benchmark(form, refs, tmp_path):
    table = tmp_path / "bench.md"
    argv = ["benchmark", "--models", f"{refs[form]}@{_size(form)}", "--batch", "1"]
    argv += ["--backends", "eager", "--warmup", "0", "--repeats", "1", "--out", str(table)]
    assert main(argv) == 0
    assert refs[form] in table.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
def test_train(form, refs, tmp_path):
    argv = ["train", "--model", refs[form], "--data", "digits:2", "--epochs", "1"]
    argv += ["--resolution", str(_size(form)), "--batch-size", "10", "--out", str(tmp_path / "r")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # regularisers a timm/torchvision model lacks
        assert main(argv) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["epochs"]


@pytest.mark.parametrize("form", FORMS)
def test_python_entry_points_build_the_same_model(form, refs):
    ref = refs[form]
    direct = fbnetv3_zoo.create_model(ref)
    hub = torch.hub.load(str(REPO), "fbnetv3", ref, source="local")
    recipe = create_model(Recipe.load("baseline"), ref, num_classes=3)
    assert type(hub) is type(direct) and type(recipe) is type(direct)
    names = lambda m: [k for k, _ in m.named_parameters()]  # noqa: E731
    assert names(hub) == names(direct)
    if form == "result_yaml":  # the file's class count, unless the caller gives one
        assert direct.num_classes == hub.num_classes == RESULT_CLASSES
    if form in SPEC_FORMS:
        assert recipe.num_classes == 3 and direct.arch == recipe.arch == hub.arch
    if form == "zoo_tag":
        assert direct.pretrained_cfg["tag"] == "fb_in1k"


@pytest.mark.parametrize("form", ["zoo", "zoo_tag"])
def test_pretrained_zoo_forms_load_a_local_file(form, refs, reference_checkpoint):
    overlay = dict(file=str(reference_checkpoint("fbnetv3_a")))
    direct = fbnetv3_zoo.create_model(refs[form], pretrained=True, pretrained_cfg_overlay=overlay)
    hub = torch.hub.load(
        str(REPO), "fbnetv3", refs[form], source="local", pretrained=True,
        pretrained_cfg_overlay=overlay,
    )  # fmt: skip
    blank = fbnetv3_zoo.create_model(refs[form])
    w = "stem.conv.weight"
    assert torch.equal(direct.state_dict()[w], hub.state_dict()[w])
    assert not torch.equal(direct.state_dict()[w], blank.state_dict()[w])


def test_a_folder_brings_its_weights_everywhere(refs):
    folder = refs["local_dir"]
    direct = fbnetv3_zoo.create_model(folder)
    hub = torch.hub.load(str(REPO), "fbnetv3", folder, source="local")
    from fbnetv3_zoo.deploy.export import load_model

    exported = load_model(folder)
    for model in (hub, exported):
        for key, value in direct.state_dict().items():
            assert torch.equal(value, model.state_dict()[key]), key


def test_an_arch_spec_object_goes_through_the_python_entry_points(refs):
    spec = fbnetv3_zoo.ArchSpec.from_yaml(refs["spec_yaml"])
    for model in (
        fbnetv3_zoo.create_model(spec),
        torch.hub.load(str(REPO), "fbnetv3", spec, source="local"),
        create_model(Recipe.load("baseline"), spec),
    ):
        assert model.arch == spec


def test_unknown_references_are_one_error_naming_the_forms():
    with pytest.raises(fbnetv3_zoo.UserError, match="torchvision/<name>"):
        fbnetv3_zoo.parse_ref("no_such_model_xyz")
    with pytest.raises(fbnetv3_zoo.UserError, match="unknown torchvision model"):
        fbnetv3_zoo.parse_ref("torchvision/resnet_nope")
    with pytest.raises(fbnetv3_zoo.UserError, match="no published weights for an ArchSpec"):
        fbnetv3_zoo.create_model(fbnetv3_zoo.VARIANTS["fbnetv3_a"].spec, pretrained=True)
