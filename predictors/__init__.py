"""compactnet.predictors stage: learned latency predictors that replace the dense lookup table.

Modules: ``features`` (frozen per-kind feature schemas), ``estimators`` (GBDT and baselines,
scikit-learn compatible), ``network`` (:class:`LatencyPredictor`: whole networks, batched),
``adaptive`` (the profilers' adaptive-sampling hook), ``transfer`` (new platform from few
samples), ``persist`` (joblib and the portable, pickle-free format), ``metrics``, ``testset``,
``synthetic`` (a synthetic ground truth for tests).
"""

from compactnet.predictors.network import LatencyPredictor, fit_platform, predict_table

__all__ = ["LatencyPredictor", "fit_platform", "predict_table"]
