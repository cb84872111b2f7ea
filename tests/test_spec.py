"""Spec records: JSON round trips, validation, costs, with_channels, platform keys."""

from __future__ import annotations

import json
import math

import pytest

from compactnet.errors import ConfigError
from compactnet.spec import Latency, LayerSpec, Measurement, NetworkSpec, Platform


def _net() -> NetworkSpec:
    layers = (
        LayerSpec("c1", "conv", 3, 16, 32, 32, kernel=3, stride=2, padding=1, bn=True, act="relu6",
                  in_group="input", out_group="c1"),
        LayerSpec("dw", "dwconv", 16, 16, 16, 16, kernel=3, padding=1, groups=16, bn=True, act="relu",
                  in_group="c1", out_group="c1", inputs=("c1",)),
        LayerSpec("pw", "conv", 16, 16, 16, 16, bn=True, in_group="c1", out_group="c1", inputs=("dw",)),
        LayerSpec("add", "add", 16, 16, 16, 16, in_group="c1", out_group="c1", inputs=("pw", "dw")),
        LayerSpec("gap", "gap", 16, 16, 16, 16, in_group="c1", out_group="c1", inputs=("add",)),
        LayerSpec("fc", "linear", 16, 10, 1, 1, bias=True, in_group="c1", out_group="fc", inputs=("gap",)),
    )
    return NetworkSpec("toy", (1, 3, 32, 32), layers, {"input": 3, "c1": 16, "fc": 10}, ("input", "fc"))


def test_layer_and_network_json_round_trip():
    net = _net()
    text = net.to_json()
    assert json.loads(text)["layers"][0]["kernel"] == [3, 3]
    back = NetworkSpec.from_json(text)
    assert back == net and back.layers[1].inputs == ("c1",) and isinstance(back.layers[0].kernel, tuple)
    assert LayerSpec.from_dict(net.layers[0].to_dict()) == net.layers[0]
    with pytest.raises(ConfigError, match="no field"):
        LayerSpec.from_dict({**net.layers[0].to_dict(), "colour": 1})


def test_layer_validation_names_the_field():
    with pytest.raises(ConfigError, match="op must be one of"):
        LayerSpec("x", "lstm", 1, 1, 1, 1)
    with pytest.raises(ConfigError, match="act must be one of"):
        LayerSpec("x", "conv", 1, 1, 1, 1, act="gelu")
    with pytest.raises(ConfigError, match=r"x\.cin must be a positive integer"):
        LayerSpec("x", "conv", 0, 1, 1, 1)
    with pytest.raises(ConfigError, match=r"x\.groups must be equal to cin and cout"):
        LayerSpec("x", "dwconv", 8, 8, 4, 4, groups=4)
    with pytest.raises(ConfigError, match="appears twice"):
        NetworkSpec("n", (1, 3, 8, 8), (LayerSpec("a", "gap", 3, 3, 8, 8), LayerSpec("a", "gap", 3, 3, 8, 8)))


def test_costs_of_known_layers():
    conv = LayerSpec("c", "conv", 3, 16, 32, 32, kernel=3, stride=2, padding=1, bn=True)
    assert conv.out_hw == (16, 16)
    assert conv.macs == 16 * 16 * 16 * 3 * 9 and conv.flops == 2 * conv.macs
    assert conv.params == 16 * 3 * 9 + 16
    assert conv.bytes_moved("fp32") == 4 * (3 * 32 * 32 + 16 * 16 * 16 + conv.params)
    assert conv.bytes_moved("int8") * 4 == conv.bytes_moved("fp32")
    dw = LayerSpec("d", "dwconv", 8, 8, 4, 4, kernel=3, padding=1, groups=8)
    assert dw.macs == 4 * 4 * 8 * 9
    fc = LayerSpec("f", "linear", 1280, 10, 1, 1, bias=True)
    assert (fc.macs, fc.params) == (12800, 12810)
    block = LayerSpec("b", "block", 24, 32, 8, 8, stride=2, expansion=144)
    assert block.out_hw == (4, 4)
    assert block.macs == 8 * 8 * 24 * 144 + 4 * 4 * 144 * 9 + 4 * 4 * 144 * 32
    assert conv.key() == LayerSpec("other", "conv", 3, 16, 32, 32, kernel=3, stride=2, padding=1, bn=True,
                                   in_group="g").key()


def test_with_channels_retargets_coupled_layers():
    net = _net()
    small = net.with_channels({"c1": 7})
    assert [(l.cin, l.cout) for l in small.layers] == [(3, 7), (7, 7), (7, 7), (7, 7), (7, 7), (7, 10)]
    assert small.layers[1].groups == 7 and small.group_widths["c1"] == 7
    assert small.macs < net.macs and net.trimmable_groups == ["c1"]
    with pytest.raises(ConfigError, match="group names among"):
        net.with_channels({"nope": 3})
    with pytest.raises(ConfigError, match=r"channels\[fc\] must be 10 \(the group is fixed\)"):
        net.with_channels({"fc": 5})
    with pytest.raises(ConfigError, match="positive channel count"):
        net.with_channels({"c1": 0})


def test_platform_keys():
    p = Platform.parse("ORT-cpu-fp32-t1", hardware="test-cpu", runtime_version="1.31")
    assert p.key == "ort-cpu-fp32-t1" and p.threads == 1
    assert "test-cpu" in p.describe() and "v1.31" in p.describe()
    assert Platform.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert Platform.parse("openvino-cpu-int8-t4", hardware="h").precision == "int8"
    for bad in ("ort-cpu-fp32", "ort-cpu-fp64-t1", "tflite-cpu-fp32-t1"):
        with pytest.raises(ConfigError, match="--platform"):
            Platform.parse(bad, hardware="h")


def test_latency_and_measurement_round_trip():
    lat = Latency(0.84, 0.8, 0.9, runs=280, rounds=[0.83, 0.84, 0.85])
    assert lat.rounds == (0.83, 0.84, 0.85) and math.isclose(lat.spread, 0.1 / 0.84)
    pred = Latency(1.2, source="predicted")
    d = json.loads(json.dumps(pred.to_dict()))
    assert d["low_ms"] is None and math.isnan(Latency.from_dict(d).low_ms)
    with pytest.raises(ConfigError, match="source"):
        Latency(1.0, source="guessed")
    m = Measurement(_net().layers[1], Platform.parse("ort-cpu-fp32-t1", hardware="h"), lat,
                    "2026-01-01T00:00:00Z", load=0.1, context="isolated")
    assert Measurement.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    assert m.to_dict()["overhead_ms"] is None and math.isnan(m.overhead_ms)  # unknown overhead
    with_oh = Measurement(m.layer, m.platform, lat, m.when, overhead_ms=0.012)
    back = Measurement.from_dict(json.loads(json.dumps(with_oh.to_dict())))
    assert back == with_oh and back.overhead_ms == 0.012
    old = {k: v for k, v in with_oh.to_dict().items() if k != "overhead_ms"}  # a record from before the field
    assert math.isnan(Measurement.from_dict(old).overhead_ms)
    anchored = Measurement(m.layer, m.platform, lat, m.when, overhead_ms=0.012, anchor_ms=0.05)
    assert Measurement.from_dict(json.loads(json.dumps(anchored.to_dict()))) == anchored
    assert math.isnan(Measurement.from_dict(old).anchor_ms) and with_oh.to_dict()["anchor_ms"] is None
