"""The measurement protocol: interleaving, statistics, busy-machine policy, targets."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import onnx
import pytest
import torch

import compactnet.measure as M
from compactnet.errors import ConfigError, MeasurementError
from compactnet.measure import (Comparison, LoadMonitor, bootstrap_ratio, compare, machine_load, measure,
                                reached, summarise, time_interleaved)
from compactnet.runtimes import SyntheticRunner
from compactnet.spec import LayerSpec, Latency, Platform

torch.set_num_threads(1)

SMALL = LayerSpec("small", "conv", 32, 32, 16, 16, kernel=3, padding=1)
BIG = LayerSpec("big", "conv", 64, 64, 16, 16, kernel=3, padding=1)


class FakeClock:
    """Integer-ns clock advanced only by the fake models; records the call sequence."""

    def __init__(self):
        self.now = 0
        self.calls: list[int] = []

    def __call__(self) -> int:
        return self.now

    def model(self, i: int, ns: int):
        def fn():
            self.calls.append(i)
            self.now += ns
        return fn


def test_time_interleaved_block_mode_shape_values_and_order():
    clock = FakeClock()
    fns = [clock.model(i, ns) for i, ns in enumerate((1000, 2000, 3000))]
    t = time_interleaved(fns, rounds=4, runs=5, warmup=2, seed=7, timer=clock, block_warmup=1)
    assert t.shape == (3, 4, 5)
    for i, ns in enumerate((1000, 2000, 3000)):
        assert np.all(t[i] == pytest.approx(ns * 1e-9))
    calls = clock.calls
    assert calls[:6] == [0, 0, 1, 1, 2, 2]  # warm-up, in given order
    body = calls[6:]
    assert len(body) == 4 * 3 * (1 + 5)
    blocks = [body[k:k + 6] for k in range(0, len(body), 6)]
    assert all(len(set(b)) == 1 for b in blocks)  # each model's runs back-to-back
    orders = [tuple(b[0] for b in blocks[r * 3:(r + 1) * 3]) for r in range(4)]
    assert all(sorted(o) == [0, 1, 2] for o in orders)
    assert len(set(orders)) > 1  # shuffled per round
    clock2 = FakeClock()
    time_interleaved([clock2.model(i, 1) for i in range(3)], rounds=4, runs=5, warmup=2, seed=7, timer=clock2)
    assert clock2.calls == calls  # seeded


def test_time_interleaved_run_mode_alternates():
    clock = FakeClock()
    time_interleaved([clock.model(0, 5), clock.model(1, 7)], rounds=2, runs=3, warmup=0, seed=0,
                     timer=clock, interleave="run")
    pairs = [clock.calls[k:k + 2] for k in range(0, len(clock.calls), 2)]
    assert len(pairs) == 6 and all(sorted(p) == [0, 1] for p in pairs)


@pytest.mark.parametrize("kw", [dict(rounds=0), dict(runs=0), dict(warmup=-1), dict(interleave="zigzag")])
def test_time_interleaved_rejects_bad_arguments(kw):
    with pytest.raises(ConfigError):
        time_interleaved([lambda: None], **kw)


def _rounds_with_medians(medians_ms):
    rng = np.random.default_rng(0)
    rounds = []
    for m in medians_ms:  # each round: 9 runs with the given median and wild outliers on both sides
        runs = np.concatenate([[m] * 3, m - rng.uniform(0.1, 0.5, 3), m + rng.uniform(1, 50, 3)])
        rounds.append(rng.permutation(runs))
    return np.array(rounds)


def test_summarise_median_estimator_is_median_of_round_medians():
    medians_ms = np.array([3.0, 1.0, 7.0, 5.0, 2.0, 6.0, 4.0])
    t = _rounds_with_medians(medians_ms)
    lat = summarise(t * 1e-3, "median")
    assert isinstance(lat, Latency) and lat.estimator == "median"
    assert lat.value_ms == pytest.approx(4.0)
    assert lat.low_ms == pytest.approx(2.5) and lat.high_ms == pytest.approx(5.5)  # 25th/75th pct
    assert lat.runs == 63 and lat.rounds == pytest.approx(tuple(medians_ms))
    assert lat.p50_ms == pytest.approx(np.median(t)) and lat.p90_ms == pytest.approx(np.percentile(t, 90))


def test_summarise_min_estimator_is_the_minimum_over_calls():
    t = _rounds_with_medians(np.array([3.0, 1.0, 7.0, 5.0, 2.0, 6.0, 4.0]))
    lat = summarise(t * 1e-3)  # the rule's default
    assert lat.estimator == "min"
    assert lat.value_ms == pytest.approx(t.min())
    assert lat.rounds == pytest.approx(tuple(t.min(axis=1)))
    assert lat.p50_ms == pytest.approx(np.median(t)) and lat.p90_ms > lat.p50_ms > lat.value_ms


def test_summarise_takes_the_median_over_instances():
    t = np.stack([np.full((7, 5), v) for v in (1.0, 1.3, 1.1)]) * 1e-3  # three sessions of one model
    lat = summarise(t, "min")
    assert lat.value_ms == pytest.approx(1.1) and lat.runs == 105 and len(lat.rounds) == 7
    r, lo, hi = bootstrap_ratio(t, t / 2)
    assert r == pytest.approx(2.0) and lo < 2.0 < hi  # the sessions' spread is part of the interval
    with pytest.raises(ConfigError, match="estimator"):
        summarise(t, "mean")


def test_min_recovers_the_cost_under_slow_stretches_where_the_median_does_not():
    """One-sided noise in stretches (the CPU slowing down for a while, as measured on our machines)."""
    model = LayerSpec("m", "conv", 64, 64, 16, 16, kernel=3, padding=1)
    for seed in range(3):
        runner = SyntheticRunner(seed=seed, sigma=0.02, stretch_p=0.01, stretch_calls=150, stretch=1.6)
        true_ms = runner.expected_s(model) * 1e3
        c_min = compare([model], runner, rounds=10, runs=20, warmup=2, seed=seed, estimator="min")
        runner = SyntheticRunner(seed=seed, sigma=0.02, stretch_p=0.01, stretch_calls=150, stretch=1.6)
        c_med = compare([model], runner, rounds=10, runs=20, warmup=2, seed=seed, estimator="median")
        assert c_min.latencies[0].value_ms == pytest.approx(true_ms, rel=0.01)
        assert abs(c_med.latencies[0].value_ms / true_ms - 1) > 0.01
        assert c_min.estimator == "min" and c_med.estimator == "median"


def test_min_interval_coverage_on_repeated_synthetic_comparisons():
    """Across repeated comparisons of one pair, the stated 95% interval contains the pooled ratio
    about 95% of the time (the pooled ratio: the estimator over every comparison's sessions)."""
    from compactnet.measure import round_figures

    runs = []
    for seed in range(40):
        runner = SyntheticRunner(seed=1000 + seed, sigma=0.05, stretch_p=0.005, stretch_calls=100, stretch=1.4)
        runs.append(compare([BIG, SMALL], runner, rounds=10, runs=10, warmup=2, seed=seed, n_boot=400,
                            instances=3, keep_times=True))
    per_inst = lambda t: [round_figures(x, "min").min() for x in t]  # noqa: E731
    pooled = (np.median(sum((per_inst(c.times[0]) for c in runs), []))
              / np.median(sum((per_inst(c.times[1]) for c in runs), [])))
    hits = sum(c.speedups[1][1] <= pooled <= c.speedups[1][2] for c in runs)
    assert 34 <= hits <= 40  # 85-100% of 40


def test_bootstrap_ratio_basic_properties():
    a = np.array([2.0, 2.1, 1.9, 2.05, 1.95, 2.0, 2.02])
    assert bootstrap_ratio(a, a) == (1.0, 1.0, 1.0)  # paired, identical
    r, lo, hi = bootstrap_ratio(a, a / 2)
    assert r == pytest.approx(2.0) and lo == pytest.approx(2.0) and hi == pytest.approx(2.0)
    noisy = a / 2 * np.array([1.05, 0.97, 1.0, 1.02, 0.95, 1.01, 0.99])
    r, lo, hi = bootstrap_ratio(a, noisy, seed=1)
    assert lo <= r <= hi and lo < hi
    assert bootstrap_ratio(a, noisy, seed=1) == (r, lo, hi)  # seeded
    with pytest.raises(ConfigError):
        bootstrap_ratio(a, noisy, level=1.5)


def test_bootstrap_interval_contains_true_ratio_on_synthetic_timings():
    runner = SyntheticRunner(seed=3, sigma=0.05, burst_p=0.05, two_sided=True)
    true = runner.expected_s(BIG) / runner.expected_s(SMALL)
    cmp = compare([BIG, SMALL], runner, names=["big", "small"], rounds=7, runs=40, warmup=5, seed=0,
                  estimator="median")
    r, lo, hi = cmp.speedup("small")
    assert lo <= true <= hi
    assert abs(r / true - 1) < 0.03
    assert cmp.latency("big").value_ms == pytest.approx(runner.expected_s(BIG) * 1e3, rel=0.03)
    assert cmp.speedups[0] == (1.0, 1.0, 1.0)
    assert reached(cmp, "small", lo) and not reached(cmp, "small", hi * 1.01)
    # coverage over several independent synthetic experiments
    hits = 0
    for seed in range(20):
        rr = SyntheticRunner(seed=100 + seed, sigma=0.05, two_sided=True)
        c = compare([BIG, SMALL], rr, rounds=7, runs=20, warmup=2, seed=seed, n_boot=500, estimator="median")
        _, lo, hi = c.speedups[1]
        hits += lo <= true <= hi
    assert hits >= 16


def test_comparison_round_trip_and_table():
    runner = SyntheticRunner(seed=0)
    cmp = compare([BIG, SMALL], runner, names=["base", "trimmed"], rounds=7, runs=10, warmup=1)
    d = cmp.to_dict()
    again = Comparison.from_dict(json.loads(json.dumps(d)))
    assert again == cmp
    assert d["protocol_ok"] is True and d["platform"]["key"] == "synthetic-cpu-fp32-t1"
    assert d["estimator"] == "min" and d["instances"] == 1 and d["latencies"][0]["estimator"] == "min"
    legacy = {k: v for k, v in d.items() if k not in ("estimator", "window_s", "instances")}
    legacy["latencies"] = [{("median_ms" if k == "value_ms" else k): v for k, v in l.items()
                            if k not in ("estimator", "p50_ms", "p90_ms")} for l in d["latencies"]]
    old = Comparison.from_dict(legacy)  # a record written before the minimum rule stays labelled
    assert old.estimator == "median" and all(l.estimator == "median" for l in old.latencies)
    text = cmp.table()
    assert "base" in text and "trimmed" in text and "synthetic-cpu-fp32-t1" in text and "[95% CI]" in text
    assert "estimator min" in text and "typical p50/p90" in text
    assert measure(SMALL, runner, rounds=7, runs=10).value_ms == pytest.approx(
        runner.expected_s(SMALL) * 1e3, rel=0.05)


def test_busy_machine_is_refused(monkeypatch):
    monkeypatch.setattr(M, "machine_load", lambda own_pid=None, window=0.5: 1.7)
    runner = SyntheticRunner(apply_load_policy=True)
    with pytest.raises(MeasurementError, match=r"busy.*1\.70.*limit 0\.5.*after 4 attempts"):
        compare([SMALL], runner, rounds=7, runs=5)


def test_a_burst_of_load_is_waited_out(monkeypatch, caplog):
    loads = iter([1.7, 1.2, 0.1])  # busy before two attempts, then quiet: the third attempt is kept
    monkeypatch.setattr(M, "machine_load", lambda own_pid=None, window=0.5: next(loads))
    monkeypatch.setattr(LoadMonitor, "stop", lambda self: setattr(self, "load", 0.0) or 0.0)
    with caplog.at_level(logging.WARNING, logger="compactnet.measure"):
        cmp = compare([BIG, SMALL], SyntheticRunner(apply_load_policy=True), rounds=7, runs=5)
    assert not cmp.busy and cmp.load == pytest.approx(0.1) and cmp.protocol_ok
    assert caplog.text.count("timing again") == 2


def test_busy_machine_is_flagged(monkeypatch, caplog):
    monkeypatch.setattr(M, "machine_load", lambda own_pid=None, window=0.5: 1.7)
    runner = SyntheticRunner(apply_load_policy=True)
    with caplog.at_level(logging.WARNING, logger="compactnet.measure"):
        cmp = compare([BIG, SMALL], runner, rounds=7, runs=5, busy="flag")
    assert cmp.busy and cmp.load >= 1.7 and not cmp.protocol_ok
    assert "flagged" in caplog.text
    assert not reached(cmp, 1, 0.01)  # a flagged comparison reaches nothing
    assert "BUSY" in cmp.table()


def test_quiet_machine_passes(monkeypatch):
    monkeypatch.setattr(M, "machine_load", lambda own_pid=None, window=0.5: 0.1)
    monkeypatch.setattr(LoadMonitor, "stop", lambda self: setattr(self, "load", 0.2) or 0.2)
    cmp = compare([SMALL], SyntheticRunner(apply_load_policy=True), rounds=7, runs=5)
    assert not cmp.busy and cmp.load == pytest.approx(0.2)


def test_synthetic_runner_ignores_load_policy(monkeypatch):
    monkeypatch.setattr(M, "machine_load", lambda own_pid=None, window=0.5: 5.0)
    assert not compare([SMALL], SyntheticRunner(), rounds=7, runs=5).busy


def test_load_monitor_subtracts_own_cpu_time(monkeypatch):
    stats = iter([(1000, 4000), (1300, 4400)])  # +300 busy jiffies over +400 total (2 CPUs: 2 s)
    own = iter([50, 150])  # we used 100 jiffies = 1 s
    monkeypatch.setattr(M, "_proc_stat_busy", lambda: next(stats))
    monkeypatch.setattr(M, "_proc_cpu_ticks", lambda pid: next(own))
    monkeypatch.setattr(M, "_CLK_TCK", 100)
    monkeypatch.setattr(M.os, "cpu_count", lambda: 2)
    with LoadMonitor() as mon:
        pass
    assert mon.load == pytest.approx(1.0)  # (3 s busy - 1 s ours) / 2 s window


def test_machine_load_is_a_number():
    load = machine_load(window=0.05)
    assert math.isnan(load) or load >= 0


def test_reached_uses_lower_bound():
    plat = Platform("synthetic", hardware="synthetic")
    lat = Latency(1.0, 0.9, 1.1, 10, (1.0,) * 7)
    cmp = Comparison(plat, ("a", "b"), (lat, lat), ((1, 1, 1), (2.0, 1.8, 2.2)), 0.0, False, "now")
    assert reached(cmp, 1, 1.8) and reached(cmp, "b", 1.5)
    assert not reached(cmp, 1, 1.9)  # the figure reaches it, the interval does not
    with pytest.raises(ConfigError):
        reached(cmp, 1, 0)
    with pytest.raises(ConfigError):
        reached(cmp, "c", 1.5)


def test_reached_requires_a_protocol_measurement():
    plat = Platform("synthetic", hardware="synthetic")
    lat = Latency(1.0, 0.9, 1.1, 10, (1.0,) * 3)
    speedups = ((1, 1, 1), (2.0, 1.8, 2.2))
    few = Comparison(plat, ("a", "b"), (lat, lat), speedups, 0.0, False, "now", rounds=3)
    assert not few.protocol_ok and not reached(few, 1, 1.5)  # 3 rounds is not the protocol
    enough = Comparison(plat, ("a", "b"), (lat, lat), speedups, 0.0, False, "now", rounds=7)
    assert enough.protocol_ok and reached(enough, 1, 1.5)
    busy = Comparison(plat, ("a", "b"), (lat, lat), speedups, 0.9, True, "now", rounds=7)
    assert not busy.protocol_ok and not reached(busy, 1, 1.5)


def test_compare_records_models_not_exported_by_the_protocol(caplog):
    from compactnet.export import export_onnx

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    good = export_onnx(conv, input_shape=(1, 3, 8, 8), check=False).onnx_bytes
    old_opset = export_onnx(conv, input_shape=(1, 3, 8, 8), opset=13, check=False).onnx_bytes
    assert M.onnx_versions(good) == (17, 10) and M.onnx_versions(old_opset) == (13, 10)
    runner = SyntheticRunner(seed=0)
    with caplog.at_level(logging.WARNING, logger="compactnet.measure"):
        ok = compare([good, good], runner, names=["a", "b"], rounds=7, runs=3, warmup=0)
    assert ok.export_ok and ok.export_notes == () and "opset" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="compactnet.measure"):
        bad = compare([good, old_opset], runner, names=["a", "b"], rounds=7, runs=3, warmup=0)
    assert not bad.export_ok and bad.export_notes == ("b: opset 13, IR 10",)
    assert "b: opset 13" in caplog.text and "NOT EXPORTED BY THE PROTOCOL" in bad.table()
    again = Comparison.from_dict(json.loads(json.dumps(bad.to_dict())))
    assert again == bad and again.to_dict()["export_ok"] is False
    newer_ir = onnx.load_from_string(good)
    newer_ir.ir_version = 11
    assert M._export_note(newer_ir, "c") == "c: opset 17, IR 11"
    # specs timed by the synthetic runtime are not ONNX: nothing to check
    assert compare([SMALL], runner, rounds=7, runs=2, warmup=0).export_ok


