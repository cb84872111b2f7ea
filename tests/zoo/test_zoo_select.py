"""Choosing the best entry for a platform and budget, measured or predicted."""

from __future__ import annotations

import pytest

from compactnet.errors import ConfigError
from compactnet.spec import Latency
from compactnet.zoo.index import ZooIndex
from compactnet.zoo.select import best
from zoo_helpers import HW, make_entry

K = "ort-cpu-fp32-t1"


def _index():
    return ZooIndex((
        make_entry(f"resnet20.cifar10.{K}.base", top1=92.0, latency_ms=1.0, speedup=1.0),
        make_entry(f"resnet20.cifar10.{K}.s1p5x", top1=91.0, latency_ms=0.66, speedup=1.52, speedup_low=1.49,
                   weights_bytes=b"a"),
        make_entry(f"resnet20.cifar10.{K}.s2x", top1=89.5, latency_ms=0.5, speedup=2.0, speedup_low=1.95,
                   weights_bytes=b"b"),
        make_entry(f"resnet20.cifar10.{K}.s3x", top1=85.0, latency_ms=0.33, speedup=3.0, speedup_low=2.9,
                   weights_bytes=b"c"),
        make_entry("resnet20.cifar10.openvino-cpu-fp32-t1.s1p5x", top1=95.0, latency_ms=0.2, speedup=1.6,
                   weights_bytes=b"d"),
        make_entry(f"resnet20.cifar10.{K}.s1p5x-other", top1=99.0, latency_ms=0.1, speedup=5, hardware="Other"),
    ))


def test_most_accurate_within_latency_budget():
    sel = best(_index(), K, latency_ms=0.7, hardware=HW)
    assert sel.entry.name == f"resnet20.cifar10.{K}.s1p5x" and not sel.predicted
    assert "measured" in sel.message
    # only entries of this platform and this hardware are considered
    assert {c.entry.platform for c in sel.candidates} == {K}
    assert all(c.entry.hardware == HW for c in sel.candidates)
    assert sel.to_dict()["chosen"]["latency_ms"] == 0.66


def test_speedup_budget_uses_interval_lower_bound():
    # s1p5x measured 1.52x but its interval starts at 1.49: it does not reach 1.5
    sel = best(_index(), K, speedup=1.5, hardware=HW)
    assert sel.entry.name == f"resnet20.cifar10.{K}.s2x"
    assert best(_index(), K, speedup=1.45, hardware=HW).entry.name == f"resnet20.cifar10.{K}.s1p5x"
    both = best(_index(), K, speedup=1.5, latency_ms=0.4, hardware=HW)
    assert both.entry.name == f"resnet20.cifar10.{K}.s3x"


def test_no_budget_gives_most_accurate():
    assert best(_index(), K, hardware=HW).entry.name == f"resnet20.cifar10.{K}.base"


def test_nothing_meets_the_budget():
    sel = best(_index(), K, latency_ms=0.1, hardware=HW)
    assert sel.entry is None and "no entry meets" in sel.message and "s3x" in sel.message


def test_bad_budget_and_key():
    with pytest.raises(ConfigError, match="latency_ms"):
        best(_index(), K, latency_ms=-1, hardware=HW)
    with pytest.raises(ConfigError, match="platform"):
        best(_index(), "ort-cpu", hardware=HW)


def test_unknown_hardware_needs_a_predictor():
    with pytest.raises(ConfigError, match="predictor"):
        best(_index(), K, speedup=1.5, hardware="Some Phone SoC")


def test_predicted_ranking_for_unknown_platform():
    from compactnet.extract import spec_for

    nets = {"base": None, "s1p5x": [12, 24, 48], "s2x": [8, 16, 32], "s3x": [4, 8, 16]}
    entries = []
    for i, (tag, stages) in enumerate(nets.items()):
        ch = {"stages": stages} if stages else None
        entries.append(make_entry(f"resnet20.cifar10.{K}.{tag}", top1=92.0 - 2 * i, weights_bytes=bytes([i]),
                                  channels=ch or {"stages": [16, 32, 64]}, network=spec_for("resnet20", ch)))
    # the same weights published for another platform appear once
    entries.append(make_entry("resnet20.cifar10.openvino-cpu-fp32-t1.s2x", top1=90.0, weights_bytes=bytes([2]),
                              channels={"stages": [8, 16, 32]}, network=spec_for("resnet20", {"stages": [8, 16, 32]})))
    index = ZooIndex(tuple(entries))
    calls = []

    def predictor(spec):  # a stand-in predictor: latency proportional to MACs
        calls.append(spec)
        return Latency(spec.macs / 1e7, source="predicted")

    sel = best(index, "ncnn-cpu-fp32-t1", speedup=3.0, hardware="Some Phone SoC", predictor=predictor)
    assert sel.predicted and "PREDICTED" in sel.message and sel.to_dict()["predicted"]
    base_ms = spec_for("resnet20", None).macs / 1e7
    by_name = {c.entry.name: c for c in sel.candidates}
    assert len(by_name) == 4  # de-duplicated by weights
    for c in sel.candidates:
        assert c.predicted and c.speedup == pytest.approx(base_ms / c.latency_ms)
    # the most accurate entry whose predicted speedup reaches 3x
    ok = [c for c in sel.candidates if c.speedup >= 3.0]
    assert sel.entry.name == max(ok, key=lambda c: c.top1).entry.name
    assert sel.entry.tag != "base"
    # the platform has no entries at all: same route
    assert best(index, "ncnn-cpu-fp32-t1", predictor=predictor).predicted
    # an object with .predict works too
    class P:
        def predict(self, spec):
            return predictor(spec)

    assert best(index, "ncnn-cpu-fp32-t1", speedup=3.0, predictor=P()).entry == sel.entry


def test_a_missing_lower_bound_never_meets_a_speedup_budget():
    from dataclasses import replace

    def no_low(e):
        return replace(e, metrics=replace(e.metrics, speedup_low=None, speedup_high=None))

    index = ZooIndex((
        no_low(make_entry(f"resnet20.cifar10.{K}.base", top1=92.0, latency_ms=1.0, speedup=1.0)),
        no_low(make_entry(f"resnet20.cifar10.{K}.s2x", top1=91.0, latency_ms=0.5, speedup=2.0, weights_bytes=b"b")),
        make_entry(f"resnet20.cifar10.{K}.s1p5x", top1=89.0, latency_ms=0.6, speedup=1.7, speedup_low=1.6,
                   weights_bytes=b"a"),
    ))
    # s2x reports 2.0x with no interval: its point estimate does not count as a lower bound
    assert best(index, K, speedup=1.5, hardware=HW).entry.name == f"resnet20.cifar10.{K}.s1p5x"
    # the untrimmed base counts as exactly 1.0
    sel = best(index, K, speedup=1.0, hardware=HW)
    assert sel.entry.name == f"resnet20.cifar10.{K}.base"
    assert {c.entry.name: c.meets_budget for c in sel.candidates}[f"resnet20.cifar10.{K}.s2x"] is False
