"""int8 (real onnxruntime inference), Fisher importance, and the composition of methods."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
import torch

from compactnet.errors import ConfigError
from compactnet.models import create_model
from compactnet.search.methods import int8 as q8
from search_tiny import TINY_RESNET, make_split


def tiny_resnet():
    torch.manual_seed(0)
    return create_model("resnet20", TINY_RESNET).eval()


def test_calibration_batches_come_from_real_training_images():
    split = make_split(50, 0)
    feeds = q8.calibration_batches(split, n_images=40, batch_size=16)
    assert [f["input"].shape[0] for f in feeds] == [16, 16, 8]
    x = np.concatenate([f["input"] for f in feeds])
    assert x.dtype == np.float32 and x.shape[1:] == (3, 32, 32)
    # normalised exactly as training feeds images
    from compactnet.train import batches

    ref = next(batches(split, 50, shuffle=False))[0].contiguous().numpy()
    rows = {tuple(np.round(r.ravel()[:16], 5)) for r in ref}
    assert all(tuple(np.round(r.ravel()[:16], 5)) in rows for r in x)
    with pytest.raises(ConfigError):
        q8.calibration_batches(split, n_images=0)


@pytest.mark.runtime
def test_int8_model_runs_and_accuracy_comes_from_real_inference(tiny_data):
    from compactnet.train import evaluate

    model = tiny_resnet()
    models = q8.quantize_model(model, tiny_data.train, n_calibration=32, timing_pair=False)
    g = onnx.load_from_string(models.int8)
    ops = {n.op_type for n in g.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and g.ir_version <= 10
    assert g.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    assert next(o.version for o in g.opset_import if o.domain in ("", "ai.onnx")) >= 17
    test = tiny_data.test
    acc32 = q8.evaluate_onnx(models.fp32, test, batch_size=16)
    assert acc32 == pytest.approx(evaluate(model, test))  # same graph, same images: same answers
    # the int8 accuracy is what onnxruntime predicts, batch by batch
    from compactnet.search.methods._common import normalised_images
    import onnxruntime as ort

    sess = ort.InferenceSession(models.int8, providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"input": normalised_images(test)})[0]
    expected = 100.0 * float((logits.argmax(1) == test.labels).mean())
    assert q8.evaluate_onnx(models.int8, test, batch_size=7) == pytest.approx(expected)
    # int8 outputs differ from fp32 ones (it really is quantized) but stay close
    with torch.no_grad():
        ref = model(torch.from_numpy(normalised_images(test)[:4])).numpy()
    assert 0 < np.abs(logits[:4] - ref).max() < 0.5 * np.abs(ref).max() + 0.5


@pytest.mark.runtime
def test_int8_report_with_injected_compare(tiny_data):
    from compactnet.measure import compare
    from compactnet.runtimes import SyntheticRunner

    fake = functools.partial(compare, check_window=0, runs=2, warmup=1)
    rep = q8.int8_report(tiny_resnet(), tiny_data, SyntheticRunner("synthetic-cpu-int8-t1"), n_calibration=16,
                         compare=fake, rounds=7)
    models = rep.pop("_models")
    assert models.int8_b1 is not None and models.fp32_b1 is not None
    b1 = onnx.load_from_string(models.int8_b1).graph.input[0].type.tensor_type.shape.dim[0]
    assert b1.dim_value == 1
    assert set(rep["measured"]) >= {"speedup", "low", "high"} and rep["measured"]["comparison"]["names"] == ["fp32", "int8"]
    assert 0 <= rep["test_top1_int8"] <= 100


def test_fisher_importance_scores_channels_and_plugs_into_the_search(tiny_data):
    from compactnet.search.groups import GroupPruner
    from compactnet.search.importance import get_importance
    from compactnet.search.methods.fisher import FisherImportance
    from compactnet.train import batches

    model = tiny_resnet()
    imp = FisherImportance()
    assert get_importance(imp) is imp and imp.needs_gradients
    pruner = GroupPruner(model, "extended", example_input=torch.zeros(1, 3, 32, 32))
    gid = "layers.0.conv1"
    with pytest.raises(ConfigError):
        imp.scores(pruner.dep_group(gid))
    data = list(batches(tiny_data.train, 32, False))
    imp.prepare(model, data)
    s = imp.scores(pruner.dep_group(gid)).clone()
    assert s.shape == (8,) and torch.all(s >= 0) and s.sum() > 0
    # the definition: 1/(2N) sum_n (sum_hw a * dL/da)^2 at the batch-norm output, computed by hand
    bn = model.layers[0].bn1
    acts = {}
    h = bn.register_forward_hook(lambda m, i, o: acts.__setitem__("a", o) or o.retain_grad())
    total = torch.zeros(8, dtype=torch.float64)
    n = 0
    for xb, yb in data:
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), yb).backward()
        a = acts["a"]
        total += (a.detach() * a.grad).sum((2, 3)).double().pow(2).sum(0)
        n += len(yb)
    h.remove()
    # the group is conv1 + bn1 only (its output feeds conv2): the score is bn1's Fisher
    assert torch.allclose(s, total / (2 * n), rtol=1e-4, atol=1e-12)
    keep = imp.keep(pruner.dep_group(gid), 3)
    assert keep == sorted(torch.topk(s, 3).indices.tolist())


@pytest.mark.slow
def test_compose_trim_and_lowrank_reach_predicted_target(tiny_data):
    from compactnet.search.latency import MacsLatencyModel
    from compactnet.search.methods.compose import ComposeSettings, compose

    s = ComposeSettings(max_iterations=3, candidate_steps=1, candidate_batch=16, train_subset=32, bn_batches=1,
                        val_limit=20, winner_steps=1, n_calibration=16, max_trim_candidates=2)
    lat = MacsLatencyModel()
    res = compose(tiny_resnet(), tiny_data, lat, 1.3, methods=["trim", "lowrank"], settings=s)
    assert res.predicted_ms <= res.target_ms
    from compactnet.extract import network_spec_from_torch

    # the prediction recorded is the prediction of the network returned
    assert float(lat.predict_many([network_spec_from_torch(res.model)])[0]) == pytest.approx(res.predicted_ms)
    assert res.history and all({"trim", "lowrank"} >= {c["method"] for c in h["candidates"]} for h in res.history)
    applied = [h["applied"] for h in res.history]
    assert res.label == "composed: " + "+".join(dict.fromkeys(applied))
    for h in res.history:  # the winner had the best predicted gain per accuracy lost
        best = max(h["candidates"], key=lambda c: (c["score"], c["gain_ms"]))
        assert best["method"] == h["applied"]
    assert res.baseline is None and res.int8 is None
    res.model(torch.zeros(1, 3, 32, 32))


@pytest.mark.slow
def test_compose_with_int8_is_compared_with_the_untrimmed_int8_baseline(tiny_data):
    from compactnet.search.latency import MacsLatencyModel
    from compactnet.search.methods.compose import ComposeSettings, compose

    s = ComposeSettings(max_iterations=2, candidate_steps=1, candidate_batch=16, train_subset=32, bn_batches=1,
                        val_limit=20, winner_steps=1, n_calibration=16, int8_factor=1.3,
                        max_trim_candidates=2)
    res = compose(tiny_resnet(), tiny_data, MacsLatencyModel(), 2.0, settings=s)
    summary = res.summary()
    assert res.baseline is not None and summary["int8_latency_assumed"]
    assert res.baseline["predicted_ms"] == pytest.approx(res.original_ms / 1.3)
    assert "predicted_speedup_vs_int8_baseline" in summary
    last = res.history[-1]
    assert last["applied"] == "int8" and last["last_step"] and res.int8 is not None  # int8 is the last step
    assert [h["applied"] for h in res.history[:-1]] and all(h["applied"] in ("trim", "lowrank")
                                                             for h in res.history[:-1])
    assert res.predicted_ms == pytest.approx(res.history[-2]["predicted_ms"] / 1.3)
    # a target int8 alone meets: nothing is trimmed, the result is the int8 baseline
    alone = compose(tiny_resnet(), tiny_data, MacsLatencyModel(), 1.25, settings=s)
    assert [h["applied"] for h in alone.history] == ["int8"] and alone.label == "composed: int8"
    assert alone.summary()["predicted_speedup_vs_int8_baseline"] == pytest.approx(1.0)
    # an int8 latency model replaces the assumed factor
    int8_model = MacsLatencyModel(ms_per_mmac=0.004)
    known = compose(tiny_resnet(), tiny_data, MacsLatencyModel(), 2.0, int8_latency=int8_model, settings=s)
    assert not known.summary()["int8_latency_assumed"] and known.history[-1]["applied"] == "int8"
    assert known.baseline["predicted_ms"] == pytest.approx(0.4 * known.original_ms)
    # where int8 is predicted slower than fp32 (no VNNI, tiny layers) it is not applied
    slow = compose(tiny_resnet(), tiny_data, MacsLatencyModel(), 2.0, int8_latency=MacsLatencyModel(ms_per_mmac=1.0),
                   settings=s)
    assert slow.int8 is None and slow.history[-1]["applied"] is None and "int8" not in slow.label
    assert "not faster than fp32" in slow.history[-1]["note"]
    # measured against the untrimmed int8 baseline first, by the protocol (synthetic platform here)
    from compactnet.measure import compare
    from compactnet.runtimes import SyntheticRunner
    from compactnet.search.methods.compose import measure_composition

    comp = measure_composition(tiny_resnet(), res, tiny_data, SyntheticRunner("synthetic-cpu-int8-t1"),
                               n_calibration=16, compare=functools.partial(compare, check_window=0, runs=2, warmup=1))
    assert comp.names == ("int8-baseline", "composed", "fp32-original") and comp.speedups[0] == (1.0, 1.0, 1.0)
    assert comp.speedups[1][0] > 1.0  # the composition has fewer MACs than the int8 baseline
    with pytest.raises(ConfigError, match="--methods"):
        compose(tiny_resnet(), tiny_data, MacsLatencyModel(), 2.0, methods=["prune"])


def test_quantized_graphs_are_timed_on_the_fp32_runner_of_the_same_runtime(tiny_data):
    from types import SimpleNamespace

    from compactnet.runtimes import SyntheticRunner
    from compactnet.search.methods.compose import ComposeResult, measure_composition

    assert q8.timing_platform("ort-cpu-int8-t1").key == "ort-cpu-fp32-t1"
    assert q8.timing_platform("openvino-cpu-int8-t2").key == "openvino-cpu-fp32-t2"
    assert q8.timing_platform("ort-cpu-fp32-t1").key == "ort-cpu-fp32-t1"
    syn = SyntheticRunner("synthetic-cpu-int8-t1")               # never converts graphs: kept as given
    assert q8.timing_platform(syn) is syn
    seen = []

    def fake(models, platform, names=None, **kw):
        seen.append((platform, names))
        return SimpleNamespace(speedups=[(1.0, 1.0, 1.0)] * len(models), to_dict=lambda: {})

    models = q8.quantize_model(tiny_resnet(), tiny_data.train, 16)
    q8.measure_int8_speedup(models, "ort-cpu-int8-t1", compare=fake)
    rep = q8.int8_report(tiny_resnet(), tiny_data, "ort-cpu-int8-t1", n_calibration=16, compare=fake, limit=8)
    assert rep["measured"]["timed_on"] == "ort-cpu-fp32-t1" and rep["measured"]["requested_platform"] == "ort-cpu-int8-t1"
    fields = ComposeResult.__dataclass_fields__
    res = SimpleNamespace(model=tiny_resnet(), int8=b"x")
    assert "int8" in fields
    measure_composition(tiny_resnet(), res, tiny_data, "ort-cpu-int8-t1", n_calibration=16, compare=fake)
    assert [p.key for p, _n in seen] == ["ort-cpu-fp32-t1"] * 3
