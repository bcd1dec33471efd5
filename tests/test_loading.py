"""Checkpoint loading: torch.hub, convert -> local-dir, safety, and bad input."""

import os
import shutil
from pathlib import Path

import pytest
import timm
import torch
from reference import reference_io

import fbnetv3_zoo
from fbnetv3_zoo import CheckpointError, load_weights, read_checkpoint
from fbnetv3_zoo.cli import main as cli

REPO = Path(__file__).resolve().parents[1]


def _logits(model, name):
    x, _ = reference_io(name)
    with torch.no_grad():
        return model.eval()(x)


def test_torch_hub_local_entry_points_and_load(reference_checkpoint):
    hubconf = torch.hub._import_module(
        "hubconf", str(REPO / "hubconf.py")
    )  # what hub.list/help read
    assert hubconf.dependencies == ["torch", "timm"]
    for letter in "abcdefg":
        assert f"fbnetv3_{letter}" in dir(hubconf)
        assert getattr(hubconf, f"fbnetv3_{letter}").__doc__
    ckpt = reference_checkpoint("fbnetv3_b")
    model = torch.hub.load(
        str(REPO),
        "fbnetv3_b",
        source="local",
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(ckpt)),
    )
    direct = timm.create_model(
        "fbnetv3_b", pretrained=True, pretrained_cfg_overlay=dict(file=str(ckpt))
    )
    assert torch.equal(_logits(model, "fbnetv3_b"), _logits(direct, "fbnetv3_b"))


