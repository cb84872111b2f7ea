"""benchmarks/zoo_journey.py on a tiny zoo folder and the tiny CIFAR copy."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from compactnet.data import load_cifar10
from compactnet.export import export_onnx
from compactnet.models import create_model, save_weights
from compactnet.spec import hardware_id
from compactnet.train import evaluate
from compactnet.zoo.index import ZooIndex, save_index

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "zoo"))
from zoo_helpers import make_entry  # noqa: E402

sys.path.pop(0)
TINY = {"widths": [8, 12, 12, 12, 16, 16, 16, 16, 16, 16, 16, 24, 24, 24, 32, 32, 32, 48], "last": 64}


def _bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import zoo_journey
    finally:
        sys.path.pop(0)
    return zoo_journey


def _zoo(tmp_path, top1_claim, hardware):
    root = tmp_path / "zoo"
    torch.manual_seed(0)
    model = create_model("mobilenetv2", TINY).eval()
    wpath = root / "models" / "trim" / "weights.safetensors"
    wpath.parent.mkdir(parents=True)
    save_weights(model, wpath)
    onnx = export_onnx(model).onnx_bytes   # the journey checks the ONNX file against its entry
    (wpath.parent / "model.onnx").write_bytes(onnx)
    e = make_entry("mobilenetv2.cifar10.ort-cpu-fp32-t1.s1p6x", onnx, wpath.read_bytes(),
                   onnx_path="models/trim/model.onnx", weights_path="models/trim/weights.safetensors",
                   hardware=hardware, top1=top1_claim, speedup=1.6, channels=TINY)
    save_index(ZooIndex((e,)), root / "index.json")
    return root / "index.json", model


def test_the_journey_checks_each_claim_it_pulls(tmp_path, tiny_npz, capsys):
    bench = _bench()
    index, model = _zoo(tmp_path, None, hardware_id())
    true_top1 = evaluate(model, load_cifar10(tiny_npz).test)
    index, _ = _zoo(tmp_path / "again", true_top1, hardware_id())
    base = ["--index", str(index), "--platforms", "ort-cpu-fp32-t1", "--data", str(tiny_npz)]
    out = tmp_path / "journey.md"
    assert bench.main(base + ["--speedups", "1.5", "--require-local", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mobilenetv2.cifar10.ort-cpu-fp32-t1.s1p6x" in text and "every claim checked held" in text
    assert out.exists() and out.with_suffix(".json").exists()
    # a budget nothing meets fails only when every budget must be served by a local entry
    assert bench.main(base + ["--speedups", "2.0"]) == 0
    assert bench.main(base + ["--speedups", "2.0", "--require-local"]) == 1
    assert "FAILED: ort-cpu-fp32-t1 at 2x: no entry" in capsys.readouterr().out


def test_a_card_that_overstates_its_top1_fails(tmp_path, tiny_npz, capsys):
    bench = _bench()
    index, model = _zoo(tmp_path, 101.0, hardware_id())
    args = ["--index", str(index), "--platforms", "ort-cpu-fp32-t1", "--speedups", "1.5", "--data", str(tiny_npz)]
    assert bench.main(args) == 1
    assert "its card says 101.00%" in capsys.readouterr().out
