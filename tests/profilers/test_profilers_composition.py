"""The composition fit: an effective per-call overhead from raw unit and prefix-network latencies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compactnet.errors import ConfigError, DataError
from compactnet.profilers.composition import Composition, load_composition, save_composition
from compactnet.profilers.store import SampleStore

# openvino, isolated context, raw timings (issue 3 diagnostic, /work/runs/fig7diag.py)
OV_RAW = [0.0711, 0.062, 0.0712, 0.069, 0.0547, 0.0515, 0.051, 0.0491, 0.0519, 0.0522, 0.0523, 0.0542, 0.066,
          0.0663, 0.0711, 0.1255, 0.1273, 0.1509]
OV_T = [0.0703, 0.0788, 0.1121, 0.1513, 0.1749, 0.2024, 0.2256, 0.2487, 0.2869, 0.3124, 0.341, 0.3682, 0.4205,
        0.4535, 0.4919, 0.5852, 0.6753, 0.8128]


def _chain(n: int = 12, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.02, 0.3, n)


def test_fit_recovers_a_known_overhead_exactly():
    net = _chain()
    o = 0.025
    raw_units = net + o                           # each unit timed alone: one call each
    raw_nets = np.cumsum(net) + o                 # each prefix network: one call
    c = Composition.fit(raw_units, raw_nets, platform="p", context="rotation")
    assert c.overhead_ms == pytest.approx(o, abs=1e-12)
    assert (c.scale, c.call_ms) == pytest.approx((1.0, o), abs=1e-9)
    assert c.in_sample_error["o"] == pytest.approx(0.0, abs=1e-9)
    assert c.predict(raw_units) == pytest.approx(net.sum() + o)
    assert c.predict(float(raw_units.sum()), n_calls=len(net), model="o") == pytest.approx(net.sum() + o)


def test_fit_reproduces_the_diagnostic_on_measured_openvino_numbers():
    c = Composition.fit(OV_RAW, OV_T)
    assert c.overhead_ms == pytest.approx(0.0295, abs=5e-5)
    assert (c.scale, c.call_ms) == pytest.approx((0.841, 0.0186), abs=1e-3)
    assert c.in_sample_error["o"] == pytest.approx(0.089, abs=1e-3)
    assert c.in_sample_error["ab"] == pytest.approx(0.077, abs=1e-3)
    errs = c.errors(OV_RAW, OV_T, model="ab")
    assert max(abs(e) for e in errs) == pytest.approx(0.20, abs=0.01)
    rel = Composition.fit(OV_RAW, OV_T, loss="relative")
    assert rel.loss == "relative" and rel.overhead_ms != c.overhead_ms


def test_fit_on_a_subset_of_prefixes_and_a_scale():
    net = _chain(10, seed=5)
    raw_units = net + 0.01
    raw_nets = 0.9 * np.cumsum(raw_units) - 0.009 * np.arange(10)  # T = a S - (n - 1) b
    c = Composition.fit(raw_units, raw_nets[[1, 4, 9]], prefix_units=[2, 5, 10])
    assert (c.scale, c.call_ms) == pytest.approx((0.9, 0.009), abs=1e-9)
    assert c.prefixes == 3
    assert c.predict_prefixes(raw_units, [10])[0] == pytest.approx(raw_nets[9])


def test_round_trip_and_store_metadata(tmp_path):
    c = Composition.fit(OV_RAW, OV_T, platform="openvino-cpu-fp32-t1", context="isolated")
    assert Composition.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with SampleStore(tmp_path / "s.sqlite") as st:
        assert load_composition(st, "openvino-cpu-fp32-t1", "isolated") is None
        save_composition(st, c)
        save_composition(st, c)  # replaced, not duplicated
    with SampleStore(tmp_path / "s.sqlite") as st:
        assert load_composition(st, "openvino-cpu-fp32-t1", "isolated") == c
        assert load_composition(st, "openvino-cpu-fp32-t1", "rotation") is None
        with pytest.raises(ConfigError, match="key"):
            st.set_meta("schema_version", "9")


@pytest.mark.parametrize("units, nets, kw, match", [
    ([0.1], [0.1], {}, "at least 2 prefix"),
    ([0.1, 0.2, 0.3], [0.1, 0.2], {}, "one prefix latency per unit"),
    ([0.1, 0.2, 0.3], [0.1, 0.2], {"prefix_units": [1, 2, 3]}, "one entry per network"),
    ([0.1, 0.2, 0.3], [0.1, 0.2], {"prefix_units": [1, 4]}, "between 1 and 3"),
    ([0.1, 0.2, 0.3], [0.2, 0.2], {"prefix_units": [2, 2]}, "different lengths"),
    ([0.1, -0.2], [0.1, 0.2], {}, "unit_ms"),
    ([0.1, 0.2], [0.1, float("nan")], {}, "network_ms"),
    ([0.1, 0.2], [0.1, 0.2], {"loss": "huber"}, "loss"),
])
def test_bad_input_is_a_clear_error(units, nets, kw, match):
    with pytest.raises(ConfigError, match=match):
        Composition.fit(units, nets, **kw)


def test_bad_records_and_predict_arguments():
    with pytest.raises(DataError, match="overhead_ms"):
        Composition.from_dict({"scale": 1.0})
    with pytest.raises(DataError, match="finite"):
        Composition.from_dict({"overhead_ms": "x"})
    c = Composition(0.01)
    with pytest.raises(ConfigError, match="n_calls"):
        c.predict(1.0)
    with pytest.raises(ConfigError, match="model"):
        c.predict([1.0], model="abc")
