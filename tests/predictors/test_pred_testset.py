import pytest

from compactnet.predictors.testset import TestSet, generate_testset
from compactnet.predictors.testset import testset_layer_keys as layer_keys_of


@pytest.fixture(scope="module")
def small():
    return generate_testset(seed=5, n_mobilenetv2=6, n_resnet20=2, n_vgg=2, n_candidate_sets=1)


def test_counts_ratios_and_determinism(small):
    from compactnet.models.mobilenetv2 import DEFAULT_WIDTHS
    assert [n.model for n in small.networks] == ["mobilenetv2"] * 6 + ["resnet20"] * 2 + ["vgg16"] * 2
    for n in small.networks[:6]:
        w = n.channels["widths"]
        assert w[0] == 32  # the stem is never trimmed
        assert all(0.25 * d - 1 <= x <= d for x, d in zip(w, DEFAULT_WIDTHS))
    again = generate_testset(seed=5, n_mobilenetv2=6, n_resnet20=2, n_vgg=2, n_candidate_sets=1)
    assert again.to_dict() == small.to_dict()
    assert generate_testset(seed=6, n_mobilenetv2=6, n_resnet20=0, n_vgg=0,
                            n_candidate_sets=0).networks[0].channels != small.networks[0].channels


def test_candidates_trim_one_group_to_the_same_macs_cut(small):
    c = small.candidate_sets[0]
    base = c.base.spec().macs
    assert len(c.candidates) >= 3
    for cand in c.candidates:
        cut = (base - cand.spec().macs) / base
        assert cut >= c.cut
        diff = [i for i, (a, b) in enumerate(zip(c.base.channels["widths"], cand.channels["widths"])) if a != b]
        assert diff  # exactly one stage changed (blocks of a stage share the width)


def test_dedup_against_a_store_and_json_round_trip(tmp_path, small):
    keys = layer_keys_of(TestSet(small.seed, small.networks[:1]))
    ts = generate_testset(seed=5, n_mobilenetv2=6, n_resnet20=0, n_vgg=0, n_candidate_sets=0, store=keys)
    ids = [n.channels for n in ts.networks]
    assert small.networks[0].channels not in ids  # fully seen: redrawn
    assert all(0.0 <= n.seen_fraction < 1.0 for n in ts.networks)
    assert any(n.seen_fraction > 0 for n in ts.networks)  # the stem etc. are shared and reported
    back = TestSet.load(small.save(tmp_path / "t.json"))
    assert back.to_dict() == small.to_dict()
