"""Original vs trimmed, measured by the protocol: what the trimming loop stops and recalibrates on."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from torch import nn


@dataclass(frozen=True)
class Measured:
    """Original vs trimmed, measured by the protocol.

    Attributes:
        original_ms: Original network's latency (the protocol's estimator).
        trimmed_ms: Trimmed network's latency.
        speedup: original / trimmed.
        low: Lower end of the speedup's 95% bootstrap interval.
        high: Upper end.
        reached: The interval's lower bound reaches the target.
        detail: Whatever else the measurement reported (load, platform, rounds).
        busy: Taken while other processes kept the machine busy (kept by ``busy="flag"``/``"ignore"``):
            the search records it but never recalibrates or stops on it.
    """

    original_ms: float
    trimmed_ms: float
    speedup: float
    low: float
    high: float
    reached: bool
    detail: dict = field(default_factory=dict)
    busy: bool = False

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


MeasureFn = Callable[[nn.Module, nn.Module, float], Measured]


def protocol_measure(platform: Any, rounds: int = 10, input_shape: Sequence[int] = (1, 3, 32, 32),
                     busy: str = "refuse", isolate: bool = True, max_width: float | None = None,
                     max_repeats: int = 2, repeat_pause_s: float = 0.0) -> MeasureFn:
    """A measuring function comparing two models by DESIGN's protocol on ``platform``.

    Both models are exported the same way (:func:`compactnet.export.export_onnx`) and timed
    interleaved (:func:`compactnet.measure.compare`), by default in the measuring worker process
    (:func:`compactnet.isolated.compare_isolated`): measured inside the training process, the same
    two networks spread about ±10% from one comparison to the next.

    Args:
        isolate: Measure in the worker process (real local runtimes); False measures in this process.
        max_width: Widest 95% interval relative to the speedup; a wider comparison is measured
            again and the narrowest kept (:func:`compactnet.sequential.compare_until`); None: one
            comparison.
        max_repeats: At most this many repeats per measurement.
        repeat_pause_s: Seconds before the k-th repeat, times k (:func:`compactnet.sequential.compare_until`).
    """
    def measure(original: nn.Module, trimmed: nn.Module, target: float) -> Measured:
        from compactnet import measure as protocol
        from compactnet.export import export_onnx
        from compactnet.isolated import compare_isolated
        from compactnet.sequential import compare_until

        files = [export_onnx(m, input_shape=input_shape).onnx_bytes for m in (original, trimmed)]
        comp = compare_until(files, platform, max_width, max_repeats, pause_s=repeat_pause_s,
                             compare=compare_isolated if isolate else protocol.compare,
                             names=["original", "trimmed"], rounds=rounds, busy=busy)
        lat = [getattr(l, "value_ms", l) for l in comp.latencies]
        ratio, low, high = comp.speedups[1]
        reached = bool(protocol.reached(comp, 1, target))
        detail = comp.to_dict() if hasattr(comp, "to_dict") else {}
        return Measured(float(lat[0]), float(lat[1]), float(ratio), float(low), float(high), reached, detail,
                        bool(getattr(comp, "busy", False)))

    return measure


__all__ = ["Measured", "MeasureFn", "protocol_measure"]
