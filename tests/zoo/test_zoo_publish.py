"""Publishing search results and baselines, the catalogue page, then pulling and running them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from compactnet.errors import ConfigError
from compactnet.models import create_model, save_weights
from compactnet.zoo.download import load, sha256_file
from compactnet.zoo.index import load_index
from compactnet.zoo.publish import cifar10_accuracy, protocol_latency, publish, publish_model
from compactnet.zoo.select import best

PLATFORM = "synthetic-cpu-fp32-t1"  # virtual clock: protocol statistics without real timing
TRIMMED = {"stages": [4, 8, 8]}


@pytest.fixture
def result_dir(tmp_path):
    """A folder laid out as ``compactnet optimize`` writes it."""
    from compactnet.export import export_onnx
    from compactnet.spec import Platform

    torch.manual_seed(0)
    d = tmp_path / "search-out"
    model = create_model("resnet20", TRIMMED)
    save_weights(model, d / "weights.safetensors")
    export_onnx(model, d / "model.onnx")
    export_onnx(create_model("resnet20"), d / "original.onnx")
    (d / "channels.json").write_text(json.dumps({"model": "resnet20", **model.config.to_dict()}))
    plat = Platform.parse(PLATFORM, hardware="synthetic", runtime_version="1")
    (d / "report.json").write_text(json.dumps({
        "model": "resnet20", "platform": {**plat.to_dict(), "describe": plat.describe()},
        "target_speedup": 1.5, "target_latency_ms": None, "preset": {"name": "quick"},
        "predicted": {"original_ms": 0.03, "trimmed_ms": 0.01, "speedup": 3.0},
        "trimmed": {"val_top1": 11.5, "test_top1": 10.0},
        "channels": {"original": {}, "trimmed": {}, "config": TRIMMED, "original_config": {}}}))
    (d / "trajectory.json").write_text("[]")
    return d


@pytest.fixture
def base_weights(tmp_path):
    torch.manual_seed(1)
    p = tmp_path / "resnet20.safetensors"
    save_weights(create_model("resnet20"), p)
    return p


def test_publish_baseline_and_search_result(tmp_path, tiny_npz, result_dir, base_weights):
    zoo = tmp_path / "zoo"
    index_path = zoo / "index.json"
    acc = cifar10_accuracy(tiny_npz)
    lat = protocol_latency(rounds=7, runs=5, warmup=1, check_window=0)
    base = publish_model(base_weights, "resnet20", index_path, PLATFORM, measure_latency=lat, measure_accuracy=acc,
                         publish_command="compactnet zoo publish ...")
    assert base.name == f"resnet20.cifar10.{PLATFORM}.base"
    assert base.metrics.speedup == 1.0 and base.metrics.latency.value_ms > 0
    trimmed = publish(result_dir, index_path, measure_latency=lat, measure_accuracy=acc)
    assert trimmed.name == f"resnet20.cifar10.{PLATFORM}.s1p5x"

    index = load_index(index_path)
    assert index.names == [base.name, trimmed.name]
    e = index.get(trimmed.name)
    assert e == trimmed
    # measured, not copied: the synthetic platform makes the trimmed net several times faster
    m = e.metrics
    assert m.speedup > 2 and m.speedup_low <= m.speedup <= m.speedup_high
    assert m.latency.value_ms < base.metrics.latency.value_ms and len(m.latency.rounds) == 7
    assert m.runtime_version == "1" and e.hardware == "synthetic"
    # test top-1 of the published weights on the tiny test split, with its data copy and hash
    from compactnet.data import load_cifar10
    from compactnet.models import load_weights
    from compactnet.train import evaluate

    ds = load_cifar10(tiny_npz)
    model = load_weights(create_model("resnet20", TRIMMED), result_dir / "weights.safetensors")
    assert m.top1 == pytest.approx(evaluate(model, ds.test))
    assert m.data_copy == "packed-jpeg" and m.test_hash == ds.test_hash
    # report figures recorded
    assert m.val_top1 == 11.5 and m.predicted_latency.value_ms == 0.01
    assert e.provenance.command.startswith("compactnet optimize --model resnet20 --platform synthetic-cpu-fp32-t1 "
                                           "--speedup 1.5 --preset quick")
    # provenance holds no absolute path of the publishing machine: outside any repository, paths are
    # relative to the zoo folder's parent
    assert e.provenance.created and e.provenance.source == result_dir.name
    assert sha256_file(zoo / e.onnx.path) == sha256_file(result_dir / "model.onnx")
    assert e.channels["stages"] == [4, 8, 8] and e.network is not None and e.network.architecture == "resnet20"
    # files copied under name-based paths, with sizes and hashes
    for ref in (e.onnx, e.weights):
        path = zoo / ref.path
        assert path.is_file() and path.stat().st_size == ref.size and sha256_file(path) == ref.sha256
        assert ref.path.startswith(f"models/{e.name}/")
    assert e.onnx.opset == 17 and e.onnx.ir_version <= 10 and e.input.name == "input"
    assert sha256_file(zoo / e.weights.path) == sha256_file(result_dir / "weights.safetensors")
    assert not list(zoo.glob(".publish-*"))

    # catalogue: one table per platform and an embedded plot
    html = (zoo / "index.html").read_text()
    assert html.count("<table>") == 1 and trimmed.name in html and base.name in html
    assert "src='data:image/png;base64," in html

    # duplicate name refused
    with pytest.raises(ConfigError, match="already has"):
        publish(result_dir, index_path, measure_latency=lat, measure_accuracy=acc)

    # pull from the published zoo and run it: onnxruntime and the rebuilt torch model agree
    files = load(trimmed.name, index_url=index_path.as_uri(), cache_dir=tmp_path / "cache", progress=False,
                 build_model=True)
    x = e.input.preprocess(ds.test.images[:1])
    out = files.session().run(None, {e.input.name: x})[0]
    with torch.no_grad():
        ref = files.model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-4)
    # the pulled channels.json rebuilds the model through the registry (what `compactnet evaluate` reads)
    from compactnet.models import parse_channels

    assert parse_channels("resnet20", files.channels) == parse_channels("resnet20", TRIMMED)

    # selection on the measured platform and hardware
    sel = best(index, PLATFORM, speedup=1.5, hardware="synthetic")
    assert sel.entry.name == trimmed.name and not sel.predicted


def test_publish_injected_measurers_content_layout(tmp_path, result_dir):
    from compactnet.spec import Latency, Platform
    from compactnet.zoo.publish import AccuracyResult, LatencyResult

    seen = {}

    def fake_latency(candidate, baseline, platform):
        seen["args"] = (candidate, baseline, platform)
        assert candidate.is_file() and baseline.is_file()
        return LatencyResult(Latency(0.5, 0.49, 0.51, 280, (0.5,) * 7), 1.81, 1.76, 1.86,
                             Platform.parse(platform, hardware="Fake CPU", runtime_version="9.9"), 0.1)

    entry = publish(result_dir, tmp_path / "z" / "index.json", platform="ort-cpu-fp32-t1", layout="content",
                    target_speedup=None, measure_latency=fake_latency,
                    measure_accuracy=lambda model: AccuracyResult(42.0, "original", "feedbeef"), catalogue=False)
    assert seen["args"][2] == "ort-cpu-fp32-t1"
    # no target given: named after what the measurement guarantees, the lower bound 1.76 rounded down
    assert entry.name == "resnet20.cifar10.ort-cpu-fp32-t1.s1p7x"
    assert entry.onnx.path == f"files/{entry.onnx.sha256}.onnx"
    assert entry.weights.path == f"files/{entry.weights.sha256}.safetensors"
    assert entry.hardware == "Fake CPU" and entry.metrics.runtime_version == "9.9"
    assert entry.metrics.top1 == 42.0 and entry.metrics.speedup_low == 1.76
    assert not (tmp_path / "z" / "index.html").exists()
    # the baseline timed against is the folder's original.onnx
    assert seen["args"][1] == result_dir / "original.onnx"


def test_publish_latency_target_names_entry(tmp_path, result_dir):
    from compactnet.spec import Latency, Platform
    from compactnet.zoo.publish import AccuracyResult, LatencyResult

    rep = json.loads((result_dir / "report.json").read_text())
    rep["target_latency_ms"] = 0.25
    (result_dir / "report.json").write_text(json.dumps(rep))
    fake = lambda c, b, p: LatencyResult(Latency(0.2), 2.0, 1.9, 2.1, Platform.parse(p, hardware="X"))  # noqa: E731
    entry = publish(result_dir, tmp_path / "z" / "index.json", measure_latency=fake,
                    measure_accuracy=lambda m: AccuracyResult(1.0, "original", "h"), catalogue=False)
    assert entry.name == f"resnet20.cifar10.{PLATFORM}.l0p25ms"
    assert "--latency-ms 0.25" in entry.provenance.command


def test_publish_rejects_mismatched_onnx(tmp_path, result_dir):
    from compactnet.errors import ModelFileError
    from compactnet.export import export_onnx

    torch.manual_seed(5)
    export_onnx(create_model("resnet20", TRIMMED), result_dir / "model.onnx")  # other (random) weights
    with pytest.raises(ModelFileError, match="does not compute"):
        publish(result_dir, tmp_path / "z" / "index.json", measure_latency=None,
                measure_accuracy=lambda m: None)
    assert not (tmp_path / "z" / "index.json").exists()


def _fake_latency(speedup, low, high, seen=None):
    from compactnet.spec import Latency, Platform
    from compactnet.zoo.publish import LatencyResult

    def run(candidate, baseline, platform):
        if seen is not None:
            seen.append((candidate, baseline, platform))
        return LatencyResult(Latency(0.5), speedup, low, high, Platform.parse(platform, hardware="Fake CPU"))

    return run


def test_a_target_name_the_measured_lower_bound_misses_needs_force(tmp_path, result_dir):
    from compactnet.zoo.publish import AccuracyResult

    acc = lambda m: AccuracyResult(40.0, "original", "h")  # noqa: E731
    index = tmp_path / "z" / "index.json"
    with pytest.raises(ConfigError, match=r"s1p5x.*lower bound 1\.45x.*force=True"):
        publish(result_dir, index, measure_latency=_fake_latency(1.52, 1.45, 1.6), measure_accuracy=acc,
                catalogue=False)                      # the report's target 1.5x names it
    assert not index.exists()
    forced = publish(result_dir, index, measure_latency=_fake_latency(1.52, 1.45, 1.6), measure_accuracy=acc,
                     catalogue=False, force=True)
    assert forced.name.endswith(".s1p5x") and forced.metrics.speedup_low == 1.45
    met = publish(result_dir, index, measure_latency=_fake_latency(1.6, 1.5, 1.7), measure_accuracy=acc,
                  catalogue=False, replace_existing=True)
    assert met.name.endswith(".s1p5x")


def test_a_replacement_may_not_be_less_accurate_without_force(tmp_path, result_dir):
    from compactnet.zoo.publish import AccuracyResult

    acc = lambda top1: (lambda m: AccuracyResult(top1, "original", "h"))  # noqa: E731
    index = tmp_path / "z" / "index.json"
    lat = _fake_latency(1.6, 1.55, 1.7)
    first = publish(result_dir, index, measure_latency=lat, measure_accuracy=acc(71.9), catalogue=False)
    with pytest.raises(ConfigError, match=r"s1p5x.*71\.90%.*68\.61%.*force=True"):
        publish(result_dir, index, measure_latency=lat, measure_accuracy=acc(68.61), catalogue=False,
                replace_existing=True)
    assert load_index(index).get(first.name).metrics.top1 == 71.9
    # as accurate or better replaces; force replaces anyway
    assert publish(result_dir, index, measure_latency=lat, measure_accuracy=acc(72.0), catalogue=False,
                   replace_existing=True).metrics.top1 == 72.0
    assert publish(result_dir, index, measure_latency=lat, measure_accuracy=acc(50.0), catalogue=False,
                   replace_existing=True, force=True).metrics.top1 == 50.0


def test_an_int8_platform_needs_the_int8_graph_and_its_own_top1(tmp_path, result_dir, base_weights):
    import onnx as onnx_lib

    from compactnet.data import Split
    from compactnet.export import export_onnx
    from compactnet.models import load_weights
    from compactnet.search.methods.int8 import quantize_model
    from compactnet.zoo.publish import AccuracyResult

    index = tmp_path / "z" / "index.json"
    acc = lambda m: AccuracyResult(40.0, "original", "h")  # noqa: E731
    with pytest.raises(ConfigError, match="int8_onnx=.*int8_accuracy="):
        publish(result_dir, index, platform="ort-cpu-int8-t1", measure_latency=_fake_latency(3, 2.9, 3.1),
                measure_accuracy=acc, catalogue=False)
    # the QDQ graph of the trimmed weights (calibrated on a few real-looking images)
    model = load_weights(create_model("resnet20", TRIMMED), result_dir / "weights.safetensors")
    rng = np.random.default_rng(0)
    train = Split(rng.integers(0, 255, (16, 32, 32, 3), dtype=np.uint8), np.arange(16) % 10)
    q = quantize_model(model, train, n_calibration=16)
    (tmp_path / "m.int8.onnx").write_bytes(q.int8_b1)
    base_q = quantize_model(create_model("resnet20"), train, n_calibration=16)
    (tmp_path / "base.int8.onnx").write_bytes(base_q.int8_b1)
    int8_acc = AccuracyResult(39.5, "original", "h8")
    with pytest.raises(ConfigError, match="baseline_onnx"):
        publish_model(result_dir / "weights.safetensors", "resnet20", index, "ort-cpu-int8-t1", TRIMMED,
                      int8_onnx=tmp_path / "m.int8.onnx", int8_accuracy=int8_acc,
                      measure_latency=_fake_latency(3, 2.9, 3.1), catalogue=False, tag="s2x")
    export_onnx(model, tmp_path / "fp32.onnx")
    from compactnet.errors import ModelFileError

    with pytest.raises(ModelFileError, match="not an int8"):
        publish_model(result_dir / "weights.safetensors", "resnet20", index, "ort-cpu-int8-t1", TRIMMED,
                      int8_onnx=tmp_path / "fp32.onnx", int8_accuracy=int8_acc, baseline_onnx=tmp_path / "base.int8.onnx",
                      measure_latency=_fake_latency(3, 2.9, 3.1), catalogue=False, tag="s2x")
    seen = []
    e = publish_model(result_dir / "weights.safetensors", "resnet20", index, "ort-cpu-int8-t1", TRIMMED,
                      int8_onnx=tmp_path / "m.int8.onnx", int8_accuracy=int8_acc,
                      baseline_onnx=tmp_path / "base.int8.onnx", measure_latency=_fake_latency(3, 2.9, 3.1, seen),
                      measure_accuracy=lambda m: pytest.fail("the torch model's top-1 is not the int8 graph's"),
                      catalogue=False, tag="s2x")
    # timed as they are on the fp32 runner of the runtime; the entry keeps the int8 key and figures
    assert seen[0][2] == "ort-cpu-fp32-t1" and seen[0][1] == tmp_path / "base.int8.onnx"
    assert e.platform == "ort-cpu-int8-t1" and e.metrics.top1 == 39.5 and e.metrics.test_hash == "h8"
    stored = onnx_lib.load(str(tmp_path / "z" / e.onnx.path))
    assert any(n.op_type == "QuantizeLinear" for n in stored.graph.node)


def test_accuracy_limit_takes_a_seeded_random_subset(tmp_path):
    from compactnet.data import Split
    from compactnet.search.methods.int8 import seeded_limit

    labels = np.repeat(np.arange(10), 20)                       # sorted by class, as the packed copy
    split = Split(np.zeros((200, 32, 32, 3), np.uint8), labels)
    sub = seeded_limit(split, 30, seed=0)
    assert len(sub) == 30 and len(set(sub.labels.tolist())) >= 8   # not the first 30 (two classes)
    assert np.all(np.diff(sub.labels) >= 0)                      # split order kept
    assert np.array_equal(seeded_limit(split, 30, seed=0).labels, sub.labels)
    assert seeded_limit(split, None) is split


def test_the_same_name_from_two_hardwares_keeps_both_and_stores_shared_bytes_once(tmp_path, result_dir):
    from compactnet.spec import Latency, Platform
    from compactnet.zoo.entry import hardware_slug
    from compactnet.zoo.publish import AccuracyResult, LatencyResult

    def on(hw):
        return lambda c, b, p: LatencyResult(Latency(0.5), 1.9, 1.8, 2.0, Platform.parse(p, hardware=hw))

    zoo_index = tmp_path / "repo" / "zoo" / "index.json"
    (tmp_path / "repo" / ".git").mkdir(parents=True)          # the repository that holds the zoo
    acc = lambda m: AccuracyResult(50.0, "original", "h")     # noqa: E731
    cmd = f"compactnet zoo publish {tmp_path}/repo/results/x --index={tmp_path}/repo/zoo/index.json"
    a = publish(result_dir, zoo_index, measure_latency=on("CPU A"), measure_accuracy=acc, catalogue=False,
                publish_command=cmd)
    b = publish(result_dir, zoo_index, measure_latency=on("CPU B"), measure_accuracy=acc, catalogue=False)
    index = load_index(zoo_index)
    assert a.name == b.name and len(index) == 2 and {e.hardware for e in index} == {"CPU A", "CPU B"}
    # one folder per name and hardware; the second publication's bytes were already there: stored once
    assert a.onnx.path == f"models/{a.name}/{hardware_slug('CPU A')}/model.onnx"
    assert (b.onnx.path, b.weights.path) == (a.onnx.path, a.weights.path)
    assert len(list((zoo_index.parent / "models").rglob("*.onnx"))) == 1
    # republishing on the same hardware needs --replace; provenance holds no absolute path
    with pytest.raises(ConfigError, match="already has .* on 'CPU A'"):
        publish(result_dir, zoo_index, measure_latency=on("CPU A"), measure_accuracy=acc, catalogue=False)
    prov = index.get(a.name, "CPU A").provenance
    assert prov.publish_command == "compactnet zoo publish results/x --index=zoo/index.json"
    assert prov.source == "outside-repo:search-out" and str(tmp_path) not in json.dumps(index.to_dict())


def test_protocol_latency_repeats_a_disturbed_comparison(tmp_path, monkeypatch):
    """A comparison wider than max_width is measured again (after a pause) and the narrowest kept."""
    from types import SimpleNamespace

    import compactnet.measure as measure
    import compactnet.sequential as sequential

    calls, sleeps = [], []

    def fake_compare(models, platform, seed=0, **kw):
        calls.append((tuple(models), kw["names"], kw["rounds"]))
        low = 1.27 if len(calls) == 1 else 1.61  # the first one fell into a slow stretch
        return SimpleNamespace(speedups=[(1.0, 1.0, 1.0), (1.66, low, 1.71)], busy=False, protocol_ok=True,
                               rounds=kw["rounds"], platform="p", load=0.0, when="t", times=None,
                               speedup=lambda name, low=low: (1.66, low, 1.71), latency=lambda name: None)

    monkeypatch.setattr(measure, "compare", fake_compare)
    monkeypatch.setattr(sequential.time, "sleep", sleeps.append)
    run = protocol_latency(rounds=9, isolate=False, repeat_pause_s=5.0)
    res = run(tmp_path / "cand.onnx", tmp_path / "base.onnx", PLATFORM)
    assert len(calls) == 2 and sleeps == [5.0]
    assert calls[0][1] == ["baseline", "candidate"] and calls[0][2] == 9
    assert (res.speedup, res.speedup_low, res.speedup_high) == (1.66, 1.61, 1.71)
    # one comparison when the interval is narrow enough, or for a baseline timed alone
    calls.clear()
    protocol_latency(isolate=False, max_width=0.5)(tmp_path / "c.onnx", tmp_path / "b.onnx", PLATFORM)
    protocol_latency(isolate=False)(tmp_path / "c.onnx", None, PLATFORM)
    assert len(calls) == 2
