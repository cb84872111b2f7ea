"""benchmarks/composition_bench.py on the synthetic runtime: rows, summary, the in-batch ratio."""

from __future__ import annotations

import json

import numpy as np
import pytest

BENCH = "composition_bench"  # imported by the `bench` fixture of tests/conftest.py
SYN = "synthetic-cpu-fp32-t1"


def test_layer_sum_ratio_against_the_measured_ratio(bench, tmp_path, capsys):
    from compactnet.predictors.testset import generate_testset, measure_testset

    ts = generate_testset(seed=4, n_mobilenetv2=1, n_resnet20=2, n_vgg=0, n_candidate_sets=0)
    ts.save(tmp_path / "testset.json")
    measure_testset(ts, SYN, tmp_path / "results.json", model_of=lambda n: n.spec(), rounds=3, runs=2, warmup=0,
                    busy="ignore", check_window=0)
    assert bench.main(["--set", str(tmp_path), "--platforms", SYN, "--networks", "2", "--json",
                       str(tmp_path / "c.json")]) == 0
    out = json.loads((tmp_path / "c.json").read_text())[SYN]
    rows = out["rows"]
    assert [r["model"] for r in rows] == ["mobilenetv2", "resnet20"]  # models taken in turn
    for r in rows:
        assert r["quotient"] == pytest.approx(r["layer_sum_ratio"] / r["measured_ratio"])
        assert 0.2 < r["quotient"] < 5
    s = out["summary"]
    assert s["n"] == 2 and 0 <= s["within5"] <= s["within10"] <= 1
    q = np.array([r["quotient"] for r in rows])
    assert s["rmspe_after_one_factor"] == pytest.approx(np.sqrt(np.mean((q / np.exp(np.log(q).mean()) - 1) ** 2)))
    assert "layer-sum ratio / measured ratio" in capsys.readouterr().out
