"""NetworkSpec extraction from torch and ONNX, channel groups, configurations and MobileNetV2 units."""

from __future__ import annotations

import random
import warnings

import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from torch import nn

from compactnet.errors import ConfigError, ModelFileError, UnsupportedOpError
from compactnet.extract import (
    groups_for_config,
    layer_differences,
    mobilenetv2_units,
    network_spec,
    network_spec_from_onnx,
    network_spec_from_torch,
    same_layers,
    spec_for,
)
from compactnet.models import create_model
from compactnet.models.mobilenetv2 import PAPER_TABLE2_WIDTHS, STAGES, MobileNetV2Config, block_plan
from compactnet.spec import NetworkSpec

MODELS = ("mobilenetv2", "resnet20", "vgg16")


def _export(model: nn.Module, path, shape=(1, 3, 32, 32)) -> str:
    model.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(shape),), str(path), opset_version=17, dynamo=False)
    return str(path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The three default models, exported once: name -> (torch model, onnx path)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("onnx")
    out = {}
    for name in MODELS:
        model = create_model(name).eval()
        out[name] = (model, _export(model, root / f"{name}.onnx"))
    return out


# ----- torch vs ONNX -------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_torch_and_onnx_give_the_same_layers(exported, name):
    model, path = exported[name]
    a = network_spec_from_torch(model)
    b = network_spec_from_onnx(path)
    assert a.architecture == name and b.architecture == "onnx"
    assert layer_differences(a, b) == []
    assert same_layers(a, b)
    assert [l.key() for l in a.layers] == [l.key() for l in b.layers]
    # group structure maps one to one, widths and fixed sets included
    assert sorted(a.group_widths.values()) == sorted(b.group_widths.values())
    assert len(a.fixed) == len(b.fixed) == 2


def test_trimmed_mobilenetv2_torch_and_onnx_agree(tmp_path):
    model = create_model("mobilenetv2", list(PAPER_TABLE2_WIDTHS)).eval()
    a = network_spec_from_torch(model)
    b = network_spec_from_onnx(_export(model, tmp_path / "t2.onnx"))
    assert same_layers(a, b), layer_differences(a, b)


def test_same_layers_detects_a_difference(exported):
    model, _ = exported["resnet20"]
    a = network_spec_from_torch(model)
    b = spec_for("resnet20", {"stages": [16, 32, 60]})
    diffs = layer_differences(a, b)
    assert diffs and not same_layers(a, b)
    assert any("64" in d and "60" in d for d in diffs)


def test_onnx_batchnorm_nodes_are_folded(tmp_path, exported):
    """A graph that still holds BatchNormalization (training=PRESERVE) gives the same layers."""
    model, _ = exported["resnet20"]
    path = tmp_path / "bn.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, 32, 32),), str(path), opset_version=17, dynamo=False,
                          training=torch.onnx.TrainingMode.PRESERVE)
    assert "BatchNormalization" in {n.op_type for n in onnx.load(str(path)).graph.node}
    assert same_layers(network_spec_from_torch(model), network_spec_from_onnx(path))


# ----- what the layers look like -------------------------------------------------------------------
def test_mobilenetv2_layers_are_fused_as_a_runtime_runs_them(exported):
    spec = network_spec_from_torch(exported["mobilenetv2"][0])
    ops = [l.op for l in spec.layers]
    n_exp = sum(t != 1 for t, _s, _st in block_plan())
    n_res = sum(n - 1 for _t, _c, n, _s in STAGES)
    assert ops.count("dwconv") == 17 and ops.count("add") == n_res == 10
    assert ops.count("conv") == 1 + 17 + n_exp + 1
    assert ops[-2:] == ["gap", "linear"] and len(spec.layers) == 64
    stem = spec.layers[0]
    assert (stem.op, stem.cin, stem.cout, stem.h, stem.stride, stem.bn, stem.act, stem.bias) == \
        ("conv", 3, 32, 32, (2, 2), True, "relu6", False)
    proj = spec.layers[2]  # block 1: dw, then linear projection 32 -> 16
    assert (proj.op, proj.cin, proj.cout, proj.act, proj.h) == ("conv", 32, 16, None, 16)
    dw = next(l for l in spec.layers if l.op == "dwconv" and l.stride == (2, 2))
    assert dw.groups == dw.cin == dw.cout and dw.in_group == dw.out_group
    last = spec.layers[-3]
    assert (last.cin, last.cout, last.h, last.w) == (320, 1280, 1, 1)
    gap, fc = spec.layers[-2:]
    assert (gap.cin, gap.h, fc.cin, fc.cout, fc.bias, fc.h) == (1280, 1, 1280, 10, True, 1)
    add = next(l for l in spec.layers if l.op == "add")
    assert len(add.inputs) == 2 and add.in_group == add.out_group
    # every layer's input channel count is its in_group's width
    widths = spec.group_widths
    assert all(widths[l.in_group] == l.cin and widths[l.out_group] == l.cout for l in spec.layers)
    assert spec.macs == sum(l.macs for l in spec.layers) > 0


