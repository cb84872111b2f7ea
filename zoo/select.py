"""Pick a zoo model for a platform and a latency or speedup budget.

Where the index has entries measured on the platform *and* this hardware, those measured figures
decide. Otherwise (DESIGN's platform rule) every entry is ranked by that platform's latency
predictor — the latency of each entry's network and of its untrimmed architecture — and the
result says the figures are predicted.

Budgets: ``latency_ms`` is met when the measured (or predicted) latency is at most the budget;
``speedup`` is met, for measured entries, when the lower end of the speedup's 95% interval
reaches it (DESIGN: a target "is reached" when the interval's lower bound is), and for predicted
figures when the predicted ratio does. With both, both must hold; with neither, the most accurate
entry wins.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Callable

from compactnet.errors import ConfigError, bad_value
from compactnet.spec import Latency, NetworkSpec, Platform, hardware_id
from compactnet.zoo.entry import ZooEntry
from compactnet.zoo.index import ZooIndex

log = logging.getLogger(__name__)

__all__ = ["Candidate", "Selection", "best", "rank"]


@dataclass(frozen=True)
class Candidate:
    """One entry's figures for the asked platform.

    Attributes:
        entry: The entry.
        latency_ms: Median latency (measured on the platform, or predicted).
        speedup: Speedup vs the untrimmed architecture (measured, or ratio of predictions).
        speedup_low: Lower end of the measured speedup's 95% interval (None when predicted).
        top1: Test top-1, percent.
        predicted: The latency and speedup are predictions, not measurements on this platform.
        meets_budget: The budget holds.
    """

    entry: ZooEntry
    latency_ms: float | None
    speedup: float | None
    speedup_low: float | None
    top1: float | None
    predicted: bool
    meets_budget: bool

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"name": self.entry.name, "hardware": self.entry.hardware, "latency_ms": self.latency_ms,
                "speedup": self.speedup,
                "speedup_low": self.speedup_low, "top1": self.top1, "predicted": self.predicted,
                "meets_budget": self.meets_budget, "measured_on": f"{self.entry.platform} ({self.entry.hardware})"}


@dataclass(frozen=True)
class Selection:
    """The answer of :func:`best`.

    Attributes:
        entry: The chosen entry, or None when nothing meets the budget.
        platform: Platform key asked for.
        hardware: Hardware asked for.
        predicted: The figures come from the platform's predictor, not from measurements.
        latency_ms: Latency budget asked for.
        speedup: Speedup budget asked for.
        candidates: Every entry considered, best first (budget-meeting ones first).
        message: One line saying what was chosen and how the figures were obtained.
    """

    entry: ZooEntry | None
    platform: str
    hardware: str
    predicted: bool
    latency_ms: float | None
    speedup: float | None
    candidates: tuple[Candidate, ...]
    message: str

    @property
    def chosen(self) -> Candidate | None:
        """The chosen entry's candidate record."""
        return self.candidates[0] if self.entry is not None else None

    def to_dict(self) -> dict:
        """JSON-ready form (``--json``)."""
        return {"entry": self.entry.name if self.entry else None,
                "entry_hardware": self.entry.hardware if self.entry else None, "platform": self.platform,
                "hardware": self.hardware, "predicted": self.predicted,
                "budget": {"latency_ms": self.latency_ms, "speedup": self.speedup},
                "chosen": self.chosen.to_dict() if self.chosen else None,
                "candidates": [c.to_dict() for c in self.candidates], "message": self.message}


