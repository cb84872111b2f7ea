"""The LatencyModel protocol and its adapters."""

from __future__ import annotations

import numpy as np
import pytest

from compactnet.errors import ConfigError
from compactnet.extract import spec_for
from compactnet.search.latency import (Calibrating, LatencyModel, MacsLatencyModel, Recalibrated, as_latency_model,
                                       predict_configs)

TABLE2 = [32, 12, 20, 20, 24, 24, 24, 12, 12, 12, 12, 22, 22, 22, 24, 24, 24, 44]


def test_macs_model_punishes_unaligned_widths_and_recalibrates():
    m = MacsLatencyModel(align=8, penalty=0.5)
    assert isinstance(m, LatencyModel)
    base = spec_for("mobilenetv2")
    g = "features.17.conv.2.0"                      # stage 6, 320 wide
    lat = predict_configs(m, base, [{g: w} for w in (311, 312, 313)])
    assert lat[1] < lat[0] and lat[1] < lat[2]       # 312 = 39 x 8 beats both neighbours
    m.recalibrate(base, 2.0)
    assert m.predict_many([base])[0] == pytest.approx(2.0)


class _PredictOnly:
    def predict_many(self, specs):
        return np.array([s.macs / 1e6 for s in specs])


def test_predict_only_objects_get_a_scale_and_bad_ones_are_refused():
    m = as_latency_model(_PredictOnly())
    assert isinstance(m, Recalibrated)
    s = spec_for("mobilenetv2", TABLE2)
    m.recalibrate(s, 0.5)
    assert m.predict_many([s])[0] == pytest.approx(0.5)
    assert isinstance(as_latency_model("flops"), MacsLatencyModel)
    with pytest.raises(ConfigError, match="predictor"):
        as_latency_model(object())
    with pytest.raises(ConfigError, match="predictor"):
        as_latency_model("nn-meter")


def test_the_compactnet_predictor_is_recalibrated_on_whole_networks_without_touching_the_callers_copy():
    from compactnet.predictors import LatencyPredictor
    from compactnet.predictors.synthetic import measure_synthetic, random_layers, synthetic_platforms

    plat, costs = synthetic_platforms()["synthetic-a-fp32-t1"]
    lp = LatencyPredictor().fit(measure_synthetic(random_layers(150, 0, ("conv", "dwconv", "linear", "gap", "add")),
                                                  plat, costs), plat)
    m = as_latency_model(lp)
    assert isinstance(m, Calibrating)
    s0, s1 = spec_for("mobilenetv2"), spec_for("mobilenetv2", TABLE2)
    before = lp.predict_many([s1])[0]
    m.recalibrate(s1, 1.0)
    assert m.predict_many([s1])[0] == pytest.approx(1.0, rel=1e-6)
    assert lp.predict_many([s1])[0] == pytest.approx(before)
    # the batched fast path agrees with building the specs
    cfg = {"features.17.conv.2.0": 300, "features.14.conv.2.0": 150}
    assert predict_configs(m, s0, [cfg])[0] == pytest.approx(m.predict_many([s0.with_channels(cfg)])[0], rel=1e-6)


class _Calibratable:
    """Records the mode it is calibrated with (an affine fit is what near-collinear points break)."""

    def __init__(self):
        self.modes = []

    def predict_many(self, specs):
        return np.array([s.macs / 1e6 for s in specs])

    def calibrate(self, networks, measured_ms, mode="auto"):
        self.modes.append((len(networks), mode))


def test_calibration_is_scale_only_unless_the_measurements_span_a_wide_range():
    m = as_latency_model(_Calibratable())
    assert isinstance(m, Calibrating)
    base, s1, s2 = spec_for("mobilenetv2"), spec_for("mobilenetv2", TABLE2), spec_for("mobilenetv2", [16] * 18)
    # the search's pattern: the original and the trimmed network at each recalibration, close together
    for spec, ms in ((base, 1.00), (s1, 0.80), (base, 1.02), (s1, 0.79)):
        m.recalibrate(spec, ms)
    assert [mode for _n, mode in m.base.modes] == ["scale"] * 4      # 1.02 / 0.79 < 1.5: never affine
    m.recalibrate(s2, 0.40)                                          # three networks over 2.5x
    assert m.base.modes[-1] == (5, "auto") and m.mode == "auto"
    with pytest.raises(ConfigError, match="affine_span"):
        Calibrating(_Calibratable(), affine_span=0.5)


def test_a_real_predictor_recalibrated_on_close_points_keeps_a_sane_scale():
    from compactnet.predictors import LatencyPredictor
    from compactnet.predictors.synthetic import measure_synthetic, random_layers, synthetic_platforms

    plat, costs = synthetic_platforms()["synthetic-a-fp32-t1"]
    lp = LatencyPredictor().fit(measure_synthetic(random_layers(150, 0, ("conv", "dwconv", "linear", "gap", "add")),
                                                  plat, costs), plat)
    m = as_latency_model(lp)
    s0, s1 = spec_for("mobilenetv2"), spec_for("mobilenetv2", TABLE2)
    raw0, raw1 = lp.predict_many([s0, s1])
    # noisy measurements 2x the raw prediction, inverted between the two networks' ratio
    for spec, ms in ((s0, 2 * raw0), (s1, 2 * raw1 * 1.03), (s0, 2 * raw0 * 0.98), (s1, 2 * raw1)):
        m.recalibrate(spec, ms)
    assert m.base.calibration_["mode"] == "scale"
    p0, p1 = m.predict_many([s0, s1])
    assert p0 == pytest.approx(2 * raw0, rel=0.1) and p1 == pytest.approx(2 * raw1, rel=0.1)
