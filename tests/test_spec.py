import random

import pytest
from conftest import random_spec

from fbnetv3_zoo import VARIANTS, ArchSpec, BlockSpec, SpecError, make_divisible
from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.models.spec import ACTIVATIONS, load_arch_file


@pytest.mark.parametrize("name", list(VARIANTS))
def test_yaml_round_trip_of_every_variant(name, tmp_path):
    spec = VARIANTS[name].spec
    path = tmp_path / "spec.yaml"
    spec.to_yaml(path)
    assert ArchSpec.from_yaml(path) == spec
    assert ArchSpec.from_dict(spec.to_dict()) == spec


def test_round_trip_of_random_specs():
    rng = random.Random(0)
    for _ in range(50):
        spec = random_spec(rng)
        assert ArchSpec.from_dict(spec.to_dict()) == spec


def test_spec_under_arch_key_with_other_sections(tmp_path):
    path = tmp_path / "result.yaml"
    spec = VARIANTS["fbnetv3_a"].spec
    path.write_text(spec.to_yaml() + "recipe: {lr: 0.1}\n")
    assert ArchSpec.from_yaml(path) == spec


def test_make_divisible_rule():
    assert make_divisible(10) == 16  # 8 is below 95 % of 10, so one more step
    assert make_divisible(12) == 16  # halves round up
    assert make_divisible(18) == 24
    assert make_divisible(3) == 8
    assert make_divisible(120) == 120


def _row(**changes):
    fields = dict(kernel=3, expansion=4, channels=16)
    fields.update(changes)
    return fields


@pytest.mark.parametrize(
    "row, field, allowed",
    [
        (_row(kernel=4), "kernel", "odd"),
        (_row(stride=3), "stride", "1 or 2"),
        (_row(channels=0), "channels", "[1, 8192]"),
        (_row(channels=-8), "channels", "[1, 8192]"),
        (_row(channels=10**9), "channels", "[1, 8192]"),
        (_row(channels=16.0), "channels", "an integer"),
        (_row(repeats=100_000_000), "repeats", "[1, 64]"),
        (_row(kernel=99), "kernel", "[1, 31]"),
        (_row(expansion=1e6), "expansion", "<= 32"),
        (_row(expansion="4"), "expansion", "a number"),
        (_row(stride=True), "stride", "1 or 2"),
        (_row(se="yes"), "se", "true or false"),
        (_row(act=["relu"]), "act", "hswish"),
        (_row(act="gelu"), "act", ", ".join(ACTIVATIONS)),
        (_row(expansion=0.5), "expansion", ">= 1"),
        (_row(repeats=0), "repeats", "[1, 64]"),
        (_row(kernel=3, dw_padding=2), "dw_padding", "[0, 1]"),
    ],
)
def test_invalid_rows_name_the_field_and_allowed_values(row, field, allowed):
    data = {"stem_channels": 16, "stages": [[_row()], [row]]}
    with pytest.raises(SpecError) as err:
        ArchSpec.from_dict(data)
    message = str(err.value)
    assert f"stages[1][0].{field}" in message
    assert allowed in message


def test_empty_stage_and_bad_top_level_fields():
    with pytest.raises(SpecError, match=r"stages\[1\]"):
        ArchSpec.from_dict({"stem_channels": 16, "stages": [[_row()], []]})
    with pytest.raises(SpecError, match="stages: .*1 to 64 stages"):
        ArchSpec(stem_channels=16, stages=())
    with pytest.raises(SpecError, match="stem_act"):
        ArchSpec(stem_channels=16, stages=[[BlockSpec(3, 1, 16)]], stem_act="tanh")
    with pytest.raises(SpecError, match="unknown key.*'widht'"):
        ArchSpec.from_dict({"stem_channels": 16, "stages": [[_row()]], "widht": 3})
    with pytest.raises(SpecError, match=r"stages\[0\]\[0\].*unknown key.*'kernal'"):
        ArchSpec.from_dict({"stem_channels": 16, "stages": [[{"kernal": 3}]]})
    with pytest.raises(SpecError, match="missing required key 'stages'"):
        ArchSpec.from_dict({"stem_channels": 16})


def test_bad_yaml_file_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("arch: {stem_channels: 16, stages: [[{kernel: 4, expansion: 1, channels: 8}]]}")
    with pytest.raises(SpecError, match=r"broken.yaml.*stages\[0\]\[0\]\.kernel"):
        ArchSpec.from_yaml(path)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        ArchSpec.from_yaml(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "changes, field, allowed",
    [
        ({"feature_width": "wide"}, "feature_width", "[1, 8192]"),
        ({"feature_width": 10**9}, "feature_width", "[1, 8192]"),
        ({"stem_channels": 10**9}, "stem_channels", "[1, 8192]"),
        ({"input_size": 0}, "input_size", "[8, 4096]"),
        ({"input_size": 20000}, "input_size", "[8, 4096]"),
        ({"input_size": "224"}, "input_size", "[8, 4096]"),
        ({"name": ["a"] * 10}, "name", "a string"),
        ({"name": "x" * 1000}, "name", "at most 128 characters"),
        ({"se_ratio": "0.25"}, "se_ratio", "(0, 1]"),
        ({"head_expansion": float("nan")}, "head_expansion", "(0, 32]"),
        ({"stem_stride": 2.0}, "stem_stride", "1 or 2"),
    ],
)
def test_invalid_top_level_fields_name_the_field_and_bound(changes, field, allowed):
    data = {"stem_channels": 16, "stages": [[_row()]], **changes}
    with pytest.raises(SpecError) as err:
        ArchSpec.from_dict(data, source="my.yaml")
    message = str(err.value)
    assert message.startswith(f"my.yaml: {field}: invalid value") and allowed in message
    assert len(message) < 200  # a huge value is shown shortened


def test_total_block_count_is_bounded_before_resolving():
    rows = [_row(repeats=64)] * 5  # each row is fine; 320 blocks in total are not
    with pytest.raises(
        SpecError, match=r"stages: invalid value '320 blocks in total'.*at most 256"
    ):
        ArchSpec.from_dict({"stem_channels": 16, "stages": [rows]})


def test_spec_yaml_refuses_aliases_and_names_the_file(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(
        "a: &a [x, x]\nb: &b [*a, *a]\narch: {stem_channels: 16, name: *b, stages: [[{kernel: 3, expansion: 1, channels: 8}]]}\n"
    )
    with pytest.raises(UserError, match=r"bomb.yaml.*aliases"):
        ArchSpec.from_yaml(path)


def test_result_file_carries_its_class_count(tmp_path):
    spec = VARIANTS["fbnetv3_a"].spec
    path = tmp_path / "result.yaml"
    path.write_text(spec.to_yaml() + "num_classes: 10\nrecipe: {lr: 0.1}\n")
    assert load_arch_file(path) == (spec, 10)
    bare = tmp_path / "spec.yaml"
    spec.to_yaml(bare)
    assert load_arch_file(bare) == (spec, None)
    path.write_text(spec.to_yaml() + "num_classes: 0\n")
    with pytest.raises(SpecError, match=r"result.yaml: num_classes: invalid value 0"):
        load_arch_file(path)


def test_a_network_too_large_to_build_is_refused_with_its_size():
    rows = [_row(channels=8192, expansion=32, repeats=8)]  # every field in range
    with pytest.raises(SpecError, match=r"stages: the network would have [\d,]+ weights.*at most"):
        ArchSpec.from_dict({"stem_channels": 16, "stages": [rows]})
