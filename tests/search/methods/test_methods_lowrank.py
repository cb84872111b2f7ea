"""Low-rank decomposition (accnn): exactness, approximation, MACs, rank selection, configs, export, specs."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from torch import nn

from compactnet.errors import ConfigError
from compactnet.models import create_model, load_weights, save_weights
from compactnet.search.methods import lowrank as lr
from search_tiny import TINY_RESNET

torch.manual_seed(0)


def tiny_resnet() -> nn.Module:
    torch.manual_seed(0)
    return create_model("resnet20", TINY_RESNET).eval()


class TwoConv(nn.Module):
    """A conv with bias and stride, a BN, a 5x5 conv, a linear: every decomposition case."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 12, 3, stride=2, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(12)
        self.c2 = nn.Conv2d(12, 10, 5, stride=1, padding=2, bias=False)
        self.fc = nn.Linear(10, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.c1(x)))
        y = torch.relu(self.c2(y))
        return self.fc(y.mean((2, 3)))


def _randomise_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


@pytest.mark.parametrize("stride,padding,kernel,hw", [(1, 1, 3, (16, 16)), (2, 1, 3, (15, 11)), (1, 2, 5, (9, 13)),
                                                      ((2, 1), (1, 0), (3, 3), (12, 10))])
def test_full_rank_reproduces_conv_exactly(stride, padding, kernel, hw):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 9, kernel, stride=stride, padding=padding, bias=True).eval()
    info_max = min(6 * conv.kernel_size[0], 9 * conv.kernel_size[1])
    pair = lr.decompose_module(conv, info_max).eval()
    x = torch.randn(2, 6, *hw)
    with torch.no_grad():
        ref, got = conv(x), pair(x)
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, atol=1e-5, rtol=1e-5)
    assert tuple(pair.first.weight.shape) == (info_max, 6, conv.kernel_size[0], 1)
    assert tuple(pair.second.weight.shape) == (9, info_max, 1, conv.kernel_size[1])


def test_reduced_rank_is_the_truncated_svd_and_error_shrinks_with_rank():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, padding=1, bias=False).eval()
    m = lr.conv_matrix(conv.weight.detach().double())
    s = torch.linalg.svdvals(m)
    x = torch.randn(1, 8, 12, 12)
    errors = []
    for k in (1, 4, 12, 24):
        pair = lr.decompose_module(conv, k).requires_grad_(False)
        # effective weight of the pair: W[n,c,i,j] = sum_k first[k,c,i] * second[n,k,j]
        w_eff = torch.einsum("kci,nkj->ncij", pair.first.weight[..., 0].double(), pair.second.weight[:, :, 0].double())
        frob2 = float(((w_eff - conv.weight.detach().double()) ** 2).sum())
        assert frob2 == pytest.approx(float((s[k:] ** 2).sum()), rel=1e-6, abs=1e-10)
        with torch.no_grad():
            errors.append(float((pair(x) - conv(x)).norm() / conv(x).norm()))
    assert errors == sorted(errors, reverse=True)
    assert 0 < errors[1] < 1 and errors[-1] < 1e-5


def test_linear_decomposition_exact_and_truncated():
    torch.manual_seed(0)
    fc = nn.Linear(20, 6)
    x = torch.randn(4, 20)
    with torch.no_grad():
        assert torch.allclose(lr.decompose_module(fc, 6)(x), fc(x), atol=1e-5)
        approx = lr.decompose_module(fc, 2)(x)
    assert not torch.allclose(approx, fc(x), atol=1e-3)
    assert lr.decompose_module(fc, 2).first.weight.shape == (2, 20)


