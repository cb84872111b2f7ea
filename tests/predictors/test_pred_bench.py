"""The predictors benchmark's pieces: config-level split, dense step, speed on distinct configurations,
network metrics on the right populations, and a synthetic end-to-end run."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

BENCH = "predictors_bench"  # imported by the `bench` fixture of tests/conftest.py


def test_layer_split_is_by_configuration(bench, train_a):
    from compactnet.profilers.store import layer_key
    repeats = [replace(m, latency=replace(m.latency, value_ms=1.01 * m.latency.value_ms)) for m in train_a]
    train, test = bench.split_by_config(list(train_a) + repeats, 0.2, np.random.default_rng(0))
    assert len(train) + len(test) == 2 * len(train_a)
    tr, te = {layer_key(m.layer) for m in train}, {layer_key(m.layer) for m in test}
    assert not tr & te and len(te) == round(0.2 * len(tr | te))
    assert len(test) == 2 * len(te)  # both rows of a configuration on the same side


def test_dense_step_is_read_from_the_samples(bench, platforms):
    from compactnet.predictors.synthetic import measure_synthetic
    from compactnet.profilers.sampling import make_strategy
    p, c = platforms["synthetic-a-fp32-t1"]
    for step in (32, 64):
        ms = measure_synthetic(list(make_strategy("dense", step=step).stream()), p, c)
        assert bench.infer_dense_step(ms) == step
    assert bench.infer_dense_step(measure_synthetic([m.layer for m in ms][:0], p, c)) is None


def test_speed_times_distinct_configurations(bench, predictor_a):
    s = bench.prediction_speed(predictor_a, n_configs=40, seed=1, repeats=2)
    assert s["configs"] == 40 and s["layer_rows"] == 40 * 64  # 64 op-level layers per MobileNetV2
    assert 40 < s["distinct_layer_rows"] < s["layer_rows"]  # shared rows are merged, distinct ones are not
    assert s["configs_per_s"] > 0 and s["one_query_ms"] > 0 and s["granularity"] == "layers"


def test_network_figures_errors_on_networks_ranking_on_candidates(bench, predictor_a):
    from compactnet.predictors.metrics import kendall_tau, rmspe
    from compactnet.predictors.synthetic import toy_network
    specs = [toy_network({"g1": w}) for w in (8, 16, 24, 20, 21, 22)]
    p = predictor_a.predict_many(specs)
    truth = p * np.array([1.1, 0.9, 1.0, 3.0, 3.1, 2.9])  # candidates far off in level, order kept but one
    data = bench.TestNetworks(specs, {"k": truth}, n_networks=3, candidate_sets=[[3, 4, 5]])
    f = bench.net_figures(predictor_a, data, "k")
    assert f["n"] == 3 and f["rmspe"] == pytest.approx(rmspe(truth[:3], p[:3]))
    assert f["kendall_tau"] == pytest.approx(kendall_tau(truth[3:], p[3:])) and f["n_sets"] == 1
    assert np.isnan(f["mbv2_rmspe"])  # no MobileNetV2 among the test networks
    assert bench.net_figures(predictor_a, data, "other") == {}


@pytest.mark.slow
def test_synthetic_run_end_to_end(bench, capsys):
    assert bench.main(["--synthetic", "--sizes", "50", "--transfer-sizes", "10", "--speed-configs", "50",
                       "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    r = res["platforms"][0]
    assert {c["label"] for c in r["curve"]} >= {"n=50", "dense (step 32)"}
    dense = [c for c in r["curve"] if c["label"] == "dense (step 32)"]
    assert {c["predictor"] for c in dense} == {"gbdt", "lookup", "forest", "flops"}
    assert all(c["granularity"] == "units" and c["n"] == r["predictors"]["gbdt"]["n"] for c in dense)
    assert r["speed"]["configs"] == 50 and r["predictors"]["gbdt"]["n_sets"] == 3
    assert any("net_rmspe" in t for t in res["transfer"])
    # every predictor is also scored calibrated on the (synthetic) development networks
    assert r["dev_networks"] > 0 and {"gbdt+cal", "lookup+cal", "flops+cal"} <= set(r["predictors"])
    assert r["predictors"]["gbdt+cal"]["n"] == r["predictors"]["gbdt"]["n"]
    assert all("cal" in c for c in r["curve"] if c["label"] == "n=50")
    assert all(t["calibration_networks"] == r["dev_networks"] for t in res["transfer"])


def test_repeatability_compares_two_passes(bench, tmp_path):
    from compactnet.predictors.testset import generate_testset

    ts = generate_testset(seed=2, n_mobilenetv2=2, n_resnet20=1, n_vgg=1, n_candidate_sets=0)
    ts.save(tmp_path / "testset.json")
    ids = [n.id for n in ts.networks]
    one = {"k": {i: {"median_ms": 1.0} for i in ids}}
    two = {"k": {i: {"median_ms": v} for i, v in zip(ids, (1.0, 1.04, 0.92, 1.2))}}
    (tmp_path / "a.json").write_text(json.dumps(one))
    (tmp_path / "b.json").write_text(json.dumps(two))
    q = bench.repeatability(tmp_path, "a.json", "b.json", ["k"])["k"]
    assert q["n"] == 4 and q["within5"] == 0.5 and q["within10"] == 0.75 and q["worst"] == pytest.approx(0.2)


def test_shipped_predictors_are_scored_on_the_test_networks(bench, predictor_a, tmp_path):
    from compactnet.predictors.persist import save_portable
    from compactnet.predictors.synthetic import toy_network

    key = predictor_a.platform_.key
    save_portable(predictor_a, tmp_path / key)
    specs = [toy_network({"g0": w, "g1": w, "g2": w, "last": w}) for w in (8, 16, 32, 64)]
    truth = predictor_a.predict_many(specs) * np.array([1.0, 1.02, 0.95, 1.3])
    data = bench.TestNetworks(specs, {key: truth}, n_networks=4, candidate_sets=[])
    results = [{"platform": key, "predictors": {}}, {"platform": "nowhere-cpu-fp32-t1", "predictors": {}}]
    bench.add_shipped(results, str(tmp_path), data)
    rec = results[0]["predictors"]["shipped"]
    assert rec["within5"] == pytest.approx(0.5) and rec["within10"] == pytest.approx(0.75)
    assert np.isnan(rec["layer_rmspe"]) and "shipped" not in results[1]["predictors"]


def test_anchor_effect_finds_a_drift_common_to_layers_and_anchors(bench, train_a):
    from dataclasses import replace as rep

    rng = np.random.default_rng(0)
    drift = np.exp(rng.normal(0, 0.3, len(train_a)))  # the machine's speed per sample's batch
    ms = [rep(m, latency=rep(m.latency, value_ms=m.latency.value_ms * d), anchor_ms=0.05 * d)
          for m, d in zip(train_a, drift)]
    a = bench.anchor_effect(ms, fast=True)
    assert a["n"] == len(ms) and a["anchor_log_sd"] == pytest.approx(0.3, abs=0.05)
    assert 0.7 < a["beta"] < 1.3 and a["resid_sd_normalized"] < 0.75 * a["resid_sd"]
    assert bench.anchor_effect(list(train_a)) is None  # no anchor figures: nothing to say
