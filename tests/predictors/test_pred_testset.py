import json

import pytest

from compactnet.errors import ConfigError
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


def test_measure_testset_in_chunks_against_a_reference_and_resume(tmp_path, small):
    from compactnet.predictors.testset import REFERENCE_ID, load_results, measure_testset
    ts = TestSet(small.seed, small.networks[:5], small.candidate_sets)
    calls = []

    def model_of(n):
        calls.append(n.id)
        return n.spec()

    out = tmp_path / "results.json"
    kw = dict(chunk=2, model_of=model_of, rounds=3, runs=2, warmup=0, busy="ignore", check_window=0)
    res = measure_testset(ts, "synthetic-cpu-fp32-t1", out, **kw)
    cands = [m.id for m in ts.candidate_sets[0].candidates]
    assert set(res) == {n.id for n in ts.networks} | set(cands)
    d = json.loads(out.read_text())
    chunks = d["_chunks"]["synthetic-cpu-fp32-t1"]
    assert [c["ids"] for c in chunks] == [["mobilenetv2-000", "mobilenetv2-001"], ["mobilenetv2-002",
                                           "mobilenetv2-003"], ["mobilenetv2-004"], cands]
    assert calls.count(REFERENCE_ID) == len(chunks)  # the reference is timed in every chunk
    for n_id, e in res.items():
        chunk = next(c for c in chunks if c["chunk"] == e["chunk"])
        assert n_id in chunk["ids"] and e["reference_ms"] == chunk["reference"]["value_ms"]
        assert e["ratio"] == pytest.approx(e["value_ms"] / e["reference_ms"], rel=1e-6)
        assert e["ratio_low"] <= e["ratio"] <= e["ratio_high"]
    # resumable: a second call measures nothing; a lost chunk is measured again alone
    calls.clear()
    measure_testset(ts, "synthetic-cpu-fp32-t1", out, **kw)
    assert calls == []
    del d["synthetic-cpu-fp32-t1"]["mobilenetv2-004"]
    out.write_text(json.dumps(d))
    measure_testset(ts, "synthetic-cpu-fp32-t1", out, **kw)
    assert calls == [REFERENCE_ID, "mobilenetv2-004"]
    plain, norm = load_results(out, "synthetic-cpu-fp32-t1"), load_results(out, "synthetic-cpu-fp32-t1", True)
    assert set(plain) == set(norm) == set(res) and all(v > 0 for v in norm.values())
    with pytest.raises(ConfigError, match="chunk"):
        measure_testset(ts, "synthetic-cpu-fp32-t1", out, chunk=0)


def test_a_development_set_excludes_the_test_set_and_loads_measured(tmp_path, small):
    from compactnet.errors import DataError
    from compactnet.predictors.testset import load_measured, measure_testset

    same_seed = generate_testset(seed=5, n_mobilenetv2=6, n_resnet20=2, n_vgg=2, n_candidate_sets=0, exclude=[small])
    cfg = lambda ts: {n.model + json.dumps(n.channels, sort_keys=True) for n in ts.all_networks()}  # noqa: E731
    assert not cfg(same_seed) & cfg(small)  # even the same seed draws none of the excluded networks
    assert len(small.all_networks()) == len(small.networks) + sum(1 + len(c.candidates)
                                                                   for c in small.candidate_sets)
    dev = TestSet(small.seed, small.networks[:3])
    dev.save(tmp_path / "testset.json")
    with pytest.raises(DataError, match="does not exist"):
        load_measured(tmp_path, "synthetic-cpu-fp32-t1")
    measure_testset(dev, "synthetic-cpu-fp32-t1", tmp_path / "results.json", model_of=lambda n: n.spec(), rounds=3,
                    runs=2, warmup=0, busy="ignore", check_window=0)
    nets, ms = load_measured(tmp_path, "synthetic-cpu-fp32-t1")
    assert [n.id for n in nets] == [n.id for n in dev.networks] and (ms > 0).all()
    with pytest.raises(DataError, match="no measurements on ort-cpu-fp32-t1"):
        load_measured(tmp_path, "ort-cpu-fp32-t1")