def test_model_with_bn_reproduced_at_full_rank_and_macs_as_expected():
    model = TwoConv().eval()
    _randomise_bn(model)
    infos = lr.layer_infos(model, (1, 3, 16, 16))
    assert set(infos) == {"c1", "c2", "fc"}
    full = lr.decompose(model, {n: i.max_rank for n, i in infos.items()}).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(full(x), model(x), atol=1e-5)
    # BN stays after the second conv
    assert isinstance(full.c1, lr.LowRankConv2d) and isinstance(full.bn, nn.BatchNorm2d)
    # MACs: (K,C,kh,1) on Ho x W plus (N,K,1,kw) on Ho x Wo, from the extracted spec
    k = 3
    small = lr.decompose(model, {"c2": k})
    c2 = infos["c2"]
    ho, wo = c2.out_hw
    expected = ho * c2.in_hw[1] * k * 12 * 5 + ho * wo * 10 * k * 5
    assert lr.total_macs(model, (1, 3, 16, 16)) - c2.macs + expected == lr.total_macs(small, (1, 3, 16, 16))
    assert c2.decomposed_macs(k) == expected


def test_select_ranks_hits_requested_theoretical_speedup():
    model = tiny_resnet()
    for target in (1.5, 2.0, 3.0):
        ranks = lr.select_ranks(model, target)
        got = lr.theoretical_speedup(model, lr.decompose(model, ranks))
        assert got >= target
        assert got < target * 1.15, (target, got)
    with pytest.raises(ConfigError, match="speedup"):
        lr.select_ranks(model, 500.0)


def test_select_ranks_prefers_low_energy_loss():
    """A layer whose weight is exactly low-rank is cut first (it loses no energy)."""
    model = tiny_resnet()
    with torch.no_grad():
        conv = model.layers[4].conv1
        m = lr.conv_matrix(conv.weight)
        u, s, vh = torch.linalg.svd(m, full_matrices=False)
        s[2:] = 0
        low = (u * s) @ vh
        n, c, kh, kw = conv.weight.shape
        conv.weight.copy_(low.reshape(c, kh, n, kw).permute(2, 0, 1, 3))
    first = lr.select_ranks(model, 1.05)
    assert list(first) == ["layers.4.conv1"]  # the one decomposition the small target needs
    ranks = lr.select_ranks(model, 1.3)
    assert ranks["layers.4.conv1"] <= 2  # its energy-free rank steps come before any other loss


def test_rank_config_round_trip(tmp_path):
    model = tiny_resnet()
    ranks = lr.select_ranks(model, 2.0)
    path = lr.save_rank_config(tmp_path / "ranks.json", ranks, model_name="resnet20", theoretical_speedup=2.0)
    doc = json.loads(path.read_text())
    assert doc["model"] == "resnet20" and doc["ranks"] == ranks
    assert lr.load_rank_config(path) == ranks
    assert lr.load_rank_config({"layers.0.conv1": 3}) == {"layers.0.conv1": 3}
    # a user-written plain mapping works too
    (tmp_path / "mine.json").write_text(json.dumps({"layers.0.conv1": 2}))
    small = lr.decompose(model, lr.load_rank_config(tmp_path / "mine.json"))
    assert lr.ranks_of(small) == {"layers.0.conv1": 2}
    # weights of the decomposed model reload into a restructured fresh model
    a = lr.decompose(model, ranks).eval()
    save_weights(a, tmp_path / "w.safetensors")
    b = load_weights(lr.restructure(create_model("resnet20", TINY_RESNET), ranks), tmp_path / "w.safetensors").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_bad_rank_configurations_give_clear_errors(tmp_path):
    model = tiny_resnet()
    with pytest.raises(ConfigError, match="layers.99.conv1"):
        lr.decompose(model, {"layers.99.conv1": 2})
    with pytest.raises(ConfigError, match=r"1\.\.24"):
        lr.decompose(model, {"layers.0.conv1": 25})  # 8 in, 8 out, 3x3: full rank 24
    with pytest.raises(ConfigError, match="rank"):
        lr.decompose_layer(model, "layers.0.conv1", 0)
    with pytest.raises(ConfigError):
        lr.load_rank_config({"layers.0.conv1": "three"})
    with pytest.raises(ConfigError, match="does not exist"):
        lr.load_rank_config(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ConfigError, match="not valid JSON"):
        lr.load_rank_config(tmp_path / "bad.json")
    dw = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4))
    with pytest.raises(ConfigError, match="depthwise"):
        lr.decompose(dw, {"0": 1})


