"""``fbnetv3 train`` / ``validate``: every plain mistake is one line, exit code 2, nothing left.

Table-driven: each row feeds one mistake and says which words the one-line
message must contain (the culprit) and which it must not (a wrong guess).
"""

from __future__ import annotations

import pickle

import pytest
import torch
from conftest import TINY_ARCH
from fbnetv3_zoo.recipes import create_model

from fbnetv3_zoo.cli import main


class NotAWeight:
    """Any class: a pickle that needs it is refused by torch.load(weights_only=True)."""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny ArchSpec, another architecture's weights, a code-needing pickle, bad recipes."""
    from fbnetv3_zoo.recipes import Recipe
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("cli")
    (root / "tiny.yaml").write_text(TINY_ARCH)
    other = create_model(Recipe(), "test_resnet", num_classes=10)
    save_file(other.state_dict(), str(root / "resnet.safetensors"))
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": NotAWeight()}, root / "code.pth")
    (root / "python_tag.yaml").write_text('lr: !!python/object/apply:os.system ["echo hi"]\n')
    (root / "aliases.yaml").write_text("a: &a [1, 2]\nb: [*a, *a, *a]\n")
    (root / "oneclass" / "only").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(root / "oneclass" / "only" / "0.png")
    return root


TRAIN = ["train", "--model", "{root}/tiny.yaml", "--epochs", "1", "--no-progress"]
VALIDATE = ["validate", "--model", "{root}/tiny.yaml", "--no-progress"]
CASES = {
    "set_bad_yaml": ([*TRAIN, "--set", "lr=[1"], ["--set 'lr=[1'", "not a valid YAML value"], []),
    "set_no_equals": ([*TRAIN, "--set", "lr"], ["--set 'lr'", "FIELD=VALUE"], []),
    "set_unknown": ([*TRAIN, "--set", "nosuch=1"], ["'nosuch'", "allowed: name,"], ["did you"]),
    "set_typo": ([*TRAIN, "--set", "dropot=0.1"], ["'dropot'", "did you mean dropout"], []),
    "set_bad_value": ([*TRAIN, "--set", "lr=-1"], ["'lr'", "-1", "(0, 10]"], []),
    "digits_abc": ([*TRAIN, "--data", "digits:abc"], ["--data 'digits:abc'", "digits:N"], []),
    "recipe_code": ([*TRAIN, "--recipe", "{root}/python_tag.yaml"], ["python_tag.yaml"], []),
    "recipe_alias": ([*TRAIN, "--recipe", "{root}/aliases.yaml"], ["aliases.yaml", "alias"], []),
    "one_class": (
        [*TRAIN, "--data", "{root}/oneclass", "--out", "{root}/run_oneclass"],
        ["oneclass", "1 class folder(s)"],
        [],
    ),
    "threads_huge": ([*TRAIN, "--threads", "100000"], ["--threads", "0 = all cores"], []),
    "other_arch_zoo": (
        [*VALIDATE, "--checkpoint", "{root}/resnet.safetensors"],
        ["resnet.safetensors", "another architecture"],
        [],
    ),
    "other_arch_timm": (
        ["validate", "--model", "test_byobnet", "--no-progress"]
        + ["--checkpoint", "{root}/resnet.safetensors"],
        ["resnet.safetensors does not fit", "another architecture"],
        [],
    ),
    "code_pickle": (
        [*VALIDATE, "--checkpoint", "{root}/code.pth"],
        ["code.pth", "refused to load"],
        [],
    ),
    "missing_checkpoint": ([*VALIDATE, "--checkpoint", "{root}/nope.pth"], ["nope.pth"], []),
    "input_too_small": (
        ["validate", "--model", "fbnetv3_a", "--input-size", "16", "--no-progress"],
        ["fbnetv3_a", "16x16", "--input-size"],
        [],
    ),
    "pretrained_data_first": (
        ["validate", "--model", "fbnetv3_b", "--pretrained", "--data", "{root}/no_data"],
        ["no_data", "dataset directory not found"],
        [],
    ),
    "bad_device": ([*VALIDATE, "--device", "nope"], ["--device 'nope'"], []),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_mistake_is_one_line_exit_2_and_leaves_nothing(case, files, capsys, monkeypatch):
    argv, wanted, unwanted = CASES[case]
    argv = [a.format(root=files) for a in argv]

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download weights before checking the data")

    monkeypatch.setattr("timm.models._builder.load_pretrained", no_download)
    before = sorted(p.name for p in files.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fbnetv3 {argv[0]}: error: "), err
    assert "Traceback" not in err
    for word in wanted:
        assert word in lines[0], (word, lines[0])
    for word in unwanted:
        assert word not in lines[0], (word, lines[0])
    assert sorted(p.name for p in files.iterdir()) == before  # nothing left behind


@pytest.mark.slow
def test_a_preset_trains_a_short_run_and_says_how_it_fitted_it(files, capsys):
    """Issue: `--recipe fbnetv3 --epochs 4` was refused over the preset's own warmup."""
    argv = ["train", "--model", str(files / "tiny.yaml"), "--recipe", "fbnetv3"]
    assert main([*argv, "--data", "digits:4", "--epochs", "4"]) == 0
    out = capsys.readouterr().out
    assert "note: warmup_epochs: 5 -> 1 (at most 25% of this 4-epoch run)" in out
    assert "note: ema_decay: 0.9999" in out and "epoch 4/4" in out


def test_validate_is_callable_from_python_and_unwraps_ema_first(files, tmp_path):
    from fbnetv3_zoo.recipes import Recipe, validate
    from fbnetv3_zoo.recipes.validate import load_model

    model = create_model(Recipe(), "test_resnet", num_classes=10)
    ema = create_model(Recipe(), "test_resnet", num_classes=10)
    torch.save(
        {"state_dict": model.state_dict(), "state_dict_ema": ema.state_dict()}, tmp_path / "c.pth"
    )
    loaded = load_model("test_resnet", num_classes=10, checkpoint=tmp_path / "c.pth")
    key = "fc.weight" if "fc.weight" in ema.state_dict() else next(iter(ema.state_dict()))
    assert torch.equal(loaded.state_dict()[key], ema.state_dict()[key])  # EMA preferred
    r = validate("test_resnet", "digits", checkpoint=tmp_path / "c.pth", input_size=32)
    assert r["images"] == 599 and r["input_size"] == 32 and 0 <= r["top1"] <= 100
    assert r["num_classes"] == 10 and r["skipped_files"] == 0
    assert pickle.loads(pickle.dumps(r)) == r  # plain data
