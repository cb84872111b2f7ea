import numpy as np
import pytest
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator

from compactnet.errors import ConfigError
from compactnet.predictors.estimators import GBDTLatencyRegressor
from compactnet.predictors.features import SCHEMAS, featurize
from compactnet.predictors.synthetic import measure_synthetic, random_layers
from compactnet.predictors.transfer import TransferRegressor, holdout_experiment


def test_transfer_beats_no_transfer_on_correlated_platforms(platforms):
    layers = random_layers(360, seed=21)
    ms = {k: measure_synthetic(layers, p, c, noise=0.03, seed=i)
          for i, (k, (p, c)) in enumerate(platforms.items()) if k != "synthetic-c-fp32-t1"}
    rows = holdout_experiment(ms, "synthetic-b-fp32-t1", sizes=(10, 25), repeats=2,
                              estimator=GBDTLatencyRegressor(n_estimators=60, interval="none"))
    by = {(r["samples_per_kind"], r["method"]): r for r in rows}
    for n in (10, 25):
        assert by[(n, "transfer")]["rmspe"] < 0.7 * by[(n, "no-transfer")]["rmspe"]
        assert by[(n, "transfer")]["within10"] > by[(n, "no-transfer")]["within10"]


def test_transfer_regressor_contract(platforms, gbdt):
    layers = random_layers(120, seed=3, kinds=("conv",))
    X = featurize(layers, "conv")
    (pa, ca), (pb, cb) = platforms["synthetic-a-fp32-t1"], platforms["synthetic-b-fp32-t1"]
    ya = np.array([m.latency.value_ms for m in measure_synthetic(layers, pa, ca)])
    yb = np.array([m.latency.value_ms for m in measure_synthetic(layers, pb, cb)])
    prior = gbdt(interval="none").fit(X, ya, feature_names=SCHEMAS["conv"].columns)
    est = TransferRegressor(priors=(FrozenEstimator(prior),))
    c = clone(est)
    assert c.priors[0].estimator is prior  # frozen priors survive clone
    c.fit(X[:15], yb[:15])
    assert c.residual_ is None  # too few samples for residual trees
    assert np.all(c.predict(X) > 0)
    with pytest.raises(ConfigError, match="mode"):
        TransferRegressor(priors=(FrozenEstimator(prior),), mode="magic").fit(X, yb)
    with pytest.raises(ConfigError, match="priors"):
        TransferRegressor(priors=(GBDTLatencyRegressor(),)).fit(X, yb)


def test_holdout_also_judges_whole_networks_of_the_held_out_platform(platforms):
    from compactnet.predictors.synthetic import toy_network, true_latency_ms
    layers = random_layers(240, seed=22)
    ms = {k: measure_synthetic(layers, p, c, noise=0.03, seed=i)
          for i, (k, (p, c)) in enumerate(platforms.items()) if k != "synthetic-c-fp32-t1"}
    nets = [toy_network({"g1": w, "g2": v}) for w, v in ((8, 40), (17, 23), (24, 48), (12, 31))]
    _, cb = platforms["synthetic-b-fp32-t1"]
    truth = [true_latency_ms(n.layers, cb).sum() for n in nets]
    est = GBDTLatencyRegressor(n_estimators=40, interval="none")
    rows = holdout_experiment(ms, "synthetic-b-fp32-t1", sizes=(10,), repeats=1, estimator=est, networks=nets,
                              network_truth=truth)
    assert {r["method"] for r in rows} == {"transfer", "no-transfer"}
    for r in rows:
        assert r["n_networks"] == 4 and 0 <= r["net_rmspe"] < 2 and 0 <= r["net_within10"] <= 1
    by = {r["method"]: r for r in rows}
    assert by["transfer"]["net_rmspe"] < by["no-transfer"]["net_rmspe"]
    with pytest.raises(ConfigError, match="network_truth"):
        holdout_experiment(ms, "synthetic-b-fp32-t1", sizes=(10,), repeats=1, estimator=est, networks=nets)
