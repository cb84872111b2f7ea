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


class _FakeProtocol:
    """compactnet.measure.compare stand-in: latency from the ONNX size, a noise factor that drifts per call."""

    def __init__(self):
        self.calls = []

    def compare(self, models, platform, names=None, rounds=7, busy="refuse", **kw):
        from types import SimpleNamespace

        self.calls.append(len(models))
        noise = 1.0 + 0.07 * len(self.calls)            # every measurement of the original differs
        lat = [len(m) / 1e5 * noise for m in models]
        sp = [(1.0, 1.0, 1.0)] + [(lat[0] / v, 0.99 * lat[0] / v, 1.01 * lat[0] / v) for v in lat[1:]]
        return SimpleNamespace(latencies=[SimpleNamespace(value_ms=v) for v in lat], speedups=sp, busy=False,
                               to_dict=lambda: {"busy": False})

    @staticmethod
    def reached(comp, index, target):
        return comp.speedups[index][1] >= target


def test_a_killed_latency_targeted_search_resumes(tmp_path, tiny_data, monkeypatch):
    from compactnet import isolated
    from compactnet import measure as protocol

    fake = _FakeProtocol()
    monkeypatch.setattr(protocol, "compare", fake.compare)
    monkeypatch.setattr(isolated, "compare_isolated", fake.compare)
    monkeypatch.setattr(protocol, "reached", fake.reached)
    torch.manual_seed(0)
    save_weights(create_model("mobilenetv2", TINY_MNV2), tmp_path / "base.safetensors")
    out = tmp_path / "out"

    class Killed(Exception):
        pass

    def kill(rec):
        if rec["iteration"] == 1:
            raise Killed

    ref_ms = len(__import__("compactnet.export", fromlist=["export_onnx"]).export_onnx(
        create_model("mobilenetv2", TINY_MNV2)).onnx_bytes) / 1e5
    args = dict(latency_ms=ref_ms / 1.2, predictor=MacsLatencyModel(align=4), preset="quick", out_dir=out,
                data=tiny_data, channels=TINY_MNV2, measure=True, progress=False, retrain=False, **SMALL)
    with pytest.raises(Killed):
        optimize("mobilenetv2", tmp_path / "base.safetensors", "ort-cpu-fp32-t1", on_iteration=kill, **args)
    saved = json.loads((out / "checkpoint" / "state.json").read_text())
    assert saved["iteration"] == 1 and fake.calls == [1]          # one reference measurement so far
    args["predictor"] = MacsLatencyModel(align=4)
    res = optimize("mobilenetv2", tmp_path / "base.safetensors", "ort-cpu-fp32-t1", **args)
    # resumed (not refused, not restarted): no new reference measurement, the saved T_final throughout
    assert fake.calls[0] == 1 and 1 not in fake.calls[1:]
    assert res.report["target_speedup"] == pytest.approx(saved["t_final"])
    assert res.report["target_latency_ms"] == pytest.approx(ref_ms / 1.2)
    assert [r["iteration"] for r in res.trajectory][:2] == [1, 2]
    assert res.report["measured"] is not None


def test_latency_targets_need_milliseconds(tmp_path, tiny_data):
    with pytest.raises(ConfigError, match="--latency-ms.*FLOPs proxy"):
        optimize("mobilenetv2", None, "ort-cpu-fp32-t1", latency_ms=0.5, predictor="flops", measure=False,
                 out_dir=tmp_path, data=tiny_data)
    with pytest.raises(ConfigError, match="snapshots"):
        optimize("mobilenetv2", None, "ort-cpu-fp32-t1", speedup=1.5, predictor="flops", measure=False,
                 snapshots=(1.5,), out_dir=tmp_path, data=tiny_data)


def test_report_says_why_the_search_stopped(tmp_path):
    """A loop that reached the target while the final decision did not is told apart from other stops."""
    from compactnet.search.report import write_report

    loop = {"iteration": 9, "speedup": 1.90, "low": 1.85, "high": 1.95, "reached": True}
    final = {"speedup": 1.72, "low": 1.35, "high": 2.10, "reached": False, "original_ms": 0.6, "trimmed_ms": 0.35}
    cases = [({"stop_reason": "measurement refused"}, "measurement refused"),
             ({"measurements": [loop], "measured": final}, "final decision's repeated comparisons"),
             ({"measurements": [loop], "measured": {**final, "reached": True}}, "target reached (1.90x [1.85, 1.95]"),
             ({"measurements": [{**loop, "reached": False}]}, "schedule done; the loop's last measurement"),
             ({}, "never measured")]
    for i, (rep, text) in enumerate(cases):
        _, md = write_report({"model": "mobilenetv2", **rep}, tmp_path / str(i))
        assert text in md.read_text(), (rep, md.read_text())


def test_extended_mode_is_labelled_experimental(monkeypatch, caplog):
    import importlib

    opt = importlib.import_module("compactnet.search.optimize")   # the package exports the function by that name

    def stop(*args, **kwargs):
        raise RuntimeError("stopped before any work")

    monkeypatch.setattr(opt, "_prepare", stop)
    with caplog.at_level("WARNING"), pytest.raises(RuntimeError, match="stopped before"):
        opt.optimize("mobilenetv2", None, "synthetic-cpu-fp32-t1", speedup=1.5, mode="extended", predictor="flops",
                     measure=False)
    assert "experimental" in caplog.text and "--mode paper" in caplog.text
