"""Whole-network latency: one estimator per layer kind, a per-platform overhead, calibration.

:class:`LatencyPredictor` is what the search and the CLI use::

    pred = LatencyPredictor().fit(store.measurements("ort-cpu-fp32-t1"))
    pred.predict(spec)                      # Latency(source="predicted", low/high = interval)
    pred.predict_layers(spec)               # per-layer table (list of dicts)
    pred.predict_many(specs)                # np.ndarray of totals, batched
    pred.predict_configs(spec, configs)     # same, from channel configurations (fastest)

A network's latency is ``scale * sum(kind_scale[kind] * layer latency) + per_call * layers + offset``
(``kind_scale`` is 1 for every kind unless calibrated per kind). Without calibration
``scale = 1`` and ``offset = overhead_ms_``: the one per-call overhead the profilers subtract from
every layer and a whole network pays once, learned from the samples (each
:class:`~compactnet.spec.Measurement` records the overhead measured with it) unless given.
:meth:`LatencyPredictor.calibrate` fits scale and offset on a few whole networks measured for
real: layer sums do not simply add up on a CPU (DESIGN's facts: cache state moves the sum by up to
±40%). Given networks with different numbers of layers (say MobileNetV2 trims beside ResNet-20 and
VGG), it also fits ``per_call``: the part of the per-call overhead a one-layer model pays that a
layer inside a network does not (about 10-50 µs per layer on OpenVINO here), which a single offset
cannot absorb across architectures. Given enough networks (``mode="kinds"``), it fits one factor
per layer kind instead of one scale: the context a network gives its layers does not move every
kind alike (a depthwise conv timed alone keeps its input in cache; inside a network it often does
not), so one global factor leaves errors that follow each network's mix of kinds.

Granularity: a predictor fitted on the paper's MobileNetV2 units (``block`` samples, no
``dwconv``) converts an op-level MobileNetV2 spec to those units itself (:func:`network_layers`)
in :meth:`~LatencyPredictor.predict`, :meth:`~LatencyPredictor.predict_layers` and
:meth:`~LatencyPredictor.predict_many`; :meth:`~LatencyPredictor.predict_configs` does the same
for its base network and refuses a base it cannot match.

Batched prediction featurises all layers of all networks into one matrix per kind, keeps only the
distinct rows (candidates of one search iteration share most layers), and calls each kind's
booster once.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from compactnet.errors import ConfigError, DataError, bad_value
from compactnet.spec import LayerSpec, Latency, Measurement, NetworkSpec, Platform
from compactnet.predictors.estimators import ConstantRegressor, FlopsLinearRegressor, GBDTLatencyRegressor
from compactnet.predictors.features import (OP_CODE, RAW_COLUMNS, RAW_INDEX, SCHEMAS, featurize_raw, raw_matrix,
                                            schema_hashes)

log = logging.getLogger(__name__)
_OP_NAME = {v: k for k, v in OP_CODE.items()}
UNKNOWN_KIND = ("fallback", "error")
_GENERIC_COLS = 4  # cin, cout, flops, bytes: the common lead of every schema
#: Floor of a layer latency (ms), as :data:`compactnet.profilers.base.MIN_LAYER_MS` (kept here so that
#: loading a predictor does not import the profilers' ONNX machinery; a test checks they agree).
MIN_LAYER_MS = 1e-4


class LatencyPredictor(BaseEstimator):
    """Latency of layers and networks on one platform.

    Args:
        estimator: Prototype cloned for every layer kind (default
            :class:`~compactnet.predictors.estimators.GBDTLatencyRegressor`), or a mapping from kind
            to estimator (kinds missing from it use the default).
        overhead_ms: Per-network call overhead (ms) added once to the layer sum before calibration;
            None (default): learned in :meth:`fit` as the median of the measurements'
            ``overhead_ms`` (0 when none recorded one).
        min_samples_per_kind: Kinds with fewer distinct samples get a constant per kind.
        unknown_kind: A kind with no samples at prediction time: ``fallback`` (a FLOPs-linear fit
            over all kinds, with a warning) or ``error``.

    Attributes:
        estimators_: Fitted estimator per kind.
        fallback_: FLOPs-linear estimator over every kind's lead columns.
        platform_: The platform trained on.
        n_samples_: Training rows per kind.
        overhead_ms_: The per-network overhead in use (``overhead_ms``, or learned from the samples).
        schema_hashes_: Feature-schema hash per kind.
        scale_: Calibration scale (1 uncalibrated).
        kind_scale_: Calibrated factor per layer kind (empty unless calibrated with ``mode="kinds"``;
            a kind missing from it has factor 1).
        offset_: Calibration offset in ms (``overhead_ms_`` uncalibrated).
        per_call_ms_: Calibrated latency per layer of the network in ms (0 unless calibrated on
            networks with different layer counts; usually negative: each layer was profiled with
            a per-call cost the network does not pay).
        calibration_: Record of the calibration (networks, residual) or None.
    """

    def __init__(self, estimator: Any = None, overhead_ms: float | None = None, min_samples_per_kind: int = 5,
                 unknown_kind: str = "fallback"):
        self.estimator = estimator
        self.overhead_ms = overhead_ms
        self.min_samples_per_kind = min_samples_per_kind
        self.unknown_kind = unknown_kind

    # ----- fitting ---------------------------------------------------------------------------------
    def _prototype(self, kind: str) -> BaseEstimator:
        if isinstance(self.estimator, Mapping):
            est = self.estimator.get(kind)
            return clone(est) if est is not None else GBDTLatencyRegressor()
        return clone(self.estimator) if self.estimator is not None else GBDTLatencyRegressor()

    def fit(self, measurements: Sequence[Measurement], platform: Platform | None = None) -> "LatencyPredictor":
        """Fit one estimator per layer kind on measurements of one platform.

        Args:
            measurements: Profiled layers (a sample store's ``measurements(platform_key)``).
            platform: The platform (default: the measurements'; they must agree on the key).

        Raises:
            DataError: No measurements, or measurements of several platforms.
            ConfigError: A setting out of range.
        """
        if self.overhead_ms is not None and (isinstance(self.overhead_ms, bool)
                                             or not isinstance(self.overhead_ms, (int, float, np.floating))
                                             or not math.isfinite(self.overhead_ms) or self.overhead_ms < 0):
            raise bad_value("overhead_ms", "None (learn it from the samples) or a non-negative number of "
                            "milliseconds", self.overhead_ms)
        if not isinstance(self.min_samples_per_kind, int) or self.min_samples_per_kind < 1:
            raise bad_value("min_samples_per_kind", "an integer >= 1", self.min_samples_per_kind)
        if self.unknown_kind not in UNKNOWN_KIND:
            raise bad_value("unknown_kind", "one of " + ", ".join(UNKNOWN_KIND), self.unknown_kind)
        measurements = list(measurements)
        if not measurements:
            raise DataError("no measurements to fit a latency predictor on; profile the platform first "
                            "(compactnet profile --platform KEY)")
        keys = sorted({m.platform.key for m in measurements})
        if platform is None:
            if len(keys) > 1:
                raise DataError(f"measurements of several platforms ({', '.join(keys)}); fit one predictor per "
                                "platform")
            platform = measurements[0].platform
        elif keys != [platform.key]:
            raise DataError(f"measurements are of {', '.join(keys)}, not of platform {platform.key}")
        hardware = sorted({m.platform.hardware for m in measurements})
        if len(hardware) > 1:
            log.warning("measurements of %s come from several machines (%s); one predictor per hardware is "
                        "more accurate", platform.key, "; ".join(hardware))
        self.platform_ = platform
        layers = [m.layer for m in measurements]
        y = np.array([m.latency.value_ms for m in measurements], dtype=np.float64)
        raw = raw_matrix(layers)
        ok = np.isfinite(y) & (y >= 0)
        if not ok.all():
            log.warning("dropping %d measurement(s) with a negative or non-finite latency", int((~ok).sum()))
            raw, y = raw[ok], y[ok]
        tiny = y < MIN_LAYER_MS
        if tiny.any():  # at or below the call overhead: a real, tiny figure, kept at the floor
            log.info("%d measurement(s) below %g ms (overhead subtracted); kept at that floor", int(tiny.sum()),
                     MIN_LAYER_MS)
            y = np.maximum(y, MIN_LAYER_MS)
        if not len(y):
            raise DataError(f"no usable measurement of {platform.key} (every latency was negative or not finite)")
        if self.overhead_ms is None:
            oh = np.array([m.overhead_ms for m in measurements], dtype=np.float64)
            oh = oh[np.isfinite(oh)]
            self.overhead_ms_ = float(np.median(oh)) if len(oh) else 0.0
        else:
            self.overhead_ms_ = float(self.overhead_ms)
        self.estimators_: dict[str, BaseEstimator] = {}
        self.n_samples_: dict[str, int] = {}
        generic_X, generic_y = [], []
        for code in np.unique(raw[:, 0]).astype(int):
            kind = _OP_NAME[code]
            sel = raw[:, 0] == code
            X = featurize_raw(raw[sel], kind, platform.precision)
            distinct = len(np.unique(raw[sel], axis=0))
            est = self._prototype(kind) if distinct >= self.min_samples_per_kind else ConstantRegressor()
            if distinct < self.min_samples_per_kind:
                log.warning("%s: only %d distinct %s sample(s); predicting a constant for this kind",
                            platform.key, distinct, kind)
            self.estimators_[kind] = est.fit(X, y[sel], feature_names=SCHEMAS[kind].columns)
            self.n_samples_[kind] = int(sel.sum())
            generic_X.append(X[:, :_GENERIC_COLS])
            generic_y.append(y[sel])
        self.fallback_ = FlopsLinearRegressor().fit(np.vstack(generic_X), np.concatenate(generic_y),
                                                    feature_names=("cin", "cout", "flops", "bytes"))
        self.schema_hashes_ = {k: SCHEMAS[k].hash for k in self.estimators_}
        self.scale_ = 1.0
        self.kind_scale_: dict[str, float] = {}
        self.offset_ = self.overhead_ms_
        self.per_call_ms_ = 0.0
        self.context_ = None
        self.calibration_: dict | None = None
        return self

    # ----- layer-level core ------------------------------------------------------------------------
    def _layer_ms(self, raw: np.ndarray, interval: bool = False
                  ) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Uncalibrated per-row latency (and interval) of raw layer rows."""
        check_is_fitted(self, "estimators_")
        n = len(raw)
        ms = np.empty(n)
        lo = np.empty(n) if interval else None
        hi = np.empty(n) if interval else None
        if n == 0:
            return (ms, lo, hi) if interval else ms
        for code in np.unique(raw[:, 0]).astype(int):
            kind = _OP_NAME[code]
            sel = np.flatnonzero(raw[:, 0] == code)
            uniq, inv = unique_rows(raw[sel])
            X = featurize_raw(uniq, kind, self.platform_.precision)
            est = self.estimators_.get(kind)
            if est is None:
                if self.unknown_kind == "error":
                    raise DataError(f"the predictor for {self.platform_.key} has no {kind!r} samples (it knows "
                                    f"{', '.join(sorted(self.estimators_))}); profile {kind} layers")
                warned = self.__dict__.setdefault("_warned_kinds", set())
                if kind not in warned:  # once per kind and predictor, not on every batched call
                    warned.add(kind)
                    log.warning("%s: no %s samples; using the FLOPs-linear fallback for this kind",
                                self.platform_.key, kind)
                est, X = self.fallback_, X[:, :_GENERIC_COLS]
            if interval:
                p = est.predict(X)
                l, h = est.predict_interval(X)
                ms[sel], lo[sel], hi[sel] = p[inv], np.minimum(l, p)[inv], np.maximum(h, p)[inv]
            else:
                ms[sel] = est.predict(X)[inv]
        return (ms, lo, hi) if interval else ms

    def predict_layer_ms(self, layers: Sequence[LayerSpec]) -> np.ndarray:
        """Predicted latency of each layer (ms, uncalibrated: what a profiler would measure)."""
        return self._layer_ms(raw_matrix(layers))

    def predict_layer_interval(self, layers: Sequence[LayerSpec]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(median_ms, low_ms, high_ms)`` per layer (uncalibrated)."""
        return self._layer_ms(raw_matrix(layers), interval=True)

    def interval_width(self, layers: Sequence[LayerSpec]) -> np.ndarray:
        """Relative interval width ``log(high / low)`` per layer: the adaptive-sampling signal."""
        _, lo, hi = self.predict_layer_interval(layers)
        return np.log(np.maximum(hi, 1e-12)) - np.log(np.maximum(lo, 1e-12))

    # ----- networks --------------------------------------------------------------------------------
    def _kind_weights(self, raw: np.ndarray) -> np.ndarray | None:
        """Per-row calibration factor of raw layer rows (None when every kind's factor is 1)."""
        ks = getattr(self, "kind_scale_", None)
        if not ks:
            return None
        lut = np.ones(len(OP_CODE))
        for kind, a in ks.items():
            if kind in OP_CODE:  # a kind this version does not know never occurs in its rows
                lut[OP_CODE[kind]] = a
        return lut[raw[:, 0].astype(np.int64)]

    def _context_weights(self, raw: np.ndarray, isolated_ms: np.ndarray) -> np.ndarray | None:
        """Per-row in-network factor of raw rows (None without an in-context correction)."""
        ctx = getattr(self, "context_", None)
        if ctx is None or len(raw) == 0:
            return None
        uniq, inv = unique_rows(raw)  # candidates share most layers: one factor per distinct row
        first = np.empty(len(uniq), dtype=np.int64)
        first[inv] = np.arange(len(raw))
        return np.exp(ctx.log_factor(uniq, isolated_ms[first]))[inv]

    def _weighted(self, raw: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        """``arrays`` (per-row latencies of ``raw``, the first the point figure) times each row's
        in-network factor and kind factor."""
        c = self._context_weights(raw, arrays[0])
        if c is not None:
            arrays = tuple(a * c for a in arrays)
        w = self._kind_weights(raw)
        return arrays if w is None else tuple(a * w for a in arrays)

    def _total(self, layer_sum: np.ndarray | float, n_layers: np.ndarray | float = 0) -> np.ndarray | float:
        return self.scale_ * layer_sum + getattr(self, "per_call_ms_", 0.0) * n_layers + self.offset_

    @property
    def granularity(self) -> str:
        """``units`` when fitted on MobileNetV2 ``block`` units (no ``dwconv`` samples), else ``layers``."""
        check_is_fitted(self, "estimators_")
        return "units" if uses_units(self.estimators_) else "layers"

    def _spec(self, network: NetworkSpec | str | Path) -> NetworkSpec:
        """The network as a spec, at the granularity this predictor was trained on."""
        check_is_fitted(self, "estimators_")
        return network_layers(as_spec(network), self.estimators_)

    def predict(self, network: NetworkSpec | str | Path) -> Latency:
        """Latency of a whole network, with its interval.

        The interval sums the layers' intervals (conservative: it treats layer errors as fully
        correlated, which on one platform they mostly are).

        Args:
            network: A :class:`NetworkSpec` or the path of an ONNX file.

        Returns:
            ``Latency(source="predicted")`` with ``low_ms``/``high_ms``.
        """
        spec = self._spec(network)
        raw = raw_matrix(spec.layers)
        ms, lo, hi = self._weighted(raw, *self._layer_ms(raw, interval=True))
        n = len(ms)
        total = float(self._total(ms.sum(), n))
        ctx = getattr(self, "context_", None)
        if ctx is not None:  # cross-validated on whole networks: the layer intervals do not add up to it
            return Latency(total, total * math.exp(-ctx.interval_log_), total * math.exp(ctx.interval_log_),
                           source="predicted")
        return Latency(total, float(self._total(lo.sum(), n)), float(self._total(hi.sum(), n)), source="predicted")

    def predict_layers(self, network: NetworkSpec | str | Path) -> list[dict]:
        """Per-layer table: name, op, cin, cout, h, w, stride, ms, low_ms, high_ms, share.

        Layer figures are uncalibrated (what a profiler would measure); ``share`` is each layer's
        fraction of the layer sum. With an in-context correction each row also has
        ``in_network_ms`` (the layer's cost inside this network) and ``share`` is its fraction of
        their sum. A predictor fitted on MobileNetV2 units lists the units.
        """
        spec = self._spec(network)
        raw = raw_matrix(spec.layers)
        ms, lo, hi = self._layer_ms(raw, interval=True)
        c = self._context_weights(raw, ms)
        inside = ms if c is None else ms * c
        total = float(inside.sum()) or 1.0
        rows = [{"name": l.name, "op": l.op, "cin": l.cin, "cout": l.cout, "h": l.h, "w": l.w,
                 "stride": l.stride[0], "ms": float(m), "low_ms": float(a), "high_ms": float(b),
                 "share": float(i) / total} for l, m, a, b, i in zip(spec.layers, ms, lo, hi, inside)]
        if c is not None:
            for r, i in zip(rows, inside):
                r["in_network_ms"] = float(i)
        for r in rows:  # a kind never profiled is predicted by the FLOPs-linear fallback: say so
            r["fallback"] = r["op"] not in self.estimators_
        return rows

    def predict_many(self, networks: Sequence[NetworkSpec]) -> np.ndarray:
        """Calibrated total latency (ms) of many networks in one batched call per layer kind."""
        networks = [self._spec(n) for n in networks]
        if not networks:
            return np.zeros(0)
        counts = np.fromiter((len(n.layers) for n in networks), dtype=np.int64, count=len(networks))
        raw = raw_matrix(l for n in networks for l in n.layers)
        (ms,) = self._weighted(raw, self._layer_ms(raw))
        owner = np.repeat(np.arange(len(networks)), counts)
        return self._total(np.bincount(owner, weights=ms, minlength=len(networks)), counts)

    def predict_configs(self, base: NetworkSpec, configs: Sequence[Mapping[str, int]] | np.ndarray,
                        groups: Sequence[str] | None = None) -> np.ndarray:
        """Calibrated total latency of ``base.with_channels(c)`` for every configuration ``c``.

        Equal to ``predict_many([base.with_channels(c) for c in configs])`` but built directly as
        arrays, without creating the specs: the search's inner loop. An op-level MobileNetV2 base
        given to a predictor fitted on its units is converted once (:func:`network_layers`); a
        base the predictor's samples do not cover at its granularity is refused.

        Args:
            base: The network whose groups are re-sized.
            configs: Mappings ``{group: width}`` (unlisted groups keep the base width), or an
                ``(n, len(groups))`` integer array.
            groups: Column order of an array ``configs`` (default: ``base.trimmable_groups``).

        Raises:
            ConfigError: Unknown or fixed group changed, a non-positive width, or a base whose layer
                granularity does not match the predictor's samples (e.g. block units given to a
                predictor fitted on single layers).
        """
        base = self._spec(base)
        problem = granularity_mismatch(base, self.estimators_)
        if problem:
            raise ConfigError(f"predict_configs: {problem}")
        names = [g for g, _ in base.groups]
        gidx = {g: i for i, g in enumerate(names)}
        default = np.array([w for _, w in base.groups], dtype=np.float64)
        if isinstance(configs, np.ndarray):
            cols = list(groups) if groups is not None else base.trimmable_groups
            arr = np.asarray(configs, dtype=np.float64)
            if arr.ndim != 2 or arr.shape[1] != len(cols):
                raise bad_value("configs", f"an array of shape (n, {len(cols)}) (groups {', '.join(cols)})",
                                f"shape {arr.shape}")
            W = np.tile(default, (len(arr), 1))
            for j, g in enumerate(cols):
                if g not in gidx:
                    raise bad_value("groups", "group names among " + ", ".join(names), g)
                W[:, gidx[g]] = arr[:, j]
        else:
            configs = list(configs)
            W = np.tile(default, (len(configs), 1))
            for i, c in enumerate(configs):
                for g, w in c.items():
                    if g not in gidx:
                        raise bad_value("channels", "group names among " + ", ".join(names), g)
                    W[i, gidx[g]] = w
        if len(W) == 0:
            return np.zeros(0)
        if np.any(W < 1):
            raise bad_value("channels", "positive channel counts", float(W.min()))
        for g in base.fixed:
            if g in gidx and np.any(W[:, gidx[g]] != default[gidx[g]]):
                raise bad_value(f"channels[{g}]", f"{int(default[gidx[g]])} (the group is fixed)", "another width")
        raw = channels_raw(base, W, names).reshape(-1, len(RAW_COLUMNS))
        (ms,) = self._weighted(raw, self._layer_ms(raw))
        return self._total(ms.reshape(len(W), len(base.layers)).sum(axis=1), len(base.layers))

    # ----- calibration -----------------------------------------------------------------------------
    def calibrate(self, networks: Sequence[NetworkSpec], measured_ms: Sequence[float | Latency],
                  mode: str = "auto", ridge: float = 0.1) -> "LatencyPredictor":
        """Fit ``total = scale * layer_sum [+ per_call * layers] + offset`` on networks measured for real.

        Args:
            networks: A few networks (ideally spanning the sizes and architectures the predictor
                will see).
            measured_ms: Their measured latency (ms or :class:`Latency`).
            mode: ``scale`` (offset and per-layer term kept as they are: ``overhead_ms_`` and 0 on an
                uncalibrated predictor), ``affine`` (scale and offset; needs two
                networks of different size), ``layers`` (scale, per-layer term and offset; needs
                networks with at least two different layer counts), ``kinds`` (one factor per
                layer kind, the per-layer term and the offset; needs at least
                :data:`KINDS_NETWORKS_PER_TERM` networks per fitted term) or ``auto`` (``kinds``
                when there are that many networks with two or more layer counts, else ``layers``
                from 4 such networks, ``affine`` from 3, else ``scale``). Every fit minimises
                relative error; a fit that fails its constraints falls back to the next simpler
                mode. The per-kind factors of an earlier ``kinds`` fit are kept by the simpler
                modes (they refit the global terms on top: what a search's re-calibration on its
                own few measurements does); a ``kinds`` fit replaces them. ``context``: an
                in-context correction per layer (:class:`~compactnet.predictors.context.ContextCorrection`)
                learned end to end from the networks (needs
                :data:`~compactnet.predictors.context.MIN_NETWORKS`; ``auto`` picks it from
                :data:`CONTEXT_AUTO_NETWORKS` networks with two or more layer counts); it replaces
                the per-kind factors and the global terms, and simpler modes later refit the
                global terms on top of it.
            ridge: ``kinds`` only: pull of each kind's factor towards the one global factor (the
                ``layers`` fit), in units of one network's relative error per unit of factor; 0
                lets every factor go where the networks put it.

        Raises:
            ConfigError: Lengths differ, no networks, an unknown mode or a negative ridge.
        """
        check_is_fitted(self, "estimators_")
        if mode not in CALIBRATION_MODES:
            raise bad_value("mode", "one of " + ", ".join(CALIBRATION_MODES), mode)
        if isinstance(ridge, bool) or not isinstance(ridge, (int, float, np.floating)) or not (
                math.isfinite(ridge) and ridge >= 0):
            raise bad_value("ridge", "a finite non-negative number", ridge)
        y = np.array([m.value_ms if isinstance(m, Latency) else float(m) for m in measured_ms], dtype=np.float64)
        nets = [self._spec(n) for n in networks]
        if len(nets) != len(y) or not nets:
            raise bad_value("measured_ms", f"one latency per network ({len(nets)} networks)", f"{len(y)} values")
        n = np.array([len(x.layers) for x in nets], dtype=np.float64)
        distinct_n = len(np.unique(n))
        if mode == "auto" and len(nets) >= CONTEXT_AUTO_NETWORKS and distinct_n >= 2:
            mode = "context"
        if mode == "context":
            return self._calibrate_context(nets, y)
        if mode == "kinds":  # a per-kind fit replaces an in-context correction
            self.context_ = None
        kinds, S = self._kind_sums(nets)
        enough_for_kinds = len(nets) >= KINDS_NETWORKS_PER_TERM * (len(kinds) + 2) and distinct_n >= 2
        if mode == "auto":
            mode = ("kinds" if enough_for_kinds else "layers" if len(nets) >= 4 and distinct_n >= 2
                    else "affine" if len(nets) >= 3 else "scale")
        if mode == "kinds":  # refitted below from the uncalibrated sums and constant terms
            kind_scale, kept = {}, (0.0, float(getattr(self, "overhead_ms_", self.overhead_ms or 0.0)))
        else:
            kind_scale = dict(getattr(self, "kind_scale_", {}) or {})
            kept = (float(getattr(self, "per_call_ms_", 0.0)),
                    float(getattr(self, "offset_", getattr(self, "overhead_ms_", self.overhead_ms or 0.0))))
        s = S @ np.array([kind_scale.get(k, 1.0) for k in kinds])
        scale, per_call, offset, used = self._fit_global(s, n, y, mode, distinct_n, kept)
        if mode == "kinds" and used == "layers" and enough_for_kinds:
            fitted = _fit_kinds(S, n, y, scale, ridge)
            if fitted is not None:
                factors, per_call, offset = fitted
                kind_scale = {k: float(a) for k, a in zip(kinds, factors)}
                scale, used = 1.0, "kinds"
                s = S @ factors
            else:
                log.warning("%s: the per-kind least squares failed; fitted %s instead", self.platform_.key, used)
        elif mode == "kinds" and not enough_for_kinds:
            log.warning("%s: %d network(s) with %d layer count(s) are too few for one factor per kind (%d kinds "
                        "need %d networks with two or more layer counts); fitted %s instead", self.platform_.key,
                        len(nets), distinct_n, len(kinds), KINDS_NETWORKS_PER_TERM * (len(kinds) + 2), used)
        elif mode == "kinds":
            log.warning("%s: the one-factor fit the per-kind fit starts from had a non-positive scale; fitted %s "
                        "instead", self.platform_.key, used)
        self.scale_, self.per_call_ms_, self.offset_ = scale, per_call, offset
        self.kind_scale_ = kind_scale
        pred = scale * s + per_call * n + offset
        self.calibration_ = {"mode": used, "networks": len(nets), "scale": scale, "per_call_ms": per_call,
                             "offset_ms": offset, "kind_scale": dict(kind_scale),
                             "rel_error_after": [float(v) for v in (pred - y) / y]}
        log.info("%s calibrated on %d network(s) (%s): scale %.3f, per layer %.4f ms, offset %.4f ms%s",
                 self.platform_.key, len(nets), used, scale, per_call, offset,
                 "".join(f", {k} x{a:.3f}" for k, a in sorted(kind_scale.items())))
        return self

    def _calibrate_context(self, nets: Sequence[NetworkSpec], y: np.ndarray) -> "LatencyPredictor":
        """Fit the in-context correction (``calibrate(mode="context")``)."""
        from compactnet.predictors.context import ContextCorrection

        raws = [raw_matrix(x.layers) for x in nets]
        isolated = [self._layer_ms(r) for r in raws]
        self.context_ = ContextCorrection().fit(raws, isolated, y, offset_ms=self.overhead_ms_)
        self.scale_, self.per_call_ms_, self.offset_, self.kind_scale_ = 1.0, 0.0, self.overhead_ms_, {}
        self.calibration_ = {"mode": "context", "networks": len(nets), "scale": 1.0, "per_call_ms": 0.0,
                             "offset_ms": self.offset_, "kind_scale": {}, "context": self.context_.describe(),
                             "rel_error_cv": [float(v) for v in self.context_.cv_errors_]}
        return self

    def _kind_sums(self, nets: Sequence[NetworkSpec]) -> tuple[list[str], np.ndarray]:
        """The kinds present and each network's layer sum per kind, ``(networks, kinds)`` (isolated
        figures, times the in-context factors when there is a correction)."""
        counts = [len(x.layers) for x in nets]
        raw = raw_matrix(l for x in nets for l in x.layers)
        codes, col = np.unique(raw[:, 0].astype(np.int64), return_inverse=True)
        owner = np.repeat(np.arange(len(nets)), counts)
        ms = self._layer_ms(raw)
        c = self._context_weights(raw, ms)
        S = np.bincount(owner * len(codes) + col, weights=ms if c is None else ms * c,
                        minlength=len(nets) * len(codes)).reshape(len(nets), len(codes))
        return [_OP_NAME[int(c)] for c in codes], S

    def _fit_global(self, s: np.ndarray, n: np.ndarray, y: np.ndarray, mode: str, distinct_n: int,
                    kept: tuple[float, float]) -> tuple[float, float, float, str]:
        """``(scale, per_call, offset, mode used)`` of the one-factor fits (``kinds`` starts from ``layers``).

        ``kept``: the ``(per_call, offset)`` a scale-only fit keeps.
        """
        base = float(getattr(self, "overhead_ms_", self.overhead_ms or 0.0))
        scale, per_call, offset, used = 1.0, 0.0, base, "scale"
        w = 1.0 / y  # relative error
        if mode in ("layers", "kinds") and distinct_n >= 2 and len(y) >= 3:
            A = np.column_stack([s, n, np.ones_like(s)])
            (a, c, b), *_ = np.linalg.lstsq(A * w[:, None], y * w, rcond=None)
            if a > 0:
                scale, per_call, offset, used = float(a), float(c), float(b), "layers"
        if used == "scale" and mode in ("layers", "affine", "kinds") and np.ptp(s) > 0 and len(y) >= 2:
            A = np.column_stack([s, np.ones_like(s)])
            (a, b), *_ = np.linalg.lstsq(A * w[:, None], y * w, rcond=None)
            if a > 0:
                scale, offset, used = float(a), float(b), "affine"
        if used == "scale":  # one factor; the constant terms in use are kept (a refit keeps the per-layer term)
            per_call, offset = kept
            scale = float(np.exp(np.mean(np.log(np.maximum(y - per_call * n - offset, 1e-9) / s))))
        return scale, per_call, offset, used

    def describe(self) -> dict:
        """JSON-ready summary (platform, kinds and sample counts, calibration)."""
        check_is_fitted(self, "estimators_")
        return {"platform": self.platform_.to_dict(), "n_samples": dict(self.n_samples_),
                "estimators": {k: type(e).__name__ for k, e in self.estimators_.items()},
                "schema_hashes": dict(self.schema_hashes_), "scale": self.scale_, "offset_ms": self.offset_,
                "per_call_ms": float(getattr(self, "per_call_ms_", 0.0)),
                "kind_scale": dict(getattr(self, "kind_scale_", {}) or {}),
                "overhead_ms": float(getattr(self, "overhead_ms_", self.overhead_ms or 0.0)),
                "context": None if getattr(self, "context_", None) is None else self.context_.describe(),
                "granularity": self.granularity, "calibration": self.calibration_}


#: Calibration modes of :meth:`LatencyPredictor.calibrate`.
CALIBRATION_MODES = ("auto", "scale", "affine", "layers", "kinds", "context")
#: Networks (of two or more layer counts) from which ``calibrate(mode="auto")`` fits the in-context correction.
CONTEXT_AUTO_NETWORKS = 30
#: Networks needed per fitted term (a factor per kind, the per-layer term, the offset) before
#: ``calibrate(mode="auto")`` fits one factor per kind.
KINDS_NETWORKS_PER_TERM = 4
#: Bounds of a per-kind factor, relative to the global one: the context moves a kind's cost by up
#: to about 2x either way here (DESIGN's facts: +-40% on whole sums), never by orders of magnitude.
KIND_FACTOR_BOUNDS = (0.25, 4.0)


def _fit_kinds(S: np.ndarray, n: np.ndarray, y: np.ndarray, scale: float, ridge: float
               ) -> tuple[np.ndarray, float, float] | None:
    """Relative-error least squares of ``y = S @ a + c * n + b`` with ``a`` near ``scale`` (ridge) and bounded.

    Returns:
        ``(factors, per_call, offset)``, or None when the solver fails.
    """
    from scipy.optimize import lsq_linear

    w = 1.0 / y
    k = S.shape[1]
    A = np.column_stack([S * w[:, None], n * w, w])
    b = np.ones_like(y)
    if ridge > 0:  # rows sqrt(ridge) * (a_j - scale) = 0
        R = np.zeros((k, k + 2))
        R[:, :k] = np.sqrt(ridge) * np.eye(k)
        A = np.vstack([A, R])
        b = np.concatenate([b, np.full(k, np.sqrt(ridge) * scale)])
    lo = np.concatenate([np.full(k, KIND_FACTOR_BOUNDS[0] * scale), [-np.inf, -np.inf]])
    hi = np.concatenate([np.full(k, KIND_FACTOR_BOUNDS[1] * scale), [np.inf, np.inf]])
    res = lsq_linear(A, b, bounds=(lo, hi))
    if not res.success or not np.all(np.isfinite(res.x)):
        return None
    return res.x[:k], float(res.x[k]), float(res.x[k + 1])

_HASH_MULT = np.random.default_rng(20240601).integers(1, 2**62, len(RAW_COLUMNS), dtype=np.int64) | 1


def unique_rows(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of an integer-valued raw matrix and the inverse index (``np.unique(axis=0)``,
    10x faster: rows are hashed to one 64-bit integer first; a collision needs ~2^32 distinct rows).
    """
    if len(raw) == 0:
        return raw, np.zeros(0, dtype=np.int64)
    with np.errstate(over="ignore"):
        h = (raw.astype(np.int64) * _HASH_MULT).sum(axis=1)
    _, first, inv = np.unique(h, return_index=True, return_inverse=True)
    return raw[first], inv.ravel()


def channels_raw(base: NetworkSpec, W: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Raw layer rows, ``(n_configs, n_layers, len(RAW_COLUMNS))``, of ``base`` at group widths ``W``.

    Mirrors :meth:`NetworkSpec.with_channels` (a test checks it) without building specs.
    """
    gidx = {g: i for i, g in enumerate(names)}
    R = raw_matrix(base.layers)
    n = len(W)
    out = np.broadcast_to(R, (n,) + R.shape).copy()
    ci, co, gr, ex = RAW_INDEX["cin"], RAW_INDEX["cout"], RAW_INDEX["groups"], RAW_INDEX["expansion"]
    for j, layer in enumerate(base.layers):
        if layer.in_group and layer.in_group in gidx:
            out[:, j, ci] = W[:, gidx[layer.in_group]]
        if layer.out_group and layer.out_group in gidx:
            out[:, j, co] = W[:, gidx[layer.out_group]]
        if layer.op == "dwconv":
            out[:, j, gr] = out[:, j, ci]
            out[:, j, co] = out[:, j, ci]
        if layer.op == "block" and layer.hidden_group and layer.hidden_group in gidx:
            out[:, j, ex] = W[:, gidx[layer.hidden_group]]
    return out


def uses_units(kinds: Iterable[str]) -> bool:
    """Whether samples of these kinds are the paper's MobileNetV2 units (``block``, no ``dwconv``)."""
    kinds = set(kinds)
    return "block" in kinds and "dwconv" not in kinds


def network_layers(spec: NetworkSpec, kinds: Iterable[str]) -> NetworkSpec:
    """The network at the granularity a predictor trained on layer ``kinds`` knows.

    A predictor fitted on MobileNetV2 units (``block`` samples, no ``dwconv``) is given an op-level
    MobileNetV2 spec as its units (:func:`compactnet.extract.mobilenetv2_units`: stem, 17 blocks,
    last conv, pooling and classifier, keeping the channel groups); anything else is returned as is.

    Raises:
        ConfigError: A MobileNetV2 spec that does not have the Table-1 structure the units need.
    """
    if spec.architecture != "mobilenetv2" or not uses_units(kinds) or any(l.op == "block" for l in spec.layers):
        return spec
    from compactnet.extract import mobilenetv2_units

    try:
        units = mobilenetv2_units(spec, include_last=True, include_head=True)
    except ConfigError as exc:
        raise ConfigError(f"the predictor was fitted on MobileNetV2 block units and cannot convert this op-level "
                          f"mobilenetv2 spec to them: {exc}") from exc
    return NetworkSpec(spec.architecture, spec.input_shape, units, spec.groups, spec.fixed)


def granularity_mismatch(spec: NetworkSpec, kinds: Iterable[str]) -> str | None:
    """Why a spec does not match the granularity of a predictor trained on ``kinds`` (None: it does)."""
    kinds = set(kinds)
    ops = {l.op for l in spec.layers}
    if uses_units(kinds) and "dwconv" in ops:
        return (f"the predictor was fitted on MobileNetV2 block units (kinds {', '.join(sorted(kinds))}) but the "
                f"{spec.architecture} network has op-level layers (dwconv); profile single layers "
                "(compactnet profile --model ...) or predict a MobileNetV2")
    if "block" in ops and "block" not in kinds:
        return (f"the {spec.architecture} network is given as block units but the predictor has no block samples "
                f"(kinds {', '.join(sorted(kinds))}); pass the op-level spec (compactnet.extract.spec_for)")
    return None


def as_spec(network: NetworkSpec | str | Path) -> NetworkSpec:
    """A :class:`NetworkSpec` from a spec or an ONNX file path.

    Raises:
        ConfigError: Neither a spec nor a path.
    """
    if isinstance(network, NetworkSpec):
        return network
    if isinstance(network, (str, Path)):
        from compactnet.extract import network_spec_from_onnx

        return network_spec_from_onnx(Path(network))
    raise bad_value("network", "a NetworkSpec or the path of an ONNX file", type(network).__name__)


# ----- functions the CLI wires -----------------------------------------------------------------------
def fit_platform(store_path: str | Path, platform_key: str, *, context: str | None = "rotation",
                 hardware: str | None = None, estimator: Any = None, calibrate_with: Sequence[tuple] = (),
                 anchored: bool = True, **params: Any) -> LatencyPredictor:
    """Fit a platform's predictor from a sample store (``compactnet fit``).

    Args:
        store_path: The profilers' SQLite sample store.
        platform_key: Platform key, e.g. ``ort-cpu-fp32-t1``.
        context: Only samples of this measuring context (default ``rotation``, the protocol's). None:
            whatever context the store holds for the platform, refused when it holds several
            (samples timed in rotation, isolated or after a cache flush differ by up to ±40%).
        hardware: Only samples of this hardware (default: all; a warning if mixed).
        estimator: Estimator prototype or short name (``gbdt``, ``lookup``, ``forest``, ``flops``,
            ``constant``); default GBDT.
        calibrate_with: Optional ``(NetworkSpec, measured_ms)`` pairs for :meth:`LatencyPredictor.calibrate`.
        anchored: Normalise the samples by their batch's anchor layers (:func:`load_samples`).
        **params: :class:`LatencyPredictor` settings (``overhead_ms``, ``min_samples_per_kind``,
            ``unknown_kind``).

    Raises:
        DataError: The store has no samples for the platform (in that context), or ``context=None``
            and it has samples of several contexts.
    """
    from compactnet.predictors.estimators import make_estimator
    from compactnet.profilers.store import SampleStore

    key = Platform.parse(platform_key).key
    if not Path(store_path).is_file():
        raise DataError(f"sample store {store_path} does not exist; profile first "
                        f"(compactnet profile --platform {key} --store {store_path})")
    with SampleStore(store_path) as store:
        ms = load_samples(store, key, context=context, hardware=hardware, anchored=anchored)
    if isinstance(estimator, str):
        estimator = make_estimator(estimator)
    pred = LatencyPredictor(estimator=estimator, **params).fit(ms)
    if calibrate_with:
        nets, lats = zip(*calibrate_with)
        pred.calibrate(nets, lats)
    return pred


def load_samples(store: Any, platform_key: str, context: str | None = "rotation",
                 hardware: str | None = None, anchored: bool = True) -> list[Measurement]:
    """A platform's samples from a sample store, never mixing measuring contexts.

    Args:
        store: An open :class:`compactnet.profilers.store.SampleStore`.
        platform_key: Platform key.
        context: Measuring context (default ``rotation``); None: the one context the store holds
            for the platform (refused when it holds several).
        hardware: Only samples of this hardware (default: all).
        anchored: Put the samples on one speed scale by the anchor layers timed in their batch
            (:func:`compactnet.profilers.anchors.anchor_normalized`; samples without anchors are
            kept as measured).

    Raises:
        DataError: No samples (in that context), or ``context=None`` with several contexts stored.
    """
    rows = store.platforms()
    contexts = sorted({r["context"] for r in rows
                       if r["key"] == platform_key and (hardware is None or r["hardware"] == hardware)})
    if context is None and len(contexts) > 1:
        raise DataError(f"sample store {store.path} holds {platform_key} samples of several measuring contexts "
                        f"({', '.join(contexts)}) that must not be mixed; choose one with --context "
                        f"(context=...), e.g. --context rotation")
    ms = store.measurements(platform_key, context=context, hardware=hardware)
    if not ms:
        if contexts:
            raise DataError(f"sample store {store.path} has no {platform_key} samples measured in context "
                            f"{context!r} (it has contexts: {', '.join(contexts)}); pass --context")
        have = ", ".join(sorted({r["key"] for r in rows})) or "none"
        raise DataError(f"sample store {store.path} has no samples for {platform_key} (it has: {have})")
    ms = _one_estimator(ms, store.path, platform_key)
    if anchored:
        from compactnet.profilers.anchors import anchor_normalized

        ms = anchor_normalized(ms)
    return ms


def _one_estimator(ms: list[Measurement], path: Any, platform_key: str) -> list[Measurement]:
    """Samples of one estimator: where a store mixes the rule's ``min`` with older ``median`` samples,
    the older ones are left out (with a warning): their figures are not on the same scale."""
    from compactnet.measure import default_estimator

    kinds = {m.latency.estimator for m in ms}
    if len(kinds) < 2:
        return ms
    keep = default_estimator() if default_estimator() in kinds else "min"
    left = sum(m.latency.estimator != keep for m in ms)
    log.warning("sample store %s mixes %s samples measured with different estimators (%s); using the %d %s "
                "ones and leaving out %d: profile again into this store (configurations stored by another "
                "estimator are measured anew) to use them all", path, platform_key,
                ", ".join(sorted(kinds)), len(ms) - left, keep, left)
    return [m for m in ms if m.latency.estimator == keep]


def predict_table(predictor: LatencyPredictor, network: NetworkSpec | str | Path) -> tuple[list[dict], Latency]:
    """Per-layer rows and the network total with its interval (``compactnet predict``)."""
    spec = as_spec(network)
    return predictor.predict_layers(spec), predictor.predict(spec)


__all__ = ["LatencyPredictor", "channels_raw", "unique_rows", "as_spec", "fit_platform", "predict_table",
           "UNKNOWN_KIND", "network_layers", "uses_units", "granularity_mismatch", "load_samples", "MIN_LAYER_MS"]
