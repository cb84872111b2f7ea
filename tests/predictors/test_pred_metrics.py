import math

import numpy as np
import pytest

from compactnet.errors import ConfigError
from compactnet.predictors.metrics import kendall_tau, pairwise_accuracy, rmspe, summarize, within


def test_rmspe_and_within():
    t = np.array([1.0, 2.0, 4.0, 10.0])
    p = np.array([1.1, 2.0, 3.0, 10.4])
    assert rmspe(t, p) == pytest.approx(math.sqrt((0.01 + 0 + 0.0625 + 0.0016) / 4))
    assert within(t, p, 0.10) == 0.75
    assert within(t, p, 0.05) == 0.5


def test_ranking_metrics():
    t = np.array([1.0, 1.02, 1.5, 2.0])
    assert kendall_tau(t, t * 3) == pytest.approx(1.0)
    assert kendall_tau(t, -t) == pytest.approx(-1.0)
    p = np.array([1.03, 1.0, 1.5, 2.0])  # the one close pair swapped
    assert pairwise_accuracy(t, p) == pytest.approx(5 / 6)
    assert pairwise_accuracy(t, p, close=0.05) == 0.0
    s = summarize(t, p, candidate_sets=[[0, 1], [2, 3]])
    assert s["pairwise"] == pytest.approx(0.5) and s["n"] == 4


def test_metrics_name_bad_inputs():
    with pytest.raises(ConfigError, match="y_pred"):
        rmspe([1, 2], [1])
    with pytest.raises(ConfigError, match="y_true"):
        rmspe([0, 2], [1, 1])


def test_network_summary_keeps_errors_and_ranking_apart():
    from compactnet.predictors.metrics import network_summary
    t = np.array([1.0, 2.0, 5.0, 5.1, 5.2])
    p = np.array([1.1, 2.0, 10.0, 10.3, 10.1])  # candidates 2-4: far off in level, one pair swapped
    s = network_summary(t, p, networks=[0, 1], candidate_sets=[[2, 3, 4]])
    assert s["n"] == 2 and s["rmspe"] == pytest.approx(rmspe(t[:2], p[:2]))  # candidates not in the error
    assert s["within10"] == 1.0 and s["n_sets"] == 1
    assert s["pairwise"] == pytest.approx(2 / 3) and s["kendall_tau"] == pytest.approx(kendall_tau(t[2:], p[2:]))
    none = network_summary(t, p, networks=[], candidate_sets=[])
    assert math.isnan(none["rmspe"]) and math.isnan(none["kendall_tau"]) and none["n"] == 0
