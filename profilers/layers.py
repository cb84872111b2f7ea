"""Layer benchmarks: a :class:`~compactnet.spec.LayerSpec` as a small ONNX graph.

Every layer kind the spec knows (``conv`` -- a pointwise conv is a conv with a 1x1 kernel --,
``dwconv``, ``block``, ``linear``, ``avgpool``, ``maxpool``, ``gap``, ``add``, ``concat``) is built
with seeded random weights and with the nodes PyTorch's exporter emits around it (Conv without
bias + BatchNormalization + Clip(0, 6) for ReLU6, Gemm for a linear layer), so that the runtime
fuses them exactly as it fuses the exported network. Graphs use opset 17 and IR version 10 (DESIGN:
onnxruntime 1.31 refuses onnx 1.23's default IR 14).

:func:`network_onnx` chains layers into one graph (the prefix networks of the Figure-7 check) and
:func:`overhead_onnx` builds the near-empty model whose latency is the per-call overhead the profilers
subtract.
"""

from __future__ import annotations

import hashlib
import json
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compactnet.errors import bad_value
from compactnet.spec import LayerSpec

OPSET = 17
IR_VERSION = 10
_BN_EPS = 1e-5


def pointwise(name: str, cin: int, cout: int, h: int, w: int, *, bn: bool = True, act: str | None = "relu6",
              **kwargs) -> LayerSpec:
    """A pointwise (1x1) conv spec: a ``conv`` with kernel 1."""
    return LayerSpec(name=name, op="conv", cin=cin, cout=cout, h=h, w=w, kernel=(1, 1), bn=bn, act=act, **kwargs)


def layer_seed(layer: LayerSpec, seed: int = 0) -> int:
    """A stable 32-bit seed for a layer configuration (independent of the layer's name)."""
    text = json.dumps([seed, list(map(_jsonable, layer.key()))])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def _jsonable(v):
    return list(v) if isinstance(v, tuple) else v


def input_shapes(layer: LayerSpec) -> list[tuple[int, ...]]:
    """Shapes of the graph inputs :func:`layer_onnx` declares for ``layer`` (batch 1)."""
    if layer.op == "linear":
        return [(1, layer.cin)]
    x = (1, layer.cin, layer.h, layer.w)
    if layer.op == "add":
        return [x, x]
    if layer.op == "concat":
        return [x, (1, _concat_other(layer), layer.h, layer.w)]
    return [x]


def output_shape(layer: LayerSpec) -> tuple[int, ...]:
    """Shape of the output of :func:`layer_onnx` (batch 1)."""
    if layer.op == "linear":
        return (1, layer.cout)
    oh, ow = layer.out_hw
    if layer.op in ("avgpool", "maxpool", "gap", "add", "dwconv"):
        return (1, layer.cin, oh, ow)
    if layer.op == "concat":
        return (1, layer.cin + _concat_other(layer), oh, ow)
    return (1, layer.cout, oh, ow)


def _concat_other(layer: LayerSpec) -> int:
    """Channels of a concat's second operand: ``cout - cin``, or ``cin`` when ``cout <= cin``."""
    return layer.cout - layer.cin if layer.cout > layer.cin else layer.cin