@pytest.mark.slow
def test_convert_then_local_dir_round_trip(reference_checkpoint, tmp_path, capsys):
    ckpt = reference_checkpoint("fbnetv3_c")
    out = tmp_path / "c"
    assert cli(["convert", str(ckpt), "--model", "fbnetv3_c", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        ".fbnetv3-zoo.json",  # names the tool and its files, so --overwrite knows what it owns
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp folder renamed
    local = timm.create_model(f"local-dir:{out}", pretrained=True)
    direct = timm.create_model(
        "fbnetv3_c", pretrained=True, pretrained_cfg_overlay=dict(file=str(ckpt))
    )
    assert torch.equal(_logits(local, "fbnetv3_c"), _logits(direct, "fbnetv3_c"))
    assert local.pretrained_cfg["crop_pct"] == direct.pretrained_cfg["crop_pct"]
    # our own safetensors file loads through the same public path
    again = timm.create_model(
        "fbnetv3_c",
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(out / "model.safetensors")),
    )
    assert torch.equal(_logits(again, "fbnetv3_c"), _logits(direct, "fbnetv3_c"))
    # a second convert into the same folder refuses instead of clobbering it
    assert cli(["convert", str(ckpt), "--model", "fbnetv3_c", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_pretrained_with_new_head_and_input_channels(reference_checkpoint):
    ckpt = str(reference_checkpoint("fbnetv3_a"))
    full = timm.create_model("fbnetv3_a", pretrained=True, pretrained_cfg_overlay=dict(file=ckpt))
    model = timm.create_model(
        "fbnetv3_a", pretrained=True, num_classes=10, pretrained_cfg_overlay=dict(file=ckpt)
    )
    assert model.classifier.out_features == 10
    assert torch.equal(model.conv_head.weight, full.conv_head.weight)
    gray = timm.create_model(
        "fbnetv3_a", pretrained=True, in_chans=1, pretrained_cfg_overlay=dict(file=ckpt)
    )
    assert gray.stem.conv.weight.shape[1] == 1
    assert torch.allclose(gray.stem.conv.weight[:, 0], full.stem.conv.weight.sum(1), atol=1e-6)


def test_ema_weights_are_preferred(reference_checkpoint, tmp_path):
    sd = torch.load(reference_checkpoint("fbnetv3_a"), weights_only=True)["model_ema"]
    raw = {k: torch.zeros_like(v) for k, v in sd.items()}
    path = tmp_path / "both.pth"
    torch.save({"state_dict": raw, "model_ema": sd}, path)
    loaded = read_checkpoint(path)
    assert torch.equal(
        loaded["backbone.stages.xif0_0.conv.weight"],
        sd["module.backbone.stages.xif0_0.conv.weight"],
    )


def test_checkpoint_of_another_variant_names_key_and_shapes(reference_checkpoint):
    with pytest.raises(CheckpointError) as err:
        timm.create_model(
            "fbnetv3_d",
            pretrained=True,
            pretrained_cfg_overlay=dict(file=str(reference_checkpoint("fbnetv3_a"))),
        )
    message = str(err.value)
    assert "fbnetv3_a.pth" in message
    assert (
        "'stem.conv.weight'" not in message
    )  # stems differ only in width: the first real mismatch
    assert "checkpoint has shape" in message and "model expects" in message


def test_truncated_and_non_checkpoint_files(reference_checkpoint, tmp_path):
    good = reference_checkpoint("fbnetv3_a")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.pth"
    text.write_text("this is not a checkpoint")
    bad_safetensors = tmp_path / "bad.safetensors"
    bad_safetensors.write_bytes(b"\x00\x01garbage")
    model = timm.create_model("fbnetv3_a")
    for path in (cut, text, bad_safetensors):
        with pytest.raises(CheckpointError, match=path.name):
            load_weights(model, path)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_weights(model, tmp_path / "nope.pth")


class Payload:
    """Something only full unpickling can rebuild."""


def test_arbitrary_pickles_are_refused_unless_trusted(reference_checkpoint, tmp_path, monkeypatch):
    sd = torch.load(reference_checkpoint("fbnetv3_a"), weights_only=True)
    sd["extra"] = Payload()
    path = tmp_path / "pickled.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="FBNETV3_TRUST_CHECKPOINT=1"):
        read_checkpoint(path)
    assert "xif0_0" in next(iter(read_checkpoint(path, trusted=True)))
    monkeypatch.setenv("FBNETV3_TRUST_CHECKPOINT", "1")
    assert read_checkpoint(path)


def test_failed_convert_leaves_nothing(tmp_path, reference_checkpoint, capsys):
    out = tmp_path / "out"
    code = cli(
        [
            "convert",
            str(reference_checkpoint("fbnetv3_a")),
            "--model",
            "fbnetv3_e",
            "--out",
            str(out),
        ]
    )
    assert code == 2
    assert "mismatching key" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_models_and_info_commands(capsys):
    assert cli(["models"]) == 0
    table = capsys.readouterr().out
    assert table.count("| fbnetv3_") == 7 and "79.57" in table and "356.6" in table
    assert cli(["info", "fbnetv3_g"]) == 0
    assert '"imagenet_top1": 82.794' in capsys.readouterr().out
    assert cli(["info", "fbnetv3_x"]) == 2
    assert "valid names" in capsys.readouterr().err


def test_default_pretrained_path_downloads_the_official_url(reference_checkpoint, monkeypatch):
    """pretrained=True fetches the official URL (stubbed: no network here) and converts it."""
    import timm.models._builder as builder

    requested = []

    def fake_download(url, **kwargs):
        requested.append(url)
        return str(reference_checkpoint("fbnetv3_e"))

    monkeypatch.setattr(builder, "download_cached_file", fake_download)
    model = timm.create_model("fbnetv3_e", pretrained=True)
    assert requested == [fbnetv3_zoo.VARIANTS["fbnetv3_e"].weights_url]
    x, ref = reference_io("fbnetv3_e")
    with torch.no_grad():
        got = model.eval()(x).numpy()
    assert abs(got - ref["logits"]).max() / abs(ref["logits"]).max() < 1e-4


@pytest.mark.slow
def test_torch_hub_works_from_a_plain_checkout_without_the_package_installed(tmp_path):
    """Hide the installed package: hub must import fbnetv3_zoo from the checkout itself."""
    code = f"""
import sys
sys.meta_path = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
sys.path = [p for p in sys.path if "__editable__" not in p and p not in ("", {str(REPO)!r})]
import importlib.util
assert importlib.util.find_spec("fbnetv3_zoo") is None, "package still visible"
import torch
model = torch.hub.load({str(REPO)!r}, "fbnetv3_a", source="local", num_classes=3)
import fbnetv3_zoo
assert fbnetv3_zoo.__file__.startswith({str(REPO)!r}), fbnetv3_zoo.__file__
print(type(model).__name__, model.classifier.out_features)
"""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "FBNetV3Timm 3"


def _fake_hub(uploaded: dict):
    """An HfApi stand-in that records the folder push_to_hf_hub would upload (no network)."""

    class FakeApi:
        def __init__(self, **kwargs):
            pass

        def create_repo(self, repo_id, **kwargs):
            return type("RepoUrl", (), {"repo_id": repo_id})()

        def file_exists(self, **kwargs):
            return False

        def upload_folder(self, folder_path, **kwargs):
            for path in Path(folder_path).iterdir():
                uploaded[path.name] = path.read_bytes()

    return FakeApi


def test_converted_folder_is_what_push_to_hf_hub_uploads(
    reference_checkpoint, tmp_path, monkeypatch
):
    import json

    import timm.models._hub as hub
    from safetensors.torch import load_file

    from fbnetv3_zoo.files.outputs import MARKER
    from fbnetv3_zoo.weights.convert import convert_checkpoint, model_card

    ckpt = reference_checkpoint("fbnetv3_c")
    out = convert_checkpoint(ckpt, "fbnetv3_c", tmp_path / "fbnetv3_c")
    model = timm.create_model(f"local-dir:{out}", pretrained=True)
    uploaded: dict[str, bytes] = {}
    monkeypatch.setattr(hub, "HfApi", _fake_hub(uploaded))
    card = model_card(model, "fbnetv3_c", ckpt, "fbnetv3_c")
    timm.models.push_to_hf_hub(model, "someone/fbnetv3_c", model_card=card, safe_serialization=True)
    # the folder also holds our ownership marker, which the README's upload line leaves out
    assert sorted(uploaded) == sorted(p.name for p in out.iterdir() if p.name != MARKER)
    assert json.loads(uploaded["config.json"]) == json.loads((out / "config.json").read_text())
    assert uploaded["README.md"].decode() == (out / "README.md").read_text()
    ours, theirs = (
        load_file(out / "model.safetensors"),
        hub.safetensors.torch.load(uploaded["model.safetensors"]),
    )
    assert all(torch.equal(ours[k], theirs[k]) for k in ours) and ours.keys() == theirs.keys()
    readme = (out / "README.md").read_text()
    facts = fbnetv3_zoo.VARIANTS["fbnetv3_c"]
    for expected in (
        "license: cc-by-nc-4.0",
        "imagenet-1k",
        f"top-1: {facts.top1}",
        facts.weights_url,
        "sha256",
        "arxiv.org/abs/2006.02049",
        "import timm, fbnetv3_zoo",
    ):
        assert expected in readme, expected


def test_non_finite_weights_are_refused_on_convert_and_load(reference_checkpoint, tmp_path):
    from fbnetv3_zoo.weights.convert import convert_checkpoint

    sd = torch.load(reference_checkpoint("fbnetv3_a"), weights_only=True)["model_ema"]
    key = "module.backbone.stages.xif2_1.dw.conv.weight"
    sd[key] = sd[key].clone()
    sd[key].view(-1)[:3] = float("nan")
    path = tmp_path / "nan.pth"
    torch.save({"model_ema": sd}, path)
    with pytest.raises(CheckpointError, match=r"nan\.pth.*xif2_1\.dw\.conv\.weight.*3 non-finite"):
        convert_checkpoint(path, "fbnetv3_a", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(CheckpointError, match="non-finite"):
        timm.create_model("fbnetv3_a", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


def test_dtype_casts_are_announced(reference_checkpoint, tmp_path):
    from safetensors.torch import save_file

    sd = read_checkpoint(reference_checkpoint("fbnetv3_a"))
    sd = {k: (v.half() if "xif1_0" in k and v.is_floating_point() else v) for k, v in sd.items()}
    path = tmp_path / "half.safetensors"
    save_file(sd, path)
    model = timm.create_model("fbnetv3_a")
    with pytest.warns(
        UserWarning,
        match=r"half\.safetensors: casting \d+ tensor\(s\) from torch.float16 to torch.float32: blocks\.0\.0",
    ):
        load_weights(model, path)


def test_not_a_checkpoint_names_the_file_and_what_was_expected(tmp_path):
    path = tmp_path / "config.pth"
    path.write_text('{"a": 1}')
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    message = str(err.value)
    assert str(path) in message and "expected a file written by torch.save" in message
    assert "refused" not in message  # not a pickle at all: no talk of trusting it


def test_offline_pretrained_names_the_url_and_local_alternatives(monkeypatch):
    from urllib.error import URLError

    import timm.models._builder as builder

    from fbnetv3_zoo.weights.checkpoint import WeightsDownloadError

    def no_network(url, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(builder, "download_cached_file", no_network)
    with pytest.raises(WeightsDownloadError) as err:
        timm.create_model("fbnetv3_b", pretrained=True)
    message = str(err.value)
    assert fbnetv3_zoo.VARIANTS["fbnetv3_b"].weights_url in message
    assert "name resolution" in message
    assert "pretrained_cfg_overlay=dict(file=" in message and "local-dir:" in message
