import numpy as np
import pytest

from compactnet.errors import ConfigError, DataError
from compactnet.predictors.estimators import ConstantRegressor
from compactnet.predictors.network import LatencyPredictor, predict_table
from compactnet.predictors.synthetic import measure_synthetic, random_layers, toy_network, true_latency_ms
from compactnet.spec import LayerSpec


def _variants(n, seed=0):
    rng = np.random.default_rng(seed)
    return [{"g0": int(a), "g1": int(b), "g2": int(c), "last": int(d)}
            for a, b, c, d in rng.integers(4, 90, (n, 4))]


def test_batched_equals_per_network(predictor_a):
    base = toy_network()
    cfgs = _variants(60)
    nets = [base.with_channels(c) for c in cfgs]
    one = np.array([predictor_a.predict(n).median_ms for n in nets])
    many = predictor_a.predict_many(nets)
    direct = predictor_a.predict_configs(base, cfgs)
    arr = predictor_a.predict_configs(base, np.array([[c[g] for g in base.trimmable_groups] for c in cfgs]))
    assert np.allclose(one, many, rtol=1e-12)
    assert np.array_equal(many, direct) and np.array_equal(many, arr)


def test_predict_gives_a_predicted_latency_with_interval_and_table(predictor_a):
    lat = predictor_a.predict(toy_network())
    assert lat.source == "predicted" and lat.low_ms <= lat.median_ms <= lat.high_ms
    rows, total = predict_table(predictor_a, toy_network())
    assert [r["name"] for r in rows] == [l.name for l in toy_network().layers]
    assert total.median_ms == pytest.approx(sum(r["ms"] for r in rows))
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)


def test_predict_configs_refuses_fixed_and_unknown_groups(predictor_a):
    with pytest.raises(ConfigError, match="classes"):
        predictor_a.predict_configs(toy_network(), [{"classes": 5}])
    with pytest.raises(ConfigError, match="channels"):
        predictor_a.predict_configs(toy_network(), [{"nope": 5}])


def test_network_error_is_small_on_synthetic_truth(platforms, predictor_a):
    _, costs = platforms["synthetic-a-fp32-t1"]
    nets = [toy_network(c) for c in _variants(30, 1)]
    truth = np.array([true_latency_ms(n.layers, costs).sum() for n in nets])
    pred = predictor_a.predict_many(nets)
    assert np.sqrt(np.mean(((pred - truth) / truth) ** 2)) < 0.2


def test_calibration_scale_and_affine(predictor_a):
    nets = [toy_network(c) for c in _variants(6, 2)]
    s = predictor_a.predict_many(nets)
    import copy
    pr = copy.deepcopy(predictor_a)
    pr.calibrate(nets[:1], [1.3 * s[0]], mode="scale")
    assert pr.scale_ == pytest.approx(1.3) and pr.predict_many(nets)[3] == pytest.approx(1.3 * s[3])
    pr.calibrate(nets, 1.1 * s + 0.05, mode="affine")
    assert pr.scale_ == pytest.approx(1.1) and pr.offset_ == pytest.approx(0.05)
    assert pr.predict(nets[0]).median_ms == pytest.approx(1.1 * s[0] + 0.05)


def test_fit_refuses_mixed_platforms_and_empty(platforms, train_a):
    pb, cb = platforms["synthetic-b-fp32-t1"]
    other = measure_synthetic(random_layers(5), pb, cb)
    with pytest.raises(DataError, match="several platforms"):
        LatencyPredictor().fit(list(train_a[:10]) + other)
    with pytest.raises(DataError, match="no measurements"):
        LatencyPredictor().fit([])
    with pytest.raises(ConfigError, match="unknown_kind"):
        LatencyPredictor(unknown_kind="guess").fit(train_a)


def test_unknown_kind_fallback_or_error(train_a, caplog):
    pool = LayerSpec("p", "maxpool", 32, 32, 8, 8, kernel=2, stride=2)
    pr = LatencyPredictor(estimator=ConstantRegressor()).fit(train_a)
    assert pr.predict_layer_ms([pool])[0] > 0
    strict = LatencyPredictor(estimator=ConstantRegressor(), unknown_kind="error").fit(train_a)
    with pytest.raises(DataError, match="maxpool"):
        strict.predict_layer_ms([pool])


def test_few_samples_of_a_kind_become_a_constant(platforms, train_a):
    p, c = platforms["synthetic-a-fp32-t1"]
    extra = measure_synthetic(random_layers(2, seed=9, kinds=("gap",)), p, c)
    pr = LatencyPredictor(estimator=ConstantRegressor(), min_samples_per_kind=3).fit(list(train_a) + extra)
    assert type(pr.estimators_["gap"]).__name__ == "ConstantRegressor" and pr.n_samples_["gap"] == 2


def test_fit_platform_from_a_sample_store(tmp_path, train_a):
    from compactnet.predictors.network import fit_platform
    from compactnet.profilers.store import SampleStore
    with SampleStore(tmp_path / "s.sqlite") as store:
        store.add(train_a)
    pr = fit_platform(tmp_path / "s.sqlite", "synthetic-a-fp32-t1", estimator="constant")
    assert pr.platform_.key == "synthetic-a-fp32-t1" and sum(pr.n_samples_.values()) == len(train_a)
    with pytest.raises(DataError, match="no samples for synthetic-b-fp32-t1"):
        fit_platform(tmp_path / "s.sqlite", "synthetic-b-fp32-t1")
    with pytest.raises(DataError, match="does not exist"):
        fit_platform(tmp_path / "none.sqlite", "synthetic-a-fp32-t1")
