"""Zoo names, entry records and their JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compactnet.errors import ConfigError
from compactnet.zoo.entry import (InputContract, ZooEntry, latency_tag, make_name, parse_name, speedup_tag,
                                  tag_speedup)
from compactnet.zoo.errors import IndexFormatError
from zoo_helpers import make_entry


@pytest.mark.parametrize("name, parts", [
    ("mobilenetv2.cifar10.ort-cpu-fp32-t1.s1p8x", ("mobilenetv2", "cifar10", "ort-cpu-fp32-t1", "s1p8x")),
    ("resnet20.cifar10.openvino-cpu-fp32-t1.base", ("resnet20", "cifar10", "openvino-cpu-fp32-t1", "base")),
    ("vgg16.cifar10.ncnn-cpu-fp16-t4.s2x-int8", ("vgg16", "cifar10", "ncnn-cpu-fp16-t4", "s2x-int8")),
    ("mobilenetv2.cifar10.ort-nnapi-fp16-t1.l0p5ms", ("mobilenetv2", "cifar10", "ort-nnapi-fp16-t1", "l0p5ms")),
])
def test_parse_name(name, parts):
    assert tuple(parse_name(name)) == parts
    assert make_name(*parts) == name


@pytest.mark.parametrize("bad", [
    "mobilenetv2.cifar10.ort-cpu-fp32-t1.s1.8x",   # dot inside a number
    "mobilenetv2.cifar10.ort-cpu-fp32-t1",         # no tag
    "mobilenetv2.cifar10.ort-cpu-fp64-t1.base",    # unknown precision
    "mobilenetv2.cifar10.tflite-cpu-fp32-t1.base",  # unknown runtime
    "MobileNetV2.cifar10.ort-cpu-fp32-t1.base",    # upper case
    "../x.cifar10.ort-cpu-fp32-t1.base",
    "mobilenetv2.cifar10.ort-cpu-fp32-t1.fast",
])
def test_parse_name_rejects(bad):
    with pytest.raises(ConfigError, match="name must be"):
        parse_name(bad)


def test_tags():
    assert speedup_tag(1.8) == "s1p8x"
    assert speedup_tag(2.0) == "s2x"
    assert speedup_tag(1.25) == "s1p25x"
    assert latency_tag(0.5) == "l0p5ms"
    assert tag_speedup("s1p8x") == pytest.approx(1.8)
    assert tag_speedup("s2x-int8") == 2.0
    assert tag_speedup("base") == 1.0
    assert tag_speedup("l0p5ms") is None
    with pytest.raises(ConfigError):
        speedup_tag(0)


def test_entry_json_round_trip():
    from compactnet.spec import LayerSpec, NetworkSpec

    net = NetworkSpec("resnet20", (1, 3, 32, 32), (LayerSpec("c", "conv", 3, 4, 32, 32, (3, 3), 1, 1),),
                      {"input": 3, "c": 4}, ("input",))
    e = make_entry("resnet20.cifar10.ort-cpu-fp32-t1.s1p5x", speedup=1.6, network=net)
    text = e.to_json()
    back = ZooEntry.from_json(text)
    assert back == e
    assert back.to_dict() == json.loads(text)
    assert back.tag == "s1p5x" and back.target_speedup == 1.5
    assert back.size_bytes == e.onnx.size + e.weights.size
    assert back.metrics.latency.rounds == e.metrics.latency.rounds
    assert back.input.mean == e.input.mean and len(back.input.classes) == 10
    assert "opset" not in back.to_dict()["weights"] and back.to_dict()["onnx"]["ir_version"] == 10
    assert hash(back) == hash(e)


def test_entry_fields_must_agree_with_name():
    e = make_entry("resnet20.cifar10.ort-cpu-fp32-t1.base")
    d = e.to_dict()
    d["platform"] = "openvino-cpu-fp32-t1"
    with pytest.raises(ConfigError, match="platform"):
        ZooEntry.from_dict(d)


def test_entry_rejects_unknown_and_missing_fields():
    d = make_entry("resnet20.cifar10.ort-cpu-fp32-t1.base").to_dict()
    with pytest.raises(IndexFormatError, match="unknown field"):
        ZooEntry.from_dict({**d, "colour": "red"})
    d.pop("weights")
    with pytest.raises(IndexFormatError, match="missing"):
        ZooEntry.from_dict(d)


def test_bad_hash_rejected():
    d = make_entry("resnet20.cifar10.ort-cpu-fp32-t1.base").to_dict()
    d["onnx"]["sha256"] = "abc"
    with pytest.raises(ConfigError, match="sha256"):
        ZooEntry.from_dict(d)


def test_input_contract_preprocess():
    c = InputContract.cifar10()
    img = np.full((32, 32, 3), 255, np.uint8)
    x = c.preprocess(img)
    assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], [(1 - m) / s for m, s in zip(c.mean, c.std)], rtol=1e-5)
    # same as the training pipeline's normalisation
    from compactnet.train import _normalise, to_tensor

    batch = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(c.preprocess(batch), _normalise(to_tensor(batch)).contiguous().numpy(), atol=1e-5)