def test_resnet_add_carries_the_relu_and_ties_the_stage(exported):
    spec = network_spec_from_torch(exported["resnet20"][0])
    adds = [l for l in spec.layers if l.op == "add"]
    assert len(adds) == 9 and all(a.act == "relu" for a in adds)
    # stem + the adds of stage 1 share one group; stages 2, 3 have projection shortcuts
    assert {a.out_group for a in adds[:3]} == {spec.layers[0].out_group}
    assert len({a.out_group for a in adds}) == 3


def test_json_round_trip_of_extracted_specs(exported):
    for name in MODELS:
        spec = network_spec_from_torch(exported[name][0])
        back = NetworkSpec.from_json(spec.to_json())
        assert back == spec
    units = mobilenetv2_units()
    assert NetworkSpec.from_json(NetworkSpec("units", (1, 3, 32, 32), units).to_json()).layers == units


def test_extraction_leaves_the_model_as_it_was():
    model = create_model("resnet20").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    network_spec_from_torch(model)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_dispatch_by_source(exported):
    model, path = exported["vgg16"]
    assert same_layers(network_spec(model), network_spec(path))


# ----- an arbitrary small CNN: concat, pools, grouped conv, spatial flatten -------------------------
class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 1)
        self.pool = nn.MaxPool2d(2)
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.grouped = nn.Conv2d(12, 6, 3, padding=1, groups=2, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x):
        y = torch.cat([F.relu(self.a(x)), torch.sigmoid(self.b(x))], 1)
        y = F.relu6(self.dw(self.pool(y)))
        y = F.avg_pool2d(self.bn(self.grouped(y)), 2)
        return self.fc(torch.flatten(y, 1))


def test_small_cnn_torch_and_onnx_agree_and_fix_what_cannot_be_trimmed(tmp_path):
    model = _Tiny().eval()
    a = network_spec_from_torch(model, (1, 3, 16, 16))
    b = network_spec_from_onnx(_export(model, tmp_path / "tiny.onnx", (1, 3, 16, 16)))
    assert same_layers(a, b), layer_differences(a, b)
    assert [l.op for l in a.layers] == ["conv", "conv", "concat", "maxpool", "dwconv", "conv", "avgpool",
                                        "linear"]
    conv_a, conv_b, cat, pool, dw, grouped, avg, fc = a.layers
    assert conv_a.bn and not conv_a.bias and conv_a.act == "relu"  # a conv bias reads as a folded affine
    assert conv_b.act == "sigmoid" and dw.act == "relu6" and grouped.groups == 2 and grouped.bn
    assert cat.cout == 12 and cat.inputs == ("a", "b") and dw.in_group == cat.out_group
    assert (pool.h, dw.h, avg.kernel, fc.cin) == (16, 8, (2, 2), 96)
    # concat members, the concat, the grouped conv's output and the flattened features are fixed
    assert set(a.trimmable_groups) == set()
    assert {conv_a.out_group, conv_b.out_group, cat.out_group, grouped.out_group, fc.in_group} <= set(a.fixed)
    assert fc.in_group != grouped.out_group and a.group_widths[fc.in_group] == 96


