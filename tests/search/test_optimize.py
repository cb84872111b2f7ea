"""optimize(): the output folder a CLI user gets."""

from __future__ import annotations

import json

import pytest
import torch
from search_tiny import TINY_MNV2

from compactnet.errors import ConfigError
from compactnet.models import create_model, load_weights, save_weights
from compactnet.search import optimize
from compactnet.search.latency import MacsLatencyModel

SMALL = dict(iterations=2, decay=0.95, candidate_steps=1, candidate_batch=16, train_subset=32, bn_batches=1,
             val_limit=20, winner_steps=1, extra_iterations=1, final_epochs=1, final_max_steps=1)


def test_optimize_writes_a_loadable_trimmed_model_and_a_report(tmp_path, tiny_data):
    torch.manual_seed(0)
    base = create_model("mobilenetv2", TINY_MNV2)
    save_weights(base, tmp_path / "base.safetensors")
    out = tmp_path / "out"
    res = optimize("mobilenetv2", tmp_path / "base.safetensors", "ort-cpu-fp32-t1", speedup=1.25,
                   predictor=MacsLatencyModel(align=4), preset="quick", out_dir=out, data=tiny_data,
                   channels=TINY_MNV2, measure=False, progress=False, **SMALL)
    for name in ("weights.safetensors", "channels.json", "model.onnx", "original.onnx", "history.json",
                 "trajectory.json", "trajectory.png", "report.json", "report.md"):
        assert (out / name).is_file(), name
    # the channel file and weights rebuild the trimmed network
    again = load_weights(create_model("mobilenetv2", channels=out / "channels.json"), out / "weights.safetensors")
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(again.eval()(x), res.model.eval()(x))
    rep = json.loads((out / "report.json").read_text())
    assert rep["predicted"]["speedup"] > 1.0 and rep["measured"] is None
    assert rep["trimmed"]["flops"] < rep["original"]["flops"]
    assert 0 <= rep["trimmed"]["test_top1"] <= 100 and rep["platform"]["key"] == "ort-cpu-fp32-t1"
    assert rep["platform"]["hardware"]
    assert {"candidates_s", "final_retrain_s", "export_s", "total_s"} <= set(rep["timings"])
    traj = json.loads((out / "trajectory.json").read_text())
    assert len(traj) == 2 and {"group", "channels", "predicted_ms", "val_top1", "seconds"} <= set(traj[0])
    assert res.config.widths != tuple(TINY_MNV2["widths"])
    # running again in the same folder resumes the finished search instead of starting over
    res2 = optimize("mobilenetv2", tmp_path / "base.safetensors", "ort-cpu-fp32-t1", speedup=1.25,
                    predictor=MacsLatencyModel(align=4), preset="quick", out_dir=out, data=tiny_data,
                    channels=TINY_MNV2, measure=False, progress=False, retrain=False, **SMALL)
    assert res2.config == res.config and len(res2.trajectory) == 2


def test_optimize_checks_its_targets(tmp_path, tiny_data):
    with pytest.raises(ConfigError, match="exactly one target"):
        optimize("mobilenetv2", None, "ort-cpu-fp32-t1", predictor="flops", out_dir=tmp_path, data=tiny_data)
    with pytest.raises(ConfigError, match="--speedup"):
        optimize("mobilenetv2", None, "ort-cpu-fp32-t1", speedup=0.8, predictor="flops", out_dir=tmp_path,
                 data=tiny_data)
    with pytest.raises(ConfigError, match="predictor"):
        optimize("mobilenetv2", None, "ort-cpu-fp32-t1", speedup=1.5, out_dir=tmp_path, data=tiny_data)


@pytest.mark.slow
@pytest.mark.runtime
def test_optimize_stops_on_a_protocol_measurement(tmp_path, tiny_data):
    res = optimize("mobilenetv2", None, "synthetic-cpu-fp32-t1", speedup=1.2, predictor="flops", preset="quick",
                   out_dir=tmp_path, data=tiny_data, channels=TINY_MNV2, measure=True, progress=False, **SMALL)
    m = res.report["measured"]
    assert m is not None and m["low"] <= m["speedup"] <= m["high"]
    assert res.report["measurements"] and res.measured_speedup[0] == m["speedup"]
    assert m["reached"] == (m["low"] >= 1.2)
