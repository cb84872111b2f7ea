"""The in-context correction: learned end to end from whole networks (synthetic platform, no timing)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from compactnet.errors import ConfigError, DataError
from compactnet.predictors.context import MIN_NETWORKS, ContextCorrection
from compactnet.predictors.families import FAMILIES, draw_networks
from compactnet.predictors.features import raw_matrix
from compactnet.predictors.network import LatencyPredictor
from compactnet.predictors.synthetic import measure_synthetic, synthetic_platforms, true_latency_ms

from tests.predictors.conftest import small_gbdt

SMALL = [f for f in FAMILIES if f.hw == 32 and f.model in ("mobilenetv2", "resnet20", "vgg16")]


def in_network_ms(spec, costs) -> float:
    """The synthetic truth: depthwise convs cost half inside a network, large-map convs 30% more."""
    iso = true_latency_ms(spec.layers, costs)
    f = np.array([0.5 if l.op == "dwconv" else 1.3 if (l.op == "conv" and l.h >= 16) else 1.0 for l in spec.layers])
    return float((iso * f).sum() + 0.01)


@pytest.fixture(scope="module")
def world():
    plat, costs = synthetic_platforms()["synthetic-a-fp32-t1"]
    nets = [n.spec() for n in draw_networks(60, seed=5, families=SMALL)]
    layers = list({l.key(): l for s in nets for l in s.layers}.values())
    pred = LatencyPredictor(estimator=small_gbdt(), overhead_ms=0.01).fit(
        measure_synthetic(layers, plat, costs, noise=0.02, seed=3))
    y = np.array([in_network_ms(s, costs) for s in nets])
    return pred, nets, y


def test_learns_the_in_network_factor_and_beats_the_layer_sum(world):
    pred, nets, y = world
    train, test = slice(0, 45), slice(45, 60)
    raw_err = pred.predict_many(nets[test]) / y[test] - 1
    cal = copy.deepcopy(pred).calibrate(nets[train], y[train], mode="context")
    err = cal.predict_many(nets[test]) / y[test] - 1
    assert cal.calibration_["mode"] == "context" and cal.context_.n_networks_ == 45
    assert np.median(np.abs(err)) < 0.05 < np.median(np.abs(raw_err))
    # the interval is the cross-validated errors' split-conformal 90% quantile: it covers most held-out networks
    from compactnet.predictors.estimators import _conformal_quantile

    a = np.abs(np.log1p(cal.context_.cv_errors_))
    assert cal.context_.interval_log_ == _conformal_quantile(a, 0.9) >= np.quantile(a, 0.9)
    lat = [cal.predict(s) for s in nets[test]]
    assert np.mean([l.low_ms <= t <= l.high_ms for l, t in zip(lat, y[test])]) >= 0.7
    # layer rows carry their in-network figure; the batched paths agree with the single one
    rows = cal.predict_layers(nets[50])
    assert all("in_network_ms" in r for r in rows)
    assert sum(r["in_network_ms"] for r in rows) + cal.offset_ == pytest.approx(lat[5].value_ms, rel=1e-9)
    base = nets[50]
    configs = [{g: max(1, w // 2)} for g, w in base.groups if g in base.trimmable_groups][:3]
    assert np.allclose(cal.predict_configs(base, configs), cal.predict_many([base.with_channels(c) for c in configs]))


def test_auto_calibration_picks_the_context_correction_from_30_networks(world):
    pred, nets, y = world
    assert copy.deepcopy(pred).calibrate(nets[:30], y[:30]).calibration_["mode"] == "context"
    assert copy.deepcopy(pred).calibrate(nets[:29], y[:29]).calibration_["mode"] != "context"
    # a simpler re-calibration keeps the correction and refits the global terms on top of it
    p = copy.deepcopy(pred).calibrate(nets[:30], y[:30])
    p.calibrate(nets[30:34], y[30:34] * 1.2, mode="scale")
    assert p.context_ is not None and p.scale_ == pytest.approx(1.2, rel=0.1)
    # a per-kind fit replaces it
    assert copy.deepcopy(p).calibrate(nets, y, mode="kinds").context_ is None


def test_portable_round_trip_keeps_the_correction(world, tmp_path):
    from compactnet.predictors.persist import load_portable, save_portable

    pred, nets, y = world
    p = copy.deepcopy(pred).calibrate(nets[:40], y[:40], mode="context")
    back = load_portable(save_portable(p, tmp_path / "pred"))
    assert np.array_equal(back.predict_many(nets[40:]), p.predict_many(nets[40:]))
    assert back.predict(nets[41]) == p.predict(nets[41])
    assert back.describe()["context"] == p.describe()["context"]


def test_settings_and_inputs_are_checked():
    raws = [raw_matrix([]) for _ in range(3)]
    with pytest.raises(DataError, match=f"at least {MIN_NETWORKS}"):
        ContextCorrection().fit(raws, [np.zeros(0)] * 3, [1.0, 1.0, 1.0])
    with pytest.raises(ConfigError, match="max_depth"):
        ContextCorrection(max_depth=0).fit(raws, [np.zeros(0)] * 3, [1.0] * 3)
    with pytest.raises(ConfigError, match="coverage"):
        ContextCorrection(coverage=1.5).fit(raws, [np.zeros(0)] * 3, [1.0] * 3)
    with pytest.raises(ConfigError, match="one entry per network"):
        ContextCorrection().fit(raws, [np.zeros(0)] * 2, [1.0] * 3)
    with pytest.raises(NotFittedError):
        ContextCorrection().log_factor(raw_matrix([]), np.zeros(0))


def test_a_kind_without_samples_is_named_as_fallback(world):
    pred, nets, _ = world
    plat, costs = synthetic_platforms()["synthetic-a-fp32-t1"]
    layers = [l for l in {l.key(): l for s in nets[:10] for l in s.layers}.values() if l.op != "add"]
    p = LatencyPredictor(estimator=small_gbdt()).fit(measure_synthetic(layers, plat, costs, noise=0.02, seed=3))
    rows = p.predict_layers(nets[0])
    assert {r["op"] for r in rows if r["fallback"]} == {"add"}
    assert not any(r["fallback"] for r in pred.predict_layers(nets[0]))
