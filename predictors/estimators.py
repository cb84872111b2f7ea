"""Per-layer-kind latency regressors behind one scikit-learn interface.

Every estimator here takes a feature matrix of one layer kind (see
:mod:`compactnet.predictors.features`) and latencies in milliseconds, and follows scikit-learn's
conventions: every setting is a keyword argument of ``__init__`` stored as given (so
``get_params``/``set_params``/``clone`` work), validation happens in ``fit``, learned state ends in
``_``, ``predict`` on an unfitted model raises :class:`sklearn.exceptions.NotFittedError` ("call
'fit' ..."), and ``score`` is R² (``RegressorMixin``). Beyond scikit-learn:

- ``fit(X, y, *, feature_names=None, sample_weight=None)``: ``feature_names`` (the schema's
  columns) lets baselines find the columns they need by name;
- ``predict_log(X)``: natural log of the predicted milliseconds (what the trees are trained on);
- ``predict_interval(X)``: ``(low_ms, high_ms)`` with the estimator's ``coverage``.

Estimators:

- :class:`GBDTLatencyRegressor`: XGBoost (``XGBRegressor``) on log-latency; the product's model.
- :class:`LookupTableRegressor`: the CompactNet paper's simulator: exact lookup, linear
  interpolation between grid points in (cin, cout) inside a unit.
- :class:`RandomForestLatencyRegressor`: nn-Meter's choice.
- :class:`FlopsLinearRegressor`: latency proportional to FLOPs (plus a constant).
- :class:`ConstantRegressor`: the median latency of the layer kind.

Intervals of the GBDT, and why a bootstrap ensemble by default: adaptive sampling must measure
where the model is *unsure because it has seen little* (epistemic uncertainty). A quantile
objective (``interval="quantile"``, XGBoost's ``reg:quantileerror``) learns the spread of the
*noise* around seen data, and is no wider in an empty region of the design space than in a
crowded one; a bootstrap ensemble disagrees exactly where data are sparse. Its spread is turned
into an interval with a calibrated multiplier: the out-of-bag residuals of the training set,
divided by the ensemble spread at those points, give the ``coverage`` quantile (a normalised
split-conformal interval), so the interval covers noise as well. Each member is a full refit on
its bootstrap draw, linear base included: its base is fitted on its in-bag rows only, and its
out-of-bag predictions use that base, so no out-of-bag row has shaped the prediction it is scored
on. The point prediction is the full-data booster; members only serve intervals, so ``predict``
costs one booster call.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted

from compactnet.errors import bad_value

log = logging.getLogger(__name__)

INTERVALS = ("bootstrap", "quantile", "none")


# ----- shared helpers ---------------------------------------------------------------------------
def _check_xy(X: Any, y: Any, sample_weight: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    X = check_array(X, dtype=np.float64, ensure_all_finite=True)
    y = np.asarray(y, dtype=np.float64).ravel()
    if len(y) != len(X):
        raise bad_value("y", f"one latency per row of X ({len(X)})", f"{len(y)} values")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise bad_value("y", "positive, finite latencies in milliseconds", f"min {np.nanmin(y)!r}")
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=np.float64).ravel()
        if len(sample_weight) != len(y):
            raise bad_value("sample_weight", f"one weight per row of X ({len(X)})", f"{len(sample_weight)} values")
    return X, y, sample_weight


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise bad_value(name, f"an integer >= {low}", value)


def _check_float(name: str, value: Any, low: float, high: float, low_open: bool = False,
                 high_open: bool = False) -> None:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise bad_value(name, f"a number in {lo}{low}, {high}{hi}", value)


def _check_coverage(value: Any) -> None:
    _check_float("coverage", value, 0.0, 1.0, low_open=True, high_open=True)


def _conformal_quantile(scores: np.ndarray, coverage: float) -> float:
    """Finite-sample corrected ``coverage`` quantile of non-conformity scores."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(scores)
    if n == 0:
        return float("inf")
    k = min(n - 1, int(math.ceil((n + 1) * coverage)) - 1)
    return float(scores[max(k, 0)])


