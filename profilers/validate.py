"""The paper's Figure-7 check: do profiled layer latencies add up to the network's?

For the Table-1 MobileNetV2's 18 units (stem + 17 blocks) on one platform, the prefix networks of
the first 1, 2, ..., 18 units are built as ONNX (:func:`~compactnet.profilers.layers.network_onnx`)
and timed with the protocol (interleaved, per-call overhead subtracted), and compared with the sum
of their units' profiled latencies (measured in the profiler's context, ``rotation`` by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from compactnet.spec import LayerSpec, Measurement, Platform

from compactnet.profilers.base import Profiler


@dataclass(frozen=True)
class PrefixRow:
    """One prefix of the network.

    Attributes:
        units: Number of units in the prefix.
        last_unit: Name of its last unit.
        measured_ms: Latency of the prefix network.
        summed_ms: Sum of its units' profiled latencies.
        error: (summed - measured) / measured.
    """

    units: int
    last_unit: str
    measured_ms: float
    summed_ms: float
    error: float


@dataclass(frozen=True)
class Figure7Report:
    """Prefix-by-prefix comparison on one platform.

    Attributes:
        platform: Where it was measured.
        context: Context of the unit measurements.
        rows: One row per prefix.
    """

    platform: Platform
    context: str
    rows: tuple[PrefixRow, ...] = field(default_factory=tuple)

    @property
    def mean_abs_error(self) -> float:
        """Mean |error| over prefixes."""
        return sum(abs(r.error) for r in self.rows) / len(self.rows) if self.rows else math.nan

    @property
    def max_abs_error(self) -> float:
        """Largest |error| over prefixes."""
        return max((abs(r.error) for r in self.rows), default=math.nan)

    @property
    def full_error(self) -> float:
        """Error of the whole network (last prefix)."""
        return self.rows[-1].error if self.rows else math.nan

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"platform": self.platform.to_dict(), "context": self.context,
                "mean_abs_error": self.mean_abs_error, "max_abs_error": self.max_abs_error,
                "rows": [r.__dict__ for r in self.rows]}

    def table(self) -> str:
        """Plain-text table."""
        lines = [f"Figure-7 check on {self.platform.describe()} (units profiled in {self.context}):",
                 f"{'units':>5} {'last':>8} {'network ms':>11} {'sum ms':>9} {'error':>8}"]
        for r in self.rows:
            lines.append(f"{r.units:>5} {r.last_unit:>8} {r.measured_ms:>11.4f} {r.summed_ms:>9.4f} {r.error:>+8.1%}")
        lines.append(f"mean |error| {self.mean_abs_error:.1%}, max |error| {self.max_abs_error:.1%}")
        return "\n".join(lines)


def figure7(profiler: Profiler, config: Any = None, units: Sequence[LayerSpec] | None = None,
            context: str | None = None, measurements: Sequence[Measurement] | None = None) -> Figure7Report:
    """Compare the measured latency of every prefix network with the sum of its profiled units.

    Args:
        profiler: Where to measure.
        config: MobileNetV2 channel configuration (default: Table 1).
        units: The chain of units (default: :func:`compactnet.extract.mobilenetv2_units` of ``config``,
            the 18 units).
        context: Context of the unit measurements (default: the profiler's).
        measurements: Already profiled units (same order as ``units``); measured now otherwise, all
            in one rotation.

    Returns:
        A :class:`Figure7Report`.
    """
    if units is None:
        from compactnet.extract import mobilenetv2_units

        units = mobilenetv2_units(config, include_last=False)
    units = list(units)
    ms = list(measurements) if measurements is not None else profiler.measure(units, context=context)
    prefixes = [units[: n + 1] for n in range(len(units))]
    nets = profiler.measure_networks(prefixes)
    rows, total = [], 0.0
    for n, (m, lat) in enumerate(zip(ms, nets)):
        total += m.latency.median_ms
        measured = lat.median_ms
        err = (total - measured) / measured if measured else math.nan
        rows.append(PrefixRow(n + 1, units[n].name, measured, total, err))
    ctx = ms[0].context if ms else (context or profiler.protocol.context)
    return Figure7Report(profiler.platform, ctx, tuple(rows))