def test_trimmable_groups_of_a_plain_cnn_follow_with_channels():
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.Conv2d(16, 24, 3, stride=2, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(24, 7))
    spec = network_spec_from_torch(model, (1, 3, 8, 8), architecture="plain")
    assert spec.trimmable_groups == ["0", "3"]
    small = spec.with_channels({"0": 5, "3": 9})
    ref = network_spec_from_torch(nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(),
                                                nn.Conv2d(5, 9, 3, stride=2, padding=1), nn.ReLU(),
                                                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1),
                                                nn.Linear(9, 7)), (1, 3, 8, 8), architecture="plain")
    assert small == ref


# ----- errors ---------------------------------------------------------------------------------
def _onnx_with(op_type: str, node_name: str, out_shape=(1, 4, 8, 8), **attrs) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 1, 1], [0.1] * 12)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv0"),
             helper.make_node(op_type, ["c"], ["y"], name=node_name, **attrs)]
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_unsupported_onnx_op_names_op_and_node(tmp_path):
    model = _onnx_with("Einsum", "my_einsum", (1, 8, 8, 4), equation="nchw->nhwc")
    onnx.checker.check_model(model)
    with pytest.raises(UnsupportedOpError, match=r"'Einsum'.*'my_einsum'"):
        network_spec_from_onnx(model)
    path = tmp_path / "elu.onnx"
    onnx.save(_onnx_with("Elu", "act/elu_7"), str(path))
    with pytest.raises(UnsupportedOpError, match=r"'Elu'.*'act/elu_7'"):
        network_spec_from_onnx(path)


