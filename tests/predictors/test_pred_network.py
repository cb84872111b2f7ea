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
    one = np.array([predictor_a.predict(n).value_ms for n in nets])
    many = predictor_a.predict_many(nets)
    direct = predictor_a.predict_configs(base, cfgs)
    arr = predictor_a.predict_configs(base, np.array([[c[g] for g in base.trimmable_groups] for c in cfgs]))
    assert np.allclose(one, many, rtol=1e-12)
    assert np.array_equal(many, direct) and np.array_equal(many, arr)


def test_predict_gives_a_predicted_latency_with_interval_and_table(predictor_a):
    lat = predictor_a.predict(toy_network())
    assert lat.source == "predicted" and lat.low_ms <= lat.value_ms <= lat.high_ms
    rows, total = predict_table(predictor_a, toy_network())
    assert [r["name"] for r in rows] == [l.name for l in toy_network().layers]
    assert total.value_ms == pytest.approx(sum(r["ms"] for r in rows))
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
    assert pr.predict(nets[0]).value_ms == pytest.approx(1.1 * s[0] + 0.05)


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
    pr = fit_platform(tmp_path / "s.sqlite", "synthetic-a-fp32-t1", context=None, estimator="constant")
    assert pr.platform_.key == "synthetic-a-fp32-t1" and sum(pr.n_samples_.values()) == len(train_a)
    with pytest.raises(DataError, match="no samples for synthetic-b-fp32-t1"):
        fit_platform(tmp_path / "s.sqlite", "synthetic-b-fp32-t1")
    with pytest.raises(DataError, match="does not exist"):
        fit_platform(tmp_path / "none.sqlite", "synthetic-a-fp32-t1")


def test_fit_platform_never_mixes_measuring_contexts(tmp_path, train_a):
    from dataclasses import replace

    from compactnet.predictors.network import fit_platform
    from compactnet.profilers.store import SampleStore
    rot = [replace(m, context="rotation") for m in train_a[:100]]
    iso = [replace(m, context="isolated", latency=replace(m.latency, value_ms=0.5 * m.latency.value_ms))
           for m in train_a[100:]]
    with SampleStore(tmp_path / "s.sqlite") as store:
        store.add(rot + iso)
    pr = fit_platform(tmp_path / "s.sqlite", "synthetic-a-fp32-t1", estimator="constant")  # default: rotation
    assert sum(pr.n_samples_.values()) == len(rot)
    iso_pr = fit_platform(tmp_path / "s.sqlite", "synthetic-a-fp32-t1", context="isolated", estimator="constant")
    assert sum(iso_pr.n_samples_.values()) == len(iso)
    with pytest.raises(DataError, match="several measuring contexts.*--context"):
        fit_platform(tmp_path / "s.sqlite", "synthetic-a-fp32-t1", context=None)
    with pytest.raises(DataError, match="context 'flush'.*isolated, rotation"):
        fit_platform(tmp_path / "s.sqlite", "synthetic-a-fp32-t1", context="flush")


def test_overhead_is_learned_from_the_samples_and_added_once(train_a):
    from dataclasses import replace
    ms = [replace(m, overhead_ms=0.04 + 0.002 * (i % 3)) for i, m in enumerate(train_a)]
    pr = LatencyPredictor(estimator=ConstantRegressor()).fit(ms)
    assert pr.overhead_ms is None and pr.overhead_ms_ == pytest.approx(0.042)  # sklearn: param kept as given
    net = toy_network()
    layer_sum = pr.predict_layer_ms(net.layers).sum()
    assert pr.predict(net).value_ms == pytest.approx(layer_sum + 0.042)
    assert pr.predict_many([net, net])[1] == pytest.approx(layer_sum + 0.042)
    assert pr.describe()["overhead_ms"] == pytest.approx(0.042)
    given = LatencyPredictor(estimator=ConstantRegressor(), overhead_ms=0.0).fit(ms)
    assert given.overhead_ms == 0.0 and given.overhead_ms_ == 0.0
    assert given.predict(net).value_ms == pytest.approx(layer_sum)
    unknown = LatencyPredictor(estimator=ConstantRegressor()).fit(train_a)  # no overhead recorded
    assert unknown.overhead_ms_ == 0.0
    with pytest.raises(ConfigError, match="overhead_ms"):
        LatencyPredictor(overhead_ms=-1.0).fit(ms)


