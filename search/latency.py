"""The latency model the search consumes: a two-method protocol, and two simple implementations.

The search needs only batched predictions and a way to correct them with a whole-network
measurement; it does not depend on predictor internals. Anything with ``predict_many(specs)``
(milliseconds, one per spec) and ``recalibrate(spec, measured_ms)`` is a :class:`LatencyModel`;
:func:`as_latency_model` wraps objects that predict but cannot recalibrate in a
:class:`Recalibrated` scale, so the CompactNet predictor, a lookup table or a FLOPs proxy all fit.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from compactnet.errors import bad_value
from compactnet.spec import NetworkSpec

log = logging.getLogger(__name__)


@runtime_checkable
class LatencyModel(Protocol):
    """What the search needs from a latency predictor."""

    def predict_many(self, specs: Sequence[NetworkSpec]) -> np.ndarray:
        """Predicted latency (ms) of every spec, in one batched call."""

    def recalibrate(self, spec: NetworkSpec, measured_ms: float) -> None:
        """Correct later predictions with a whole-network measurement of ``spec``."""


class Recalibrated:
    """A predictor with a multiplicative correction learned from whole-network measurements.

    The correction is the ratio measured / predicted of the latest measurement (a predictor
    whose layer sum is off by a constant factor in the network's cache state is then exact for
    networks near the measured one).

    Args:
        base: Anything with ``predict_many(specs) -> array`` (ms).
    """

    def __init__(self, base: Any):
        if not hasattr(base, "predict_many"):
            raise bad_value("predictor", "an object with predict_many(specs)", type(base).__name__)
        self.base = base
        self.scale = 1.0

    def predict_many(self, specs: Sequence[NetworkSpec]) -> np.ndarray:
        return np.asarray(self.base.predict_many(list(specs)), dtype=float) * self.scale

    def recalibrate(self, spec: NetworkSpec, measured_ms: float) -> None:
        raw = float(np.asarray(self.base.predict_many([spec]), dtype=float)[0])
        if raw > 0 and measured_ms > 0:
            self.scale = float(measured_ms) / raw
            log.info("latency model recalibrated: scale %.3f (measured %.3f ms, raw prediction %.3f ms)",
                     self.scale, measured_ms, raw)


class MacsLatencyModel:
    """Latency proportional to multiply-accumulates, optionally punishing unaligned channel counts.

    With ``align=None`` it is the FLOPs proxy of the "same loop driven by FLOPs" baseline; with an
    alignment it mimics runtimes whose kernels slow down on channel counts that are not multiples
    of ``align`` (the development machine's 3x3 depthwise conv: 64 channels about 3x faster than 63).

    Args:
        ms_per_mmac: Milliseconds per million MACs.
        align: Channel multiple the kernels favour (None: no penalty).
        penalty: Relative extra cost of a layer whose input or output width is unaligned.
        overhead_ms: Constant per-network overhead.
    """

    def __init__(self, ms_per_mmac: float = 0.01, align: int | None = None, penalty: float = 0.5,
                 overhead_ms: float = 0.0):
        if ms_per_mmac <= 0:
            raise bad_value("ms_per_mmac", "a positive number", ms_per_mmac)
        self.ms_per_mmac = float(ms_per_mmac)
        self.align = align
        self.penalty = float(penalty)
        self.overhead_ms = float(overhead_ms)
        self.scale = 1.0

    def _one(self, spec: NetworkSpec) -> float:
        total = 0.0
        for layer in spec.layers:
            cost = layer.macs / 1e6 * self.ms_per_mmac
            if self.align and layer.op in ("conv", "dwconv") and (layer.cin % self.align or layer.cout % self.align):
                cost *= 1.0 + self.penalty
            total += cost
        return (total + self.overhead_ms) * self.scale

    def predict_many(self, specs: Sequence[NetworkSpec]) -> np.ndarray:
        return np.array([self._one(s) for s in specs], dtype=float)

    def recalibrate(self, spec: NetworkSpec, measured_ms: float) -> None:
        raw = self._one(spec) / self.scale
        if raw > 0 and measured_ms > 0:
            self.scale = float(measured_ms) / raw


class Calibrating:
    """Adapter for predictors with ``calibrate(networks, measured_ms)`` (CompactNet's LatencyPredictor).

    Every whole-network measurement is kept and the predictor is re-calibrated on all of them. The
    search hands it both ends of each measurement (the original network and the trimmed one), so
    the points span the range the search visits. An affine fit (scale and offset) on points of
    nearly the same latency is ill-conditioned: two noisy networks of 0.80 and 0.82 ms can give any
    slope and a large offset, and every later prediction inherits it. The fit is therefore forced to
    ``mode="scale"`` (one factor over the predictor's own overhead) unless the measured latencies
    span at least ``affine_span`` (largest / smallest) over at least three networks, in which case the
    predictor's ``auto`` mode chooses. The predictor is copied first, so the caller's object is not
    changed.

    Args:
        base: A predictor with ``predict_many`` and ``calibrate(networks, measured_ms[, mode])``.
        affine_span: Ratio of the largest to the smallest measured latency from which an affine fit
            is allowed (default 1.5).
    """

    def __init__(self, base: Any, affine_span: float = 1.5):
        import copy

        if not affine_span >= 1:
            raise bad_value("affine_span", "a ratio >= 1", affine_span)
        self.base = copy.deepcopy(base)
        self.affine_span = float(affine_span)
        self.networks: list[NetworkSpec] = []
        self.measured: list[float] = []
        self.mode = "scale"

    def predict_many(self, specs: Sequence[NetworkSpec]) -> np.ndarray:
        return np.asarray(self.base.predict_many(list(specs)), dtype=float)

    def predict_configs(self, base: NetworkSpec, configs: Sequence[dict]) -> np.ndarray:
        if hasattr(self.base, "predict_configs"):
            return np.asarray(self.base.predict_configs(base, list(configs)), dtype=float)
        return self.predict_many([base.with_channels(c) for c in configs])

    def calibration_mode(self) -> str:
        """``scale`` unless the measurements span ``affine_span`` over three or more networks (then ``auto``)."""
        y = np.asarray(self.measured, dtype=float)
        distinct = len({json.dumps(n.to_dict(), sort_keys=True) for n in self.networks})
        if distinct >= 3 and y.size and y.min() > 0 and y.max() / y.min() >= self.affine_span:
            return "auto"
        return "scale"

    def recalibrate(self, spec: NetworkSpec, measured_ms: float) -> None:
        import inspect

        self.networks.append(spec)
        self.measured.append(float(measured_ms))
        self.mode = self.calibration_mode()
        try:
            takes_mode = "mode" in inspect.signature(self.base.calibrate).parameters
        except (TypeError, ValueError):
            takes_mode = False
        if takes_mode:
            self.base.calibrate(self.networks, self.measured, mode=self.mode)
        else:
            self.base.calibrate(self.networks, self.measured)


def predict_configs(model: Any, base: NetworkSpec, configs: Sequence[dict]) -> np.ndarray:
    """Latency of ``base.with_channels(c)`` for every ``c``: the model's fast path when it has one."""
    configs = list(configs)
    if not configs:
        return np.zeros(0)
    if hasattr(model, "predict_configs"):
        return np.asarray(model.predict_configs(base, configs), dtype=float)
    return np.asarray(model.predict_many([base.with_channels(c) for c in configs]), dtype=float)


def as_latency_model(predictor: Any) -> LatencyModel:
    """Adapt a predictor to :class:`LatencyModel`.

    Accepts an object with ``predict_many`` and ``recalibrate`` (used as is), one with
    ``predict_many`` and ``calibrate(networks, measured)`` (wrapped in :class:`Calibrating`), one with
    ``predict_many`` only (wrapped in :class:`Recalibrated`), or ``"macs"``/``"flops"`` (a
    :class:`MacsLatencyModel`).

    Raises:
        ConfigError: Anything else.
    """
    if isinstance(predictor, str):
        if predictor.lower() in ("macs", "flops"):
            return MacsLatencyModel()
        raise bad_value("predictor", "a predictor object, a saved predictor path, or 'flops'", predictor)
    if hasattr(predictor, "predict_many") and callable(getattr(predictor, "recalibrate", None)):
        return predictor
    if hasattr(predictor, "predict_many") and callable(getattr(predictor, "calibrate", None)):
        return Calibrating(predictor)
    if hasattr(predictor, "predict_many"):
        return Recalibrated(predictor)
    raise bad_value("predictor", "an object with predict_many(specs) (and optionally recalibrate)",
                    type(predictor).__name__)


__all__ = ["LatencyModel", "Recalibrated", "Calibrating", "predict_configs", "MacsLatencyModel", "as_latency_model"]