def test_onnx_matmul_add_and_reducemean_match_torch():
    """MatMul + constant Add is a linear with bias; ReduceMean over H, W is a global average pool."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])
    inits = [helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], [0.1] * 108),
             helper.make_tensor("m", TensorProto.FLOAT, [4, 5], [0.1] * 20),
             helper.make_tensor("b", TensorProto.FLOAT, [5], [0.0] * 5)]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("ReduceMean", ["c"], ["g"], name="mean", axes=[2, 3], keepdims=0),
             helper.make_node("MatMul", ["g", "m"], ["mm"], name="mm"),
             helper.make_node("Add", ["mm", "b"], ["y"], name="bias")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializer=inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    got = network_spec_from_onnx(model)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, 2, 1, bias=False)
            self.fc = nn.Linear(4, 5)

        def forward(self, t):
            return self.fc(self.conv(t).mean((2, 3)))

    want = network_spec_from_torch(Net(), (1, 3, 8, 8))
    assert [l.op for l in got.layers] == ["conv", "gap", "linear"]
    assert got.layers[2].bias and got.layers[0].stride == (2, 2) and got.layers[1].h == 4
    assert same_layers(got, want), layer_differences(got, want)


def test_unsupported_clip_range_is_refused():
    model = _onnx_with("Clip", "clip3")
    min_, max_ = helper.make_tensor("lo", TensorProto.FLOAT, [], [0.0]), helper.make_tensor("hi", TensorProto.FLOAT,
                                                                                            [], [3.0])
    model.graph.initializer.extend([min_, max_])
    model.graph.node[1].input.extend(["lo", "hi"])
    with pytest.raises(UnsupportedOpError, match=r"'Clip'.*'clip3'.*Clip\(0.0, 3.0\)"):
        network_spec_from_onnx(model)


def test_unsupported_torch_op_names_op_and_node():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU())
    with pytest.raises(UnsupportedOpError, match=r"'GELU' at module '1'"):
        network_spec_from_torch(model, (1, 3, 8, 8))
    with pytest.raises(UnsupportedOpError, match="batch-norm that cannot be fused"):
        network_spec_from_torch(nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 1)), (1, 3, 8, 8))


def test_truncated_or_missing_onnx_file_is_a_model_file_error(exported, tmp_path):
    data = open(exported["resnet20"][1], "rb").read()
    for frac in (0.05, 0.5, 0.97):
        cut = tmp_path / f"cut{frac}.onnx"
        cut.write_bytes(data[: int(len(data) * frac)])
        with pytest.raises(ModelFileError, match="truncated or corrupt"):
            network_spec_from_onnx(cut)
    with pytest.raises(ModelFileError, match="does not exist"):
        network_spec_from_onnx(tmp_path / "nope.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty"):
        network_spec_from_onnx(tmp_path / "empty.onnx")


# ----- channel groups and configurations ------------------------------------------------------------
def _random_mobilenet_config(rng: random.Random) -> MobileNetV2Config:
    widths = [rng.randint(4, 40)]
    for _t, c, n, _s in STAGES:
        widths += [rng.randint(1, c)] * n
    hidden = [widths[0]] + [rng.randint(1, 200) for _ in range(16)]
    return MobileNetV2Config(widths=tuple(widths), hidden=tuple(hidden), last=rng.randint(1, 1280))


def _check_with_channels(name: str, config) -> None:
    base = network_spec_from_torch(create_model(name))
    trimmed = network_spec_from_torch(create_model(name, config))
    via_groups = base.with_channels(groups_for_config(name, base, config))
    for got, want in zip(via_groups.layers, trimmed.layers, strict=True):
        assert got == want
    assert via_groups == trimmed
    assert spec_for(name, config) == trimmed


def test_with_channels_equals_extraction_mobilenetv2_table2():
    _check_with_channels("mobilenetv2", list(PAPER_TABLE2_WIDTHS))


def test_with_channels_equals_extraction_mobilenetv2_random_extended():
    rng = random.Random(7)
    for _ in range(2):
        _check_with_channels("mobilenetv2", _random_mobilenet_config(rng))


def test_with_channels_equals_extraction_resnet20_and_vgg():
    rng = random.Random(3)
    _check_with_channels("resnet20", {"stages": [rng.randint(1, 16), rng.randint(1, 32), rng.randint(1, 64)],
                                      "inner": [rng.randint(1, 64) for _ in range(9)]})
    _check_with_channels("resnet20", {"stages": [9, 9, 9]})
    _check_with_channels("vgg16", [rng.randint(1, 64) for _ in range(13)])


def test_groups_for_config_works_on_an_onnx_spec_too(exported):
    onnx_spec = network_spec_from_onnx(exported["mobilenetv2"][1])
    trimmed = onnx_spec.with_channels(groups_for_config("mobilenetv2", onnx_spec, list(PAPER_TABLE2_WIDTHS)))
    assert same_layers(trimmed, spec_for("mobilenetv2", list(PAPER_TABLE2_WIDTHS)))


def test_groups_for_config_refuses_a_spec_of_another_model():
    with pytest.raises(ConfigError, match="does not have the layer structure of mobilenetv2"):
        groups_for_config("mobilenetv2", spec_for("vgg16"), None)
    with pytest.raises(ConfigError, match="18 channel counts"):
        spec_for("mobilenetv2", [32] * 17)


def test_mobilenetv2_group_count():
    """27 groups: input + stem + 7 stages + 16 hidden + 1280 conv + classifier; 25 trimmable."""
    spec = spec_for("mobilenetv2")
    assert len(spec.groups) == 27
    assert spec.fixed == ("input", "classifier")
    assert len(spec.trimmable_groups) == 25
    hidden = {l.out_group for l in spec.layers if l.op == "dwconv"}
    assert len(hidden) == 17  # block 1's depthwise conv runs on the stem's group
    widths = spec.group_widths
    stages = sorted(widths[g] for g in spec.trimmable_groups if g not in hidden and widths[g] != 1280)
    assert stages == sorted({c for _t, c, _n, _s in STAGES})


def test_mobilenetv2_groups_match_torch_pruning_depgraph():
    """DepGraph's 26 groups are ours minus the network input (its classifier group is our fixed one)."""
    tp = pytest.importorskip("torch_pruning")
    model = create_model("mobilenetv2").eval()
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, 3, 32, 32))
    names = {m: n for n, m in model.named_modules()}
    theirs = set()
    for group in graph.get_all_groups():
        members = frozenset(names[dep.target.module] for dep, _ in group
                            if dep.handler in (tp.prune_conv_out_channels, tp.prune_depthwise_conv_out_channels,
                                               tp.prune_linear_out_channels)
                            and dep.target.module in names)
        theirs.add(members)
    spec = network_spec_from_torch(model)
    ours = {frozenset(l.name for l in spec.layers if l.op in ("conv", "dwconv", "linear") and l.out_group == g)
            for g, _ in spec.groups if g != "input"}
    assert len(theirs) == 26
    assert ours == theirs