def test_compare_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="busy"):
        compare([SMALL], SyntheticRunner(), busy="sometimes")
    with pytest.raises(ConfigError, match="names"):
        compare([SMALL, BIG], SyntheticRunner(), names=["x"])


@pytest.mark.runtime
def test_compare_on_onnxruntime_tiny_models():
    from compactnet.export import export_onnx

    torch.manual_seed(0)
    models = [export_onnx(torch.nn.Conv2d(3, c, 3, padding=1), input_shape=(1, 3, 16, 16)).onnx_bytes
              for c in (32, 4)]
    cmp = compare(models, "ort-cpu-fp32-t1", names=["wide", "narrow"], rounds=3, runs=5, warmup=2,
                  busy="ignore", check_window=0)
    assert cmp.platform.runtime_version and cmp.platform.hardware
    assert all(l.value_ms > 0 and l.runs == 3 * 15 and len(l.rounds) == 3 for l in cmp.latencies)
    assert cmp.instances == 3 and all(l.p90_ms >= l.p50_ms >= l.value_ms for l in cmp.latencies)
    assert not cmp.protocol_ok  # 3 rounds is not the protocol
    assert cmp.load >= 0


def test_rounds_are_spread_over_the_window(monkeypatch):
    clock = FakeClock()
    now = [100.0]
    pauses: list[float] = []

    def sleep(s: float) -> None:
        pauses.append(s)
        now[0] += s

    monkeypatch.setattr(M.time, "monotonic", lambda: now[0])
    t = time_interleaved([clock.model(0, 1000)], rounds=5, runs=2, warmup=0, timer=clock, window_s=2.0,
                         sleep=sleep)
    assert t.shape == (1, 5, 2) and pauses == pytest.approx([0.4] * 4)  # rounds 2-5 wait for their slot
    assert now[0] == pytest.approx(101.6)
    with pytest.raises(ConfigError, match="window_s"):
        time_interleaved([lambda: None], window_s=-1)


