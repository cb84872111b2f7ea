"""Weight sharing as the size step of a composition (`optimize --methods trim,share --max-size-mb`)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from compactnet.errors import ConfigError
from compactnet.models import create_model
from search_tiny import TINY_RESNET


def tiny_resnet():
    torch.manual_seed(0)
    return create_model("resnet20", TINY_RESNET).eval()


def _settings():
    from compactnet.search.methods.compose import ComposeSettings

    return ComposeSettings(max_iterations=2, candidate_steps=1, candidate_batch=16, train_subset=32, bn_batches=1,
                           val_limit=20, winner_steps=1, n_calibration=16, max_trim_candidates=2)


def test_share_after_the_latency_steps_writes_the_artefact_and_reports_size(tiny_data, tmp_path):
    from compactnet.search.latency import MacsLatencyModel
    from compactnet.search.methods.compose import compose, share_composition
    from compactnet.search.methods.weight_sharing import load_shared

    torch.set_num_threads(1)
    lat = MacsLatencyModel()
    res = compose(tiny_resnet(), tiny_data, lat, 1.3, methods=["trim", "share"], settings=_settings())
    # share is not an action of the latency loop
    assert all(c["method"] == "trim" for h in res.history for c in h["candidates"])
    before_label, before_ms = res.label, res.predicted_ms
    rec = share_composition(res, tiny_data, tmp_path / "ws", dataset_scale=1.0, max_evals=8)
    art = tmp_path / "ws" / "shared.safetensors"
    assert art.exists() and rec["artefact_bytes"] == art.stat().st_size
    assert rec["fp32_safetensors_bytes"] == (tmp_path / "ws" / "fp32.safetensors").stat().st_size
    assert rec["compression_ratio"] == pytest.approx(rec["fp32_safetensors_bytes"] / rec["artefact_bytes"])
    assert rec["compression_ratio"] > 1.0
    # the exploration kept the tolerance of the composed network's validation top-1 (on the split it explored)
    assert rec["val_top1_after_sharing"] >= 0.99 * rec["val_top1_before_sharing"] - 1e-9
    assert res.label == before_label + "+share" and res.predicted_ms == before_ms and rec["latency_changed"] is False
    assert "does not change latency" in rec["note"]
    summary = res.summary()
    assert summary["weight_sharing"] is rec and summary["predicted_ms"] == before_ms
    json.dumps(summary, default=str)
    # the artefact decodes into the composed (trimmed) architecture
    shared = load_shared(art, _copy(res.model))
    assert shared(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    # a budget no per-layer choice meets: the weight-sharing module's clear error
    with pytest.raises(ConfigError, match="max_size"):
        share_composition(res, tiny_data, tmp_path / "tiny", max_size_bytes=100, dataset_scale=1.0, max_evals=8)


def _copy(model):
    import copy

    return copy.deepcopy(model)


def test_a_budget_below_the_composition_is_honoured(tiny_data, tmp_path):
    from compactnet.search.latency import MacsLatencyModel
    from compactnet.search.methods.compose import compose, share_composition

    torch.set_num_threads(1)
    res = compose(tiny_resnet(), tiny_data, MacsLatencyModel(), 1.3, methods=["trim", "share"], settings=_settings())
    free = share_composition(res, tiny_data, tmp_path / "a", dataset_scale=1.0, max_evals=8)
    budget = free["artefact_bytes"] + 64
    rec = share_composition(res, tiny_data, tmp_path / "b", max_size_bytes=budget, dataset_scale=1.0, max_evals=8)
    assert rec["artefact_bytes"] <= budget and rec["max_size_bytes"] == budget
    assert res.label.count("+share") == 1


def test_cli_max_size_needs_share_and_share_is_a_method():
    from compactnet.cli import cli

    r = CliRunner().invoke(cli, ["optimize", "--methods", "trim,int8", "--speedup", "1.5", "--max-size-mb", "0.5"])
    assert r.exit_code == 2 and "--max-size-mb" in r.output and "share" in r.output
    r = CliRunner().invoke(cli, ["optimize", "--methods", "trim,share", "--speedup", "1.5", "--max-size-mb", "0"])
    assert r.exit_code == 2 and "--max-size-mb" in r.output
    r = CliRunner().invoke(cli, ["optimize", "--methods", "trim,prune", "--speedup", "1.5"])
    assert r.exit_code == 2 and "share" in r.output
    r = CliRunner().invoke(cli, ["optimize", "--help"])
    assert "--max-size-mb" in r.output and "share" in r.output


def test_cli_compose_writes_the_sharing_into_the_output_folder(tiny_data, tmp_path, monkeypatch):
    import functools

    import compactnet.cli as cli_mod
    import compactnet.data
    from compactnet.search.latency import MacsLatencyModel
    from compactnet.search.methods import compose as comp

    torch.set_num_threads(1)
    monkeypatch.setattr(cli_mod, "load_model", lambda *a, **k: tiny_resnet())
    monkeypatch.setattr(compactnet.data, "load_cifar10", lambda *a, **k: tiny_data)
    monkeypatch.setattr(comp, "compose", functools.partial(comp.compose, settings=_settings()))
    share = comp.share_composition
    monkeypatch.setattr(comp, "share_composition",
                        lambda *a, **k: share(*a, **{**k, "dataset_scale": 1.0, "max_evals": 8}))
    out = tmp_path / "run"
    cli_mod._compose("resnet20", None, None, "ort-cpu-fp32-t1", 1.3, MacsLatencyModel(), ("trim", "share"), str(out),
                     None, 0, False, "ignore", None)
    summary = json.loads((out / "compose.json").read_text())
    assert summary["label"].endswith("+share") and (out / "weight_sharing" / "shared.safetensors").exists()
    assert summary["weight_sharing"]["latency_changed"] is False and (out / "weights.safetensors").exists()
    with pytest.raises(ConfigError, match="max_size"):
        cli_mod._compose("resnet20", None, None, "ort-cpu-fp32-t1", 1.3, MacsLatencyModel(), ("trim", "share"),
                         str(tmp_path / "small"), None, 0, False, "ignore", 1e-4)