# ----- MobileNetV2 units --------------------------------------------------------------------------
def test_mobilenetv2_units_are_the_papers_18_plus_the_last_conv():
    units = mobilenetv2_units(include_last=False)
    assert len(units) == 18 and units[0].name == "stem" and units[0].op == "conv"
    blocks = units[1:]
    assert all(u.op == "block" for u in blocks)
    assert [u.cout for u in units] == [32, 16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320]
    assert [u.expansion for u in blocks[:3]] == [32, 96, 144] and blocks[0].cin == 32
    assert [u.residual for u in blocks] == [False, False, True, False, True, True, False, True, True, True,
                                            False, True, True, False, True, True, False]
    assert [u.stride[0] for u in blocks] == [s for _t, s, _st in block_plan()]
    assert [(u.h, u.w) for u in units[:4]] == [(32, 32), (16, 16), (16, 16), (8, 8)]
    full = mobilenetv2_units(include_head=True)
    assert [u.name for u in full[-3:]] == ["last_conv", "gap", "classifier"]
    assert (full[-3].cin, full[-3].cout) == (320, 1280)
    # the units cover every MAC of the network but the residual adds
    spec = spec_for("mobilenetv2")
    adds = sum(l.macs for l in spec.layers if l.op == "add")
    assert sum(u.macs for u in full) + adds == spec.macs


def test_mobilenetv2_units_follow_a_configuration_and_with_channels():
    units = mobilenetv2_units(list(PAPER_TABLE2_WIDTHS), include_last=False)
    assert [u.cout for u in units] == list(PAPER_TABLE2_WIDTHS)
    assert units[7].expansion == 6 * PAPER_TABLE2_WIDTHS[6]
    spec = spec_for("mobilenetv2")
    retargeted = NetworkSpec("u", (1, 3, 32, 32), mobilenetv2_units(spec), spec.groups, spec.fixed).with_channels(
        groups_for_config("mobilenetv2", spec, list(PAPER_TABLE2_WIDTHS)))
    assert retargeted.layers[:18] == units
    with pytest.raises(ConfigError, match="MobileNetV2 structure"):
        mobilenetv2_units(spec_for("resnet20"))


def test_conv_with_weights_of_unknown_shape_names_the_node():
    """A Conv whose weight comes from an op nothing can describe (no shape, no value, no kernel_shape)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    w0 = helper.make_tensor("w0", TensorProto.FLOAT, [108], [0.1] * 108)
    nodes = [helper.make_node("MakeWeights", ["w0"], ["w"], name="make_w", domain="custom.ops"),
             helper.make_node("Conv", ["x", "w"], ["y"], name="the_conv", pads=[1, 1, 1, 1])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializer=[w0]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom.ops", 1)])
    model.ir_version = 8
    with pytest.raises(UnsupportedOpError, match=r"'Conv' at node 'the_conv'.*kernel size is unknown"):
        network_spec_from_onnx(model)


@pytest.mark.parametrize("name", MODELS)
def test_random_config_is_a_valid_seeded_trim(name):
    from compactnet.extract import random_config

    full = spec_for(name)
    a, b = random_config(name, 7), random_config(name, 7)
    assert a == b and random_config(name, 8) != a
    trimmed = spec_for(name, a)
    widths, base = trimmed.group_widths, full.group_widths
    assert trimmed.macs < full.macs
    for g in full.trimmable_groups:
        assert 1 <= widths[g] <= base[g]
        assert widths[g] >= round(0.3 * base[g]) - 1  # within the factor range (rounding aside)
    assert same_layers(trimmed, network_spec_from_torch(create_model(name, a)))
    with pytest.raises(ConfigError):
        random_config(name, 0, low=0)
