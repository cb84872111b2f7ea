"""The paper's Figure-7 check: do profiled layer latencies add up to the network's?

For the Table-1 MobileNetV2's 18 units (stem + 17 blocks) on one platform, the prefix networks of
the first 1, 2, ..., 18 units are built as ONNX (:func:`~compactnet.profilers.layers.network_onnx`)
and timed with the protocol (interleaved, per-call overhead subtracted), and compared with the sum
of their units' profiled latencies (measured in the profiler's context, ``rotation`` by default).

The empty-model (Relu) overhead the protocol subtracts underestimates a real layer model's per-call
cost, so :func:`figure7` also fits a :class:`~compactnet.profilers.composition.Composition` on
raw (``subtract_overhead=False``) measurements of the same prefixes, and -- the number to quote --
reports its error on the prefixes of a different, held-out configuration (a seeded random trim of
MobileNetV2 by default) that the fit never saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from compactnet.errors import bad_value
from compactnet.spec import LayerSpec, Measurement, Platform

from compactnet.profilers.base import Profiler
from compactnet.profilers.composition import MODELS, Composition


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


def _mean_abs(errors: Sequence[float]) -> float:
    return sum(abs(e) for e in errors) / len(errors) if errors else math.nan


@dataclass(frozen=True)
class CompositionCheck:
    """Prefix-by-prefix errors of a fitted composition (and of the Relu subtraction) on one configuration.

    Attributes:
        label: ``in-sample`` (the configuration the composition was fitted on) or ``held-out``.
        config: Unit widths of the configuration, ``cin->cout`` per unit, for the record.
        units: Units in each prefix.
        raw_unit_ms: Raw latency of each unit (call overhead included).
        raw_network_ms: Raw latency of each prefix network.
        errors: (predicted - measured) / measured per prefix, per composition model (``o``, ``ab``).
        relu_errors: The protocol's check on this configuration (units and networks with the Relu
            overhead subtracted, sum vs network), per prefix; empty when not measured.
    """

    label: str
    config: str
    units: tuple[int, ...]
    raw_unit_ms: tuple[float, ...]
    raw_network_ms: tuple[float, ...]
    errors: dict[str, tuple[float, ...]]
    relu_errors: tuple[float, ...] = ()

    def mean_abs_error(self, model: str = "ab") -> float:
        """Mean |error| over prefixes of one model (``o``, ``ab``, or ``relu``)."""
        return _mean_abs(self.relu_errors if model == "relu" else self.errors[model])

    def max_abs_error(self, model: str = "ab") -> float:
        """Largest |error| over prefixes of one model (``o``, ``ab``, or ``relu``)."""
        errs = self.relu_errors if model == "relu" else self.errors[model]
        return max((abs(e) for e in errs), default=math.nan)

    def to_dict(self) -> dict:
        """JSON-ready form (with the mean and max |error| per model)."""
        models = list(MODELS) + (["relu"] if self.relu_errors else [])
        return {"label": self.label, "config": self.config, "units": list(self.units),
                "raw_unit_ms": list(self.raw_unit_ms), "raw_network_ms": list(self.raw_network_ms),
                "errors": {k: list(v) for k, v in self.errors.items()}, "relu_errors": list(self.relu_errors),
                "mean_abs_error": {m: self.mean_abs_error(m) for m in models},
                "max_abs_error": {m: self.max_abs_error(m) for m in models}}


@dataclass(frozen=True)
class Figure7Report:
    """Prefix-by-prefix comparison on one platform.

    Attributes:
        platform: Where it was measured.
        context: Context of the unit measurements.
        rows: One row per prefix (units and networks with the Relu overhead subtracted, as the
            protocol measures them).
        composition: The composition fitted on raw measurements of the same prefixes (None when
            not fitted).
        in_sample: The composition's errors on the prefixes it was fitted on.
        held_out: Its errors on a held-out configuration's prefixes -- the number to quote.
    """

    platform: Platform
    context: str
    rows: tuple[PrefixRow, ...] = field(default_factory=tuple)
    composition: Composition | None = None
    in_sample: CompositionCheck | None = None
    held_out: CompositionCheck | None = None

    @property
    def mean_abs_error(self) -> float:
        """Mean |error| over prefixes (Relu overhead subtracted)."""
        return sum(abs(r.error) for r in self.rows) / len(self.rows) if self.rows else math.nan

    @property
    def max_abs_error(self) -> float:
        """Largest |error| over prefixes (Relu overhead subtracted)."""
        return max((abs(r.error) for r in self.rows), default=math.nan)

    @property
    def full_error(self) -> float:
        """Error of the whole network (last prefix)."""
        return self.rows[-1].error if self.rows else math.nan

    @property
    def held_out_error(self) -> float:
        """Mean |error| of the fitted two-parameter composition on the held-out prefixes (NaN if none)."""
        return self.held_out.mean_abs_error("ab") if self.held_out else math.nan

    def summary(self) -> dict:
        """The Figure-7 lines: mean/max |error| of the Relu subtraction, of the fitted composition
        in sample, and of the fitted composition (and the Relu subtraction) on the held-out prefixes."""
        out: dict = {"relu_subtracted": {"mean": self.mean_abs_error, "max": self.max_abs_error}}
        for name, chk in (("fitted_in_sample", self.in_sample), ("fitted_held_out", self.held_out)):
            if chk is not None:
                out[name] = {m: {"mean": chk.mean_abs_error(m), "max": chk.max_abs_error(m)} for m in MODELS}
        if self.held_out is not None and self.held_out.relu_errors:
            out["relu_subtracted_held_out"] = {"mean": self.held_out.mean_abs_error("relu"),
                                               "max": self.held_out.max_abs_error("relu")}
        return out

    def to_dict(self) -> dict:
        """JSON-ready form."""
        d = {"platform": self.platform.to_dict(), "context": self.context,
             "mean_abs_error": self.mean_abs_error, "max_abs_error": self.max_abs_error,
             "rows": [r.__dict__ for r in self.rows]}
        if self.composition is not None:
            d["composition"] = self.composition.to_dict()
        if self.in_sample is not None:
            d["in_sample"] = self.in_sample.to_dict()
        if self.held_out is not None:
            d["held_out"] = self.held_out.to_dict()
        d["summary"] = self.summary()
        return d

    def summary_lines(self) -> list[str]:
        """The Figure-7 lines to print: Relu-subtracted, fitted in-sample, fitted held-out."""
        lines = [f"Figure-7 relu-subtracted (fitted configuration): mean |error| {self.mean_abs_error:.1%}, "
                 f"max {self.max_abs_error:.1%}"]
        c = self.composition
        if c is not None and self.in_sample is not None:
            lines.append(f"Figure-7 fitted composition on raw timings: o = {c.overhead_ms:.4f} ms; "
                         f"a = {c.scale:.3f}, b = {c.call_ms:.4f} ms ({c.prefixes} prefixes, {c.loss} loss)")
            lines.append("Figure-7 fitted in-sample: "
                         + "; ".join(f"{m}: mean {self.in_sample.mean_abs_error(m):.1%} "
                                     f"max {self.in_sample.max_abs_error(m):.1%}" for m in MODELS))
        if self.held_out is not None:
            h = self.held_out
            text = "Figure-7 fitted held-out: " + "; ".join(
                f"{m}: mean {h.mean_abs_error(m):.1%} max {h.max_abs_error(m):.1%}" for m in MODELS)
            if h.relu_errors:
                text += f"; relu-subtracted: mean {h.mean_abs_error('relu'):.1%} max {h.max_abs_error('relu'):.1%}"
            lines.append(text + f"  [{len(h.units)} prefixes of another configuration]")
        return lines

    def table(self) -> str:
        """Plain-text table."""
        lines = [f"Figure-7 check on {self.platform.describe()} (units profiled in {self.context}):",
                 f"{'units':>5} {'last':>8} {'network ms':>11} {'sum ms':>9} {'error':>8}"
                 + (f" {'fit o':>7} {'fit ab':>7}" if self.in_sample else "")]
        for i, r in enumerate(self.rows):
            line = f"{r.units:>5} {r.last_unit:>8} {r.measured_ms:>11.4f} {r.summed_ms:>9.4f} {r.error:>+8.1%}"
            if self.in_sample and i < len(self.in_sample.units):
                line += f" {self.in_sample.errors['o'][i]:>+7.1%} {self.in_sample.errors['ab'][i]:>+7.1%}"
            lines.append(line)
        lines.append(f"mean |error| {self.mean_abs_error:.1%}, max |error| {self.max_abs_error:.1%}")
        if self.held_out is not None:
            h = self.held_out
            lines.append(f"held-out prefixes ({h.config}):")
            lines.append(f"{'units':>5} {'network ms':>11} {'raw sum ms':>11} {'fit o':>7} {'fit ab':>7}"
                         + (f" {'relu':>7}" if h.relu_errors else ""))
            for i, n in enumerate(h.units):
                cum = sum(h.raw_unit_ms[:n])
                line = (f"{n:>5} {h.raw_network_ms[i]:>11.4f} {cum:>11.4f} {h.errors['o'][i]:>+7.1%} "
                        f"{h.errors['ab'][i]:>+7.1%}")
                if h.relu_errors:
                    line += f" {h.relu_errors[i]:>+7.1%}"
                lines.append(line)
        if self.composition is not None or self.held_out is not None:
            lines.extend(self.summary_lines())
        return "\n".join(lines)


def _config_text(units: Sequence[LayerSpec]) -> str:
    return " ".join(f"{u.cin}->{u.expansion or u.cin}->{u.cout}" if u.op == "block" else f"{u.cin}->{u.cout}"
                    for u in units)


def _relu_errors(ms: Sequence[Measurement], nets: Sequence[Any]) -> list[float]:
    out, total = [], 0.0
    for m, lat in zip(ms, nets):
        total += m.latency.value_ms
        out.append((total - lat.value_ms) / lat.value_ms if lat.value_ms else math.nan)
    return out


def _holdout_units(holdout: Any, seed: int, n: int) -> list[LayerSpec] | None:
    if holdout is None:
        return None
    from compactnet.extract import mobilenetv2_units, random_config

    cfg = random_config("mobilenetv2", seed) if isinstance(holdout, str) and holdout == "random" else holdout
    return list(mobilenetv2_units(cfg, include_last=False))[:n]


def figure7(profiler: Profiler, config: Any = None, units: Sequence[LayerSpec] | None = None,
            context: str | None = None, measurements: Sequence[Measurement] | None = None, *,
            fit: bool = True, holdout: Any = "random", holdout_units: Sequence[LayerSpec] | None = None,
            seed: int = 0, holdout_relu: bool = True, loss: str = "absolute") -> Figure7Report:
    """Compare the measured latency of every prefix network with the sum of its profiled units.

    Three comparisons, each per prefix: (1) units and networks with the Relu overhead subtracted
    (the protocol's figures: :attr:`Figure7Report.rows`); (2) a
    :class:`~compactnet.profilers.composition.Composition` fitted on raw timings of the same
    prefixes, in sample; (3) that composition on the raw prefixes of a held-out configuration.

    Args:
        profiler: Where to measure.
        config: MobileNetV2 channel configuration (default: Table 1).
        units: The chain of units (default: :func:`compactnet.extract.mobilenetv2_units` of ``config``,
            the 18 units).
        context: Context of the unit measurements (default: the profiler's).
        measurements: Already profiled units (same order as ``units``, Relu overhead subtracted);
            measured now otherwise, all in one rotation.
        fit: Fit and check the composition (False: only comparison (1), as before).
        holdout: The held-out MobileNetV2 configuration: ``"random"`` (a trim by
            :func:`compactnet.extract.random_config` seeded with ``seed``), a channel
            configuration, or None (no held-out check).
        holdout_units: The held-out chain of units itself (overrides ``holdout``).
        seed: Seed of the random held-out trim.
        holdout_relu: Also measure comparison (1) on the held-out configuration.
        loss: Least-squares loss of the fit, ``absolute`` or ``relative``.

    Returns:
        A :class:`Figure7Report`.

    Raises:
        ConfigError: A held-out configuration with the same units as the fitted one, or fewer than
            2 units to fit on.
    """
    if units is None:
        from compactnet.extract import mobilenetv2_units

        units = mobilenetv2_units(config, include_last=False)
    units = list(units)
    ms = list(measurements) if measurements is not None else profiler.measure(
        units, context=context, protocol=profiler.protocol.replace(anchors=False))  # the units' own rotation
    prefixes = [units[: n + 1] for n in range(len(units))]
    nets = profiler.measure_networks(prefixes)
    rows = [PrefixRow(n + 1, units[n].name, lat.value_ms, sum(m.latency.value_ms for m in ms[: n + 1]), err)
            for n, (m, lat, err) in enumerate(zip(ms, nets, _relu_errors(ms, nets)))]
    ctx = ms[0].context if ms else (context or profiler.protocol.context)
    if not fit:
        return Figure7Report(profiler.platform, ctx, tuple(rows))
    if len(units) < 2:
        raise bad_value("units", "a chain of at least 2 units to fit the composition on", len(units))

    held = list(holdout_units) if holdout_units is not None else _holdout_units(holdout, seed, len(units))
    if held is not None and [u.key() for u in held] == [u.key() for u in units[: len(held)]]:
        raise bad_value("holdout", "a configuration whose units differ from the fitted one's", _config_text(held))
    held = held or []
    held_prefixes = [held[: n + 1] for n in range(len(held))]

    # raw timings (call overhead included) of both chains, units in one rotation, networks interleaved
    raw_proto = profiler.protocol.replace(subtract_overhead=False, context=ctx, anchors=False)
    raw_ms = profiler.measure(units + held, protocol=raw_proto)
    raw_nets = profiler.measure_networks(prefixes + held_prefixes, protocol=raw_proto)
    fit_unit = [m.latency.value_ms for m in raw_ms[: len(units)]]
    fit_net = [l.value_ms for l in raw_nets[: len(units)]]
    comp = Composition.fit(fit_unit, fit_net, platform=profiler.platform.key, context=ctx, loss=loss)
    n_fit = tuple(range(1, len(units) + 1))
    in_sample = CompositionCheck("in-sample", _config_text(units), n_fit, tuple(fit_unit), tuple(fit_net),
                                 {m: tuple(comp.errors(fit_unit, fit_net, model=m)) for m in MODELS},
                                 tuple(r.error for r in rows))
    held_out = None
    if held:
        h_unit = [m.latency.value_ms for m in raw_ms[len(units):]]
        h_net = [l.value_ms for l in raw_nets[len(units):]]
        relu: tuple[float, ...] = ()
        if holdout_relu:
            relu = tuple(_relu_errors(profiler.measure(held, context=ctx), profiler.measure_networks(held_prefixes)))
        held_out = CompositionCheck("held-out", _config_text(held), tuple(range(1, len(held) + 1)), tuple(h_unit),
                                    tuple(h_net), {m: tuple(comp.errors(h_unit, h_net, model=m)) for m in MODELS},
                                    relu)
    return Figure7Report(profiler.platform, ctx, tuple(rows), comp, in_sample, held_out)
