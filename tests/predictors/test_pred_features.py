import numpy as np
import pytest

from compactnet.errors import ConfigError
from compactnet.predictors.features import (SCHEMAS, columns_from_raw, featurize, raw_matrix, schema_for)
from compactnet.predictors.network import channels_raw
from compactnet.predictors.synthetic import random_layers, toy_network


def test_every_schema_starts_with_the_shared_lead_and_has_a_stable_hash():
    for kind, s in SCHEMAS.items():
        assert s.columns[:4] == ("cin", "cout", "flops", "bytes"), kind
        assert len(set(s.columns)) == len(s.columns)
        assert s.hash == schema_for(kind).hash and len(s.hash) == 16
    assert len({s.hash for s in SCHEMAS.values()}) == len(SCHEMAS)


def test_cost_columns_agree_with_layerspec():
    layers = random_layers(70, seed=3, kinds=("conv", "dwconv", "block", "linear", "gap", "add", "maxpool"))
    c = columns_from_raw(raw_matrix(layers), "fp16")
    for i, l in enumerate(layers):
        assert c["flops"][i] == l.flops
        assert c["params"][i] == l.params
        assert c["bytes"][i] == l.bytes_moved("fp16")
        assert (c["out_h"][i], c["out_w"][i]) == l.out_hw


def test_alignment_features_see_63_64_65():
    X = featurize([l for l in random_layers(1, kinds=("dwconv",))], "dwconv")
    names = SCHEMAS["dwconv"].columns
    from compactnet.spec import LayerSpec
    rows = featurize([LayerSpec(f"d{c}", "dwconv", c, c, 8, 8, kernel=3, padding=1, groups=c) for c in (63, 64, 65)])
    al16 = rows[:, names.index("cin_al16")]
    assert list(al16) == [0.0, 1.0, 0.0] and X.shape[1] == len(names)


def test_featurize_refuses_mixed_kinds_naming_the_argument():
    layers = random_layers(2, kinds=("conv", "dwconv"))
    with pytest.raises(ConfigError, match="raw"):
        featurize(layers, "conv")
    with pytest.raises(ConfigError, match="precision"):
        featurize(layers[:1], "conv", precision="fp64")


def test_channels_raw_mirrors_with_channels():
    base = toy_network()
    rng = np.random.default_rng(0)
    names = [g for g, _ in base.groups]
    for _ in range(5):
        widths = {g: int(rng.integers(3, 70)) for g in ("g0", "g1", "g2", "last")}
        W = np.array([[widths.get(g, w) for g, w in base.groups]], dtype=float)
        got = channels_raw(base, W, names)[0]
        assert np.array_equal(got, raw_matrix(base.with_channels(widths).layers))
