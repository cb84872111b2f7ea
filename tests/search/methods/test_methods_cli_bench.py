"""The methods' click commands (registered on a throw-away group) and the benchmark's --quick run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

from compactnet.errors import ConfigError
from compactnet.models import create_model, save_weights
from search_tiny import TINY_RESNET


@pytest.fixture
def tiny_files(tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet20", TINY_RESNET)
    save_weights(model, tmp_path / "w.safetensors")
    (tmp_path / "ch.json").write_text(json.dumps({"model": "resnet20", **TINY_RESNET}))
    return tmp_path / "w.safetensors", tmp_path / "ch.json"


def _group():
    from compactnet.search.methods.cli import lowrank, quantize, share

    @click.group()
    def g() -> None:
        pass

    for cmd in (lowrank, share, quantize):
        g.add_command(cmd)
    return g


def test_lowrank_command_speedup_config_and_single_layer(tiny_files, tmp_path, tiny_npz):
    w, ch = tiny_files
    base = ["--model", "resnet20", "--weights", str(w), "--channels", str(ch), "--data", str(tiny_npz)]
    r = CliRunner().invoke(_group(), ["lowrank", *base, "--speedup", "2", "--out", str(tmp_path / "a"), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["theoretical_speedup"] >= 2.0
    ranks = json.loads((tmp_path / "a" / "ranks.json").read_text())["ranks"]
    assert ranks == rep["ranks"]
    r = CliRunner().invoke(_group(), ["lowrank", *base, "--config", str(tmp_path / "a" / "ranks.json"),
                                      "--out", str(tmp_path / "b"), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["ranks"] == ranks
    r = CliRunner().invoke(_group(), ["lowrank", *base, "--layer", "layers.0.conv1", "--rank", "3",
                                      "--out", str(tmp_path / "c"), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["ranks"] == {"layers.0.conv1": 3}
    r = CliRunner().invoke(_group(), ["lowrank", *base, "--layer", "nope", "--rank", "3", "--out", str(tmp_path / "d")])
    assert isinstance(r.exception, ConfigError), r.output
    assert "names layer 'nope', which the model does not have" in str(r.exception)
    assert "layers.0.conv1" in str(r.exception)                 # the layers it could have named
    r = CliRunner().invoke(_group(), ["lowrank", *base, "--out", str(tmp_path / "e")])
    assert r.exit_code == 2 and "exactly one" in r.output


def test_share_and_quantize_commands(tiny_files, tmp_path, tiny_npz):
    w, ch = tiny_files
    base = ["--model", "resnet20", "--weights", str(w), "--channels", str(ch), "--data", str(tiny_npz)]
    r = CliRunner().invoke(_group(), ["share", *base, "--dataset-scale", "1.0", "--out", str(tmp_path / "s"),
                                      "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert (tmp_path / "s" / "shared.safetensors").stat().st_size == rep["artefact_bytes"]
    # a zero size limit is a limit (not "no limit"), and a scale above 1 is not read as a count
    r = CliRunner().invoke(_group(), ["share", *base, "--max-size-mb", "0", "--out", str(tmp_path / "s0")])
    assert isinstance(r.exception, ConfigError) and "max_size" in str(r.exception)
    r = CliRunner().invoke(_group(), ["share", *base, "--dataset-scale", "2", "--out", str(tmp_path / "s2")])
    assert isinstance(r.exception, ConfigError) and "dataset_scale" in str(r.exception)
    r = CliRunner().invoke(_group(), ["quantize", *base, "--calibration", "16", "--out", str(tmp_path / "q"),
                                      "--json"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "q" / "model.int8.onnx").stat().st_size > 0
    assert 0 <= json.loads(r.output)["test_top1_int8"] <= 100


@pytest.mark.slow
def test_benchmark_quick_run(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
    try:
        import methods_bench
    finally:
        sys.path.pop(0)
    rc = methods_bench.main(["--quick", "--quiet", "--out", str(tmp_path), "--speedups", "2", "--finetune-epochs", "0",
                             "--ws-max-evals", "6"])
    assert rc == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    row = rep["lowrank"][0]
    assert row["flops"]["theoretical_speedup"] >= 2.0 and row["predictor"]["predicted_speedup"] >= 2.0
    assert {"speedup", "low", "high"} <= set(row["flops"]["measured"])
    assert rep["weight_sharing"]["compression_ratio"] > 1 and rep["weight_sharing"]["int8_comparison"]
    assert 0 <= rep["int8"]["test_top1_int8"] <= 100
    assert "Low-rank" in (tmp_path / "report.md").read_text()
