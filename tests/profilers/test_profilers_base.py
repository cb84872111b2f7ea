"""Profilers: overhead subtraction, re-measurement, busy policy, contexts, synthetic cost model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from compactnet.errors import ConfigError, MeasurementError
from compactnet.spec import Latency, LayerSpec
from compactnet.profilers.base import (Protocol, RunnerProfiler, SyntheticProfiler, Profiler, get_profiler,
                                       judge_load, noise_floor, synthetic_cost_ms, synthetic_platform)
from compactnet.profilers.layers import layer_onnx, overhead_onnx

FAST = Protocol(rounds=3, runs=4, warmup=1, busy="ignore")
DW64 = LayerSpec("dw", "dwconv", 64, 64, 8, 8, kernel=3, padding=1, groups=64, bn=True, act="relu6")
DW63 = LayerSpec("dw", "dwconv", 63, 63, 8, 8, kernel=3, padding=1, groups=63, bn=True, act="relu6")
BLOCK = LayerSpec("b", "block", 24, 24, 8, 8, kernel=3, padding=1, expansion=144, residual=True, bn=True,
                  act="relu6")


def test_runner_profiler_subtracts_the_overhead_model():
    from compactnet.runtimes import get_runner

    runner = get_runner("synthetic-cpu-fp32-t1", sigma=0.0)
    prof = RunnerProfiler(runner, FAST)
    ms = prof.measure([DW64, BLOCK])
    overhead = runner.expected_s(overhead_onnx())
    for layer, m in zip([DW64, BLOCK], ms):
        want = (runner.expected_s(layer_onnx(layer)) - overhead) * 1e3
        assert m.latency.value_ms == pytest.approx(want, abs=2e-6)  # integer-ns clock
        assert m.context == "rotation"
        assert len(m.latency.rounds) == 3 and m.latency.runs == 12
        assert m.platform.runtime == "synthetic" and m.platform.hardware
        assert m.overhead_ms == pytest.approx(overhead * 1e3, abs=2e-6)  # measured, recorded, not lost
    iso = prof.measure([DW64], context="isolated")[0]
    assert iso.context == "isolated"
    raw = RunnerProfiler(runner, FAST.replace(subtract_overhead=False)).measure([DW64])[0]
    assert raw.latency.value_ms == pytest.approx(runner.expected_s(layer_onnx(DW64)) * 1e3, abs=2e-6)
    assert math.isnan(raw.overhead_ms)  # nothing was subtracted, so nothing is to be added back


def test_a_layer_cheaper_than_the_overhead_is_floored_not_zero():
    from compactnet.profilers.base import MIN_LAYER_MS, latency_from_times
    times = np.full((3, 4), 5e-6)
    lat = latency_from_times(times, overhead=latency_from_times(np.full((3, 4), 8e-6)))
    assert lat.value_ms == pytest.approx(MIN_LAYER_MS) and lat.value_ms > 0
    assert latency_from_times(times, latency_from_times(np.full((3, 4), 1e-6))).value_ms == pytest.approx(4e-3)


def test_layer_figures_follow_the_estimator_and_subtract_the_overhead_by_it():
    from compactnet.profilers.base import Protocol, latency_from_times, round_spread
    rng = np.random.default_rng(0)
    t = 20e-6 * np.exp(np.abs(rng.normal(0, 0.3, (8, 10))))  # one-sided noise
    oh = latency_from_times(np.full((8, 10), 5e-6), estimator="min")
    lat = latency_from_times(t, oh, "min")
    assert lat.estimator == "min" and lat.value_ms == pytest.approx(t.min() * 1e3 - 5e-3)
    med = latency_from_times(t, latency_from_times(np.full((8, 10), 5e-6), estimator="median"), "median")
    assert med.estimator == "median" and med.value_ms > lat.value_ms
    # under min, "unsettled" is the even/odd rounds' minima disagreeing, not slow rounds
    slow = t.copy()
    slow[3] *= 3.0  # one slow stretch: the minimum ignores it
    assert round_spread(latency_from_times(slow, estimator="min")) < 0.15 < round_spread(
        latency_from_times(slow, estimator="median"))
    # a tiny layer is judged on the call it was timed in (figure + the overhead subtracted from it)
    tiny = Latency(0.002, rounds=(0.002, 0.0026, 0.0026, 0.002), estimator="min")  # both halves reach 0.002
    assert round_spread(tiny) == pytest.approx(0.0) and round_spread(
        Latency(0.002, rounds=(0.002, 0.0026, 0.0026, 0.0026), estimator="min")) == pytest.approx(0.3)
    assert round_spread(Latency(0.002, rounds=(0.002, 0.0026, 0.0026, 0.0026), estimator="min"),
                        overhead_ms=0.004) == pytest.approx(0.1)
    assert Protocol().estimator == "min" and Protocol(estimator="median").estimator == "median"
    with pytest.raises(Exception, match="estimator"):
        Protocol(estimator="mean")


def test_protocol_rejects_values_of_the_wrong_type():
    for bad in ({"rounds": "x"}, {"runs": 2.5}, {"max_load": "high"}, {"subtract_overhead": "yes"},
                {"warmup": -1}, {"rounds": True}):
        with pytest.raises(ConfigError, match=next(iter(bad)).split("_")[0]):
            Protocol.from_dict(bad)
    with pytest.raises(ConfigError, match="protocol"):
        Protocol.from_dict(["rounds", 7])
    p = Protocol.from_dict({"rounds": 7.0, "runs": 3})
    assert p.rounds == 7 and isinstance(p.rounds, int) and p.calls_per_model == p.warmup + 21


class _Flaky(Profiler):
    """First timing spreads 50% across rounds, later ones agree."""

    def __init__(self):
        super().__init__(synthetic_platform(), Protocol(max_spread=0.1, retries=2, anchors=False))
        self.calls = []

    def time_layers(self, layers, protocol):
        self.calls.append(len(layers))
        rounds = (1.0, 1.5, 1.0) if len(self.calls) == 1 else (1.0, 1.02, 1.01)
        return [Latency(float(np.median(rounds)), min(rounds), max(rounds), 3, rounds) for _ in layers], 0.2


def test_rounds_that_disagree_are_measured_again():
    prof = _Flaky()
    m = prof.measure([DW64, BLOCK])
    assert prof.calls == [2, 2]
    assert max(m[0].latency.rounds) == pytest.approx(1.02)
    assert m[0].load == pytest.approx(0.2)


def test_every_batch_times_the_anchor_layers_and_records_their_sum():
    from compactnet.profilers.anchors import anchor_layers

    prof = SyntheticProfiler(seed=3)
    ms = prof.measure([DW64, DW63], protocol=FAST)
    anchors = prof.measure(list(anchor_layers()), protocol=FAST.replace(anchors=False))
    assert all(math.isfinite(m.anchor_ms) for m in ms) and ms[0].anchor_ms == ms[1].anchor_ms
    assert ms[0].anchor_ms == pytest.approx(sum(m.latency.value_ms for m in anchors), rel=0.2)
    assert [m.layer for m in ms] == [DW64, DW63]  # the anchors are timed, not returned
    # an anchor that is also asked for is timed once and returned
    both = prof.measure([anchor_layers()[0], DW64], protocol=FAST)
    assert both[0].layer == anchor_layers()[0] and math.isfinite(both[0].anchor_ms)
    assert all(math.isnan(m.anchor_ms) for m in prof.measure([DW64], protocol=FAST.replace(anchors=False)))
    with pytest.raises(ConfigError, match="anchors"):
        Protocol.from_dict({"anchors": "yes"})


def test_anchor_normalization_puts_batches_on_one_scale(caplog):
    import dataclasses

    from compactnet.profilers.anchors import anchor_normalized

    m = SyntheticProfiler(seed=3).measure([DW64], protocol=FAST)[0]
    slow = dataclasses.replace(m, latency=dataclasses.replace(m.latency, value_ms=2 * m.latency.value_ms,
                                                               low_ms=2 * m.latency.low_ms,
                                                               high_ms=2 * m.latency.high_ms),
                               anchor_ms=2 * m.anchor_ms)  # the same layer while the machine ran at half speed
    fast = dataclasses.replace(m, anchor_ms=m.anchor_ms)
    mid = dataclasses.replace(m, anchor_ms=1.5 * m.anchor_ms, latency=dataclasses.replace(
        m.latency, value_ms=1.5 * m.latency.value_ms))
    out = anchor_normalized([slow, fast, mid])
    assert [o.latency.value_ms for o in out] == pytest.approx([1.5 * m.latency.value_ms] * 3)
    assert out[0].latency.low_ms == pytest.approx(0.75 * slow.latency.low_ms)
    assert slow.latency.value_ms == 2 * m.latency.value_ms  # inputs unchanged
    legacy = dataclasses.replace(m, anchor_ms=float("nan"))
    with caplog.at_level("WARNING"):
        mixed = anchor_normalized([legacy, slow])
    assert mixed[0] is legacy and "without anchor layers" in caplog.text
    assert anchor_normalized([legacy]) == [legacy]


def test_busy_machine_is_refused_or_flagged(caplog):
    with pytest.raises(MeasurementError, match="busy"):
        judge_load(1.3, Protocol(busy="refuse"))
    assert judge_load(1.3, Protocol(busy="flag")) == 1.3
    assert "busy" in caplog.text
    assert judge_load(0.1, Protocol(busy="refuse")) == pytest.approx(0.1)
    assert math.isnan(judge_load(float("nan"), Protocol()))


def test_a_busy_batch_is_timed_again_and_nothing_busy_is_kept(caplog):
    from compactnet.errors import BusyError
    from compactnet.measure import BUSY_RETRIES

    prof = SyntheticProfiler(seed=1)
    calls = []
    real = prof.time_layers

    def flaky(layers, protocol):
        calls.append(len(layers))
        if len(calls) <= 2:
            raise BusyError("machine busy: 0.9 CPU cores used by other processes")
        return real(layers, protocol)

    prof.time_layers = flaky
    [m] = prof.measure([DW64], protocol=FAST)
    assert len(calls) == 3 and m.latency.value_ms > 0 and "timing again" in caplog.text
    calls.clear()
    prof.time_layers = lambda layers, protocol: calls.append(1) or (_ for _ in ()).throw(BusyError("machine busy"))
    with pytest.raises(BusyError, match=f"after {BUSY_RETRIES + 1} attempts"):
        prof.measure([DW64], protocol=FAST)
    assert len(calls) == BUSY_RETRIES + 1


def test_protocol_validation_names_the_parameter():
    with pytest.raises(ConfigError, match="context"):
        Protocol(context="hot")
    with pytest.raises(ConfigError, match="busy"):
        Protocol(busy="maybe")
    with pytest.raises(ConfigError, match="protocol"):
        Protocol.from_dict({"roundz": 3})
    assert Protocol.from_dict(FAST.to_dict()) == FAST


def test_synthetic_spread_is_the_protocols_interquartile_range():
    lat = SyntheticProfiler(noise=0.2, seed=1).measure([DW64], protocol=Protocol(rounds=9, runs=2, retries=0))[0]
    r = np.asarray(lat.latency.rounds)
    assert lat.latency.low_ms == pytest.approx(np.percentile(r, 25))
    assert lat.latency.high_ms == pytest.approx(np.percentile(r, 75))
    assert r.min() < lat.latency.low_ms and lat.latency.high_ms < r.max()


def test_synthetic_punishes_unaligned_channels_and_is_seeded():
    assert synthetic_cost_ms(DW63) > 2 * synthetic_cost_ms(DW64)
    assert synthetic_cost_ms(DW64, "isolated") < synthetic_cost_ms(DW64, "rotation")
    a = SyntheticProfiler(noise=0.05, seed=3).measure([DW64, DW63])
    b = SyntheticProfiler(noise=0.05, seed=3).measure([DW64, DW63])
    assert [m.latency for m in a] == [m.latency for m in b]
    exact = SyntheticProfiler().measure([DW64])[0]
    assert exact.latency.value_ms == pytest.approx(synthetic_cost_ms(DW64))


def test_noise_floor_reports_spread_of_repeats():
    flat = noise_floor(SyntheticProfiler(), DW64, repeats=20)
    assert flat["repeats"] == 20 and flat["rel_spread"] == 0.0
    noisy = noise_floor(SyntheticProfiler(noise=0.05, seed=1), DW64, repeats=20)
    assert 0.0 < noisy["cv"] < noisy["rel_spread"] < 1.0
    assert len(noisy["medians_ms"]) == 20
    with pytest.raises(ConfigError):
        noise_floor(SyntheticProfiler(), DW64, repeats=1)


def test_get_profiler_dispatches_on_runtime():
    assert isinstance(get_profiler("synthetic-cpu-fp32-t1"), SyntheticProfiler)
    with pytest.raises(ConfigError):
        get_profiler("tpu-cpu-fp32-t1")


@pytest.mark.runtime
def test_onnxruntime_layers_measure_positive_latencies():
    prof = get_profiler("ort-cpu-fp32-t1", FAST)
    ms = prof.measure([DW64, BLOCK])
    assert all(m.latency.value_ms > 0 for m in ms)
    assert ms[0].platform.key == "ort-cpu-fp32-t1" and ms[0].platform.runtime_version
    nets = prof.measure_networks([[BLOCK], [BLOCK, BLOCK]])
    assert all(l.value_ms > 0 for l in nets)