def _check_budget(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise bad_value(name, "a positive number", value)
    return float(value)


def _resolve_predictor(predictor: Any) -> Callable[[Any], Latency]:
    if isinstance(predictor, (str, os.PathLike)):
        from compactnet.predictors import load_portable

        predictor = load_portable(predictor)
    if hasattr(predictor, "predict"):
        return predictor.predict
    if callable(predictor):
        return predictor
    raise bad_value("predictor", "a LatencyPredictor, a callable spec -> Latency or a predictor folder",
                    type(predictor).__name__)


def _as_ms(value: Any) -> float:
    return float(value.value_ms if isinstance(value, Latency) else value)


def _meets(latency: float | None, low: float | None, latency_ms: float | None, speedup: float | None) -> bool:
    if latency_ms is not None and (latency is None or latency > latency_ms):
        return False
    if speedup is not None and (low is None or low < speedup):
        return False
    return True


def _order(cands: list[Candidate]) -> list[Candidate]:
    def key(c: Candidate) -> tuple:
        return (not c.meets_budget, -(c.top1 if c.top1 is not None else -math.inf),
                c.latency_ms if c.latency_ms is not None else math.inf, c.entry.name)

    return sorted(cands, key=key)


def _baseline_spec(index: ZooIndex, arch: str) -> NetworkSpec:
    for e in index.filter(arch=arch):
        if e.tag == "base":
            return e.network_spec()
    from compactnet.extract import spec_for

    return spec_for(arch, None)


def rank(index: ZooIndex, platform_key: str, latency_ms: float | None = None, speedup: float | None = None,
         hardware: str | None = None, predictor: Any = None, arch: str | None = None,
         dataset: str | None = None) -> tuple[list[Candidate], bool]:
    """All candidate entries for a platform, best first, and whether their figures are predicted.

    See :func:`best` for the arguments.
    """
    key = Platform.parse(platform_key, hardware="").key
    latency_ms, speedup = _check_budget("latency_ms", latency_ms), _check_budget("speedup", speedup)
    hw = hardware if hardware is not None else hardware_id()
    measured = [e for e in index.filter(platform=key, hardware=hw, arch=arch, dataset=dataset)
                if e.metrics.latency is not None]
    if measured:
        cands = []
        for e in measured:
            m = e.metrics
            # a speedup target holds only on a measured lower bound; the untrimmed base is 1.0 by definition
            low = m.speedup_low if m.speedup_low is not None else (1.0 if e.tag.split("-", 1)[0] == "base" else None)
            cands.append(Candidate(e, m.latency_ms, m.speedup, low, m.top1, False,
                                   _meets(m.latency_ms, low, latency_ms, speedup)))
        return _order(cands), False
    pool = index.filter(arch=arch, dataset=dataset)
    if not pool:
        return [], True
    if predictor is None:
        raise ConfigError(f"the zoo has no entries measured on {key} on this hardware ({hw}); ranking its entries "
                          f"by prediction needs a latency predictor for {key}: pass predictor= (--predictor DIR, "
                          "made by `compactnet fit`)")
    predict = _resolve_predictor(predictor)
    seen, unique = set(), []
    for e in pool:  # one network per weights file: the same model published for several platforms
        if e.weights.sha256 not in seen:
            seen.add(e.weights.sha256)
            unique.append(e)
    base_ms: dict[str, float] = {}
    cands = []
    for e in unique:
        if e.architecture not in base_ms:
            base_ms[e.architecture] = _as_ms(predict(_baseline_spec(index, e.architecture)))
        lat = _as_ms(predict(e.network_spec()))
        ratio = base_ms[e.architecture] / lat if lat > 0 else None
        cands.append(Candidate(e, lat, ratio, ratio, e.metrics.top1, True, _meets(lat, ratio, latency_ms, speedup)))
    return _order(cands), True


def best(index: ZooIndex, platform_key: str, latency_ms: float | None = None, speedup: float | None = None,
         hardware: str | None = None, predictor: Any = None, arch: str | None = None,
         dataset: str | None = None) -> Selection:
    """The most accurate entry meeting the budget on a platform and hardware.

    Args:
        index: The zoo index.
        platform_key: Platform key, e.g. ``ort-cpu-fp32-t1``.
        latency_ms: Latency budget, milliseconds.
        speedup: Speedup budget (vs the untrimmed architecture).
        hardware: Hardware to match; default this machine's (:func:`compactnet.spec.hardware_id`).
        predictor: The platform's latency predictor (object with ``predict(NetworkSpec) -> Latency``,
            a callable, or a portable predictor folder); needed only when the platform or the
            hardware has no measured entries.
        arch: Only entries of this architecture.
        dataset: Only entries of this data set.

    Returns:
        A :class:`Selection`; its ``entry`` is None when nothing meets the budget (``message`` says
        what comes closest), and ``predicted`` says whether the figures are predictions.

    Raises:
        ConfigError: A bad platform key or budget, or no measured entries and no predictor.
    """
    cands, predicted = rank(index, platform_key, latency_ms, speedup, hardware, predictor, arch, dataset)
    key = Platform.parse(platform_key, hardware="").key
    hw = hardware if hardware is not None else hardware_id()
    budget = " and ".join(x for x in (latency_ms is not None and f"latency <= {latency_ms:g} ms",
                                      speedup is not None and f"speedup >= {speedup:g}x") if x) or "no budget"
    how = (f"figures PREDICTED by the {key} predictor (no entries measured on {key} on {hw})" if predicted
           else f"figures measured on {key} on {hw}")
    if not cands:
        return Selection(None, key, hw, predicted, latency_ms, speedup, (), "the zoo index has no entries")
    top = cands[0]
    if not top.meets_budget:
        fastest = min(cands, key=lambda c: c.latency_ms if c.latency_ms is not None else math.inf)
        msg = (f"no entry meets {budget} on {key}; the fastest is {fastest.entry.name} at "
               f"{fastest.latency_ms:.3f} ms" + (f", {fastest.speedup:.2f}x" if fastest.speedup else "") + f" ({how})")
        return Selection(None, key, hw, predicted, latency_ms, speedup, tuple(cands), msg)
    acc = f"{top.top1:.2f}% top-1" if top.top1 is not None else "top-1 unknown"
    msg = (f"{top.entry.name}: {acc}, {top.latency_ms:.3f} ms"
           + (f", {top.speedup:.2f}x" if top.speedup is not None else "") + f" ({how}; budget: {budget})")
    if predicted:
        msg += f"; the entry itself was measured on {top.entry.platform} ({top.entry.hardware})"
    return Selection(top.entry, key, hw, predicted, latency_ms, speedup, tuple(cands), msg)