def test_default_estimator_from_the_environment_and_the_cli(monkeypatch):
    monkeypatch.delenv(M.ESTIMATOR_ENV, raising=False)
    assert M.default_estimator() == "min"
    monkeypatch.setenv(M.ESTIMATOR_ENV, "median")
    assert M.default_estimator() == "median"
    M.set_default_estimator("min")
    try:
        assert M.default_estimator() == "min"
    finally:
        M.set_default_estimator(None)
    monkeypatch.setenv(M.ESTIMATOR_ENV, "mean")
    with pytest.raises(ConfigError, match="COMPACTNET_ESTIMATOR"):
        M.default_estimator()
    with pytest.raises(ConfigError, match="estimator"):
        M.set_default_estimator("fastest")


def test_latency_record_round_trip_with_the_new_fields():
    lat = Latency(0.25, 0.26, 0.27, 600, (0.25, 0.26), estimator="min", p50_ms=0.3, p90_ms=0.41)
    assert Latency.from_dict(json.loads(json.dumps(lat.to_dict()))) == lat
    assert "typical under load: median 0.300 ms, p90 0.410 ms" == lat.typical()
    old = Latency.from_dict({"median_ms": 0.5, "low_ms": 0.4, "high_ms": 0.6, "runs": 7, "rounds": [0.5],
                             "source": "measured"})
    assert old.value_ms == 0.5 and old.estimator == "median" and math.isnan(old.p50_ms) and old.typical() == ""
    with pytest.raises(ConfigError, match="estimator"):
        Latency(1.0, estimator="mean")


