"""In-context latency: what a layer costs inside a network, learned end to end from whole networks.

A layer timed alone is not the layer inside a network: alone it pays its own layout conversions,
finds its input in a cold or a warm cache and keeps a per-call overhead a network pays once. On
machine C the isolated sums miss whole networks by -27% to +65% depending on the architecture and
the input size (README, "Predictor accuracy"), and one factor per layer kind
(:meth:`~compactnet.predictors.network.LatencyPredictor.calibrate` ``mode="kinds"``) leaves 35-83%
of held-out networks within +-10%.

:class:`ContextCorrection` learns a factor per *layer* instead: ``log(in-network cost / isolated
cost)`` as a gradient-boosted function of the layer's shape and its isolated prediction, trained
directly on whole-network latencies::

    network ms = sum over layers of isolated_ms(layer) * exp(r(layer)) + overhead

XGBoost fits ``r`` with a custom objective whose loss is each *network's* squared log error: the
gradient of a layer's score is its network's log error times the layer's share of the predicted
total (the Gauss-Newton Hessian's diagonal bound, the share, keeps steps safe). Every setting is
a keyword argument; learned state ends in ``_``.

Intervals are honest by construction: ``cv_folds``-fold cross-validation over networks gives each
training network a prediction from a model that never saw it; the split-conformal ``coverage``
quantile of those absolute log errors (finite-sample corrected) is the half-width of every network
interval (``interval_log_``).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from compactnet.errors import ConfigError, DataError
from compactnet.predictors.estimators import _check_float, _check_int, _conformal_quantile
from compactnet.predictors.features import RAW_INDEX

log = logging.getLogger(__name__)

#: Feature columns of :func:`context_features`, in order.
CONTEXT_COLUMNS = ("op", "cin", "cout", "h", "kernel", "stride", "depthwise", "log_flops", "log_act_in",
                   "log_act_out", "log_weights", "log_isolated_ms", "residual", "act")
#: Fewest networks a correction is fitted on (below it: refused; calibrate(mode="auto") uses "kinds").
MIN_NETWORKS = 12


def context_features(raw: np.ndarray, isolated_ms: np.ndarray) -> np.ndarray:
    """Feature matrix of raw layer rows (:func:`compactnet.predictors.features.raw_matrix`).

    Args:
        raw: ``(n, len(RAW_COLUMNS))`` raw rows.
        isolated_ms: The isolated prediction of each row (ms).
    """
    col = lambda c: raw[:, RAW_INDEX[c]].astype(np.float64)  # noqa: E731
    cin, cout, h, w, kh, kw = col("cin"), col("cout"), col("h"), col("w"), col("kh"), col("kw")
    sh, sw, groups = np.maximum(col("sh"), 1), np.maximum(col("sw"), 1), np.maximum(col("groups"), 1)
    oh, ow = np.ceil(h / sh), np.ceil(w / sw)
    weights = kh * kw * cin * cout / groups
    flops = weights * oh * ow
    return np.column_stack([raw[:, 0], cin, cout, h, kh, sh, (groups > 1) & (groups == cin), np.log1p(flops),
                            np.log1p(cin * h * w), np.log1p(cout * oh * ow), np.log1p(weights),
                            np.log(np.maximum(isolated_ms, 1e-6)), col("residual"), col("act")])


class ContextCorrection(BaseEstimator):
    """Per-layer in-network factor, fitted on whole networks measured on the platform.

    Args:
        n_estimators: Boosting rounds.
        max_depth: Tree depth.
        learning_rate: Shrinkage.
        reg_lambda: L2 penalty on leaf values.
        min_child_weight: Least summed share (Hessian) in a leaf.
        subsample: Row subsampling per round.
        coverage: Target coverage of the network intervals (0.5-0.99).
        cv_folds: Folds of the cross-validation that calibrates the intervals (>= 2).
        random_state: Seed.
        n_jobs: XGBoost threads (None: XGBoost's default).

    Attributes:
        booster_: The fitted ``xgboost.Booster`` (all networks).
        offset_ms_: The constant per network the fit used (the profilers' per-call overhead).
        interval_log_: Half-width of the network interval in log space.
        cv_errors_: Cross-validated relative error of every training network.
        n_networks_: Networks fitted on.
        n_layers_: Layer rows fitted on.
    """

    def __init__(self, n_estimators: int = 300, max_depth: int = 4, learning_rate: float = 0.1,
                 reg_lambda: float = 1.0, min_child_weight: float = 0.05, subsample: float = 0.8,
                 coverage: float = 0.9, cv_folds: int = 5, random_state: int = 0, n_jobs: int | None = None):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.reg_lambda = reg_lambda
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.coverage = coverage
        self.cv_folds = cv_folds
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _validate(self) -> None:
        for name, low in (("n_estimators", 1), ("max_depth", 1), ("cv_folds", 2)):
            _check_int(name, getattr(self, name), low)
        for name, lo, hi in (("learning_rate", 0, 1), ("subsample", 0, 1), ("coverage", 0.5, 0.99)):
            _check_float(name, getattr(self, name), lo, hi, low_open=True)
        for name in ("reg_lambda", "min_child_weight"):
            _check_float(name, getattr(self, name), 0.0, math.inf)

    def _params(self) -> dict:
        p = {"max_depth": int(self.max_depth), "eta": float(self.learning_rate), "lambda": float(self.reg_lambda),
             "min_child_weight": float(self.min_child_weight), "subsample": float(self.subsample),
             "colsample_bytree": 0.8, "base_score": 0.0, "seed": int(self.random_state), "verbosity": 0}
        if self.n_jobs is not None:
            p["nthread"] = int(self.n_jobs)
        return p

    def _train(self, X: np.ndarray, iso: np.ndarray, owner: np.ndarray, y: np.ndarray, offset: float):
        import xgboost as xgb

        n = len(y)

        def objective(score: np.ndarray, _dtrain: Any) -> tuple[np.ndarray, np.ndarray]:
            contrib = iso * np.exp(score)
            total = np.bincount(owner, contrib, minlength=n) + offset
            share = contrib / total[owner]
            return np.log(total / y)[owner] * share, np.maximum(share, 1e-6) + 1e-4

        return xgb.train(self._params(), xgb.DMatrix(X), num_boost_round=int(self.n_estimators), obj=objective)

    def fit(self, raws: Sequence[np.ndarray], isolated: Sequence[np.ndarray], measured_ms: Sequence[float],
            offset_ms: float = 0.0) -> "ContextCorrection":
        """Fit on networks: their raw layer rows, isolated layer predictions and measured latency.

        Args:
            raws: One raw matrix per network (:func:`~compactnet.predictors.features.raw_matrix`).
            isolated: The isolated prediction (ms) of each row of each network.
            measured_ms: Each network's measured latency (ms).
            offset_ms: Constant per network (the per-call overhead a whole network pays once).

        Raises:
            DataError: Fewer than :data:`MIN_NETWORKS` networks, or a non-positive latency.
            ConfigError: A setting out of range, or lengths that differ.
        """
        self._validate()
        y = np.asarray(measured_ms, dtype=np.float64)
        if len(raws) != len(y) or len(isolated) != len(y):
            raise ConfigError(f"raws, isolated and measured_ms must have one entry per network ({len(raws)}, "
                              f"{len(isolated)} and {len(y)} given)")
        if len(y) < MIN_NETWORKS:
            raise DataError(f"an in-context correction needs at least {MIN_NETWORKS} measured networks; got "
                            f"{len(y)} (measure more: compactnet fit --calibrate N)")
        if not np.all(np.isfinite(y) & (y > 0)):
            raise DataError("every measured network latency must be a positive number of milliseconds")
        X, iso, owner = _stack(raws, isolated)
        self.offset_ms_ = float(offset_ms)
        self.cv_errors_ = self._cross_validate(raws, isolated, y)
        # split-conformal quantile of the held-out errors (finite-sample corrected, like the layer
        # estimators' intervals): the plain quantile of n errors covers a new network less than
        # ``coverage`` of the time
        self.interval_log_ = _conformal_quantile(np.abs(np.log1p(self.cv_errors_)), self.coverage)
        self.booster_ = self._train(X, iso, owner, y, self.offset_ms_)
        self.n_networks_, self.n_layers_ = int(len(y)), int(len(X))
        log.info("in-context correction on %d networks (%d layers): cross-validated %.0f%% within +-10%%, "
                 "%.0f%% interval +-%.1f%%", len(y), len(X), 100 * np.mean(np.abs(self.cv_errors_) <= 0.1),
                 100 * self.coverage, 100 * (math.exp(self.interval_log_) - 1))
        return self

    def _cross_validate(self, raws: Sequence[np.ndarray], isolated: Sequence[np.ndarray], y: np.ndarray) -> np.ndarray:
        """Relative error of each network predicted by a model fitted without its fold."""
        folds = np.random.default_rng(self.random_state).permutation(len(y)) % int(self.cv_folds)
        err = np.empty(len(y))
        for f in range(int(self.cv_folds)):
            tr, te = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
            if not len(te):
                continue
            X, iso, owner = _stack([raws[i] for i in tr], [isolated[i] for i in tr])
            booster = self._train(X, iso, owner, y[tr], self.offset_ms_)
            err[te] = self._totals(booster, [raws[i] for i in te], [isolated[i] for i in te]) / y[te] - 1
        return err

    def _totals(self, booster: Any, raws: Sequence[np.ndarray], isolated: Sequence[np.ndarray]) -> np.ndarray:
        X, iso, owner = _stack(raws, isolated)
        contrib = iso * np.exp(_predict(booster, X))
        return np.bincount(owner, contrib, minlength=len(raws)) + self.offset_ms_

    def log_factor(self, raw: np.ndarray, isolated_ms: np.ndarray) -> np.ndarray:
        """``log(in-network / isolated)`` of each raw layer row.

        Raises:
            sklearn.exceptions.NotFittedError: Not fitted (fit it on measured networks first:
                ``compactnet fit --calibrate N`` or ``LatencyPredictor.calibrate(..., mode="context")``).
        """
        check_is_fitted(self, "booster_")
        if len(raw) == 0:
            return np.zeros(0)
        return _predict(self.booster_, context_features(raw, isolated_ms))

    def describe(self) -> dict:
        """JSON-ready summary."""
        check_is_fitted(self, "booster_")
        e = np.abs(self.cv_errors_)
        return {"networks": self.n_networks_, "layers": self.n_layers_, "coverage": self.coverage,
                "interval_pct": 100 * (math.exp(self.interval_log_) - 1),
                "cv_within_10pct": float(np.mean(e <= 0.10)), "cv_within_5pct": float(np.mean(e <= 0.05))}


def _predict(booster: Any, X: np.ndarray) -> np.ndarray:
    import xgboost as xgb

    return booster.predict(xgb.DMatrix(X), output_margin=True).astype(np.float64)


def _stack(raws: Sequence[np.ndarray], isolated: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, isolated ms and owning network index of all rows of several networks."""
    iso = np.concatenate([np.asarray(i, dtype=np.float64) for i in isolated])
    raw = np.vstack(raws)
    owner = np.repeat(np.arange(len(raws)), [len(r) for r in raws])
    return context_features(raw, iso), iso, owner


__all__ = ["ContextCorrection", "context_features", "CONTEXT_COLUMNS", "MIN_NETWORKS"]
