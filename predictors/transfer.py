"""A new platform from few samples: transfer from platforms already profiled.

Two runtimes on one CPU disagree mostly by a scale (throughput) and by *where* they are punished
(alignment, fusion). :class:`TransferRegressor` learns the target platform's log-latency as

1. ``affine``: ``a · prior_log + b`` (ridge over one or more prior platforms' log predictions:
   two or three numbers, learnable from ten samples), then
2. ``residual``: gradient-boosted trees on what the affine map misses, boosted from it as
   XGBoost ``base_margin`` with all features plus the priors' predictions as extra columns, only
   once there are enough samples (``min_residual_samples``) to learn more than noise.

Modes: ``affine+residual`` (default, the above), ``affine`` (step 1 only), ``margin`` (trees
boosted from the mean prior as base margin, no affine step), ``feature`` (priors only as extra
columns of a plain GBDT). :func:`holdout_experiment` shows the gain: hold one platform out, fit
on 10/25/50 samples per kind with and without transfer, compare errors on the rest.

Priors are fitted estimators and must survive ``sklearn.clone``: pass them wrapped in
:class:`sklearn.frozen.FrozenEstimator` (:func:`transfer_predictor` does).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils.validation import check_is_fitted

from compactnet.errors import DataError, bad_value
from compactnet.spec import LayerSpec, Measurement
from compactnet.predictors.estimators import GBDTLatencyRegressor, LatencyEstimatorMixin, _check_coverage, _check_xy
from compactnet.predictors.metrics import rmspe, within

log = logging.getLogger(__name__)
TRANSFER_MODES = ("affine+residual", "affine", "margin", "feature")


def _prior_logs(priors: Sequence[Any], X: np.ndarray) -> np.ndarray:
    out = []
    for p in priors:
        est = p.estimator if isinstance(p, FrozenEstimator) else p
        out.append(est.predict_log(X) if hasattr(est, "predict_log") else np.log(np.maximum(est.predict(X), 1e-12)))
    return np.column_stack(out) if out else np.zeros((len(X), 0))


class TransferRegressor(LatencyEstimatorMixin, RegressorMixin, BaseEstimator):
    """Latency on a new platform from few samples and prior platforms' estimators (same features).

    Args:
        priors: Fitted estimators of the same layer kind on other platforms, each wrapped in
            :class:`sklearn.frozen.FrozenEstimator`.
        mode: One of :data:`TRANSFER_MODES`.
        residual_estimator: Trees for the residual (default: a small, strongly shrunk GBDT).
        min_residual_samples: Fewer samples than this: no residual trees (``affine+residual``).
        alpha: Ridge penalty of the affine step (pulls the slope towards the prior's: 1 per prior).
        coverage: Nominal coverage of ``predict_interval``.

    Attributes:
        coef_: Affine slopes on the priors' log predictions.
        intercept_: Affine intercept.
        residual_: Fitted residual trees or None.
    """

    def __init__(self, priors: Sequence[Any] = (), mode: str = "affine+residual", residual_estimator: Any = None,
                 min_residual_samples: int = 20, alpha: float = 1.0, coverage: float = 0.9):
        self.priors = priors
        self.mode = mode
        self.residual_estimator = residual_estimator
        self.min_residual_samples = min_residual_samples
        self.alpha = alpha
        self.coverage = coverage

    def _residual_proto(self) -> BaseEstimator:
        if self.residual_estimator is not None:
            return clone(self.residual_estimator)
        return GBDTLatencyRegressor(n_estimators=120, max_depth=3, learning_rate=0.05, min_child_weight=2.0,
                                    linear_base=False, interval="none")

    def fit(self, X: Any, y: Any, *, feature_names: Sequence[str] | None = None,
            sample_weight: Any = None) -> "TransferRegressor":
        """Fit the target platform's samples.

        Raises:
            ConfigError: Unknown mode, an unfitted prior, or a bad setting.
        """
        if self.mode not in TRANSFER_MODES:
            raise bad_value("mode", "one of " + ", ".join(TRANSFER_MODES), self.mode)
        if not self.priors:
            raise bad_value("priors", "at least one fitted estimator of another platform", self.priors)
        for p in self.priors:
            try:
                check_is_fitted(p.estimator if isinstance(p, FrozenEstimator) else p)
            except Exception as exc:  # noqa: BLE001 - NotFittedError or TypeError for a non-estimator
                raise bad_value("priors", "fitted estimators (wrap them in sklearn.frozen.FrozenEstimator so clone "
                                "keeps them fitted)", type(p).__name__) from exc
        if not isinstance(self.min_residual_samples, int) or self.min_residual_samples < 1:
            raise bad_value("min_residual_samples", "an integer >= 1", self.min_residual_samples)
        if not isinstance(self.alpha, (int, float)) or self.alpha < 0:
            raise bad_value("alpha", "a non-negative number", self.alpha)
        _check_coverage(self.coverage)
        X, y, sample_weight = _check_xy(X, y, sample_weight)
        ylog = np.log(y)
        self.n_features_in_ = X.shape[1]
        self.feature_names_ = None if feature_names is None else tuple(feature_names)
        self.n_samples_ = len(y)
        P = _prior_logs(self.priors, X)
        k = P.shape[1]
        if self.mode in ("affine+residual", "affine"):
            # Ridge towards slope 1/k per prior (the prior is right up to a scale): solve for the deviation.
            A = np.column_stack([P, np.ones(len(y))])
            target = ylog - P.mean(axis=1)
            reg = np.diag([self.alpha] * k + [0.0])
            dev = np.linalg.solve(A.T @ A + reg, A.T @ target)
            self.coef_ = tuple(float(v) for v in dev[:k] + 1.0 / k)
            self.intercept_ = float(dev[k])
        else:
            self.coef_ = tuple([1.0 / k] * k) if self.mode == "margin" else tuple([0.0] * k)
            self.intercept_ = 0.0
        self.residual_ = None
        base = P @ np.asarray(self.coef_) + self.intercept_
        if self.mode == "feature" or self.mode == "margin" or (
                self.mode == "affine+residual" and len(y) >= self.min_residual_samples):
            est = self._residual_proto()
            Xa = np.column_stack([X, P])
            names = None if feature_names is None else tuple(feature_names) + tuple(f"prior{i}" for i in range(k))
            fit_kw = {"feature_names": names}
            if self.mode != "feature" and "base_margin" in _fit_params(est):
                fit_kw["base_margin"] = base
            self.residual_ = est.fit(Xa, np.exp(ylog if "base_margin" in fit_kw or self.mode == "feature"
                                                else ylog - base), **fit_kw)
            self._residual_has_margin = "base_margin" in fit_kw
        self._residual_band(X, ylog)
        n, p = len(y), k + 1
        if n > p + 1:  # in-sample residuals are optimistic: widen by the degrees of freedom used
            f = np.sqrt(n / (n - p))
            self.residual_low_, self.residual_high_ = self.residual_low_ * f, self.residual_high_ * f
        return self

    def _predict_log(self, X: np.ndarray) -> np.ndarray:
        P = _prior_logs(self.priors, X)
        base = P @ np.asarray(self.coef_) + self.intercept_
        if self.residual_ is None:
            return base
        Xa = np.column_stack([X, P])
        if getattr(self, "_residual_has_margin", False):
            return self.residual_.predict_log(Xa, base_margin=base)
        if self.mode == "feature":
            return self.residual_.predict_log(Xa)
        return base + self.residual_.predict_log(Xa)


def _fit_params(est: Any) -> set:
    import inspect

    return set(inspect.signature(est.fit).parameters)


def transfer_predictor(priors: Sequence[Any], measurements: Sequence[Measurement], mode: str = "affine+residual",
                       **params: Any):
    """A :class:`~compactnet.predictors.network.LatencyPredictor` for a new platform, per kind a
    :class:`TransferRegressor` over the priors' estimators of that kind.

    Args:
        priors: Fitted ``LatencyPredictor`` objects of other platforms.
        measurements: The new platform's (few) samples.
        mode: Transfer mode (see :data:`TRANSFER_MODES`).
        **params: Further :class:`TransferRegressor` settings.

    Kinds no prior knows are fitted by the default GBDT.
    """
    from compactnet.predictors.network import LatencyPredictor

    if not priors:
        raise bad_value("priors", "at least one fitted LatencyPredictor", priors)
    kinds = {m.layer.op for m in measurements}
    ests = {}
    for kind in kinds:
        ps = tuple(FrozenEstimator(p.estimators_[kind]) for p in priors if kind in getattr(p, "estimators_", {}))
        if ps:
            ests[kind] = TransferRegressor(priors=ps, mode=mode, **params)
    return LatencyPredictor(estimator=ests, min_samples_per_kind=2).fit(measurements)


def holdout_experiment(measurements: Mapping[str, Sequence[Measurement]], target: str,
                       sizes: Sequence[int] = (10, 25, 50), test_fraction: float = 0.3, repeats: int = 3,
                       seed: int = 0, mode: str = "affine+residual", estimator: Any = None,
                       networks: Sequence[Any] = (), network_truth: Sequence[float] | None = None,
                       calibration: tuple[Sequence[Any], Sequence[float]] | None = None,
                       calibration_mode: str = "auto") -> list[dict]:
    """Error on a held-out platform vs its number of samples per kind, with and without transfer.

    The target's measurements are split once, by distinct configuration, into a test part
    (``test_fraction`` of the configurations) and a pool; for each size and repeat, ``size``
    samples per layer kind are drawn from the pool, and a plain predictor (``estimator``, default
    GBDT) and a transfer predictor (priors: the other platforms, fitted on all their samples) are
    fitted and scored on the test part -- per layer, and, when ``networks`` with their measured
    latency on the target (``network_truth``) are given, per whole network.

    Args:
        measurements: Samples by platform key (at least two platforms).
        target: The held-out platform key.
        sizes: Samples per layer kind on the target.
        test_fraction: Share of the target's samples kept for testing.
        repeats: Draws per size (results are averaged).
        seed: Seed of the split and draws.
        mode: Transfer mode.
        estimator: Estimator prototype of the no-transfer predictor and the priors.
        networks: Whole test networks (:class:`~compactnet.spec.NetworkSpec`) measured on the target.
        network_truth: Their measured latency on the target (ms), one per network.
        calibration: ``(networks, measured_ms)``: other whole networks measured on the target (a
            development set, not the test networks); each fitted predictor is calibrated on them
            before the whole-network figures (the layer figures stay uncalibrated).
        calibration_mode: Mode of that calibration (:meth:`LatencyPredictor.calibrate`).

    Returns:
        Rows ``{"target", "samples_per_kind", "method" ("no-transfer" | "transfer"), "rmspe",
        "within10", "within5", "repeats"}`` (per layer), plus ``"net_rmspe", "net_within10",
        "net_within5", "n_networks"`` when networks are given, and ``"calibration_networks"``
        when calibrated.
    """
    from compactnet.predictors.network import LatencyPredictor
    from compactnet.profilers.store import layer_key

    networks = list(networks)
    if networks and (network_truth is None or len(network_truth) != len(networks)):
        raise bad_value("network_truth", f"one measured latency per network ({len(networks)})",
                        "none" if network_truth is None else f"{len(network_truth)} values")
    y_net = None if not networks else np.asarray(network_truth, dtype=np.float64)

    if target not in measurements:
        raise bad_value("target", "one of the platforms " + ", ".join(measurements), target)
    others = [k for k in measurements if k != target]
    if not others:
        raise DataError("the transfer experiment needs samples of at least one other platform")
    priors = [LatencyPredictor(estimator=estimator).fit(list(measurements[k])) for k in others]
    tgt = list(measurements[target])
    rng = np.random.default_rng(seed)
    keys = sorted({layer_key(m.layer) for m in tgt})  # split configurations, not rows: repeats stay together
    order = rng.permutation(len(keys))
    n_test = max(1, int(round(test_fraction * len(keys))))
    test_keys = {keys[i] for i in order[:n_test]}
    test = [m for m in tgt if layer_key(m.layer) in test_keys]
    pool = [m for m in tgt if layer_key(m.layer) not in test_keys]
    by_kind: dict[str, list[int]] = {}
    for i, m in enumerate(pool):
        by_kind.setdefault(m.layer.op, []).append(i)
    test_layers: list[LayerSpec] = [m.layer for m in test]
    y_test = np.array([m.latency.value_ms for m in test])
    rows = []
    for size in sizes:
        acc: dict[str, list[tuple[float, ...]]] = {"no-transfer": [], "transfer": []}
        for r in range(repeats):
            pick = []
            for kind, idx in by_kind.items():
                pick += list(rng.choice(idx, size=min(size, len(idx)), replace=False))
            train = [pool[i] for i in pick]
            plain = LatencyPredictor(estimator=estimator, min_samples_per_kind=2).fit(train)
            trans = transfer_predictor(priors, train, mode=mode)
            for name, pr in (("no-transfer", plain), ("transfer", trans)):
                p = pr.predict_layer_ms(test_layers)
                vals = (rmspe(y_test, p), within(y_test, p, 0.10), within(y_test, p, 0.05))
                if calibration is not None:
                    pr.calibrate(list(calibration[0]), list(calibration[1]), mode=calibration_mode)
                if y_net is not None:
                    q = pr.predict_many(networks)
                    vals += (rmspe(y_net, q), within(y_net, q, 0.10), within(y_net, q, 0.05))
                acc[name].append(vals)
        for name, vals in acc.items():
            v = np.asarray(vals)
            row = {"target": target, "samples_per_kind": int(size), "method": name,
                   "rmspe": float(v[:, 0].mean()), "within10": float(v[:, 1].mean()),
                   "within5": float(v[:, 2].mean()), "repeats": int(repeats)}
            if y_net is not None:
                row.update(net_rmspe=float(v[:, 3].mean()), net_within10=float(v[:, 4].mean()),
                           net_within5=float(v[:, 5].mean()), n_networks=len(networks))
            if calibration is not None:
                row["calibration_networks"] = len(calibration[0])
            rows.append(row)
    return rows


__all__ = ["TransferRegressor", "TRANSFER_MODES", "transfer_predictor", "holdout_experiment"]