def test_widen_adds_the_drift_in_quadrature_and_keeps_asymmetry():
    r, lo, hi = M.widen(2.0, 1.9, 2.2, 0.0)
    assert (r, lo, hi) == (2.0, 1.9, 2.2)
    r, lo, hi = M.widen(2.0, 1.9, 2.2, 0.02)
    z = 1.959963984540054
    assert lo == pytest.approx(2.0 * math.exp(-math.hypot(math.log(2.0 / 1.9), z * 0.02)))
    assert hi == pytest.approx(2.0 * math.exp(math.hypot(math.log(2.2 / 2.0), z * 0.02)))
    assert lo < 1.9 and hi > 2.2 and 2.0 - lo < hi - 2.0
    # a comparison records the drift it added; the synthetic runtime has none
    c = compare([BIG, SMALL], SyntheticRunner(seed=0), rounds=7, runs=5, warmup=0)
    assert c.drift_sd == 0.0
    d = compare([BIG, SMALL], SyntheticRunner(seed=0), rounds=7, runs=5, warmup=0, drift_sd=0.05)
    assert d.drift_sd == 0.05 and d.speedups[1][1] < c.speedups[1][1] and d.speedups[1][0] == c.speedups[1][0]
    assert M.default_drift("ort-cpu-fp32-t1", "min") == M.DRIFT_SD[("ort", "min")]
    assert M.default_drift("ort-nnapi-fp16-t1", "min") > 0  # any runtime gets a drift
