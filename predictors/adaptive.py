"""Adaptive sampling made real: the profilers' :class:`~compactnet.profilers.sampling.UncertaintyModel`
hook implemented with a latency predictor, and a driver running the rounds.

Each round: fit the predictor on everything measured so far, score a pool of fresh candidate
configurations, measure the ``per_round`` highest-scoring ones through a
:class:`~compactnet.profilers.base.Profiler`, append them to the sample store. Scores
(``criterion``):

- ``interval``: the predictor's relative interval width ``log(high / low)`` (nn-Meter's choice;
  the GBDT's bootstrap intervals widen where data are sparse);
- ``error``: the 3-fold cross-validated error of the nearest measured configuration of the same
  kind (in standardised feature space), plus the interval width as a tie-breaker: measure next
  where the model has been wrong.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from compactnet.errors import bad_value
from compactnet.spec import LayerSpec, Measurement
from compactnet.predictors.features import featurize, split_by_kind
from compactnet.predictors.metrics import rmspe, within
from compactnet.predictors.network import LatencyPredictor

log = logging.getLogger(__name__)
CRITERIA = ("interval", "error")


class PredictorUncertainty:
    """An :class:`~compactnet.profilers.sampling.UncertaintyModel` backed by a :class:`LatencyPredictor`.

    Args:
        estimator: Estimator prototype (default GBDT with bootstrap intervals).
        criterion: ``interval`` or ``error`` (see the module docstring).
        min_samples_per_kind: Passed to the predictor.
        seed: Seed of the cross-validation folds (``error``).

    Attributes:
        predictor_: The fitted predictor.
    """

    def __init__(self, estimator: Any = None, criterion: str = "interval", min_samples_per_kind: int = 3,
                 seed: int = 0):
        if criterion not in CRITERIA:
            raise bad_value("criterion", "one of " + ", ".join(CRITERIA), criterion)
        self.estimator = estimator
        self.criterion = criterion
        self.min_samples_per_kind = min_samples_per_kind
        self.seed = seed

    def _new(self) -> LatencyPredictor:
        return LatencyPredictor(estimator=self.estimator, min_samples_per_kind=self.min_samples_per_kind)

    def fit(self, measurements: Sequence[Measurement]) -> "PredictorUncertainty":
        """Fit the predictor (and, for ``error``, the cross-validated errors); return self."""
        measurements = list(measurements)
        self.predictor_ = self._new().fit(measurements)
        self._cv = {}
        if self.criterion == "error" and len(measurements) >= 6:
            rng = np.random.default_rng(self.seed + len(measurements))
            fold = rng.integers(0, 3, len(measurements))
            err = np.zeros(len(measurements))
            layers = [m.layer for m in measurements]
            y = np.array([m.latency.value_ms for m in measurements])
            for f in range(3):
                tr = [m for m, k in zip(measurements, fold) if k != f]
                te = np.flatnonzero(fold == f)
                if not tr or not len(te):
                    continue
                p = self._new().fit(tr).predict_layer_ms([layers[i] for i in te])
                err[te] = np.abs(np.log(p / y[te]))
            prec = self.predictor_.platform_.precision
            for kind, idx in split_by_kind(layers).items():
                X = featurize([layers[i] for i in idx], kind, prec)
                mu, sd = X.mean(axis=0), X.std(axis=0) + 1e-9
                self._cv[kind] = ((X - mu) / sd, err[idx], mu, sd)
        return self

    def interval_width(self, layers: Sequence[LayerSpec]) -> np.ndarray:
        """Score per layer, larger = measure sooner (relative width, or nearest CV error + width)."""
        layers = list(layers)
        width = self.predictor_.interval_width(layers)
        if self.criterion == "interval" or not self._cv:
            return width
        score = width * 0.1
        prec = self.predictor_.platform_.precision
        for kind, idx in split_by_kind(layers).items():
            if kind not in self._cv:
                score[idx] += 10.0  # never measured: most informative
                continue
            Z, err, mu, sd = self._cv[kind]
            Q = (featurize([layers[i] for i in idx], kind, prec) - mu) / sd
            d = ((Q[:, None, :] - Z[None, :, :]) ** 2).sum(axis=2)
            score[idx] += err[np.argmin(d, axis=1)]
        return score


@dataclass
class AdaptiveRun:
    """Result of :func:`adaptive_sample`.

    Attributes:
        measurements: Everything measured, in order.
        history: Per round: samples so far, mean score of the batch, and validation errors
            when a validation set was given.
    """

    measurements: list[Measurement] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)


def adaptive_sample(profiler: Any, budget: int, network: Any = None, model: PredictorUncertainty | None = None,
                    initial: int = 32, per_round: int = 32, pool: int = 512, seed: int = 0, store: Any = None,
                    validation: Sequence[Measurement] = ()) -> AdaptiveRun:
    """Profile ``budget`` configurations in rounds chosen by the predictor's uncertainty.

    Args:
        profiler: A :class:`~compactnet.profilers.base.Profiler` (e.g. ``SyntheticProfiler`` in tests).
        budget: Total configurations to measure.
        network: The network (or units) spanning the space (default: Table-1 MobileNetV2's units).
        model: The uncertainty model (default :class:`PredictorUncertainty`).
        initial: Sobol configurations measured before the model is used.
        per_round: Configurations measured per round.
        pool: Fresh random candidates scored per round.
        seed: Seed of the candidate streams.
        store: Optional :class:`~compactnet.profilers.store.SampleStore` every batch is appended to.
        validation: Optional measurements to report the predictor's error on after each round.

    Returns:
        :class:`AdaptiveRun`.
    """
    from compactnet.profilers.sampling import AdaptiveStrategy, resolve_space

    for name, v in (("budget", budget), ("initial", initial), ("per_round", per_round), ("pool", pool)):
        if not isinstance(v, int) or v < 1:
            raise bad_value(name, "a positive integer", v)
    model = model or PredictorUncertainty()
    strategy = AdaptiveStrategy(resolve_space(network), model, seed=seed, initial=initial, pool=pool)
    run = AdaptiveRun()
    while len(run.measurements) < budget:
        k = min(per_round, budget - len(run.measurements))
        batch = strategy.next_batch(k, run.measurements)
        if not batch:
            log.info("adaptive sampling: the space is exhausted after %d samples", len(run.measurements))
            break
        new = profiler.measure(batch)
        if store is not None:
            store.add(new)
        run.measurements.extend(new)
        rec: dict = {"samples": len(run.measurements), "model_used": len(run.measurements) - len(new) >= initial}
        if validation and len(run.measurements) >= initial:
            pred = LatencyPredictor(estimator=model.estimator, min_samples_per_kind=2).fit(run.measurements)
            y = np.array([m.latency.value_ms for m in validation])
            p = pred.predict_layer_ms([m.layer for m in validation])
            rec.update(rmspe=rmspe(y, p), within10=within(y, p, 0.10))
        run.history.append(rec)
    return run


__all__ = ["PredictorUncertainty", "AdaptiveRun", "adaptive_sample", "CRITERIA"]
