"""Layer graphs build, run and fuse; the timing contexts call layers in the order they claim."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from compactnet.errors import ConfigError
from compactnet.spec import LayerSpec
from compactnet.profilers.layers import (input_shapes, layer_onnx, network_onnx, output_shape, overhead_onnx,
                                         pointwise, random_inputs)
from compactnet.profilers.timing import time_layers

LAYERS = [
    LayerSpec("stem", "conv", 3, 32, 32, 32, kernel=3, stride=2, padding=1, bn=True, act="relu6"),
    pointwise("pw", 16, 24, 8, 8),
    LayerSpec("dw", "dwconv", 64, 64, 8, 8, kernel=3, padding=1, groups=64, bn=True, act="relu6"),
    LayerSpec("dw_s2", "dwconv", 63, 63, 9, 9, kernel=3, stride=2, padding=1, groups=63, bn=True, act="relu6"),
    LayerSpec("blk_res", "block", 24, 24, 8, 8, kernel=3, padding=1, expansion=144, residual=True, bn=True,
              act="relu6"),
    LayerSpec("blk_t1", "block", 32, 16, 16, 16, kernel=3, padding=1, expansion=32, bn=True, act="relu6"),
    LayerSpec("blk_s2", "block", 24, 32, 8, 8, kernel=3, stride=2, padding=1, expansion=144, bn=True, act="relu6"),
    LayerSpec("fc", "linear", 1280, 10, 1, 1, bias=True),
    LayerSpec("avg", "avgpool", 8, 8, 8, 8, kernel=2, stride=2),
    LayerSpec("max", "maxpool", 8, 8, 8, 8, kernel=3, stride=2, padding=1),
    LayerSpec("gap", "gap", 8, 8, 4, 4),
    LayerSpec("add", "add", 8, 8, 4, 4, act="relu"),
    LayerSpec("cat", "concat", 8, 12, 4, 4),
    LayerSpec("conv_hs", "conv", 8, 16, 6, 6, kernel=3, padding=1, bias=True, act="hardswish"),
]


def _session(data: bytes, **kw) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    for k, v in kw.items():
        setattr(so, k, v)
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("layer", LAYERS, ids=[l.name for l in LAYERS])
def test_layer_graph_runs_with_expected_shape(layer):
    data = layer_onnx(layer)
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 10
    assert model.opset_import[0].version == 17
    sess = _session(data)
    assert [tuple(i.shape) for i in sess.get_inputs()] == input_shapes(layer)
    feed = dict(zip([i.name for i in sess.get_inputs()], random_inputs(layer)))
    out = sess.run(None, feed)[0]
    assert out.shape == output_shape(layer)
    assert np.isfinite(out).all()
    assert layer_onnx(layer) == data  # seeded: same bytes every time
    if layer.params:  # weights follow the seed
        assert layer_onnx(layer, seed=1) != data


def test_relu6_output_is_clipped_and_residual_adds_input():
    blk = LAYERS[4]
    sess = _session(layer_onnx(blk))
    x = random_inputs(blk)[0]
    out = sess.run(None, {"x": x})[0]
    # the project conv has no activation, so out - x is the branch; it is not clipped
    assert not np.allclose(out, x)
    stem = LAYERS[0]
    y = _session(layer_onnx(stem)).run(None, {"x": random_inputs(stem)[0] * 10})[0]
    assert y.min() >= 0.0 and y.max() <= 6.0


def test_batchnorm_is_fused_by_onnxruntime(tmp_path):
    layer = LAYERS[4]
    model = onnx.load_from_string(layer_onnx(layer))
    assert sum(n.op_type == "BatchNormalization" for n in model.graph.node) == 3
    path = tmp_path / "opt.onnx"
    _session(layer_onnx(layer), optimized_model_filepath=str(path),
             graph_optimization_level=ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
    optimised = onnx.load(str(path))
    assert not any(n.op_type == "BatchNormalization" for n in optimised.graph.node)


def test_network_chain_and_shape_mismatch():
    from compactnet.extract import mobilenetv2_units

    units = list(mobilenetv2_units(include_last=False))[:4]
    data = network_onnx(units)
    out = _session(data).run(None, {"x": np.zeros((1, 3, 32, 32), np.float32)})[0]
    assert out.shape == output_shape(units[-1])
    with pytest.raises(ConfigError, match="input shape"):
        network_onnx([units[0], units[2]])
    with pytest.raises(ConfigError):
        network_onnx([])


def test_overhead_model_is_one_trivial_op():
    x = np.arange(-2, 2, dtype=np.float32).reshape(1, 1, 2, 2)
    assert np.array_equal(_session(overhead_onnx((1, 1, 2, 2))).run(None, {"x": x})[0], np.maximum(x, 0))
    assert len(onnx.load_from_string(overhead_onnx()).graph.node) == 1


class _Recorder:
    def __init__(self):
        self.calls: list[str] = []
        self.t = 0

    def fn(self, name: str, cost: int):
        def call():
            self.calls.append(name)
            self.t += cost
        return call

    def timer(self) -> int:
        return self.t


def _timed_calls(calls: list[str]) -> list[str]:
    return [c for c in calls if c != "F"]


def test_rotation_calls_every_other_layer_between_two_calls_of_one():
    rec = _Recorder()
    fns = [rec.fn(n, c) for n, c in (("a", 100), ("b", 200), ("c", 300))]
    times = time_layers(fns, "rotation", rounds=3, runs=4, warmup=0, seed=1, filler=rec.fn("F", 0), timer=rec.timer)
    assert times.shape == (3, 3, 4)
    assert np.allclose(times[0], 100e-9) and np.allclose(times[2], 300e-9)
    cycles = [rec.calls[i:i + 4] for i in range(0, len(rec.calls), 4)]
    assert all(c[0] == "F" and sorted(c[1:]) == ["a", "b", "c"] for c in cycles)
    assert len({tuple(c) for c in cycles}) > 1  # the order changes between cycles


def test_isolated_runs_back_to_back_and_flush_before_every_call():
    rec = _Recorder()
    fns = [rec.fn(n, 1) for n in "ab"]
    time_layers(fns, "isolated", rounds=2, runs=5, warmup=0, seed=0, filler=rec.fn("F", 0), timer=rec.timer)
    assert "F" not in rec.calls
    assert "aaaaa" in "".join(rec.calls) and "bbbbb" in "".join(rec.calls)
    rec2 = _Recorder()
    time_layers([rec2.fn(n, 1) for n in "ab"], "flush", rounds=1, runs=3, warmup=0, filler=rec2.fn("F", 0),
                timer=rec2.timer)
    assert rec2.calls[::2] == ["F"] * 6 and sorted(rec2.calls[1::2]) == list("aaabbb")
    with pytest.raises(ConfigError, match="context"):
        time_layers(fns, "sideways")
