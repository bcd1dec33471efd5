"""Search space, encoding, vectorised statistics, sampling and constraints."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from fbnetv3_zoo.search.space.constraints import batch_stats, parse_constraint
from fbnetv3_zoo.search.space.definition import (
    RECIPE_FIELDS,
    SPACES_DIR,
    SpaceError,
    load_space,
    parse_space,
)
from fbnetv3_zoo.search.space.encoding import contains, decode, encode, snap
from fbnetv3_zoo.search.space.sampling import sample, sample_feasible

from fbnetv3_zoo.models.stats import arch_stats
from fbnetv3_zoo.models.variants import VARIANTS


@pytest.fixture(scope="module")
def space():
    return load_space("fbnetv3")


@pytest.fixture(scope="module")
def proxy():
    return load_space("fbnetv3_proxy")


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_fbnetv3_space_contains_published_specs(space, name):
    spec = VARIANTS[name].spec
    assert contains(space, spec)
    decoded, _ = decode(space, encode(space, spec))
    assert decoded.replace(name=spec.name) == spec


def test_contains_rejects_outside_points(space):
    spec = VARIANTS["fbnetv3_a"].spec
    assert not contains(space, spec.replace(input_size=100))
    assert not contains(space, spec.replace(feature_width=1280))
    with pytest.raises(SpaceError, match=r"stages\[0\]\[0\]\.channels"):
        stages = list(spec.stages)
        stages[0] = (stages[0][0].__class__(3, 1, 20, 2),)
        encode(space, spec.replace(stages=tuple(stages)))


@pytest.mark.parametrize("which", ["fbnetv3", "fbnetv3_proxy"])
def test_round_trip_from_vectors(which):
    space = load_space(which)
    u = np.random.default_rng(0).random((25, space.size))
    for row, snapped in zip(u, snap(space, u), strict=True):
        spec, recipe = decode(space, row)
        assert set(recipe) == set(RECIPE_FIELDS)
        np.testing.assert_allclose(encode(space, spec, recipe), snapped, atol=1e-12)
        again, recipe2 = decode(space, encode(space, spec, recipe))
        assert again == spec
        assert recipe2 == pytest.approx(recipe)


@pytest.mark.parametrize("which", ["fbnetv3", "fbnetv3_proxy"])
def test_batch_stats_match_arch_stats(which):
    space = load_space(which)
    u = sample(space, 64, "uniform", seed=3)
    macs, params, valid = batch_stats(space, u, num_classes=10)
    assert valid.all()
    for i in range(len(u)):
        stats = arch_stats(decode(space, u[i])[0], num_classes=10)
        assert (stats.macs, stats.params) == (macs[i], params[i])


def test_sobol_sampling_respects_constraints(space):
    limits = [parse_constraint("macs<=500M"), parse_constraint("params<7M")]
    u, macs, params = sample_feasible(space, 50, limits, seed=1)
    assert len(u) == 50
    ok = (macs <= 500e6) | (params < 7e6)
    assert ok.all()
    m2, p2, _ = batch_stats(space, u)
    np.testing.assert_array_equal(m2, macs)
    assert len({tuple(r) for r in u}) == 50
    assert (u >= 0).all() and (u <= 1).all()


def test_unsatisfiable_constraint_is_a_clear_error(space):
    with pytest.raises(ValueError, match=r"no sampled pair satisfies .*macs<=1M.*smallest seen"):
        sample_feasible(space, 4, [parse_constraint("macs<=1M")], max_draws=2048)


@pytest.mark.parametrize("text", ["flops<=3M", "macs>=4M", "macs<=", "macs<=4X"])
def test_bad_constraint_text(text):
    with pytest.raises(ValueError, match="invalid constraint"):
        parse_constraint(text)


def test_constraint_units_and_slug():
    c = parse_constraint("macs <= 0.5M")
    assert c.limit == 5e5 and c.slug == "macs_le_0.5M"


def _raw():
    return yaml.safe_load((SPACES_DIR / "fbnetv3_proxy.yaml").read_text())


@pytest.mark.parametrize(
    "edit, where",
    [
        (lambda d: d["stages"][2][1].update(kernel=[3, 4]), r"stages\[2\]\[1\]\.kernel"),
        (lambda d: d["stages"][3][0].update(channels={"min": 8}), r"stages\[3\]\[0\]\.channels"),
        (lambda d: d["stages"][1][0].update(colour="red"), r"stages\[1\]\[0\].*unknown key"),
        (lambda d: d["stages"][0][0].update(channels="same"), r"stages\[0\]\[0\]\.channels"),
        (lambda d: d["recipe"].update(lr={"min": "a", "max": 1}), r"recipe\.lr\.min"),
        (lambda d: d["recipe"].update(momentum=0.9), r"recipe.*unknown key.*momentum"),
        (lambda d: d["recipe"].update(overrides={"lr": 1}), r"recipe\.overrides\.lr"),
        (lambda d: d.pop("stages"), r"missing required key 'stages'"),
        (lambda d: d["stages"][4][0].update(stride=3), r"stages\[4\]\[0\]\.stride"),
    ],
)
def test_invalid_space_names_the_field(tmp_path, edit, where):
    data = _raw()
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpaceError, match=where) as info:
        load_space(path)
    assert str(path) in str(info.value)


def test_unknown_space_name_lists_shipped():
    with pytest.raises(SpaceError, match="fbnetv3_proxy"):
        load_space("nope")


def test_fingerprint_tracks_content():
    a = parse_space(_raw())
    data = _raw()
    data["stem"]["channels"] = {"min": 8, "max": 20, "step": 4}
    assert a.fingerprint() == parse_space(_raw()).fingerprint() != parse_space(data).fingerprint()
