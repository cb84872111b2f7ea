"""Latency families and the calibration set: seeded, disjoint, every size and architecture."""

from __future__ import annotations

import collections

import pytest

from compactnet.errors import ConfigError
from compactnet.predictors.calibration import calibration_set
from compactnet.predictors.families import (CALIBRATION_SEED, FAMILIES, TEST_SEED, architecture_of, draw_networks,
                                            spec)


def test_draws_follow_the_shares_and_are_seeded_and_disjoint():
    cal = draw_networks(80, CALIBRATION_SEED)
    assert [n.id for n in cal] == [n.id for n in draw_networks(80, CALIBRATION_SEED)]
    counts = collections.Counter(f"{n.model}@{n.hw}" for n in cal)
    assert set(counts) == {f.name for f in FAMILIES} and sum(counts.values()) == 80
    test = draw_networks(200, TEST_SEED, exclude=cal)
    key = lambda n: (n.model, n.hw, repr(n.channels))  # noqa: E731
    assert not {key(n) for n in cal} & {key(n) for n in test}
    assert {architecture_of(n.model) for n in test} == {"mobilenetv2", "mobilenetv1", "resnet", "vgg16"}


def test_specs_at_their_input_size():
    v1 = next(n for n in draw_networks(30, 1) if n.model == "mobilenetv1" and n.hw == 96)
    s = v1.spec()
    assert s.layers[0].h == 96 and s.layers[0].stride == (2, 2)
    assert [l.op for l in s.layers].count("dwconv") == 13
    r32 = next(n for n in draw_networks(30, 1) if n.model == "resnet32")
    assert [l.op for l in r32.spec().layers].count("add") == 15
    assert spec("mobilenetv2", {"widths": [32] * 18}, 32).layers[0].h == 32


def test_calibration_set_puts_the_model_first():
    ts = calibration_set(30, "resnet20")
    ids = [n.id for n in ts.networks]
    # a fifth of the set: the untrimmed model and 5 trims, the rest drawn from the families
    assert ids[0] == "resnet20-untrimmed" and sum(i.startswith("resnet20-trim") for i in ids) == 5
    assert len(ids) == 30 == len(set(ids))
    assert len({n.id for n in calibration_set(100, "mobilenetv2").networks}) == 100
    with pytest.raises(ConfigError, match="networks"):
        calibration_set(5)
    with pytest.raises(ConfigError):
        draw_networks(0, 1)
