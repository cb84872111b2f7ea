"""ONNX export: parity with torch, pinned opset/IR, named I/O, clear errors on bad files."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from compactnet.errors import CompactNetError, ConfigError, ModelFileError
from compactnet.export import ExportParityError, export_onnx, load_onnx, onnx_bytes
from compactnet.models import create_model

torch.set_num_threads(1)


def _randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give batch-norm layers non-trivial statistics so outputs are O(0.1-1), not ~0."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.normal_(0, 0.1, generator=g)
    return model


def _tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 10))


@pytest.mark.parametrize("name", ["mobilenetv2", "resnet20", "vgg16"])
def test_export_parity_opset_ir(name, tmp_path):
    model = _randomize_bn(create_model(name)).train()
    res = export_onnx(model, tmp_path / f"{name}.onnx")
    assert model.training, "export must restore the training flag"
    assert res.max_abs_diff < 1e-4
    assert res.opset == 17 and res.ir_version <= 10
    proto = load_onnx(tmp_path / f"{name}.onnx")
    assert proto.ir_version == res.ir_version
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert res.path == tmp_path / f"{name}.onnx" and res.path.read_bytes() == res.onnx_bytes
    assert {p.key: p.value for p in proto.metadata_props}.get("architecture") == name


def test_unregistered_model_gets_no_architecture_metadata():
    proto = export_onnx(_tiny(), check=False).model
    assert "architecture" not in {p.key for p in proto.metadata_props}


def test_ir_version_is_clipped_and_validated():
    res = export_onnx(_tiny(), input_shape=(1, 3, 8, 8), ir_version=14)
    assert res.ir_version == 10 and res.model.ir_version == 10
    assert export_onnx(_tiny(), input_shape=(1, 3, 8, 8), ir_version=9).model.ir_version == 9
    with pytest.raises(ConfigError, match="ir_version"):
        export_onnx(_tiny(), input_shape=(1, 3, 8, 8), ir_version=7)


def test_dynamic_batch_runs_at_other_batch_sizes():
    import onnxruntime as ort

    res = export_onnx(_tiny(), input_shape=(1, 3, 8, 8), dynamic_batch=True)
    assert res.max_abs_diff < 1e-4  # checked at batch 2
    sess = ort.InferenceSession(res.onnx_bytes, providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": np.zeros((5, 3, 8, 8), np.float32)})[0]
    assert out.shape == (5, 10)


def test_parity_failure_reports_difference(monkeypatch):
    import compactnet.export as ex

    real = ex._ort_outputs
    monkeypatch.setattr(ex, "_ort_outputs", lambda data, x: real(data, x) + 0.01)
    with pytest.raises(ExportParityError, match=r"max abs diff 0\.01") as info:
        export_onnx(_tiny(), input_shape=(1, 3, 8, 8))
    assert isinstance(info.value, ModelFileError) and info.value.max_abs_diff == pytest.approx(0.01, rel=1e-3)
    # check=False skips the comparison and says so with NaN
    assert np.isnan(export_onnx(_tiny(), input_shape=(1, 3, 8, 8), check=False).max_abs_diff)


def test_not_a_module():
    with pytest.raises(ConfigError, match="torch.nn.Module"):
        export_onnx("resnet20")


def test_truncated_missing_and_corrupt_files(tmp_path):
    res = export_onnx(_tiny(), tmp_path / "m.onnx", input_shape=(1, 3, 8, 8))
    data = res.onnx_bytes
    for frac in (0.1, 0.5, 0.9, 0.99):
        bad = tmp_path / f"cut{frac}.onnx"
        bad.write_bytes(data[: int(len(data) * frac)])
        with pytest.raises(ModelFileError, match="truncated or corrupt|holds no graph"):
            load_onnx(bad)
    with pytest.raises(ModelFileError, match="does not exist"):
        load_onnx(tmp_path / "missing.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty"):
        load_onnx(tmp_path / "empty.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 100)
    with pytest.raises(CompactNetError):
        load_onnx(tmp_path / "junk.onnx")
    with pytest.raises(ModelFileError):
        onnx_bytes(data[: len(data) // 2])
    assert isinstance(load_onnx(data), onnx.ModelProto)
    assert onnx_bytes(tmp_path / "m.onnx") == data


def test_export_is_deterministic():
    model = _randomize_bn(create_model("resnet20"))
    a = export_onnx(model, check=False).onnx_bytes
    b = export_onnx(model, check=False).onnx_bytes
    assert a == b
