"""Runners: every available runtime runs a tiny model like onnxruntime; errors name what exists."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest
import torch

from compactnet.errors import ConfigError, ModelFileError
from compactnet.export import export_onnx
from compactnet.runtimes import (OrtRunner, Runner, SyntheticRunner, available_platforms, get_runner,
                                 graph_inputs, onnx_cost, quantize_int8, random_inputs)
from compactnet.spec import LayerSpec, Platform

torch.set_num_threads(1)

HAVE_NCNN = importlib.util.find_spec("ncnn") is not None and importlib.util.find_spec("pnnx") is not None
RUNTIMES = ["ort-cpu-fp32-t1", "openvino-cpu-fp32-t1",
            pytest.param("ncnn-cpu-fp32-t1", marks=pytest.mark.skipif(not HAVE_NCNN, reason="ncnn/pnnx not installed"))]


@pytest.fixture(scope="module")
def tiny() -> bytes:
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                            torch.nn.Conv2d(8, 8, 3, padding=1, groups=8), torch.nn.ReLU6(),
                            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))
    return export_onnx(m, input_shape=(1, 3, 8, 8)).onnx_bytes


@pytest.fixture(scope="module")
def feed() -> dict:
    return {"input": np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)}


@pytest.fixture(scope="module")
def reference(tiny, feed) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(tiny, providers=["CPUExecutionProvider"]).run(None, feed)[0]


@pytest.mark.runtime
@pytest.mark.parametrize("key", RUNTIMES)
def test_runner_matches_onnxruntime(key, tiny, feed, reference):
    runner = get_runner(key)
    assert isinstance(runner, Runner)
    assert runner.platform.key == key
    assert runner.platform.hardware and runner.platform.runtime_version
    infer = runner.load(tiny)
    infer()
    infer()
    out = runner.run(tiny, feed)
    assert len(out) == 1 and out[0].shape == reference.shape
    assert np.abs(reference).max() > 0.05  # a meaningful comparison
    np.testing.assert_allclose(out[0], reference, atol=1e-4, rtol=0)


@pytest.mark.runtime
@pytest.mark.parametrize("key", ["ort-cpu-int8-t1", "openvino-cpu-int8-t1"])
def test_int8_platforms_run_close_to_fp32(key, tiny, feed, reference):
    runner = get_runner(key)
    runner.load(tiny)()
    out = runner.run(tiny, feed)[0]
    assert out.shape == reference.shape
    assert np.abs(out - reference).max() < 0.1 * np.abs(reference).max() + 0.02


@pytest.mark.runtime
def test_quantize_int8_makes_a_qdq_model(tiny, feed, reference):
    import onnxruntime as ort

    calib = np.random.default_rng(3).standard_normal((4, 3, 8, 8)).astype(np.float32)
    q = quantize_int8(tiny, calibration_inputs=calib)
    proto = onnx.load_from_string(q)
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert proto.ir_version <= 10
    out = ort.InferenceSession(q, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    assert out.shape == reference.shape and np.isfinite(out).all()
    # a list of feeds works too; two calibrations on different data give different scales
    q2 = quantize_int8(tiny, calibration_inputs=[{"input": 10 * calib[:1]}])
    assert q2 != q


def test_int8_weights_use_7_bits_on_cpus_without_vnni(tiny, tmp_path):
    from compactnet.runtimes import cpu_has_vnni

    avx2 = tmp_path / "avx2"
    avx2.write_text("processor : 0\nflags : fpu sse4_2 avx avx2 fma\n\nprocessor : 1\nflags : fpu avx2\n")
    vnni = tmp_path / "vnni"
    vnni.write_text("flags : fpu avx2 avx512f avx512_vnni amx_int8\n")
    if importlib.util.find_spec("platform") and __import__("platform").machine().lower() in ("x86_64", "amd64"):
        assert not cpu_has_vnni(avx2) and cpu_has_vnni(vnni)
    assert cpu_has_vnni(tmp_path / "missing")          # no cpuinfo: no saturating kernel to avoid

    def weight_range(q):
        w = [t for t in onnx.load_from_string(q).graph.initializer if t.data_type == onnx.TensorProto.INT8]
        return max(int(np.abs(onnx.numpy_helper.to_array(t)).max()) for t in w)

    calib = np.random.default_rng(3).standard_normal((4, 3, 8, 8)).astype(np.float32)
    assert weight_range(quantize_int8(tiny, calibration_inputs=calib, reduce_range=True)) <= 64
    assert weight_range(quantize_int8(tiny, calibration_inputs=calib, reduce_range=False)) > 64


def test_unknown_and_unavailable_provider_errors():
    with pytest.raises(ConfigError, match="cpu, cuda"):
        get_runner("ort-foo-fp32-t1")
    with pytest.raises(ConfigError, match=r"available providers: .*cpu"):
        get_runner("ort-nnapi-fp32-t1")
    with pytest.raises(ConfigError, match="available devices: cpu"):
        get_runner("openvino-npu-fp32-t1")
    with pytest.raises(ConfigError, match="torch is not implemented"):
        get_runner("torch-cpu-fp32-t1")
    with pytest.raises(ConfigError, match="threads"):
        get_runner("ort-cpu-fp32-t0")
    if HAVE_NCNN:
        with pytest.raises(ConfigError, match="precision must be one of fp32, fp16 for ncnn"):
            get_runner("ncnn-cpu-int8-t1")


def test_corrupt_model_is_a_model_file_error(tiny):
    runner = OrtRunner("ort-cpu-fp32-t1")
    with pytest.raises(ModelFileError):
        runner.load(tiny[: len(tiny) // 2])
    with pytest.raises(ModelFileError, match="does not exist"):
        runner.load("/nonexistent/model.onnx")


def test_available_platforms_lists_this_machine():
    plats = available_platforms()
    keys = [p.key for p in plats]
    assert "ort-cpu-fp32-t1" in keys
    assert all(isinstance(p, Platform) and p.hardware and p.runtime_version for p in plats)
    assert not any(p.provider == "azure" for p in plats)
    assert len(set(keys)) == len(keys)


def test_graph_inputs_and_random_inputs(tiny):
    proto = onnx.load_from_string(tiny)
    infos = graph_inputs(proto)
    assert [(i.name, i.shape, i.dtype) for i in infos] == [("input", (1, 3, 8, 8), np.dtype(np.float32))]
    a, b = random_inputs(infos, seed=0), random_inputs(infos, seed=0)
    np.testing.assert_array_equal(a["input"], b["input"])
    assert not np.array_equal(a["input"], random_inputs(infos, seed=1)["input"])


def test_onnx_cost_counts_conv_macs():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    proto = onnx.load_from_string(export_onnx(conv, input_shape=(1, 3, 8, 8)).onnx_bytes)
    macs, nbytes = onnx_cost(proto)
    assert macs == 8 * 8 * 4 * 3 * 9
    assert nbytes == 4 * (3 * 64 + 4 * 64 + 4 * 3 * 9)


def test_synthetic_runner_is_deterministic_and_scales_with_cost(tiny):
    small = LayerSpec("a", "conv", 16, 16, 8, 8, kernel=3, padding=1)
    big = LayerSpec("b", "conv", 64, 64, 8, 8, kernel=3, padding=1)

    def times(seed):
        r = SyntheticRunner(seed=seed)
        f = r.load(small)
        out = []
        for _ in range(5):
            t0 = r.timer()
            f()
            out.append(r.timer() - t0)
        return out

    assert times(0) == times(0)
    assert times(0) != times(1)
    r = SyntheticRunner()
    assert r.expected_s(big) > 5 * r.expected_s(small)
    assert r.platform.key == "synthetic-cpu-fp32-t1" and r.platform.hardware == "synthetic"
    assert r.expected_s(tiny) > 0
    assert not r.apply_load_policy


@pytest.mark.runtime
def test_resnet20_agrees_across_runtimes():
    """A real network (residual adds, strided convs, linear head) gives the same logits everywhere."""
    from compactnet.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet20")
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 1.5, generator=g)
            m.bias.data.normal_(0, 0.1, generator=g)
    data = export_onnx(model).onnx_bytes
    x = {"input": np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype(np.float32)}
    ref = get_runner("ort-cpu-fp32-t1").run(data, x)[0]
    keys = ["openvino-cpu-fp32-t1"] + (["ncnn-cpu-fp32-t1"] if HAVE_NCNN else [])
    for key in keys:
        np.testing.assert_allclose(get_runner(key).run(data, x)[0], ref, atol=1e-4, rtol=0, err_msg=key)
