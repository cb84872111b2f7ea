import numpy as np

from compactnet.predictors.adaptive import PredictorUncertainty, adaptive_sample
from compactnet.predictors.estimators import GBDTLatencyRegressor
from compactnet.profilers.base import SyntheticProfiler
from compactnet.profilers.sampling import UncertaintyModel
from compactnet.profilers.store import SampleStore


def test_implements_the_profilers_hook_and_runs_rounds(tmp_path):
    model = PredictorUncertainty(estimator=GBDTLatencyRegressor(n_estimators=30, n_bootstrap=3))
    assert isinstance(model, UncertaintyModel)
    prof = SyntheticProfiler(noise=0.02, seed=0)
    val = SyntheticProfiler(seed=1).measure(
        __import__("compactnet.profilers.sampling", fromlist=["x"]).make_strategy("random", seed=99).take(40))
    with SampleStore(tmp_path / "s.sqlite") as store:
        run = adaptive_sample(prof, budget=60, model=model, initial=20, per_round=20, pool=100, store=store,
                              validation=val)
        assert store.count() == 60
    assert len(run.measurements) == 60 and len(run.history) == 3
    assert [h["model_used"] for h in run.history] == [False, True, True]
    assert "rmspe" in run.history[-1] and run.history[-1]["rmspe"] < 1.0
    keys = {m.layer.key() for m in run.measurements}
    assert len(keys) == 60  # never the same configuration twice


def test_error_criterion_scores_unmeasured_kinds_first(train_a):
    from compactnet.predictors.synthetic import random_layers
    conv_only = [m for m in train_a if m.layer.op in ("conv", "dwconv")][:60]
    model = PredictorUncertainty(estimator=GBDTLatencyRegressor(n_estimators=20, n_bootstrap=3),
                                 criterion="error").fit(conv_only)
    cands = random_layers(4, seed=3, kinds=("conv", "block"))
    s = model.interval_width(cands)
    assert s.shape == (4,) and s[1] > s[0] and s[3] > s[2]
