"""Shared synthetic fixtures for the predictors tests (no runtime, no timing)."""

from __future__ import annotations

import pytest

from compactnet.predictors.estimators import GBDTLatencyRegressor
from compactnet.predictors.synthetic import measure_synthetic, random_layers, synthetic_platforms


def small_gbdt(**kw) -> GBDTLatencyRegressor:
    """A GBDT small enough for unit tests."""
    params = dict(n_estimators=40, n_bootstrap=3, n_jobs=1)
    params.update(kw)
    return GBDTLatencyRegressor(**params)


@pytest.fixture(scope="session")
def gbdt():
    """Factory of small GBDTs."""
    return small_gbdt


@pytest.fixture(scope="session")
def platforms():
    return synthetic_platforms()


@pytest.fixture(scope="session")
def train_a(platforms):
    p, costs = platforms["synthetic-a-fp32-t1"]
    return measure_synthetic(random_layers(240, seed=11), p, costs, noise=0.03, seed=1)


@pytest.fixture(scope="session")
def predictor_a(train_a):
    from compactnet.predictors.network import LatencyPredictor

    return LatencyPredictor(estimator=small_gbdt()).fit(train_a)