def test_single_layer_decomposition_leaves_the_rest():
    model = tiny_resnet()
    small = lr.decompose_layer(model, "layers.3.conv1", 5)
    assert lr.ranks_of(small) == {"layers.3.conv1": 5}
    assert isinstance(model.layers[3].conv1, nn.Conv2d)  # the original is untouched
    assert small.layers[3].conv1.first.stride == (2, 1) and small.layers[3].conv1.second.stride == (1, 2)


@pytest.mark.runtime
def test_decomposed_model_exports_to_onnx_and_runs_in_onnxruntime():
    import onnx
    import onnxruntime as ort

    from compactnet.export import export_onnx

    model = tiny_resnet()
    small = lr.decompose(model, lr.select_ranks(model, 2.0) | {"fc": 4}).eval()
    res = export_onnx(small, input_shape=(1, 3, 32, 32))  # checks ORT parity itself (atol 1e-4)
    assert res.opset == 17 and res.ir_version <= 10
    kernels = {tuple(a.ints) for n in onnx.load_from_string(res.onnx_bytes).graph.node if n.op_type == "Conv"
               for a in n.attribute if a.name == "kernel_shape"}
    assert {(3, 1), (1, 3)} <= kernels
    sess = ort.InferenceSession(res.onnx_bytes, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = small(torch.from_numpy(x)).numpy()
    assert np.allclose(sess.run(None, {"input": x})[0], ref, atol=1e-4)


def test_extract_describes_non_square_kernels_and_spec_surgery_matches():
    from compactnet.export import export_onnx
    from compactnet.extract import layer_differences, network_spec_from_onnx, network_spec_from_torch

    model = tiny_resnet()
    ranks = {**lr.select_ranks(model, 2.0), "layers.3.conv1": 5, "fc": 4}
    small = lr.decompose(model, ranks)
    t_spec = network_spec_from_torch(small)
    o_spec = network_spec_from_onnx(export_onnx(small).onnx_bytes)
    assert layer_differences(t_spec, o_spec) == []
    names = {l.name: l for l in t_spec.layers}
    first, second = names["layers.3.conv1.first"], names["layers.3.conv1.second"]
    assert first.kernel == (3, 1) and first.stride == (2, 1) and first.padding == (1, 0) and not first.bn
    assert second.kernel == (1, 3) and second.stride == (1, 2) and second.padding == (0, 1) and second.bn
    assert first.out_hw == (16, 32) and second.out_hw == (16, 16)
    # the spec built without torch from the original's spec is the same network
    infos = lr.layer_infos(model)
    built = lr.decomposed_spec(network_spec_from_torch(model), infos, ranks)
    assert layer_differences(built, t_spec) == []
    assert built.macs == t_spec.macs == lr.total_macs(small)


@pytest.mark.runtime
def test_profiler_layer_graph_and_predictor_accept_non_square_kernels():
    import onnxruntime as ort

    from compactnet.predictors.network import LatencyPredictor
    from compactnet.predictors.synthetic import measure_synthetic, random_layers, synthetic_platforms
    from compactnet.profilers.layers import input_shapes, layer_onnx, output_shape
    from compactnet.spec import LayerSpec

    layer = LayerSpec("v", "conv", 16, 8, 16, 16, kernel=(3, 1), stride=(2, 1), padding=(1, 0))
    sess = ort.InferenceSession(layer_onnx(layer), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"x": np.zeros(input_shapes(layer)[0], np.float32)})[0]
    assert out.shape == output_shape(layer) == (1, 8, 8, 16)
    plat, costs = synthetic_platforms()["synthetic-a-fp32-t1"]
    pred = LatencyPredictor(min_samples_per_kind=3).fit(
        measure_synthetic(random_layers(40, 0, ("conv", "linear")), plat, costs), plat)
    horiz = LayerSpec("h", "conv", 8, 16, 8, 16, kernel=(1, 3), stride=(1, 2), padding=(0, 1), bn=True, act="relu")
    ms = pred.predict_layer_ms([layer, horiz])
    assert np.all(np.isfinite(ms)) and np.all(ms > 0)


