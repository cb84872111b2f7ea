"""Baselines beside a search: uniform width scaling matched on the predictor, and the extra-training control."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from search_tiny import TINY_MNV2

from compactnet.errors import ConfigError
from compactnet.extract import network_spec_from_torch
from compactnet.models import create_model, load_weights
from compactnet.search.baselines import (RATIO_STEP, baseline_rows, choose_uniform_ratio, control_baseline,
                                        uniform_baseline, uniform_plan)
from compactnet.search.groups import GroupPruner
from compactnet.search.latency import MacsLatencyModel
from compactnet.search.loop import Measured


def _model():
    torch.manual_seed(0)
    return create_model("mobilenetv2", TINY_MNV2)


def test_the_uniform_ratio_is_the_largest_meeting_the_predicted_target(aligned_latency):
    model = _model()
    ch = choose_uniform_ratio(model, aligned_latency, 1.3)
    assert ch["reached"] and ch["predicted_speedup"] >= 1.3
    # no larger ratio on the grid meets it (latency is not monotone in width: every ratio is checked)
    pruner = GroupPruner(_model(), "paper")
    base = network_spec_from_torch(_model())
    l0 = aligned_latency.predict_many([base])[0]
    larger = [ch["ratio"] + k * RATIO_STEP for k in range(1, int((1 - ch["ratio"]) / RATIO_STEP) + 1)]
    specs = [base.with_channels(uniform_plan(pruner, pruner.groups, r)) for r in larger]
    assert larger and all(l0 / ms < 1.3 for ms in aligned_latency.predict_many(specs))
    with pytest.raises(ConfigError, match="speedup"):
        choose_uniform_ratio(model, aligned_latency, 0.9)
    hopeless = choose_uniform_ratio(model, aligned_latency, 50.0)
    assert not hopeless["reached"] and hopeless["predicted_speedup"] > 1


def test_uniform_scaling_trims_every_group_by_one_ratio_and_trains_like_the_search(tiny_data, tiny_preset,
                                                                                   aligned_latency, tmp_path):
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    truth = MacsLatencyModel(align=4)

    def device(original, trimmed, target):
        a, b = truth.predict_many([network_spec_from_torch(original), network_spec_from_torch(trimmed)])
        return Measured(float(a), float(b), float(a / b), a / b * 0.99, a / b * 1.01, bool(a / b * 0.99 >= target))

    res = uniform_baseline(model, aligned_latency, tiny_data, 1.3, tiny_preset, out_dir=tmp_path / "u",
                           model_name="mobilenetv2", measure=device)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())      # the original is untouched
    groups = {g.name: g for g in GroupPruner(_model(), "paper").groups}
    for name, w in res.widths.items():
        g = groups[name]
        assert w == min(g.width, max(g.lower_bound, int(round(g.width * res.ratio)))), name
    assert res.predicted_speedup >= 1.3 and res.measured["speedup"] == pytest.approx(res.predicted_speedup)
    assert res.finetune_steps == tiny_preset.iterations * (tiny_preset.candidate_steps + tiny_preset.winner_steps)
    assert 0 <= res.test_top1 <= 100 and res.params < sum(v.numel() for v in _model().parameters())
    again = load_weights(create_model("mobilenetv2", channels=tmp_path / "u" / "channels.json"),
                         tmp_path / "u" / "weights.safetensors")
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(again.eval()(x), res.model.eval()(x))
    assert json.loads((tmp_path / "u" / "row.json").read_text())["kind"] == "uniform"


def test_the_control_keeps_the_architecture_and_gets_the_same_training(tiny_data, tiny_preset, aligned_latency):
    model = _model()
    res = control_baseline(model, aligned_latency, tiny_data, tiny_preset, finetune_steps=3)
    assert res.ratio == 1.0 and res.predicted_speedup == pytest.approx(1.0)
    assert res.widths == GroupPruner(_model(), "paper").widths()
    assert res.finetune_steps == 3
    trained, orig = res.model.state_dict(), model.state_dict()
    assert any(not torch.equal(trained[k], orig[k]) for k in orig if trained[k].is_floating_point())


def test_rows_beside_a_search_result_target_its_measured_speedup(tiny_data, tiny_preset, aligned_latency, tmp_path):
    report = {"model": "mobilenetv2", "mode": "paper", "preset": tiny_preset.to_dict(),
              "predicted": {"trimmed_ms": 1.0, "speedup": 1.4},
              "measured": {"speedup": 1.25, "low": 1.2, "high": 1.3, "busy": False},
              "trimmed": {"val_top1": 10.0, "test_top1": 11.0, "params": 1, "flops": 2},
              "channels": {"trimmed": {"stage1": 8}}}
    result = SimpleNamespace(report=report, trajectory=[{}, {}])
    rows = baseline_rows(result, _model(), aligned_latency, tiny_data, out_dir=tmp_path)
    assert [r["kind"] for r in rows] == ["search", "uniform", "control"]
    assert rows[0]["measured_speedup"] == 1.25
    assert rows[1]["target_speedup"] == 1.25 and rows[1]["predicted_speedup"] >= 1.25
    assert rows[1]["finetune_steps"] == rows[2]["finetune_steps"] == 2 * (tiny_preset.candidate_steps
                                                                          + tiny_preset.winner_steps)
    assert json.loads((tmp_path / "baselines.json").read_text())[2]["kind"] == "control"
    with pytest.raises(ConfigError, match="result"):
        baseline_rows(SimpleNamespace(report={**report, "measured": None, "predicted": {}}, trajectory=[]),
                      _model(), aligned_latency, tiny_data)
