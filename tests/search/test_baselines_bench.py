"""benchmarks/baselines_bench.py: the --quick synthetic run end to end, resume, reuse, bad variant names."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
try:
    import baselines_bench as bb
finally:
    sys.path.pop(0)

VARIANTS = "search,uniform,control"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("bb") / "run"
    rc = bb.main(["--quick", "--quiet", "--out", str(out), "--variants", VARIANTS, "--rounds", "7"])
    return rc, out


@pytest.mark.slow
def test_quick_run_writes_matched_rows(quick_run, capsys):
    rc, out = quick_run
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    rows = {r["variant"]: r for r in rep["rows"]}
    assert list(rows) == ["original", "search", "uniform", "control"]
    comp = rep["measurement"]["comparison"]
    assert comp["names"] == ["original", "search", "uniform", "control"]      # one joint measurement
    for name, r in rows.items():
        assert 0 <= r["test_top1"] <= 100 and r["params"] > 0 and r["flops"] > 0
        assert r["measured_low"] <= r["measured_speedup"] <= r["measured_high"]
    s, c, o = rows["search"], rows["control"], rows["original"]
    assert s["measured_speedup"] > 1.05 and s["params"] < o["params"]
    assert c["params"] == o["params"] and c["flops"] == o["flops"]           # the control is not trimmed
    assert s["delta_vs_control"] == pytest.approx(s["test_top1"] - c["test_top1"])
    assert s["delta_vs_baseline"] == pytest.approx(s["test_top1"] - o["test_top1"])
    lo, hi = rows["uniform"]["latency_vs_search"][1:]
    assert lo <= rows["uniform"]["latency_vs_search"][0] <= hi
    # uniform is aimed at the search's speedup on the predictor (it was not measured in --quick)
    assert rows["uniform"]["predicted_speedup"] >= 0.98 * s["predicted_speedup"]
    f = {x["reference"]: x for x in rep["findings"]}
    assert set(f) == {"uniform", "control"} and 0 <= f["uniform"]["p_value"] <= 1
    md = (out / "report.md").read_text()
    assert "| search |" in md and "Does each help?" in md
    # the evaluation is the one evaluate() computes
    from compactnet.train import evaluate

    state = json.loads((out / "state.json").read_text())
    assert state["variants"]["search"]["dir"] == "search"     # relative to --out: no machine's paths recorded
    model = bb.load_result_model("resnet20", out / state["variants"]["search"]["dir"], bb.QUICK_CHANNELS)
    assert evaluate(model, bb.synthetic_data().test) == pytest.approx(s["test_top1"])


@pytest.mark.slow
def test_rerun_skips_finished_variants_and_reuses_measurement(quick_run, monkeypatch, capsys):
    rc, out = quick_run
    assert rc == 0
    before = json.loads((out / "state.json").read_text())

    def boom(*a, **k):
        raise AssertionError("a finished variant was run again")

    import importlib

    baselines = importlib.import_module("compactnet.search.baselines")
    optimize_mod = importlib.import_module("compactnet.search.optimize")

    monkeypatch.setattr(optimize_mod, "optimize", boom)
    monkeypatch.setattr(baselines, "uniform_baseline", boom)
    monkeypatch.setattr(baselines, "control_baseline", boom)
    assert bb.main(["--quick", "--quiet", "--out", str(out), "--variants", VARIANTS, "--rounds", "7"]) == 0
    after = json.loads((out / "state.json").read_text())
    assert after["variants"] == before["variants"]
    assert after["measurement"]["comparison"]["when"] == before["measurement"]["comparison"]["when"]


@pytest.mark.slow
def test_reuse_adopts_a_finished_search_folder(quick_run, tmp_path):
    _, out = quick_run
    new = tmp_path / "new"
    shutil.copytree(out / "base", new / "base")              # same starting weights (same hash)
    rc = bb.main(["--quick", "--quiet", "--out", str(new), "--variants", "search", "--rounds", "7",
                  "--reuse", f"search={out / 'search'}"])
    assert rc == 0
    rec = json.loads((new / "state.json").read_text())["variants"]["search"]
    assert rec["source"] == "reused" and (new / rec["dir"]).resolve() == (out / "search").resolve()
    assert not Path(rec["dir"]).is_absolute()
    assert not (new / "search").exists()


def test_unknown_variant_is_a_clear_error(tmp_path, capsys):
    rc = bb.main(["--quick", "--quiet", "--out", str(tmp_path / "x"), "--variants", "search,magic"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--variants" in err and "magic" in err and "uniform" in err
    assert not (tmp_path / "x").exists()                     # refused before any work


def test_reuse_option_and_incomplete_folder_are_checked(tmp_path, capsys):
    assert bb.main(["--quick", "--quiet", "--out", str(tmp_path / "x"), "--reuse", "uniform=somewhere"]) == 2
    assert "--reuse" in capsys.readouterr().err
    ok, why = bb.search_complete(tmp_path, {"model": "resnet20"})
    assert not ok and "report.json" in why


def test_mcnemar_and_mask_round_trip():
    rng = np.random.default_rng(0)
    a = rng.random(1000) < 0.9
    assert np.array_equal(bb.unpack_mask(bb.pack_mask(a), len(a)), a)
    b = a.copy()
    b[:200] = False                                          # b misses 200 more images: a is clearly better
    t = bb.mcnemar(a, b)
    assert t["only_b"] == 0 and t["only_a"] == int(a[:200].sum()) and t["p_value"] < 1e-6
    assert bb.mcnemar(a, a)["p_value"] == 1.0
    assert bb.parse_variants("control, search") == ["search", "control"]      # canonical order


def test_fisher_scores_after_an_uneven_trim():
    """The 'fisher' variant's second iteration: a group feeding a conv narrower than itself (regression:
    the conv's input-channel indices were looked up in its per-output-channel statistics)."""
    from compactnet.models import create_model
    from compactnet.search.groups import GroupPruner
    from compactnet.search.importance import get_importance, keep_indices

    torch.manual_seed(0)
    torch.set_num_threads(1)
    m = create_model("resnet20", bb.QUICK_CHANNELS)
    p = GroupPruner(m, "extended", example_input=torch.zeros(1, 3, 32, 32))
    l2 = get_importance("l2")
    l2.prepare(m, None, 0)
    p.apply(keep_indices(l2, p, p.plan_widths("layers.0.conv1", 2)))
    f = get_importance("fisher")
    f.prepare(m, [(torch.randn(8, 3, 32, 32), torch.arange(8) % 10)], 0)
    widths = {}
    for g in p.groups:
        widths.update(p.plan_widths(g.name, p.dep_width(g.root) - 1))
    keeps = keep_indices(f, p, widths)
    assert keeps and all(len(v) == widths[k] for k, v in keeps.items())
