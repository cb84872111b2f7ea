"""Retrained snapshots (publishable, resumable) and the worst-lower-bound final decision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from search_tiny import TINY_MNV2

from compactnet.errors import ConfigError, MeasurementError
from compactnet.models import create_model, save_weights
from compactnet.search import optimize
from compactnet.search.decision import default_repeats, repeat_measure, worst_case
from compactnet.search.latency import MacsLatencyModel
from compactnet.search.loop import Measured

SMALL = dict(iterations=2, decay=0.95, candidate_steps=1, candidate_batch=16, train_subset=32, bn_batches=1,
             val_limit=20, winner_steps=1, extra_iterations=1, final_epochs=1, final_max_steps=1)
SNAPS = (1.02, 1.05)


_REAL_TRAIN = __import__("compactnet.train", fromlist=["train"]).train


class _Killed(Exception):
    pass


def _cmp(low, speedup=None, **kw):
    s = speedup if speedup is not None else low * 1.05
    return {"original_ms": 1.0, "trimmed_ms": 1.0 / s, "speedup": s, "low": low, "high": s * 1.05, "reached": True,
            "detail": {}, "busy": False, **kw}


# ----- the decision rule --------------------------------------------------------------------------
def test_the_target_is_reached_only_on_the_worst_lower_bound():
    comps = [{"repeat": 1, **_cmp(1.92)}, {"repeat": 2, **_cmp(1.55)}, {"repeat": 3, **_cmp(1.85)}]
    d = worst_case(comps, 1.8)
    # two comparisons of three meet 1.8x; the worst does not, so the target is not reached
    assert d["reached"] is False and d["low"] == 1.55 and d["worst_repeat"] == 2
    assert d["repeats"] == 3 and len(d["comparisons"]) == 3 and d["spread"][0] < d["spread"][1]
    assert worst_case(comps, 1.5)["reached"] is True
    # a refused or busy comparison never lets the target count as reached
    assert worst_case(comps[:2] + [{"repeat": 3, "refused": "load"}], 1.5)["reached"] is False
    assert worst_case(comps[:2] + [{"repeat": 3, **_cmp(1.9, busy=True)}], 1.5)["reached"] is False
    assert worst_case([{"repeat": 1, "refused": "load"}], 1.5) is None
    assert (default_repeats("paper"), default_repeats("quick")) == (3, 2)


def test_repeat_measure_records_refusals_and_checks_its_count():
    calls = []

    def measure():
        calls.append(1)
        if len(calls) == 2:
            raise MeasurementError("machine busy")
        return Measured(1.0, 0.5, 2.0, 1.9, 2.1, True)

    got = repeat_measure(measure, 3)
    assert [("refused" in c) for c in got] == [False, True, False] and [c["repeat"] for c in got] == [1, 2, 3]
    with pytest.raises(ConfigError, match="final_repeats"):
        repeat_measure(measure, 0)


# ----- optimize with snapshots --------------------------------------------------------------------
class _Device:
    """A measuring function standing in for the protocol: the MACs ratio, drifting by call (factors cycle)."""

    def __init__(self, factors=(1.0,)):
        self.factors = factors
        self.calls = 0
        self.model = MacsLatencyModel(align=4)

    def __call__(self, original, trimmed, target):
        from compactnet.extract import network_spec_from_torch

        a, b = (float(self.model.predict_many([network_spec_from_torch(m)])[0]) for m in (original, trimmed))
        r = a / b * self.factors[self.calls % len(self.factors)]
        self.calls += 1
        return Measured(a, a / r, r, 0.99 * r, 1.01 * r, bool(0.99 * r >= target))


@pytest.fixture
def base(tmp_path):
    torch.manual_seed(0)
    p = tmp_path / "base.safetensors"
    save_weights(create_model("mobilenetv2", TINY_MNV2), p)
    return p


def _run(base, out, data, monkeypatch, device, **kw):
    import sys

    opt = sys.modules["compactnet.search.optimize"]     # the package re-exports the function under this name
    monkeypatch.setattr(opt, "protocol_measure", lambda *a, **k: device)
    args = dict(speedup=1.25, predictor=MacsLatencyModel(align=4), preset="quick", out_dir=out, data=data,
                channels=TINY_MNV2, measure=True, progress=False, snapshots=SNAPS, **SMALL)
    args.update(kw)
    return optimize("mobilenetv2", base, "ort-cpu-fp32-t1", **args)


def _count_trains(monkeypatch, kill_at: str | None = None) -> list[str]:
    """Record the folder of every checkpointed train() call (retrains); raise in the one of ``kill_at``."""
    import compactnet.train as train_mod

    real = _REAL_TRAIN
    seen: list[str] = []

    def counting(model, *a, out_dir=None, **k):
        if out_dir is not None:                          # the loop's fine-tunes write no checkpoint
            seen.append(Path(out_dir).parent.name)
        if kill_at is not None and out_dir is not None and Path(out_dir).parent.name == kill_at:
            raise _Killed("killed")
        return real(model, *a, out_dir=out_dir, **k)

    monkeypatch.setattr(train_mod, "train", counting)
    return seen


def test_snapshots_are_retrained_into_publishable_folders_and_a_resume_skips_finished_ones(
        tmp_path, tiny_data, base, monkeypatch):
    from compactnet.models import load_weights
    from compactnet.search.snapshots import PRE_WEIGHTS, snapshot_tag
    from compactnet.spec import Latency, Platform
    from compactnet.zoo.publish import AccuracyResult, LatencyResult, publish, read_result_dir

    torch.set_num_threads(1)
    out = tmp_path / "out"
    tags = [snapshot_tag(t) for t in SNAPS]
    # first run killed inside the second snapshot's retrain (after the main result and the first snapshot)
    seen = _count_trains(monkeypatch, kill_at=tags[1])
    with pytest.raises(_Killed):
        _run(base, out, tiny_data, monkeypatch, _Device())
    assert seen == ["out", tags[0], tags[1]]
    assert (out / "report.json").is_file() and (out / "snapshots" / tags[0] / "report.json").is_file()
    assert not (out / "snapshots" / tags[1] / "report.json").exists()
    first_report = json.loads((out / "snapshots" / tags[0] / "report.json").read_text())

    # the rerun redoes neither the finished snapshot retrain nor the search; it retrains the second
    seen = _count_trains(monkeypatch)
    res = _run(base, out, tiny_data, monkeypatch, _Device())
    assert seen == ["out", tags[1]]
    assert json.loads((out / "snapshots" / tags[0] / "report.json").read_text()) == first_report
    snaps = res.report["snapshots"]
    assert [d["tag"] for d in snaps] == tags and all(d["retrained"] for d in snaps)
    assert all(0 <= d["test_top1"] <= 100 for d in snaps)
    md = (out / "report.md").read_text()
    assert all(t in md for t in tags) and "retrained" in md

    for t, tag in zip(SNAPS, tags):
        folder = out / "snapshots" / tag
        got = read_result_dir(folder)                        # what `zoo publish` reads
        assert got.weights.name == "weights.safetensors" and got.architecture == "mobilenetv2"
        assert got.onnx == folder / "model.onnx" and got.original_onnx == folder / "original.onnx"
        rep = got.report
        assert rep["target_speedup"] == t and rep["measured"]["low"] >= t and rep["measured"]["reached"]
        assert rep["snapshot"]["retrained"] and rep["trimmed"]["test_top1"] is not None
        assert rep["retrain"]["recipe"] == "finetune" and "snapshot" in rep["command"]
        # the weights the search left are kept, and the retrain changed them
        pre = load_weights(create_model("mobilenetv2", channels=folder / "channels.json"), folder / PRE_WEIGHTS)
        post = load_weights(create_model("mobilenetv2", channels=folder / "channels.json"), got.weights)
        assert any(not torch.equal(a, b) for a, b in zip(pre.state_dict().values(), post.state_dict().values()))
        # and the folder publishes as it is (latency and accuracy injected, as the zoo tests do)
        plat = Platform.parse("ort-cpu-fp32-t1", hardware="test-hw", runtime_version="1")
        lat = LatencyResult(Latency(0.5), rep["measured"]["speedup"], rep["measured"]["low"],
                            rep["measured"]["high"], plat, when="2026-01-01T00:00:00Z")
        entry = publish(folder, tmp_path / "zoo" / "index.json", measure_latency=lambda *a: lat,
                        measure_accuracy=lambda m: AccuracyResult(50.0, "synthetic", "h"), catalogue=False)
        assert entry.name == f"mobilenetv2.cifar10.ort-cpu-fp32-t1.{tag}"
        assert entry.metrics.val_top1 == pytest.approx(rep["trimmed"]["val_top1"])


def test_the_final_decision_lists_every_comparison_and_uses_the_worst(tmp_path, tiny_data, base, monkeypatch):
    torch.set_num_threads(1)
    device = _Device(factors=(1.0, 0.9, 1.05))           # the same network reads differently each time
    res = _run(base, tmp_path / "out", tiny_data, monkeypatch, device, snapshots=(), final_repeats=3,
               retrain=False)
    m = res.report["measured"]
    comps = m["comparisons"]
    assert len(comps) == 3 and res.report["final_decision"]["repeats"] == 3
    lows = [c["low"] for c in comps]
    assert len(set(lows)) > 1 and m["low"] == min(lows)
    assert m["reached"] == (min(lows) >= 1.25)
    assert res.measured_speedup[1] == min(lows)
    md = (tmp_path / "out" / "report.md").read_text()
    assert md.count("- comparison ") == 3 and "worst lower bound" in md
    with pytest.raises(ConfigError, match="final_repeats"):
        _run(base, tmp_path / "out2", tiny_data, monkeypatch, device, final_repeats=0)


def test_no_retrain_snapshots_leaves_them_as_saved(tmp_path, tiny_data, base, monkeypatch):
    torch.set_num_threads(1)
    seen = _count_trains(monkeypatch)
    res = _run(base, tmp_path / "out", tiny_data, monkeypatch, _Device(), retrain_snapshots=False)
    assert seen == ["out"] and res.report["snapshots"]
    assert not any((Path(d["path"]) / "report.json").exists() for d in res.report["snapshots"])