class _Graph:
    """Accumulates nodes and initializers with unique, prefixed names."""

    def __init__(self, rng: np.random.Generator, prefix: str = ""):
        self.rng = rng
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, base: str) -> str:
        self._n += 1
        return f"{self.prefix}{base}_{self._n}"

    def const(self, base: str, array: np.ndarray) -> str:
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), n))
        return n

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out + "_node", **attrs))
        return out

    # ----- building blocks -----------------------------------------------------------------
    def conv(self, x: str, cin: int, cout: int, k: tuple[int, int], stride: tuple[int, int],
             pad: tuple[int, int], groups: int, bias: bool) -> str:
        fan_in = (cin // groups) * k[0] * k[1]
        wt = (self.rng.standard_normal((cout, cin // groups, k[0], k[1])) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        inputs = [x, self.const("w", wt)]
        if bias:
            inputs.append(self.const("b", (self.rng.standard_normal(cout) * 0.01).astype(np.float32)))
        return self.node("Conv", inputs, kernel_shape=list(k), strides=list(stride),
                         pads=[pad[0], pad[1], pad[0], pad[1]], group=groups, dilations=[1, 1])

    def bn(self, x: str, c: int) -> str:
        r = self.rng
        scale = r.uniform(0.5, 1.5, c).astype(np.float32)
        shift = (r.standard_normal(c) * 0.1).astype(np.float32)
        mean = (r.standard_normal(c) * 0.1).astype(np.float32)
        var = r.uniform(0.5, 1.5, c).astype(np.float32)
        return self.node("BatchNormalization", [x, self.const("bn_scale", scale), self.const("bn_bias", shift),
                                                self.const("bn_mean", mean), self.const("bn_var", var)],
                         epsilon=_BN_EPS, momentum=0.9)

    def act(self, x: str, act: str | None) -> str:
        if act is None:
            return x
        if act == "relu":
            return self.node("Relu", [x])
        if act == "relu6":  # what torch.onnx emits for nn.ReLU6 at opset >= 11
            return self.node("Clip", [x, self.const("clip_min", np.array(0.0, np.float32)),
                                      self.const("clip_max", np.array(6.0, np.float32))])
        if act == "sigmoid":
            return self.node("Sigmoid", [x])
        if act == "hardswish":
            return self.node("HardSwish", [x])
        raise bad_value("act", "relu, relu6, sigmoid, hardswish or None", act)

    def conv_bn_act(self, x: str, cin: int, cout: int, k, stride, pad, groups: int, bn: bool, act: str | None,
                    bias: bool) -> str:
        y = self.conv(x, cin, cout, k, stride, pad, groups, bias and not bn)
        if bn:
            y = self.bn(y, cout)
        return self.act(y, act)

    def layer(self, layer: LayerSpec, x: str, extra: str | None) -> str:
        """Emit ``layer`` reading tensor ``x`` (and ``extra`` for add/concat); return the output name."""
        op = layer.op
        if op == "conv":
            return self.conv_bn_act(x, layer.cin, layer.cout, layer.kernel, layer.stride, layer.padding,
                                    layer.groups, layer.bn, layer.act, layer.bias)
        if op == "dwconv":
            return self.conv_bn_act(x, layer.cin, layer.cin, layer.kernel, layer.stride, layer.padding,
                                    layer.cin, layer.bn, layer.act, layer.bias)
        if op == "block":
            return self.block(layer, x)
        if op == "linear":
            wt = (self.rng.standard_normal((layer.cout, layer.cin)) * np.sqrt(1.0 / layer.cin)).astype(np.float32)
            inputs = [x, self.const("fc_w", wt)]
            if layer.bias:
                inputs.append(self.const("fc_b", np.zeros(layer.cout, np.float32)))
            return self.act(self.node("Gemm", inputs, alpha=1.0, beta=1.0, transB=1), layer.act)
        if op in ("avgpool", "maxpool"):
            attrs = dict(kernel_shape=list(layer.kernel), strides=list(layer.stride),
                         pads=[layer.padding[0], layer.padding[1]] * 2)
            if op == "avgpool":
                attrs["count_include_pad"] = 1
            return self.act(self.node("AveragePool" if op == "avgpool" else "MaxPool", [x], **attrs), layer.act)
        if op == "gap":
            return self.node("GlobalAveragePool", [x])
        if op == "add":
            return self.act(self.node("Add", [x, extra or x]), layer.act)
        if op == "concat":
            if extra is None:
                other = self.rng.standard_normal((1, _concat_other(layer), layer.h, layer.w)).astype(np.float32)
                extra = self.const("concat_other", other)
            return self.act(self.node("Concat", [x, extra], axis=1), layer.act)
        raise bad_value("op", "a layer kind among conv, dwconv, block, linear, avgpool, maxpool, gap, add, concat",
                        op)

    def block(self, layer: LayerSpec, x: str) -> str:
        """MobileNetV2 inverted residual: [1x1 expand+BN+ReLU6], 3x3 dw+BN+ReLU6, 1x1 project+BN, [+x]."""
        act = layer.act or "relu6"
        hidden = layer.expansion or layer.cin
        y = x
        if hidden != layer.cin:
            y = self.conv_bn_act(y, layer.cin, hidden, (1, 1), (1, 1), (0, 0), 1, True, act, False)
        y = self.conv_bn_act(y, hidden, hidden, (3, 3), layer.stride, (1, 1), hidden, True, act, False)
        y = self.conv_bn_act(y, hidden, layer.cout, (1, 1), (1, 1), (0, 0), 1, True, None, False)
        if block_has_residual(layer):
            y = self.node("Add", [x, y])
        return y


def block_has_residual(layer: LayerSpec) -> bool:
    """A block adds its input only when asked to and when the shapes allow it."""
    return layer.op == "block" and layer.residual and layer.cin == layer.cout and layer.stride == (1, 1)


def _model(graph: _Graph, inputs: list[tuple[str, tuple[int, ...]]], out: str, out_shape: tuple[int, ...],
           name: str) -> bytes:
    g = helper.make_graph(
        graph.nodes, name,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, list(out_shape))],
        initializer=graph.inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                          producer_name="compactnet.profilers")
    return m.SerializeToString()


def layer_onnx(layer: LayerSpec, seed: int = 0) -> bytes:
    """Build ``layer`` alone as a serialized ONNX model.

    Inputs are named ``x`` (and ``y``, the second operand of ``add``/``concat``); the output ``out``
    has :func:`output_shape`. Weights are random, seeded by ``seed`` and the layer configuration,
    so the same layer always gives the same bytes.

    Args:
        layer: What to build.
        seed: Weight seed.

    Returns:
        The serialized ``ModelProto`` (opset 17, IR 10).
    """
    g = _Graph(np.random.default_rng(layer_seed(layer, seed)))
    shapes = input_shapes(layer)
    names = ["x", "y"][: len(shapes)]
    out = g.layer(layer, "x", "y" if len(shapes) > 1 else None)
    out = g.node("Identity", [out]) if out in names else out
    # rename the last tensor "out" for readability
    _rename_output(g, out, "out")
    return _model(g, list(zip(names, shapes)), "out", output_shape(layer), f"layer_{layer.op}")


def _rename_output(g: _Graph, old: str, new: str) -> None:
    for node in g.nodes:
        for i, o in enumerate(node.output):
            if o == old:
                node.output[i] = new


def network_onnx(layers: Sequence[LayerSpec], seed: int = 0) -> bytes:
    """Chain ``layers`` (each feeding the next) into one ONNX model, e.g. a prefix of a network.

    Every layer gets the same weights as in :func:`layer_onnx`. Inside a chain, ``add`` adds the
    running tensor to itself and ``concat`` appends a constant.

    Raises:
        ConfigError: ``layers`` is empty or a layer's input shape does not match its predecessor's output.
    """
    if not layers:
        raise bad_value("layers", "at least one layer", "an empty sequence")
    first = layers[0]
    shape = input_shapes(first)[0]
    x = "x"
    nodes, inits = [], []
    for i, layer in enumerate(layers):
        want = input_shapes(layer)[0]
        if i and tuple(want) != tuple(shape):
            raise bad_value(f"layers[{i}] ({layer.name}) input shape", f"{tuple(shape)} (the output of layers[{i - 1}])",
                            tuple(want))
        g = _Graph(np.random.default_rng(layer_seed(layer, seed)), prefix=f"l{i}_")
        x = g.layer(layer, x, None)
        nodes += g.nodes
        inits += g.inits
        shape = output_shape(layer)
    merged = _Graph(np.random.default_rng(0))
    merged.nodes, merged.inits = nodes, inits
    _rename_output(merged, x, "out")
    return _model(merged, [("x", input_shapes(first)[0])], "out", shape, f"network_{len(layers)}")


def overhead_onnx(shape: tuple[int, ...] = (1, 1, 1, 1)) -> bytes:
    """The near-empty model (one Relu on one element) whose latency is a runtime's per-call overhead.

    Not a bare Identity: converters such as pnnx (ncnn) optimise an Identity-only graph down to
    nothing and fail on it.
    """
    g = _Graph(np.random.default_rng(0))
    g.nodes.append(helper.make_node("Relu", ["x"], ["out"], name="overhead_relu"))
    return _model(g, [("x", tuple(shape))], "out", tuple(shape), "overhead")


def random_inputs(layer: LayerSpec, seed: int = 0) -> list[np.ndarray]:
    """Fixed random inputs for :func:`layer_onnx`'s graph, in input order."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in input_shapes(layer)]