class LatencyEstimatorMixin:
    """``predict`` / ``predict_log`` / ``predict_interval`` in terms of ``_predict_log``."""

    def _features(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = check_array(X, dtype=np.float64, ensure_all_finite=True, ensure_min_samples=0)
        if X.shape[1] != self.n_features_in_:
            raise bad_value("X", f"a matrix with {self.n_features_in_} feature columns (as in fit)",
                            f"{X.shape[1]} columns")
        return X

    def predict_log(self, X: Any) -> np.ndarray:
        """Natural log of the predicted latency in ms."""
        X = self._features(X)
        if len(X) == 0:
            return np.zeros(0)
        return self._predict_log(X)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted latency in milliseconds."""
        return np.exp(self.predict_log(X))

    def predict_interval(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(low_ms, high_ms)`` covering the true latency with probability about ``coverage``.

        Default: the point prediction times the training set's log-residual quantiles.
        """
        X = self._features(X)
        p = self._predict_log(X) if len(X) else np.zeros(0)
        return np.exp(p + self.residual_low_), np.exp(p + self.residual_high_)

    def _residual_band(self, X: np.ndarray, ylog: np.ndarray) -> None:
        r = ylog - self._predict_log(X)
        a = (1.0 - self.coverage) / 2.0
        self.residual_low_ = float(np.quantile(r, a)) if len(r) else 0.0
        self.residual_high_ = float(np.quantile(r, 1.0 - a)) if len(r) else 0.0


# ----- XGBoost ------------------------------------------------------------------------------------
class GBDTLatencyRegressor(LatencyEstimatorMixin, RegressorMixin, BaseEstimator):
    """Gradient-boosted trees (XGBoost) on log-latency, with prediction intervals.

    Args:
        n_estimators: Boosting rounds.
        max_depth: Tree depth.
        learning_rate: Shrinkage.
        subsample: Row fraction per tree.
        colsample_bytree: Column fraction per tree.
        min_child_weight: Minimum hessian per leaf.
        reg_lambda: L2 leaf regularisation.
        linear_base: Boost from a log-log linear model of FLOPs and bytes (the trees learn what
            the roofline misses: alignment, fusion, cache), instead of from a constant. Trees
            cannot extrapolate; the linear base carries them across the orders of magnitude a
            layer's cost spans, and cuts the samples needed.
        interval: ``bootstrap`` (ensemble + out-of-bag calibration, default), ``quantile``
            (``reg:quantileerror`` booster) or ``none`` (no intervals: ``predict_interval``
            returns the point twice).
        n_bootstrap: Ensemble members for ``interval="bootstrap"``.
        coverage: Nominal coverage of ``predict_interval`` (0.9: a 5%-95% interval).
        random_state: Seed.
        n_jobs: Threads for XGBoost (default 1: on a shared 2-core machine OpenMP threads
            contend badly; raise it on a quiet machine).

    Attributes:
        model_: The full-data ``XGBRegressor`` (point predictions).
        members_: Bootstrap ``XGBRegressor`` members (``interval="bootstrap"``).
        quantile_model_: Two-quantile ``XGBRegressor`` (``interval="quantile"``).
        base_cols_: Columns of the linear base (FLOPs, bytes), or () without it.
        base_coef_: Coefficients of the linear base on ``log1p`` of those columns.
        base_intercept_: Its intercept.
        member_bases_: Per bootstrap member, ``(coef, intercept)`` of its own linear base fitted on
            its in-bag rows (empty without a linear base).
        uses_margin_: The boosters were trained from a base margin (``base_score`` pinned to 0).
        interval_scale_: Calibrated multiplier of the ensemble spread (bootstrap).
        spread_floor_: Floor added to the ensemble spread (bootstrap), log units.
        n_features_in_: Feature columns seen in fit.
        feature_names_: Column names passed to fit (or None).
        n_samples_: Training rows.
    """

    def __init__(self, n_estimators: int = 200, max_depth: int = 5, learning_rate: float = 0.1,
                 subsample: float = 0.9, colsample_bytree: float = 1.0, min_child_weight: float = 1.0,
                 reg_lambda: float = 1.0, linear_base: bool = True, interval: str = "bootstrap",
                 n_bootstrap: int = 6, coverage: float = 0.9, random_state: int | None = 0, n_jobs: int | None = 1):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.linear_base = linear_base
        self.interval = interval
        self.n_bootstrap = n_bootstrap
        self.coverage = coverage
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _validate(self) -> None:
        _check_int("n_estimators", self.n_estimators, 1)
        _check_int("max_depth", self.max_depth, 1)
        _check_float("learning_rate", self.learning_rate, 0.0, 1.0, low_open=True)
        _check_float("subsample", self.subsample, 0.0, 1.0, low_open=True)
        _check_float("colsample_bytree", self.colsample_bytree, 0.0, 1.0, low_open=True)
        _check_float("min_child_weight", self.min_child_weight, 0.0, float("inf"), high_open=True)
        _check_float("reg_lambda", self.reg_lambda, 0.0, float("inf"), high_open=True)
        if self.interval not in INTERVALS:
            raise bad_value("interval", "one of " + ", ".join(INTERVALS), self.interval)
        if self.interval == "bootstrap":
            _check_int("n_bootstrap", self.n_bootstrap, 2)
        _check_coverage(self.coverage)
        if self.n_jobs is not None:
            _check_int("n_jobs", self.n_jobs, 1)
        if not isinstance(self.linear_base, (bool, np.bool_)):
            raise bad_value("linear_base", "True or False", self.linear_base)

    def _xgb(self, seed: int, margin: bool = False, **extra: Any):
        from xgboost import XGBRegressor

        params = dict(n_estimators=self.n_estimators, max_depth=self.max_depth, learning_rate=self.learning_rate,
                      subsample=self.subsample, colsample_bytree=self.colsample_bytree,
                      min_child_weight=self.min_child_weight, reg_lambda=self.reg_lambda, tree_method="hist",
                      random_state=seed, n_jobs=self.n_jobs, objective="reg:squarederror")
        if margin:
            # Trained from a per-row base margin, the booster's output without one is the trees' sum
            # plus base_score: pin base_score to 0 and add the margin ourselves at prediction time
            # (passing base_margin to predict costs ~5 ms per call in XGBoost 3).
            params["base_score"] = 0.0
        params.update(extra)
        return XGBRegressor(**params)

    def fit(self, X: Any, y: Any, *, feature_names: Sequence[str] | None = None, sample_weight: Any = None,
            base_margin: Any = None) -> "GBDTLatencyRegressor":
        """Fit on latencies in ms (the trees learn their log).

        Args:
            X: ``(n, n_features)`` feature matrix of one layer kind.
            y: Latencies in milliseconds (positive).
            feature_names: Column names (stored, not needed).
            sample_weight: Optional row weights.
            base_margin: Optional per-row offset in log-ms added to the trees' output (transfer
                learning: a prior platform's log prediction); pass the same at prediction time.

        Raises:
            ConfigError: A setting or the data is out of range (the message names it).
        """
        self._validate()
        X, y, sample_weight = _check_xy(X, y, sample_weight)
        ylog = np.log(y)
        margin = None if base_margin is None else np.asarray(base_margin, dtype=np.float64).ravel()
        seed = 0 if self.random_state is None else int(self.random_state)
        self.n_features_in_ = X.shape[1]
        self.feature_names_ = None if feature_names is None else tuple(feature_names)
        self.n_samples_ = len(y)
        self._fit_base(X, ylog, feature_names)
        extra = margin
        margin = self._margin(X, margin)
        self.uses_margin_ = margin is not None
        self.model_ = self._xgb(seed, self.uses_margin_).fit(X, ylog, sample_weight=sample_weight, base_margin=margin)
        self.members_ = []
        self.member_bases_ = []
        self.quantile_model_ = None
        self.interval_scale_ = 0.0
        self.spread_floor_ = 0.0
        if self.interval == "bootstrap":
            self._fit_bootstrap(X, ylog, sample_weight, extra, seed)
        elif self.interval == "quantile":
            a = (1.0 - self.coverage) / 2.0
            self.quantile_model_ = self._xgb(seed, self.uses_margin_, objective="reg:quantileerror",
                                             quantile_alpha=np.array([a, 1.0 - a])).fit(
                X, ylog, sample_weight=sample_weight, base_margin=_two(margin))
        return self

    def _fit_bootstrap(self, X: np.ndarray, ylog: np.ndarray, w: np.ndarray | None, extra: np.ndarray | None,
                       seed: int) -> None:
        """Members refitted on bootstrap draws; ``extra`` is the caller's margin (transfer), if any."""
        rng = np.random.default_rng(seed)
        n = len(ylog)
        oob_sum = np.zeros(n)
        oob_cnt = np.zeros(n)
        preds = []
        for b in range(self.n_bootstrap):
            idx = rng.integers(0, n, n)
            if self.base_cols_:  # the member's own linear base, from its in-bag rows only
                coef, intercept = _ridge_base(X[idx], ylog[idx], self.base_cols_)
                self.member_bases_.append((coef, intercept))
                margin = _base_log(X, self.base_cols_, coef, intercept)
                margin = margin if extra is None else margin + extra
            else:
                margin = extra
            m = self._xgb(seed + 1 + b, margin is not None).fit(
                X[idx], ylog[idx], sample_weight=None if w is None else w[idx],
                base_margin=None if margin is None else margin[idx])
            self.members_.append(m)
            p = _with_margin(m.predict(X), margin)
            preds.append(p)
            oob = np.ones(n, dtype=bool)
            oob[idx] = False
            oob_sum[oob] += p[oob]
            oob_cnt[oob] += 1
        spread = np.std(np.asarray(preds), axis=0)
        # A floor keeps intervals from collapsing where all members agree exactly.
        self.spread_floor_ = float(max(np.median(spread) * 0.25, 1e-3))
        has = oob_cnt > 0
        if has.sum() >= 5:
            resid = np.abs(ylog[has] - oob_sum[has] / oob_cnt[has])
            self.interval_scale_ = _conformal_quantile(resid / (spread[has] + self.spread_floor_), self.coverage)
        else:  # tiny data: fall back to a Gaussian multiplier
            self.interval_scale_ = float(_normal_quantile(0.5 + self.coverage / 2.0))

    def _fit_base(self, X: np.ndarray, ylog: np.ndarray, feature_names: Sequence[str] | None) -> None:
        self.base_cols_ = ()
        self.base_coef_ = ()
        self.base_intercept_ = 0.0
        if not self.linear_base:
            return
        names = list(feature_names) if feature_names is not None else None
        cols = tuple(names.index(c) for c in ("flops", "bytes") if c in names) if names else (2, 3)
        cols = tuple(c for c in cols if c < X.shape[1])
        if not cols or len(ylog) < len(cols) + 2:
            return
        self.base_cols_ = cols
        self.base_coef_, self.base_intercept_ = _ridge_base(X, ylog, cols)

    def _margin(self, X: np.ndarray, extra: np.ndarray | None, member: int | None = None) -> np.ndarray | None:
        """Total base margin: the linear base (the full-data one, or bootstrap ``member``'s) plus a
        caller's margin (if any)."""
        if not self.base_cols_:
            return extra
        bases = getattr(self, "member_bases_", None)
        if member is not None and bases:  # files saved before members had their own base use the full one
            coef, intercept = bases[member]
        else:
            coef, intercept = self.base_coef_, self.base_intercept_
        m = _base_log(X, self.base_cols_, coef, intercept)
        return m if extra is None else m + extra

    def _predict_log(self, X: np.ndarray, base_margin: np.ndarray | None = None) -> np.ndarray:
        return _with_margin(self.model_.predict(X), self._margin(X, base_margin))

    def predict_log(self, X: Any, base_margin: Any = None) -> np.ndarray:
        """Natural log of the predicted latency in ms (``base_margin`` as in :meth:`fit`)."""
        X = self._features(X)
        if len(X) == 0:
            return np.zeros(0)
        return self._predict_log(X, None if base_margin is None else np.asarray(base_margin, dtype=np.float64))

    def predict(self, X: Any, base_margin: Any = None) -> np.ndarray:
        """Predicted latency in milliseconds."""
        return np.exp(self.predict_log(X, base_margin=base_margin))

    def predict_members(self, X: Any, base_margin: Any = None) -> np.ndarray:
        """Log predictions of every bootstrap member (each with its own linear base), ``(n_bootstrap, n)``
        (empty without members)."""
        X = self._features(X)
        extra = None if base_margin is None else np.asarray(base_margin, dtype=np.float64)
        return np.asarray([_with_margin(m.predict(X), self._margin(X, extra, member=i))
                           for i, m in enumerate(self.members_)]).reshape(len(self.members_), len(X))

    def predict_interval(self, X: Any, base_margin: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """``(low_ms, high_ms)`` with nominal ``coverage``; see the module docstring."""
        X = self._features(X)
        if len(X) == 0:
            return np.zeros(0), np.zeros(0)
        bm = None if base_margin is None else np.asarray(base_margin, dtype=np.float64)
        p = self._predict_log(X, bm)
        if self.interval == "bootstrap" and self.members_:
            spread = np.std(self.predict_members(X, bm), axis=0)
            half = self.interval_scale_ * (spread + self.spread_floor_)
            return np.exp(p - half), np.exp(p + half)
        if self.interval == "quantile" and self.quantile_model_ is not None:
            q = _with_margin(np.asarray(self.quantile_model_.predict(X)).reshape(len(X), 2), _two(self._margin(X, bm)))
            return np.exp(np.minimum(q.min(axis=1), p)), np.exp(np.maximum(q.max(axis=1), p))
        return np.exp(p), np.exp(p)


def _ridge_base(X: np.ndarray, ylog: np.ndarray, cols: Sequence[int]) -> tuple[tuple[float, ...], float]:
    """``(coef, intercept)`` of the log-log linear base: ridge of log-ms on ``log1p`` of ``X[:, cols]``."""
    from sklearn.linear_model import Ridge

    lin = Ridge(alpha=1e-3).fit(np.log1p(np.maximum(X[:, list(cols)], 0.0)), ylog)
    return tuple(float(v) for v in lin.coef_), float(lin.intercept_)


def _base_log(X: np.ndarray, cols: Sequence[int], coef: Sequence[float], intercept: float) -> np.ndarray:
    """The linear base's log-ms at the rows of ``X``."""
    return np.log1p(np.maximum(X[:, list(cols)], 0.0)) @ np.asarray(coef, dtype=np.float64) + float(intercept)


def _with_margin(pred: np.ndarray, margin: np.ndarray | None) -> np.ndarray:
    """Booster output (trained with ``base_score=0`` when a margin is used) plus the margin."""
    pred = np.asarray(pred, dtype=np.float64)
    return pred if margin is None else pred + margin


def _two(margin: np.ndarray | None) -> np.ndarray | None:
    """A base margin for the two-output quantile booster."""
    return None if margin is None else np.column_stack([margin, margin])


def _normal_quantile(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


# ----- lookup table (the paper's simulator) -------------------------------------------------------
class LookupTableRegressor(LatencyEstimatorMixin, RegressorMixin, BaseEstimator):
    """The CompactNet paper's dense table: exact lookup, interpolation between grid points.

    Rows are grouped into *units* by the channel-independent columns (spatial size, kernel,
    stride, expansion ratio, fused ops...; :data:`compactnet.predictors.features.UNIT_COLUMNS`
    when ``feature_names`` are given to fit, else ``unit_cols``). Inside a unit the latency is a
    function of (cin, cout): a configuration on the grid returns its measured latency exactly; one
    between grid points is interpolated linearly (bilinearly on a full grid, on a Delaunay
    triangulation of scattered points, along one axis when only one varies or cin == cout as in a
    depthwise conv); one outside the grid is clamped to its edge. A unit the table never saw
    falls back to a FLOPs-linear fit over the whole table, and ``n_fallback_`` counts such rows
    predicted so far (the paper's table simply cannot answer them).

    Args:
        cin_col: Column index of input channels (0 in every schema).
        cout_col: Column index of output channels (1 in every schema).
        unit_cols: Column indices that identify a unit; None: take them from ``feature_names``.
        coverage: Coverage of the (residual-quantile) interval; the table has no notion of
            uncertainty, so its intervals are the fallback's residual band.
    """

    def __init__(self, cin_col: int = 0, cout_col: int = 1, unit_cols: Sequence[int] | None = None,
                 coverage: float = 0.9):
        self.cin_col = cin_col
        self.cout_col = cout_col
        self.unit_cols = unit_cols
        self.coverage = coverage

    def fit(self, X: Any, y: Any, *, feature_names: Sequence[str] | None = None,
            sample_weight: Any = None) -> "LookupTableRegressor":
        """Store the table (rows with equal features are averaged in log space)."""
        from compactnet.predictors.features import UNIT_COLUMNS

        _check_coverage(self.coverage)
        X, y, _ = _check_xy(X, y)
        d = X.shape[1]
        for name in ("cin_col", "cout_col"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < d:
                raise bad_value(name, f"a column index in [0, {d})", v)
        if self.unit_cols is not None:
            units = tuple(int(c) for c in self.unit_cols)
            if any(not 0 <= c < d for c in units):
                raise bad_value("unit_cols", f"column indices in [0, {d})", self.unit_cols)
        elif feature_names is not None:
            if len(feature_names) != d:
                raise bad_value("feature_names", f"{d} names (one per column)", f"{len(feature_names)} names")
            units = tuple(i for i, c in enumerate(feature_names) if c in UNIT_COLUMNS)
        else:
            raise bad_value("unit_cols", "column indices identifying a unit when fit gets no feature_names",
                            None)
        self.unit_cols_ = units
        self.n_features_in_ = d
        self.feature_names_ = None if feature_names is None else tuple(feature_names)
        self.n_samples_ = len(y)
        ylog = np.log(y)
        self.table_: dict[tuple, dict[tuple[float, float], float]] = {}
        acc: dict[tuple, dict[tuple[float, float], list[float]]] = {}
        for row, v in zip(X, ylog):
            acc.setdefault(self._unit(row), {}).setdefault((row[self.cin_col], row[self.cout_col]), []).append(v)
        for u, pts in acc.items():
            self.table_[u] = {k: float(np.exp(np.mean(vs))) for k, vs in pts.items()}
        self._interp: dict[tuple, Any] = {}
        self.fallback_ = FlopsLinearRegressor(coverage=self.coverage).fit(X, y, feature_names=feature_names)
        self.n_fallback_ = 0
        self.residual_low_, self.residual_high_ = self.fallback_.residual_low_, self.fallback_.residual_high_
        return self

    def _unit(self, row: np.ndarray) -> tuple:
        return tuple(float(row[c]) for c in self.unit_cols_)

    def _interpolator(self, unit: tuple):
        if unit in self._interp:
            return self._interp[unit]
        pts = self.table_[unit]
        keys = np.array(list(pts), dtype=np.float64)
        vals = np.array(list(pts.values()), dtype=np.float64)
        self._interp[unit] = f = _make_interpolator(keys, vals)
        return f

    def _predict_log(self, X: np.ndarray) -> np.ndarray:
        if not hasattr(self, "_interp"):
            self._interp = {}
        out = np.empty(len(X))
        units: dict[tuple, list[int]] = {}
        for i, row in enumerate(X):
            units.setdefault(self._unit(row), []).append(i)
        for u, idx in units.items():
            idx_a = np.asarray(idx)
            if u not in self.table_:
                out[idx_a] = self.fallback_._predict_log(X[idx_a])
                self.n_fallback_ += len(idx_a)
                continue
            q = X[idx_a][:, [self.cin_col, self.cout_col]]
            out[idx_a] = np.log(np.maximum(self._interpolator(u)(q), 1e-9))
        return out

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state.pop("_interp", None)  # rebuilt lazily; scipy interpolators are not worth persisting
        return state


def _make_interpolator(keys: np.ndarray, vals: np.ndarray):
    """f((m, 2) queries of (cin, cout)) -> latency, exact on the grid, linear between, clamped outside."""
    exact = {(float(a), float(b)): float(v) for (a, b), v in zip(keys, vals)}
    lo, hi = keys.min(axis=0), keys.max(axis=0)
    ucin, ucout = np.unique(keys[:, 0]), np.unique(keys[:, 1])

    if len(keys) == 1:
        def base(q):
            return np.full(len(q), vals[0])
    elif len(ucin) == 1 or len(ucout) == 1 or np.all(keys[:, 0] == keys[:, 1]):
        axis = 1 if len(ucin) == 1 else 0
        order = np.argsort(keys[:, axis])
        xs, ys = keys[order, axis], vals[order]

        def base(q):
            return np.interp(q[:, axis], xs, ys)
    elif len(ucin) * len(ucout) == len(keys):
        from scipy.interpolate import RegularGridInterpolator

        grid = np.full((len(ucin), len(ucout)), np.nan)
        grid[np.searchsorted(ucin, keys[:, 0]), np.searchsorted(ucout, keys[:, 1])] = vals
        rgi = RegularGridInterpolator((ucin, ucout), grid, method="linear")

        def base(q):
            return rgi(np.clip(q, lo, hi))
    else:
        from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator

        near = NearestNDInterpolator(keys, vals)
        try:
            lin = LinearNDInterpolator(keys, vals)
        except Exception as exc:  # noqa: BLE001 - qhull raises its own error type on degenerate sets
            log.debug("lookup table: degenerate unit (%s); nearest neighbour", exc)
            lin = None

        def base(q):
            qc = np.clip(q, lo, hi)
            v = lin(qc) if lin is not None else np.full(len(q), np.nan)
            miss = ~np.isfinite(v)
            if miss.any():
                v[miss] = near(qc[miss])
            return v

    def f(q: np.ndarray) -> np.ndarray:
        v = np.asarray(base(q), dtype=np.float64)
        for i, (a, b) in enumerate(q):
            e = exact.get((float(a), float(b)))
            if e is not None:
                v[i] = e
        return v

    return f


# ----- random forest (nn-Meter) ---------------------------------------------------------------------
class RandomForestLatencyRegressor(LatencyEstimatorMixin, RegressorMixin, BaseEstimator):
    """Random forest on log-latency, as nn-Meter's kernel predictors.

    Intervals: quantiles of the per-tree predictions, widened by the out-of-bag residual band.

    Args:
        n_estimators: Trees.
        max_depth: Tree depth (None: grown fully).
        min_samples_leaf: Minimum rows per leaf.
        max_features: Feature fraction per split.
        coverage: Nominal coverage of ``predict_interval``.
        random_state: Seed.
        n_jobs: Threads.
    """

    def __init__(self, n_estimators: int = 200, max_depth: int | None = None, min_samples_leaf: int = 1,
                 max_features: float = 1.0, coverage: float = 0.9, random_state: int | None = 0,
                 n_jobs: int | None = None):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.coverage = coverage
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: Any, y: Any, *, feature_names: Sequence[str] | None = None,
            sample_weight: Any = None) -> "RandomForestLatencyRegressor":
        """Fit on latencies in ms."""
        from sklearn.ensemble import RandomForestRegressor

        _check_int("n_estimators", self.n_estimators, 1)
        if self.max_depth is not None:
            _check_int("max_depth", self.max_depth, 1)
        _check_int("min_samples_leaf", self.min_samples_leaf, 1)
        _check_float("max_features", self.max_features, 0.0, 1.0, low_open=True)
        _check_coverage(self.coverage)
        X, y, sample_weight = _check_xy(X, y, sample_weight)
        self.n_features_in_ = X.shape[1]
        self.feature_names_ = None if feature_names is None else tuple(feature_names)
        self.n_samples_ = len(y)
        self.model_ = RandomForestRegressor(
            n_estimators=self.n_estimators, max_depth=self.max_depth, min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features, random_state=self.random_state, n_jobs=self.n_jobs,
            oob_score=len(y) >= 5 and self.n_estimators >= 20).fit(X, np.log(y), sample_weight=sample_weight)
        oob = getattr(self.model_, "oob_prediction_", None)
        if oob is not None:
            r = np.log(y) - np.asarray(oob).ravel()
            a = (1.0 - self.coverage) / 2.0
            self.residual_low_, self.residual_high_ = float(np.quantile(r, a)), float(np.quantile(r, 1 - a))
        else:
            self.residual_low_ = self.residual_high_ = 0.0
        return self

    def _predict_log(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict(X)


# ----- FLOPs proxy and constant --------------------------------------------------------------------
class FlopsLinearRegressor(LatencyEstimatorMixin, RegressorMixin, BaseEstimator):
    """Latency = a · FLOPs + b, with a, b ≥ 0, fitted on relative error.

    Args:
        flops_col: Column index of FLOPs (2 in every schema); found by name when
            ``feature_names`` are given to fit.
        coverage: Nominal coverage of the residual-band interval.
    """

    def __init__(self, flops_col: int = 2, coverage: float = 0.9):
        self.flops_col = flops_col
        self.coverage = coverage

    def fit(self, X: Any, y: Any, *, feature_names: Sequence[str] | None = None,
            sample_weight: Any = None) -> "FlopsLinearRegressor":
        """Least squares on relative error (rows weighted by 1 / latency)."""
        from scipy.optimize import nnls

        _check_coverage(self.coverage)
        X, y, sample_weight = _check_xy(X, y, sample_weight)
        d = X.shape[1]
        col = self.flops_col
        if feature_names is not None and "flops" in feature_names:
            col = list(feature_names).index("flops")
        if isinstance(col, bool) or not isinstance(col, (int, np.integer)) or not 0 <= col < d:
            raise bad_value("flops_col", f"a column index in [0, {d})", self.flops_col)
        self.flops_col_ = int(col)
        self.n_features_in_ = d
        self.feature_names_ = None if feature_names is None else tuple(feature_names)
        self.n_samples_ = len(y)
        f = X[:, col]
        scale = max(float(np.max(f)), 1.0)
        w = 1.0 / y if sample_weight is None else sample_weight / y
        A = np.column_stack([f / scale, np.ones_like(f)]) * w[:, None]
        coef, _ = nnls(A, y * w)
        self.coef_ = float(coef[0] / scale)
        self.intercept_ = float(coef[1])
        if self.coef_ == 0.0 and self.intercept_ == 0.0:
            self.intercept_ = float(np.median(y))
        self._residual_band(X, np.log(y))
        return self

    def _predict_log(self, X: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(self.coef_ * X[:, self.flops_col_] + self.intercept_, 1e-9))


class ConstantRegressor(LatencyEstimatorMixin, RegressorMixin, BaseEstimator):
    """The median latency of the training rows (one per layer kind).

    Args:
        coverage: Nominal coverage of the interval (training quantiles).
    """

    def __init__(self, coverage: float = 0.9):
        self.coverage = coverage

    def fit(self, X: Any, y: Any, *, feature_names: Sequence[str] | None = None,
            sample_weight: Any = None) -> "ConstantRegressor":
        """Store the median of the log-latencies."""
        _check_coverage(self.coverage)
        X, y, _ = _check_xy(X, y)
        self.n_features_in_ = X.shape[1]
        self.feature_names_ = None if feature_names is None else tuple(feature_names)
        self.n_samples_ = len(y)
        self.constant_ = float(np.median(np.log(y)))
        self._residual_band(X, np.log(y))
        return self

    def _predict_log(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), self.constant_)


#: Estimators by the short names benchmarks and the CLI use.
ESTIMATORS: dict[str, type] = {
    "gbdt": GBDTLatencyRegressor,
    "lookup": LookupTableRegressor,
    "forest": RandomForestLatencyRegressor,
    "flops": FlopsLinearRegressor,
    "constant": ConstantRegressor,
}


def make_estimator(name: str, **params: Any) -> BaseEstimator:
    """An estimator by short name (``gbdt``, ``lookup``, ``forest``, ``flops``, ``constant``).

    Raises:
        ConfigError: Unknown name or parameter.
    """
    if name not in ESTIMATORS:
        raise bad_value("estimator", "one of " + ", ".join(ESTIMATORS), name)
    cls = ESTIMATORS[name]
    valid = cls().get_params()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise bad_value(f"{name} parameter", "one of " + ", ".join(sorted(valid)), unknown[0])
    return cls(**params)


__all__ = ["GBDTLatencyRegressor", "LookupTableRegressor", "RandomForestLatencyRegressor", "FlopsLinearRegressor",
           "ConstantRegressor", "ESTIMATORS", "make_estimator", "INTERVALS", "LatencyEstimatorMixin"]