def test_zero_latency_rows_are_kept_at_the_floor(train_a):
    from dataclasses import replace

    from compactnet.predictors.network import MIN_LAYER_MS
    from compactnet.profilers.base import MIN_LAYER_MS as PROFILER_FLOOR
    assert MIN_LAYER_MS == PROFILER_FLOOR
    gaps = [m for m in train_a if m.layer.op == "block"][:6]
    zeros = [replace(m, layer=replace(m.layer, op="add", expansion=0, residual=False),
                     latency=replace(m.latency, value_ms=0.0)) for m in gaps]
    pr = LatencyPredictor(estimator=ConstantRegressor(), min_samples_per_kind=1).fit(list(train_a) + zeros)
    assert pr.n_samples_["add"] == len(zeros)
    assert pr.predict_layer_ms([zeros[0].layer])[0] == pytest.approx(MIN_LAYER_MS)


@pytest.fixture(scope="module")
def units_predictor(platforms):
    from compactnet.extract import mobilenetv2_units, spec_for
    from compactnet.predictors.testset import draw_mobilenetv2
    p, costs = platforms["synthetic-a-fp32-t1"]
    rng = np.random.default_rng(3)
    layers = {}
    for i in range(12):
        for u in mobilenetv2_units(spec_for("mobilenetv2", draw_mobilenetv2(rng)), include_head=True):
            layers.setdefault(u.key(), u)
    ms = measure_synthetic(list(layers.values()), p, costs, noise=0.0)
    return LatencyPredictor(estimator=ConstantRegressor(), min_samples_per_kind=1).fit(ms)


def test_a_units_predictor_converts_op_level_mobilenetv2_itself(units_predictor):
    from compactnet.extract import mobilenetv2_units, spec_for
    from compactnet.predictors.network import network_layers
    from compactnet.spec import NetworkSpec
    pr = units_predictor
    assert pr.granularity == "units"
    ops = spec_for("mobilenetv2", {"widths": [32, 16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160,
                                              160, 320]})
    units = NetworkSpec(ops.architecture, ops.input_shape, mobilenetv2_units(ops, include_head=True), ops.groups,
                        ops.fixed)
    assert network_layers(ops, pr.estimators_) == units
    assert pr.predict(ops) == pr.predict(units)
    assert [r["name"] for r in pr.predict_layers(ops)][:2] == ["stem", "block1"]
    assert pr.predict_many([ops, units])[0] == pytest.approx(pr.predict(units).value_ms)
    # predict_configs converts its base once and agrees with predicting each trimmed spec
    rng = np.random.default_rng(0)
    groups = ops.trimmable_groups
    W = np.array([[max(1, int(w * r)) for w, r in zip([ops.group_widths[g] for g in groups], rng.uniform(0.3, 1, len(groups)))]
                  for _ in range(5)])
    want = pr.predict_many([ops.with_channels(dict(zip(groups, map(int, row)))) for row in W])
    assert np.allclose(pr.predict_configs(ops, W), want, rtol=1e-12)


def test_predict_configs_refuses_a_granularity_it_cannot_match(units_predictor, train_a):
    from compactnet.extract import mobilenetv2_units, spec_for
    from compactnet.spec import NetworkSpec
    with pytest.raises(ConfigError, match="block units.*op-level"):
        units_predictor.predict_configs(toy_network(), [{"g0": 16}])  # a toy with a dwconv layer: no conversion
    ops = spec_for("mobilenetv2")
    units = NetworkSpec(ops.architecture, ops.input_shape, mobilenetv2_units(ops, include_head=True), ops.groups,
                        ops.fixed)
    layers_only = LatencyPredictor(estimator=ConstantRegressor()).fit([m for m in train_a if m.layer.op != "block"])
    assert layers_only.granularity == "layers"
    with pytest.raises(ConfigError, match="block units but the predictor has no block samples"):
        layers_only.predict_configs(units, [{}])
    assert layers_only.predict_configs(ops, [{}])[0] == pytest.approx(layers_only.predict(ops).value_ms)


