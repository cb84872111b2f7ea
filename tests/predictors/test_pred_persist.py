import json
import pickle
import warnings

import numpy as np
import pytest

from compactnet.errors import ConfigError, ModelFileError
from compactnet.predictors import persist
from compactnet.predictors.estimators import LookupTableRegressor, RandomForestLatencyRegressor
from compactnet.predictors.network import LatencyPredictor
from compactnet.predictors.synthetic import random_layers, toy_network
from compactnet.predictors.transfer import transfer_predictor


def _no_pickle(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("portable loading must not unpickle")
    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "Unpickler", boom)


def _same(a, b, layers):
    for x, y in zip(a.predict_layer_interval(layers), b.predict_layer_interval(layers)):
        assert np.array_equal(x, y)
    nets = [toy_network({"g1": w}) for w in (8, 17, 24)]
    assert np.array_equal(a.predict_many(nets), b.predict_many(nets))


def test_portable_round_trip_without_pickle(tmp_path, monkeypatch, predictor_a, platforms):
    folder = persist.save_portable(predictor_a, tmp_path / "pred")
    files = sorted(p.name for p in folder.iterdir())
    assert persist.MANIFEST in files and all(f.endswith(".json") for f in files)
    _no_pickle(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same versions and platform: no warning
        back = persist.load_portable(folder, platform=platforms["synthetic-a-fp32-t1"][0])
    _same(predictor_a, back, random_layers(40, seed=5))
    meta = json.loads((folder / persist.MANIFEST).read_text())["metadata"]
    assert meta["platform"] == "synthetic-a-fp32-t1" and meta["n_samples_total"] == 240
    assert set(meta["schema_hashes"]) == set(predictor_a.estimators_)
    assert {"xgboost", "scikit-learn", "numpy", "python"} <= set(meta["environment"])


def test_portable_lookup_and_transfer(tmp_path, monkeypatch, train_a, predictor_a, platforms, gbdt):
    from compactnet.predictors.synthetic import measure_synthetic
    lut = LatencyPredictor(estimator=LookupTableRegressor()).fit(train_a)
    pb, cb = platforms["synthetic-b-fp32-t1"]
    tr = transfer_predictor([predictor_a], measure_synthetic(random_layers(40, seed=8), pb, cb))
    persist.save_portable(lut, tmp_path / "lut")
    persist.save_portable(tr, tmp_path / "tr")
    _no_pickle(monkeypatch)
    layers = random_layers(30, seed=6)
    _same(lut, persist.load_portable(tmp_path / "lut"), layers)
    _same(tr, persist.load_portable(tmp_path / "tr"), layers)


def test_forest_has_no_portable_form(tmp_path, train_a):
    rf = LatencyPredictor(estimator=RandomForestLatencyRegressor(n_estimators=5)).fit(train_a)
    with pytest.raises(ConfigError, match="portable"):
        persist.save_portable(rf, tmp_path / "rf")


def test_mismatch_warnings(tmp_path, predictor_a):
    folder = persist.save_portable(predictor_a, tmp_path / "pred")
    with pytest.warns(persist.PredictorMismatchWarning, match="not ort-cpu-fp32-t1"):
        persist.load_portable(folder, platform="ort-cpu-fp32-t1")
    mf = folder / persist.MANIFEST
    d = json.loads(mf.read_text())
    d["metadata"]["schema_hashes"]["conv"] = "0000000000000000"
    d["metadata"]["environment"]["xgboost"] = "0.1"
    mf.write_text(json.dumps(d))
    with pytest.warns(persist.PredictorMismatchWarning) as rec:
        persist.load_portable(folder)
    msgs = " ".join(str(w.message) for w in rec)
    assert "feature schema of 'conv'" in msgs and "xgboost 0.1" in msgs


def test_joblib_round_trip_with_sidecar_metadata(tmp_path, predictor_a):
    path = persist.save(predictor_a, tmp_path / "p.joblib")
    meta = json.loads((tmp_path / "p.joblib.meta.json").read_text())
    assert meta["platform"] == "synthetic-a-fp32-t1"
    back = persist.load(path)
    _same(predictor_a, back, random_layers(20, seed=7))
    with pytest.warns(persist.PredictorMismatchWarning):
        persist.load(path, platform="synthetic-b-fp32-t1")


def test_load_errors(tmp_path):
    with pytest.raises(ModelFileError, match="no predictor.json"):
        persist.load_portable(tmp_path)
    (tmp_path / persist.MANIFEST).write_text("{bad")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        persist.load_portable(tmp_path)
    with pytest.raises(ModelFileError, match="does not exist"):
        persist.load(tmp_path / "missing.joblib")


def test_portable_keeps_the_learned_overhead_and_member_bases(tmp_path, train_a, gbdt):
    from dataclasses import replace
    pr = LatencyPredictor(estimator=gbdt()).fit([replace(m, overhead_ms=0.03) for m in train_a])
    back = persist.load_portable(persist.save_portable(pr, tmp_path / "p"))
    assert back.overhead_ms is None and back.overhead_ms_ == pytest.approx(0.03) and back.offset_ == pr.offset_
    conv = back.estimators_["conv"]
    assert len(conv.member_bases_) == len(pr.estimators_["conv"].member_bases_) == 3
    _same(pr, back, random_layers(20, seed=3))


def _saved(tmp_path, predictor):
    folder = persist.save_portable(predictor, tmp_path / "p")
    return folder, json.loads((folder / persist.MANIFEST).read_text())


@pytest.mark.parametrize("break_it", [
    lambda d: d["predictor"].pop("scale"),
    lambda d: d["predictor"].__setitem__("params", ["not", "a", "dict"]),
    lambda d: d["predictor"]["params"].__setitem__("surprise", 1),
    lambda d: d["kinds"]["conv"].__setitem__("params", {"n_estimators": "many", "bogus": 1}),
    lambda d: d["kinds"].__setitem__("conv", "not an estimator"),
    lambda d: d["predictor"].__setitem__("scale", "big"),
])
def test_malformed_portable_folders_are_model_file_errors(tmp_path, predictor_a, break_it):
    folder, d = _saved(tmp_path, predictor_a)
    break_it(d)
    (folder / persist.MANIFEST).write_text(json.dumps(d))
    with pytest.raises(ModelFileError, match="malformed"):
        persist.load_portable(folder)


def test_corrupt_booster_and_path_names_are_refused(tmp_path, predictor_a):
    folder, d = _saved(tmp_path, predictor_a)
    (folder / d["kinds"]["conv"]["boosters"]["model"]).write_text("{not a booster")
    with pytest.raises(ModelFileError, match="malformed"):
        persist.load_portable(folder)
    folder, d = _saved(tmp_path, predictor_a)
    outside = tmp_path / "outside.json"
    outside.write_text((folder / d["kinds"]["conv"]["boosters"]["model"]).read_text())
    for bad in ("../outside.json", str(outside), "sub/conv.json", ".."):
        d["kinds"]["conv"]["boosters"]["model"] = bad
        (folder / persist.MANIFEST).write_text(json.dumps(d))
        with pytest.raises(ModelFileError, match="plain file name"):
            persist.load_portable(folder)
