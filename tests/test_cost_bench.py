"""benchmarks/cost_bench.py on the synthetic runtime: error vs layer samples for GBDT, lookup table, FLOPs."""

from __future__ import annotations

import json

BENCH = "cost_bench"  # imported by the `bench` fixture of tests/conftest.py
SYN = "synthetic-cpu-fp32-t1"


def test_error_vs_samples_per_method(bench, tmp_path, capsys):
    import context_bench

    args = ["--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "fam"), "--platforms", SYN]
    assert context_bench.main(["measure", *args, "--samples", "150", "--calibration", "24", "--test", "12",
                               "--families", "mobilenetv2@32,resnet20@32,vgg16@32"]) == 0
    capsys.readouterr()
    assert bench.main([*args, "--sizes", "60", "150", "999", "--seeds", "2", "--json", str(tmp_path / "c.json"),
                       "--figure", str(tmp_path / "c.png")]) == 0
    text = capsys.readouterr().out
    assert "| layer samples |" in text and "FLOPs proxy (no layer samples)" in text
    res = json.loads((tmp_path / "c.json").read_text())[0]
    n = res["available_samples"]
    # sizes above the store are capped at it; the full store is one fit, subsamples one per seed
    assert [r["samples"] for r in res["sizes"]] == sorted({60, min(150, n), n})
    assert res["sizes"][0]["seeds"] == 2 and res["sizes"][-1]["seeds"] == 1
    for row in res["sizes"]:
        for m in ("in-context (GBDT)", "lookup table, one factor per kind"):
            e = row[m]["median_abs"]
            assert 0 <= e["min"] <= e["mean"] <= e["max"] and 0 <= row[m]["within10"]["mean"] <= 1
    assert 0 <= res["flops_proxy"]["within10"] <= 1 and res["test_networks"] == 12
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "c.txt").read_text().strip() == text.strip()
    # the figure and table are redrawn from the JSON without fitting again
    assert bench.main([*args, "--from-json", str(tmp_path / "c.json"), "--figure", str(tmp_path / "d.png")]) == 0
    assert capsys.readouterr().out.strip() == text.strip() and (tmp_path / "d.png").stat().st_size > 0


def test_flops_proxy_is_the_least_squares_line(bench):
    import numpy as np

    class S:
        def __init__(self, macs):
            self.macs = macs

    predict = bench.flops_proxy([S(1e6), S(2e6), S(4e6)], np.array([1.1, 2.1, 4.1]))
    assert np.allclose(predict([S(3e6), S(0.0)]), [3.1, 0.1])
