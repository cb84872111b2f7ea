"""benchmarks/context_bench.py end to end on the synthetic runtime (small 32-px families)."""

from __future__ import annotations

import json

BENCH = "context_bench"  # imported by the `bench` fixture of tests/conftest.py
SYN = "synthetic-cpu-fp32-t1"
SMALL = "mobilenetv2@32,resnet20@32,vgg16@32"


def test_measure_then_evaluate_per_family_with_leave_one_out(bench, tmp_path, capsys):
    args = ["--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "fam"), "--platforms", SYN]
    assert bench.main(["measure", *args, "--samples", "150", "--calibration", "24", "--test", "12",
                       "--families", SMALL]) == 0
    assert bench.main(["measure", *args, "--samples", "150"]) == 0  # resumes: nothing left to measure
    cal = json.loads((tmp_path / "fam" / "calibration" / "testset.json").read_text())
    test = json.loads((tmp_path / "fam" / "test" / "testset.json").read_text())
    assert len(cal["networks"]) == 24 and len(test["networks"]) == 12
    assert not {json.dumps(n["channels"]) for n in cal["networks"]} & {json.dumps(n["channels"]) for n in test["networks"]}
    capsys.readouterr()
    assert bench.main(["evaluate", *args, "--json", str(tmp_path / "ctx.json"), "--figure", str(tmp_path / "f.png")]) == 0
    assert (tmp_path / "f.png").read_bytes().startswith(b"\x89PNG")
    text = capsys.readouterr().out
    assert "| in-context (GBDT) |" in text and "| isolated sum |" in text and "Leave one family out" in text
    res = json.loads((tmp_path / "ctx.json").read_text())[0]
    assert res["platform"] == SYN and res["calibration_networks"] == 24 and res["layers_per_s"] > 0
    ctx = res["methods"]["in-context (GBDT)"]
    assert set(ctx["families"]) == {"mobilenetv2@32", "resnet20@32", "vgg16@32"} and 0 <= ctx["coverage90"] <= 1
    assert "lookup table, one factor per kind" in res["methods"] and len(res["networks"]) == 12
    assert set(res["networks"][0]["predicted_ms"]) == set(res["methods"])
    assert (tmp_path / "ctx.txt").read_text().strip() == text.strip()


def test_unknown_family_is_named(bench, tmp_path):
    import pytest

    with pytest.raises(SystemExit, match="unknown alexnet@32"):
        bench.chosen_families("mobilenetv2@32,alexnet@32")