def test_calibration_layers_mode_fits_a_per_layer_term_across_depths(predictor_a, tmp_path):
    import copy
    import dataclasses

    from compactnet.predictors.persist import load_portable, save_portable

    full = [toy_network(c) for c in _variants(6, 3)]
    nets = [dataclasses.replace(n, layers=n.layers[: len(n.layers) - (i % 3)]) for i, n in enumerate(full)]
    counts = np.array([len(n.layers) for n in nets])
    assert len(set(counts)) == 3
    pr = copy.deepcopy(predictor_a)
    s = pr.predict_many(nets) - pr.offset_  # uncalibrated layer sums
    y = 0.9 * s - 0.004 * counts + 0.03
    pr.calibrate(nets, y)  # auto: 6 networks, 3 depths -> layers
    assert pr.calibration_["mode"] == "layers"
    assert (pr.scale_, pr.per_call_ms_, pr.offset_) == pytest.approx((0.9, -0.004, 0.03), abs=1e-9)
    assert pr.predict_many(nets) == pytest.approx(y)
    assert pr.predict(nets[1]).value_ms == pytest.approx(y[1])
    # a later scale-only refit keeps the per-layer term and the offset
    pr.calibrate(nets[:1], [y[0] * 1.0], mode="scale")
    assert pr.per_call_ms_ == pytest.approx(-0.004) and pr.scale_ == pytest.approx(0.9)
    # the portable format keeps it
    back = load_portable(save_portable(pr, tmp_path / "p"))
    assert back.per_call_ms_ == pytest.approx(pr.per_call_ms_)
    assert back.predict_many(nets) == pytest.approx(pr.predict_many(nets))
    with pytest.raises(ConfigError, match="mode"):
        pr.calibrate(nets, y, mode="cubic")


def _depth_variants(n, seed):
    import dataclasses

    full = [toy_network(c) for c in _variants(n, seed)]
    return [dataclasses.replace(x, layers=x.layers[: len(x.layers) - (i % 3)]) for i, x in enumerate(full)]


def test_calibration_kinds_mode_fits_one_factor_per_kind(predictor_a, tmp_path, caplog):
    import copy

    from compactnet.predictors.network import KINDS_NETWORKS_PER_TERM
    from compactnet.predictors.persist import load_portable, save_portable

    pr = copy.deepcopy(predictor_a)
    probe = _depth_variants(2, 4)
    kinds, _ = pr._kind_sums(probe)
    nets = _depth_variants(KINDS_NETWORKS_PER_TERM * (len(kinds) + 2), 4)
    kinds, S = pr._kind_sums(nets)
    assert len(kinds) >= 2
    true = np.linspace(0.6, 1.5, len(kinds))  # a different context factor per kind
    counts = np.array([len(x.layers) for x in nets])
    y = S @ true - 0.002 * counts + 0.02
    pr.calibrate(nets, y, ridge=0.0)  # auto: enough networks -> kinds
    assert pr.calibration_["mode"] == "kinds"
    assert [pr.kind_scale_[k] for k in kinds] == pytest.approx(list(true), rel=1e-6)
    assert (pr.per_call_ms_, pr.offset_) == pytest.approx((-0.002, 0.02), abs=1e-7)
    assert pr.predict_many(nets) == pytest.approx(y, rel=1e-6)
    base = toy_network()
    cfgs = _variants(5, 9)
    assert pr.predict_configs(base, cfgs) == pytest.approx(pr.predict_many([base.with_channels(c) for c in cfgs]))
    lat = pr.predict(nets[0])
    assert lat.value_ms == pytest.approx(y[0], rel=1e-6) and lat.low_ms <= lat.value_ms <= lat.high_ms
    # a one-factor fit did worse on the same networks
    one = copy.deepcopy(predictor_a).calibrate(nets, y, mode="layers")
    assert np.abs(one.calibration_["rel_error_after"]).max() > 10 * np.abs(pr.calibration_["rel_error_after"]).max()
    # a search's later scale refit keeps the factors per kind
    pr.calibrate(nets[:1], [1.1 * y[0]], mode="scale")
    assert pr.kind_scale_[kinds[0]] == pytest.approx(true[0], rel=1e-6) and pr.scale_ > 1
    assert pr.predict_many(nets[:1])[0] == pytest.approx(1.1 * y[0], rel=1e-6)
    back = load_portable(save_portable(pr, tmp_path / "k"))
    assert back.kind_scale_ == pytest.approx(pr.kind_scale_)
    assert back.predict_many(nets) == pytest.approx(pr.predict_many(nets))
    assert back.describe()["kind_scale"] == pytest.approx(pr.kind_scale_)
    # too few networks for one factor per kind: a warning and the one-factor fit
    with caplog.at_level("WARNING"):
        few = copy.deepcopy(predictor_a).calibrate(nets[:6], y[:6], mode="kinds")
    assert few.calibration_["mode"] == "layers" and few.kind_scale_ == {}
    assert "too few for one factor per kind" in caplog.text


