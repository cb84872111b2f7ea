import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from compactnet.errors import ConfigError
from compactnet.predictors.estimators import (ESTIMATORS, ConstantRegressor, FlopsLinearRegressor,
                                              GBDTLatencyRegressor, LookupTableRegressor, make_estimator)
from compactnet.predictors.features import SCHEMAS, featurize
from compactnet.predictors.synthetic import SyntheticCosts, random_layers, true_latency_ms


def _data(n, seed, kind="conv", noise=0.03):
    layers = random_layers(n, seed=seed, kinds=(kind,))
    X = featurize(layers, kind)
    y = true_latency_ms(layers, SyntheticCosts()) * np.exp(np.random.default_rng(seed).normal(0, noise, n))
    return X, y, layers


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_sklearn_contract(name):
    est = make_estimator(name)
    params = est.get_params()
    c = clone(est)
    assert c.get_params() == params and c is not est
    with pytest.raises(NotFittedError, match="fit"):
        est.predict(np.zeros((2, len(SCHEMAS["conv"].columns))))
    X, y, _ = _data(40, 0)
    est.fit(X, y, feature_names=SCHEMAS["conv"].columns)
    assert est.get_params() == params  # fit does not touch settings
    assert est.predict(X).shape == (40,) and np.all(est.predict(X) > 0)
    lo, hi = est.predict_interval(X)
    assert np.all(lo <= hi)
    assert isinstance(est.score(X, y), float)
    assert not hasattr(clone(est), "n_features_in_")


@pytest.mark.parametrize("param,value", [("n_estimators", 0), ("interval", "conformal"), ("coverage", 1.5),
                                         ("learning_rate", -1), ("n_bootstrap", 1), ("linear_base", "yes")])
def test_gbdt_errors_name_the_parameter(param, value):
    X, y, _ = _data(20, 1)
    with pytest.raises(ConfigError, match=param):
        GBDTLatencyRegressor(**{param: value}).fit(X, y)


def test_errors_name_bad_data_and_unknown_estimators():
    X, y, _ = _data(20, 1)
    with pytest.raises(ConfigError, match="y must be positive"):
        ConstantRegressor().fit(X, -y)
    with pytest.raises(ConfigError, match="estimator"):
        make_estimator("svm")
    with pytest.raises(ConfigError, match="max_depth"):
        make_estimator("gbdt", max_detph=3)
    est = ConstantRegressor().fit(X, y)
    with pytest.raises(ConfigError, match="X must be"):
        est.predict(X[:, :3])


def test_interval_coverage_on_synthetic_data(gbdt):
    """Nominal 90%: the bootstrap+out-of-bag intervals hold it; the quantile objective under-covers
    on a few hundred samples (why bootstrap is the default)."""
    X, y, _ = _data(300, 2, noise=0.05)
    Xt, yt, _ = _data(300, 3, noise=0.05)
    cover = {}
    for interval in ("bootstrap", "quantile"):
        est = gbdt(interval=interval, n_bootstrap=5, coverage=0.9).fit(X, y, feature_names=SCHEMAS["conv"].columns)
        lo, hi = est.predict_interval(Xt)
        p = est.predict(Xt)
        assert np.all((lo <= p) & (p <= hi))
        cover[interval] = np.mean((yt >= lo) & (yt <= hi))
        assert np.median(np.log(hi / lo)) < 1.0  # not absurdly wide
    assert 0.8 <= cover["bootstrap"] <= 1.0, cover
    assert cover["bootstrap"] >= cover["quantile"], cover


def test_bootstrap_intervals_widen_away_from_the_data(gbdt):
    X, y, layers = _data(200, 4)
    small = X[:, 0] < 64  # train on narrow layers only
    est = gbdt(n_bootstrap=5).fit(X[small], y[small], feature_names=SCHEMAS["conv"].columns)
    lo, hi = est.predict_interval(X)
    w = np.log(hi / lo)
    assert np.median(w[~small]) > np.median(w[small])


