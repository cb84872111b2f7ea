"""How raw layer latencies compose into a network's: an effective per-call overhead fitted on prefixes.

A layer timed alone is one runtime call; a network of ``n`` layers is one call too, so the sum of
``n`` raw layer latencies counts ``n - 1`` call overheads too many. The empty (one-element Relu)
model that :func:`~compactnet.profilers.base.run_timing_job` subtracts underestimates what a real
layer model costs per call, so the overhead is instead fitted on measurements: raw (protocol with
``subtract_overhead=False``) latencies of the units of a chain and of its prefix networks (first
1, 2, ..., N units), by least squares:

* one parameter: ``T(n) = S(n) - (n - 1) * o``;
* two parameters: ``T(n) = a * S(n) - (n - 1) * b``,

where ``S(n)`` is the sum of the first ``n`` raw unit latencies and ``T(n)`` the raw latency of the
prefix network. :class:`Composition` holds both fits; :meth:`Composition.predict` applies one to
any set of raw layer latencies (``n_calls`` = the number of layers summed).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from compactnet.errors import DataError, bad_value

#: The composition models: ``"o"`` (one parameter) and ``"ab"`` (two parameters).
MODELS = ("o", "ab")
#: Least-squares losses: on milliseconds (``"absolute"``) or on errors relative to the network.
LOSSES = ("absolute", "relative")


def _as_ms(name: str, values: Sequence[float]) -> np.ndarray:
    try:
        a = np.asarray([float(v) for v in values], np.float64)
    except (TypeError, ValueError) as exc:
        raise bad_value(name, "a sequence of latencies in ms", values) from exc
    if a.ndim != 1 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise bad_value(name, "finite positive latencies in ms", values)
    return a


@dataclass(frozen=True)
class Composition:
    """Effective per-call overhead and scale that turn summed raw layer latencies into a network's.

    Attributes:
        overhead_ms: ``o`` of the one-parameter model ``T = S - (n_calls - 1) * o``.
        scale: ``a`` of the two-parameter model ``T = a * S - (n_calls - 1) * b``.
        call_ms: ``b`` of the two-parameter model.
        platform: Platform key the fit was measured on ("" if unknown).
        context: Context of the unit measurements (``rotation``, ``isolated``, ``flush``; "" if unknown).
        prefixes: Number of prefix networks fitted on.
        loss: ``absolute`` or ``relative`` least squares.
        in_sample_error: Mean |relative error| on the fitted prefixes, per model (``{"o": .., "ab": ..}``).
    """

    overhead_ms: float
    scale: float = 1.0
    call_ms: float = 0.0
    platform: str = ""
    context: str = ""
    prefixes: int = 0
    loss: str = "absolute"
    in_sample_error: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @classmethod
    def fit(cls, unit_ms: Sequence[float], network_ms: Sequence[float], prefix_units: Sequence[int] | None = None,
            platform: str = "", context: str = "", loss: str = "absolute") -> "Composition":
        """Fit both models on raw prefix measurements.

        Args:
            unit_ms: Raw latencies of the chain's units, in order (ms).
            network_ms: Raw latencies of the prefix networks (ms).
            prefix_units: Units in each prefix network (default ``1, 2, ..., len(network_ms)``, and
                then ``network_ms`` must have one entry per unit).
            platform: Platform key, recorded.
            context: Context of the unit measurements, recorded.
            loss: ``absolute`` (least squares on ms) or ``relative`` (on errors relative to the network).

        Raises:
            ConfigError: Fewer than 2 prefixes, lengths that do not match, prefixes outside the
                chain, non-positive or non-finite latencies, or an unknown loss.
        """
        if loss not in LOSSES:
            raise bad_value("loss", "one of " + ", ".join(LOSSES), loss)
        units = _as_ms("unit_ms", unit_ms)
        nets = _as_ms("network_ms", network_ms)
        if prefix_units is None:
            if len(nets) != len(units):
                raise bad_value("network_ms", f"one prefix latency per unit ({len(units)}) when prefix_units "
                                "is not given", f"{len(nets)} latencies")
            n = np.arange(1, len(units) + 1)
        else:
            n = np.asarray([int(k) for k in prefix_units])
            if len(n) != len(nets):
                raise bad_value("prefix_units", f"one entry per network latency ({len(nets)})", list(prefix_units))
            if np.any(n < 1) or np.any(n > len(units)):
                raise bad_value("prefix_units", f"unit counts between 1 and {len(units)}", list(prefix_units))
        if len(nets) < 2 or len(set(n.tolist())) < 2 or n.max() < 2:
            raise bad_value("network_ms", "at least 2 prefix networks of different lengths (one with 2+ units)",
                            f"{len(nets)} prefix(es) of {sorted(set(n.tolist()))} unit(s)")
        S = np.cumsum(units)[n - 1]
        calls = (n - 1).astype(np.float64)
        w = 1.0 / nets if loss == "relative" else np.ones_like(nets)
        # one parameter: S - T = calls * o
        o = float(np.sum(w ** 2 * (S - nets) * calls) / np.sum(w ** 2 * calls ** 2))
        # two parameters: T = a * S - calls * b
        A = np.stack([S, -calls], 1) * w[:, None]
        (a, b), *_ = np.linalg.lstsq(A, nets * w, rcond=None)
        comp = cls(o, float(a), float(b), str(platform), str(context), int(len(nets)), loss)
        errs = {m: float(np.mean(np.abs(comp.errors(units, nets, n, model=m)))) for m in MODELS}
        return dataclasses.replace(comp, in_sample_error=errs)

    def predict(self, layer_ms: Sequence[float] | float, n_calls: int | None = None, model: str = "ab") -> float:
        """Predicted network latency from raw layer latencies.

        Args:
            layer_ms: Raw latencies of the layers (ms), or their sum (then give ``n_calls``).
            n_calls: Runtime calls the layers were timed in (default: ``len(layer_ms)``).
            model: ``ab`` (two parameters, default) or ``o`` (one parameter).
        """
        if model not in MODELS:
            raise bad_value("model", "one of " + ", ".join(MODELS), model)
        if isinstance(layer_ms, (int, float, np.floating, np.integer)):
            if n_calls is None:
                raise bad_value("n_calls", "the number of layers summed when layer_ms is a sum", None)
            total = float(layer_ms)
        else:
            vals = list(layer_ms)
            total = float(sum(vals))
            n_calls = len(vals) if n_calls is None else n_calls
        if int(n_calls) < 1:
            raise bad_value("n_calls", "a positive integer", n_calls)
        extra = int(n_calls) - 1
        if model == "o":
            return total - extra * self.overhead_ms
        return self.scale * total - extra * self.call_ms

    def predict_prefixes(self, unit_ms: Sequence[float], prefix_units: Sequence[int] | None = None,
                         model: str = "ab") -> list[float]:
        """Predicted latency of each prefix network (default: first 1, 2, ..., all units)."""
        units = _as_ms("unit_ms", unit_ms)
        n = range(1, len(units) + 1) if prefix_units is None else prefix_units
        cum = np.cumsum(units)
        return [self.predict(float(cum[int(k) - 1]), int(k), model) for k in n]

    def errors(self, unit_ms: Sequence[float], network_ms: Sequence[float], prefix_units: Sequence[int] | None = None,
               model: str = "ab") -> list[float]:
        """(predicted - measured) / measured for each prefix network."""
        nets = _as_ms("network_ms", network_ms)
        n = list(range(1, len(nets) + 1)) if prefix_units is None else [int(k) for k in prefix_units]
        if len(n) != len(nets) or max(n) > len(unit_ms):
            raise bad_value("network_ms", f"one latency per prefix of at most {len(unit_ms)} units",
                            f"{len(nets)} latencies")
        pred = self.predict_prefixes(unit_ms, n, model)
        return [(p - t) / t for p, t in zip(pred, nets)]

    def to_dict(self) -> dict:
        """JSON-ready form."""
        d = dataclasses.asdict(self)
        d["in_sample_error"] = dict(self.in_sample_error)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Composition":
        """Inverse of :meth:`to_dict`.

        Raises:
            DataError: Not a composition record (missing ``overhead_ms``, unknown keys, bad numbers).
        """
        if not isinstance(d, Mapping):
            raise DataError(f"a composition record must be a JSON object; got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown or "overhead_ms" not in d:
            raise DataError(f"not a composition record: needs overhead_ms, keys among {sorted(names)}; "
                            f"got {sorted(d)}")
        kw = dict(d)
        for k in ("overhead_ms", "scale", "call_ms"):
            if k in kw:
                v = kw[k]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise DataError(f"composition {k} must be a finite number; got {v!r}")
                kw[k] = float(v)
        kw["in_sample_error"] = {str(k): float(v) for k, v in dict(kw.get("in_sample_error") or {}).items()}
        return cls(**kw)


def meta_key(platform: str, context: str) -> str:
    """The sample store metadata key of a platform's composition in a context."""
    return f"composition/{platform}/{context}"


def save_composition(store: Any, comp: Composition) -> str:
    """Record ``comp`` in a :class:`~compactnet.profilers.store.SampleStore`'s metadata (replacing an
    older fit for the same platform and context); returns the key."""
    import json

    key = meta_key(comp.platform, comp.context)
    store.set_meta(key, json.dumps(comp.to_dict()))
    return key


def load_composition(store: Any, platform: str, context: str) -> Composition | None:
    """The composition stored for ``platform`` and ``context``, or None."""
    import json

    raw = store.get_meta(meta_key(platform, context))
    return None if raw is None else Composition.from_dict(json.loads(raw))