def test_calibration_kinds_ridge_and_bounds(predictor_a):
    import copy

    from compactnet.predictors.network import KIND_FACTOR_BOUNDS, KINDS_NETWORKS_PER_TERM

    pr = copy.deepcopy(predictor_a)
    kinds, _ = pr._kind_sums(_depth_variants(2, 5))
    nets = _depth_variants(KINDS_NETWORKS_PER_TERM * (len(kinds) + 2), 5)
    kinds, S = pr._kind_sums(nets)
    true = np.ones(len(kinds))
    true[0] = 50.0  # far outside what a context can do: clipped to the bound
    y = S @ true + 0.01
    pr.calibrate(nets, y, mode="kinds", ridge=0.0)
    g = copy.deepcopy(predictor_a).calibrate(nets, y, mode="layers").scale_
    assert pr.kind_scale_[kinds[0]] <= KIND_FACTOR_BOUNDS[1] * g + 1e-9
    strong = copy.deepcopy(predictor_a).calibrate(nets, S @ np.linspace(0.6, 1.5, len(kinds)), mode="kinds",
                                                  ridge=1e6)
    spread = np.ptp(list(strong.kind_scale_.values()))
    assert spread < 1e-3  # a huge ridge: every kind at the one global factor
    with pytest.raises(ConfigError, match="ridge"):
        pr.calibrate(nets, y, mode="kinds", ridge=-1)


def test_load_samples_never_mixes_estimators(tmp_path, caplog):
    import dataclasses
    import logging

    from compactnet.predictors.network import load_samples
    from compactnet.profilers.base import Protocol, SyntheticProfiler
    from compactnet.profilers.sampling import make_strategy
    from compactnet.profilers.store import SampleStore

    layers = make_strategy("sobol", seed=0).take(6)
    new = SyntheticProfiler().measure(layers[:4], context="isolated")
    old = SyntheticProfiler(protocol=Protocol(estimator="median")).measure(layers[4:], context="isolated")
    assert {m.latency.estimator for m in new} == {"min"} and {m.latency.estimator for m in old} == {"median"}
    with SampleStore(tmp_path / "s.sqlite") as st:
        st.add(new + old)
        with caplog.at_level(logging.WARNING):
            got = load_samples(st, "synthetic-cpu-fp32-t1", context="isolated", anchored=False)
    assert len(got) == 4 and {m.latency.estimator for m in got} == {"min"}
    assert "different estimators" in caplog.text and "leaving out 2" in caplog.text
    assert dataclasses.is_dataclass(got[0])
