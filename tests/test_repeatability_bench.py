"""benchmarks/repeatability_bench.py on the synthetic runtime: two passes, both estimators, coverage, layers."""

from __future__ import annotations

import json

BENCH = "repeatability_bench"  # imported by the `bench` fixture of tests/conftest.py


def test_the_set_mixes_families_and_input_sizes(bench):
    nets = bench.draw_networks(100, seed=1)
    assert len(nets) == 100 and len({n["id"] for n in nets}) == 100
    assert {n["model"] for n in nets} == {"mobilenetv2", "resnet20", "vgg16"}
    assert {n["hw"] for n in nets} >= {32, 48, 64, 96}
    assert bench.draw_networks(100, seed=1) == nets  # seeded


def test_two_passes_print_both_estimators_and_resume(bench, tmp_path, capsys):
    out = tmp_path / "rep.json.gz"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "12 networks measured twice" in text and "| min " not in text
    assert "  min " in text and "  median " in text and "CI coverage" in text
    assert (tmp_path / "rep.txt").read_text().strip() == text.strip()
    res = bench.load_results(out)["synthetic-cpu-fp32-t1"]
    assert len(res["pass1"]) == len(res["pass2"]) == 3
    chunk = res["pass1"][0]
    assert chunk["ids"][0] == "reference" and set(chunk["nets"]["reference"]) == {"min", "median"}
    s = bench.summarise_platform(res)
    assert s["networks"] == 12 and 0 <= s["min"]["coverage"] <= 1 and s["min"]["ms_median_absdiff"] >= 0
    before = bench.load_results(out)
    assert bench.main(["--quick", "--out", str(out)]) == 0  # every chunk done: nothing measured again
    assert bench.load_results(out) == before


def test_pairs_mode_reports_coverage(bench, tmp_path, capsys):
    out = tmp_path / "cov.json"
    assert bench.main(["--quick", "--pairs", "2", "--repeats", "4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "coverage of stated 95% speedup intervals" in text and "8 comparisons of 2 pairs" in text
    s = bench.summarise_pairs(json.loads(out.read_text())["synthetic-cpu-fp32-t1"])
    assert s["min"]["comparisons"] == 8 and 0 <= s["min"]["coverage"] <= 1


def test_layers_mode_compares_two_stores(bench, tmp_path, capsys):
    from compactnet.profilers.base import SyntheticProfiler
    from compactnet.profilers.sampling import make_strategy
    from compactnet.profilers.store import SampleStore

    layers = make_strategy("sobol", seed=0).take(12)
    for name, seed in (("a.sqlite", 0), ("b.sqlite", 1)):
        with SampleStore(tmp_path / name) as st:
            st.add(SyntheticProfiler(noise=0.02, seed=seed).measure(layers))
    assert bench.main(["--layers", str(tmp_path / "a.sqlite"), str(tmp_path / "b.sqlite")]) == 0
    text = capsys.readouterr().out
    assert "synthetic-cpu-fp32-t1: 12 / 12 samples (min estimator)" in text
    assert "raw" in text and "anchor-normalised" in text and "unsettled" in text


def test_sets_mode_compares_a_set_measured_twice(bench, tmp_path, capsys):
    key = "synthetic-cpu-fp32-t1"
    ref = {"value_ms": 1.0, "estimator": "min"}
    one = {key: {f"n{i}": {"value_ms": 0.5, "estimator": "min", "ratio": 0.5} for i in range(4)},
           "_chunks": {key: [{"reference": ref}]}}
    two = {key: {f"n{i}": {"value_ms": v, "estimator": "min", "ratio": v}
                 for i, v in enumerate((0.5, 0.51, 0.49, 0.6))},
           "_chunks": {key: [{"reference": {**ref, "value_ms": 1.05}}]}}
    (tmp_path / "results.json").write_text(json.dumps(one))
    (tmp_path / "results-repeat.json").write_text(json.dumps(two))
    assert bench.main(["--sets", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "4 networks measured twice (min estimator)" in text and "within 3% 75%" in text
    assert "1.050-1.050 ms" in text