def test_gbdt_learns_alignment_penalty_better_than_flops(gbdt):
    X, y, _ = _data(300, 5, noise=0.02)
    Xt, yt, _ = _data(200, 6, noise=0.0)
    g = gbdt(n_estimators=150, interval="none").fit(X, y, feature_names=SCHEMAS["conv"].columns)
    f = FlopsLinearRegressor().fit(X, y, feature_names=SCHEMAS["conv"].columns)
    err = lambda p: np.sqrt(np.mean(((p - yt) / yt) ** 2))
    assert err(g.predict(Xt)) < 0.5 * err(f.predict(Xt))


def test_lookup_exact_on_grid_and_linear_between():
    # latency linear in cin and cout inside a unit: bilinear interpolation must be exact
    from compactnet.spec import LayerSpec
    grid = [(ci, co) for ci in (8, 16, 32) for co in (8, 24, 40)]
    mk = lambda ci, co: LayerSpec("c", "conv", ci, co, 8, 8, kernel=3, padding=1, bn=True, act="relu")
    X = featurize([mk(ci, co) for ci, co in grid], "conv")
    y = np.array([0.01 + 0.003 * ci + 0.002 * co + (0.05 if ci == 16 and co == 24 else 0) for ci, co in grid])
    est = LookupTableRegressor().fit(X, y, feature_names=SCHEMAS["conv"].columns)
    assert np.allclose(est.predict(X), y, rtol=1e-12)  # exact lookup, bump included
    q = featurize([mk(12, 16), mk(24, 32), mk(64, 64)], "conv")
    want = [0.01 + 0.003 * 12 + 0.002 * 16 + 0.05 * 0.25, 0.01 + 0.003 * 24 + 0.002 * 32 + 0.05 * 0.25,
            0.01 + 0.003 * 32 + 0.002 * 40]  # the last clamped to the grid's corner
    assert np.allclose(est.predict(q), want, rtol=1e-9)
    assert est.n_fallback_ == 0
    other = featurize([LayerSpec("c", "conv", 8, 8, 16, 16, kernel=3, padding=1, bn=True, act="relu")], "conv")
    est.predict(other)
    assert est.n_fallback_ == 1


def test_lookup_one_axis_for_depthwise():
    from compactnet.spec import LayerSpec
    mk = lambda c: LayerSpec("d", "dwconv", c, c, 8, 8, kernel=3, padding=1, groups=c)
    X = featurize([mk(c) for c in (16, 32, 64)], "dwconv")
    est = LookupTableRegressor().fit(X, [1.0, 2.0, 4.0], feature_names=SCHEMAS["dwconv"].columns)
    assert est.predict(featurize([mk(48)], "dwconv"))[0] == pytest.approx(3.0)


def test_lookup_needs_units():
    X, y, _ = _data(10, 0)
    with pytest.raises(ConfigError, match="unit_cols"):
        LookupTableRegressor().fit(X, y)


def test_bootstrap_members_refit_the_linear_base_on_their_in_bag_rows(gbdt):
    from compactnet.predictors.estimators import _base_log, _ridge_base
    X, y, _ = _data(80, 4)
    est = gbdt(n_bootstrap=3, random_state=7).fit(X, y, feature_names=SCHEMAS["conv"].columns)
    assert est.base_cols_ and len(est.member_bases_) == 3
    idx = np.random.default_rng(7).integers(0, len(y), len(y))  # the first member's draw
    coef, intercept = _ridge_base(X[idx], np.log(y[idx]), est.base_cols_)
    assert np.allclose(est.member_bases_[0][0], coef) and est.member_bases_[0][1] == pytest.approx(intercept)
    assert not np.allclose(est.member_bases_[0][0], est.base_coef_)  # not the full-data base
    members = est.predict_members(X)
    want = np.asarray(est.members_[0].predict(X), dtype=np.float64) + _base_log(X, est.base_cols_, coef, intercept)
    assert np.allclose(members[0], want, atol=1e-5)
    lo, hi = est.predict_interval(X)
    assert np.all(lo < est.predict(X)) and np.all(est.predict(X) < hi)