@pytest.mark.slow
def test_select_ranks_by_predicted_latency_reaches_target_and_differs_from_flops():
    from compactnet.search.latency import MacsLatencyModel

    model = tiny_resnet()
    infos = lr.layer_infos(model)
    flops_like = MacsLatencyModel(ms_per_mmac=0.01)
    sel = lr.select_ranks_latency(model, flops_like, 1.8, infos=infos)
    assert sel.reached and sel.predicted_speedup >= 1.8
    from compactnet.extract import network_spec_from_torch

    spec = network_spec_from_torch(model)
    got = float(flops_like.predict_many([lr.decomposed_spec(spec, infos, sel.ranks)])[0])
    assert got == pytest.approx(sel.predicted_ms)
    # a platform punishing channel counts that are not multiples of 4: the chosen ranks avoid them
    aligned = MacsLatencyModel(ms_per_mmac=0.01, align=4, penalty=1.0)
    sel_al = lr.select_ranks_latency(model, aligned, 1.8, infos=infos)
    assert sel_al.reached
    assert all(r % 4 == 0 for r in sel_al.ranks.values()), sel_al.ranks
    assert any(r % 4 for r in lr.select_ranks(model, 1.8, infos=infos).values())


def test_select_ranks_latency_with_an_onnx_callable():
    from compactnet.runtimes import onnx_cost

    model = TwoConv().eval()
    import onnx

    predictor = lambda data: onnx_cost(onnx.load_from_string(data))[0] / 1e6  # noqa: E731 - MACs as "ms"
    sel = lr.select_ranks_latency(model, predictor, 1.3, input_shape=(1, 3, 16, 16), grid_points=6)
    assert sel.reached and sel.ranks


def test_measured_speedup_through_injected_compare_on_synthetic_platform():
    from compactnet.measure import compare
    from compactnet.runtimes import SyntheticRunner

    model = tiny_resnet()
    small = lr.decompose(model, lr.select_ranks(model, 2.5))
    runner = SyntheticRunner("synthetic-cpu-fp32-t1", sigma=0.0, overhead_s=0.0, bandwidth=1e15)
    fake = functools.partial(compare, check_window=0, runs=3, warmup=1)
    comp = lr.measure_speedup(model, small, runner, compare=fake, rounds=7)
    ratio, low, high = comp.speedups[1]
    # pure-MAC synthetic timing: the measured speedup is the ONNX graphs' MAC ratio
    assert ratio == pytest.approx(lr.theoretical_speedup(model, small), rel=0.05)
    assert low <= ratio <= high


def test_lowrank_report_with_finetune(tiny_data):
    from compactnet.measure import compare
    from compactnet.runtimes import SyntheticRunner
    from compactnet.train import Recipe

    model = tiny_resnet()
    small = lr.decompose(model, lr.select_ranks(model, 2.0))
    recipe = Recipe("t", "sgd", lr=0.01, epochs=1, batch_size=48, warmup_epochs=0.0, schedule="constant")
    fake = functools.partial(compare, check_window=0, runs=2, warmup=1)
    rep = lr.lowrank_report(model, small, tiny_data, SyntheticRunner(), finetune_recipe=recipe, compare=fake,
                            rounds=7)
    assert rep["theoretical_speedup"] >= 2.0
    assert rep["measured"]["speedup"] > 1.0
    for key in ("test_top1_original", "test_top1_decomposed", "test_top1_finetuned"):
        assert 0.0 <= rep[key] <= 100.0
    assert rep["finetune"]["epochs"] == 1
    json.dumps(rep)
