"""benchmarks/retrain_bench.py on a tiny search-result folder and the tiny CIFAR copy."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from compactnet.models import create_model, save_weights

ROOT = Path(__file__).resolve().parents[1]
TINY = {"widths": [8, 12, 12, 12, 16, 16, 16, 16, 16, 16, 16, 24, 24, 24, 32, 32, 32, 48], "last": 64}


def test_retrain_reports_before_and_after_and_resumes(tmp_path, tiny_npz):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import retrain_bench
    finally:
        sys.path.pop(0)
    torch.manual_seed(0)
    res = tmp_path / "result"
    res.mkdir()
    save_weights(create_model("mobilenetv2", TINY), res / "weights.safetensors")
    (res / "channels.json").write_text(json.dumps({"model": "mobilenetv2", **TINY}))
    (res / "report.json").write_text(json.dumps({"model": "mobilenetv2", "original": {"test_top1": 50.0}}))
    teacher = tmp_path / "teacher.safetensors"
    save_weights(create_model("mobilenetv2"), teacher)
    out = tmp_path / "out"
    args = [str(res), "--epochs", "1", "--data", str(tiny_npz), "--teacher", str(teacher), "--threads", "1",
            "--out", str(out)]
    assert retrain_bench.main(args) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["epochs"] == 1 and rep["distill"] and len(rep["history"]) == 1
    assert rep["loss_vs_baseline_after"] == 50.0 - rep["test_top1_after"]
    assert "after this retrain" in (out / "report.md").read_text() and (out / "weights.safetensors").exists()
    # a finished run resumes from its checkpoint instead of training again
    assert retrain_bench.main(args) == 0
    assert json.loads((out / "report.json").read_text())["history"] == rep["history"]
    # the control retrains the unpruned teacher by the same recipe
    ctl = tmp_path / "control"
    assert retrain_bench.main([*args[:-1], str(ctl), "--control"]) == 0
    rec = json.loads((ctl / "report.json").read_text())
    assert rec["control"] and "control" in (ctl / "report.md").read_text()
