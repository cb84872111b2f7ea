"""Profilers: measure layers on a platform with the package's measurement protocol.

Following nn-Meter, a profiler is split in two halves:

* the *runner* half executes and times models on the device: :func:`run_timing_job` (used
  locally by :class:`RunnerProfiler` and on a remote device by :mod:`compactnet.profilers.agent`)
  compiles each ONNX model with a :class:`compactnet.runtimes.Runner`, times them in the chosen
  context (:mod:`compactnet.profilers.timing`) together with an empty model, and returns
  JSON-ready timings with the per-call overhead subtracted;
* the *parser* half, :meth:`Profiler.measure`, turns timings into :class:`~compactnet.spec.Measurement`
  records, re-measures layers whose rounds disagree and records the machine's load.

The protocol (DESIGN's measurement rule, :mod:`compactnet.measure`): at least 7 rounds after
warm-up, a layer's latency is the minimum over its timed calls (``Protocol(estimator="median")``:
the median of its round medians, the rule before), less the empty model's figure by the same
estimator, a stability figure per sample, the load average recorded, a busy machine refused
(``busy="refuse"``) or the measurement flagged (``busy="flag"``: kept, with its load, and logged).

:class:`SyntheticProfiler` is a seeded, deterministic stand-in for tests, with a cost model that
punishes unaligned channel counts like onnxruntime does.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

import numpy as np

from compactnet.errors import BusyError, MeasurementError, bad_value
from compactnet.spec import ESTIMATORS, Latency, LayerSpec, Measurement, Platform, hardware_id, latency_ms

from compactnet.profilers.layers import layer_onnx, network_onnx, overhead_onnx
from compactnet.profilers.timing import CONTEXTS, DEFAULT_ROTATION_BYTES, JobTimeout, cache_filler, time_layers

log = logging.getLogger(__name__)

BUSY_POLICIES = ("refuse", "flag", "ignore")

#: Smallest layer latency kept after the per-call overhead is subtracted (ms): a layer faster than
#: the empty model's call would otherwise read 0, which a predictor cannot fit on a log scale.
MIN_LAYER_MS = 1e-4

_INT_FIELDS = ("rounds", "runs", "warmup", "seed", "rotation_bytes", "retries")
_FLOAT_FIELDS = ("max_spread", "max_load")


def _as_int(name: str, value: Any) -> int:
    """An integer setting (an integral float is accepted, a string or a bool is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or int(value) != value:
        raise bad_value(name, "an integer", value)
    return int(value)


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or math.isnan(value):
        raise bad_value(name, "a number", value)
    return float(value)


@dataclass(frozen=True)
class Protocol:
    """How layers are timed.

    Attributes:
        rounds: Rounds after warm-up (DESIGN: >= 7).
        runs: Timed calls per layer per round.
        warmup: Untimed calls per layer first.
        seed: Seed of the call order (and of layer weights).
        context: ``rotation`` (default), ``isolated`` or ``flush`` (:mod:`~compactnet.profilers.timing`).
        rotation_bytes: Bytes the cache-evicting pass writes once per rotation cycle, less what the
            batch's layers move themselves.
        max_spread: Re-measure a layer whose figure is unsettled above this (:func:`round_spread`:
            under ``min``, how far the minima of the even and the odd rounds disagree; under
            ``median``, how far the round medians spread).
        retries: Re-measurements at most; the attempt with the smallest spread is kept.
        max_load: Load average (beyond our own process) above which the machine is busy.
        busy: ``refuse`` (raise :class:`~compactnet.errors.MeasurementError`), ``flag`` (keep, log,
            record the load) or ``ignore``.
        subtract_overhead: Subtract the per-call overhead of an empty model timed in the same loop.
        anchors: Time the fixed anchor layers (:mod:`compactnet.profilers.anchors`) in every batch
            and record their summed latency with each sample (``Measurement.anchor_ms``).
        estimator: ``min`` (the rule) or ``median`` (:mod:`compactnet.measure`); the default is the
            process's (:func:`compactnet.measure.default_estimator`).
    """

    rounds: int = 7
    runs: int = 40
    warmup: int = 10
    seed: int = 0
    context: str = "rotation"
    rotation_bytes: int = DEFAULT_ROTATION_BYTES
    max_spread: float = 0.15
    retries: int = 2
    max_load: float = 0.5
    busy: str = "refuse"
    subtract_overhead: bool = True
    anchors: bool = True
    estimator: str = ""

    def __post_init__(self) -> None:
        from compactnet.measure import default_estimator

        if not self.estimator:
            object.__setattr__(self, "estimator", default_estimator())
        if self.estimator not in ESTIMATORS:
            raise bad_value("estimator", "one of " + ", ".join(ESTIMATORS), self.estimator)
        for name in _INT_FIELDS:  # a protocol also arrives as JSON from a client: check the types
            object.__setattr__(self, name, _as_int(name, getattr(self, name)))
        for name in _FLOAT_FIELDS:
            object.__setattr__(self, name, _as_float(name, getattr(self, name)))
        for name in ("subtract_overhead", "anchors"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise bad_value(name, "true or false", getattr(self, name))
        if self.context not in CONTEXTS:
            raise bad_value("context", "one of " + ", ".join(CONTEXTS), self.context)
        if self.busy not in BUSY_POLICIES:
            raise bad_value("busy", "one of " + ", ".join(BUSY_POLICIES), self.busy)
        if self.rounds < 1 or self.runs < 1:
            raise bad_value("rounds/runs", "positive integers", (self.rounds, self.runs))
        if self.warmup < 0 or self.retries < 0 or self.rotation_bytes < 0:
            raise bad_value("warmup/retries/rotation_bytes", "non-negative integers",
                            (self.warmup, self.retries, self.rotation_bytes))

    @property
    def calls_per_model(self) -> int:
        """Calls of one model a timing job makes (warm-up and timed runs)."""
        return self.warmup + self.rounds * self.runs

    def replace(self, **changes: Any) -> "Protocol":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "Protocol":
        """Inverse of :meth:`to_dict`; unknown keys or values of the wrong type are an error naming them."""
        if d is not None and not isinstance(d, Mapping):
            raise bad_value("protocol", "a JSON object of protocol settings", type(d).__name__)
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise bad_value("protocol", "keys among " + ", ".join(sorted(names)), sorted(unknown))
        return cls(**d)


def now_iso() -> str:
    """Current UTC time, ISO-8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def round_spread(lat: Latency, overhead_ms: float = 0.0) -> float:
    """How unsettled a measured figure is (0 with fewer than two rounds).

    Under ``min``: how far the minima of the even and of the odd rounds disagree, relative to the
    call they were taken from (the figure plus the per-call ``overhead_ms`` subtracted from it: a
    2 µs add behind a 5 µs call is judged on 7 µs, the timer's and the call's jitter being part of
    what was timed). Both halves span the whole window, so a settled minimum reads the same in each;
    slow rounds do not count, since the minimum ignores them. Under ``median``: the relative spread of
    the round medians, (max - min) / median.
    """
    r = np.asarray(lat.rounds, dtype=float)
    if r.size < 2 or not lat.value_ms:
        return 0.0
    if lat.estimator == "min":
        call = abs(lat.value_ms) + (overhead_ms if overhead_ms == overhead_ms and overhead_ms > 0 else 0.0)
        return float(abs(r[0::2].min() - r[1::2].min()) / call)
    return float((r.max() - r.min()) / abs(lat.value_ms))


def latency_from_times(times: np.ndarray, overhead: Latency | None = None, estimator: str | None = None) -> Latency:
    """Turn one model's seconds ``(rounds, runs)`` into a :class:`Latency` by the estimator.

    Args:
        times: Seconds, shaped ``(rounds, runs)``.
        overhead: The empty model's latency timed in the same loop (same estimator); its figure is
            subtracted from the layer's and its round figures from the layer's round figures;
            results are floored at :data:`MIN_LAYER_MS` (a layer cheaper than the empty model's
            call stays a small positive figure, not 0).
        estimator: ``min`` or ``median`` (None: the process default).
    """
    from compactnet.measure import summarise

    lat = summarise(np.asarray(times, np.float64), estimator)
    if overhead is None:
        return lat
    floor = lambda v: max(v, MIN_LAYER_MS)  # noqa: E731
    rounds = [floor(r - o) for r, o in zip(lat.rounds, overhead.rounds)]
    return dataclasses.replace(lat, value_ms=floor(lat.value_ms - overhead.value_ms),
                               low_ms=floor(lat.low_ms - overhead.value_ms),
                               high_ms=floor(lat.high_ms - overhead.value_ms), rounds=tuple(rounds),
                               p50_ms=floor(lat.p50_ms - overhead.p50_ms),
                               p90_ms=floor(lat.p90_ms - overhead.p90_ms))


def judge_load(load: float, protocol: Protocol, what: str = "measurement") -> float:
    """Apply the busy policy to a load (cores busy beyond our process) measured during timing.

    Raises:
        MeasurementError: ``load > protocol.max_load`` and ``protocol.busy == "refuse"``.
    """
    if load > protocol.max_load:  # NaN (no way to read the load) compares False: kept, recorded as NaN
        msg = (f"machine busy: {load:.2f} CPU cores used by other processes during the {what}, above "
               f"max_load={protocol.max_load} (DESIGN: never profile while another CPU-heavy job runs)")
        if protocol.busy == "refuse":
            raise BusyError(msg + "; refused (pass busy='flag' to keep flagged measurements)")
        if protocol.busy == "flag":
            log.warning("%s; measurements kept and flagged with their load", msg)
    return float(load)


def run_timing_job(runner: Any, models: Sequence[bytes], protocol: Protocol,
                   deadline: float | None = None) -> dict:
    """Runner half: compile and time ``models`` on ``runner`` with ``protocol``; JSON-ready result.

    The empty model of :func:`~compactnet.profilers.layers.overhead_onnx` is timed in the same
    loop; its figure (same estimator) is subtracted from every model's figure (when
    ``protocol.subtract_overhead``).

    Args:
        runner: A :class:`compactnet.runtimes.Runner` (``platform`` and ``load(model)``).
        models: Serialized ONNX models.
        protocol: Timing protocol.
        deadline: ``time.monotonic()`` value after which the job stops with ``JobTimeout`` (checked
            after every model's compile or conversion too, and during timing).

    Returns:
        ``{"platform": Platform dict, "latencies": [Latency dicts], "overhead": Latency dict,
        "load": float, "seconds": float, "context": str}``.

    Raises:
        MeasurementError: Busy machine (``busy="refuse"``), runtime failure, or time limit.
    """
    from compactnet.measure import MIN_LOAD_WINDOW_S, LoadMonitor

    def check_deadline(what: str) -> None:
        if deadline is not None and time.monotonic() > deadline:
            raise JobTimeout(f"the timing job ran past its time limit while {what}")

    t_start = time.perf_counter()
    fns = []
    for i, m in enumerate(models):
        fns.append(runner.load(m))
        check_deadline(f"compiling model {i + 1} of {len(models)}")
    overhead_fn = runner.load(overhead_onnx())
    check_deadline("compiling the overhead model")
    filler = cache_filler(protocol.rotation_bytes) if protocol.context != "isolated" else None
    simulated = runner.platform.runtime == "synthetic"  # a simulated clock is never disturbed by load
    monitor = LoadMonitor(min_window_s=0.0 if simulated else MIN_LOAD_WINDOW_S).start()
    times = time_layers(fns + [overhead_fn], protocol.context, protocol.rounds, protocol.runs, protocol.warmup,
                        protocol.seed, filler=filler, timer=getattr(runner, "timer", time.perf_counter_ns),
                        deadline=deadline)
    overhead = latency_from_times(times[-1], estimator=protocol.estimator)
    sub = overhead if protocol.subtract_overhead else None
    lats = [latency_from_times(times[i], sub, protocol.estimator) for i in range(len(models))]
    load = monitor.stop()
    if not simulated:
        judge_load(load, protocol, f"timing on {runner.platform.key}")
    return {"platform": runner.platform.to_dict(), "latencies": [l.to_dict() for l in lats],
            "overhead": overhead.to_dict(), "load": load,
            "seconds": time.perf_counter() - t_start, "context": protocol.context}


def rotation_protocol(layers: Sequence[LayerSpec], protocol: Protocol, precision: str = "fp32") -> Protocol:
    """In ``rotation``, the evicting pass writes only what the batch's own layers do not move."""
    if protocol.context != "rotation":
        return protocol
    moved = sum(l.bytes_moved(precision) for l in layers)
    return protocol.replace(rotation_bytes=max(0, protocol.rotation_bytes - moved))


class Profiler(abc.ABC):
    """Measures layers on one platform.

    Subclasses implement the runner half, :meth:`time_layers` (and :meth:`time_networks`);
    :meth:`measure` is the parser half shared by all. ``time_layers`` returns ``(latencies, load)``
    or ``(latencies, load, overhead_ms)``: the per-call overhead (median of the empty model timed
    in the same loop, ms), recorded in every :class:`~compactnet.spec.Measurement` so a predictor
    can add it back once per whole network.

    Attributes:
        platform: Where layers are measured (with hardware and runtime version).
        protocol: Default timing protocol.
    """

    platform: Platform
    protocol: Protocol

    def __init__(self, platform: Platform, protocol: Protocol | None = None):
        self.platform = platform
        self.protocol = protocol or Protocol()

    # ----- runner half ---------------------------------------------------------------------
    @abc.abstractmethod
    def time_layers(self, layers: Sequence[LayerSpec], protocol: Protocol
                    ) -> tuple[list[Latency], float] | tuple[list[Latency], float, float]:
        """Time ``layers`` together (one rotation); return their latencies, the load and (optionally)
        the per-call overhead in ms."""

    def time_networks(self, networks: Sequence[Sequence[LayerSpec]], protocol: Protocol) -> tuple[list[Latency], float]:
        """Time whole chained networks, interleaved (isolated context: a network is called back to back)."""
        raise NotImplementedError(f"{type(self).__name__} cannot time whole networks")

    # ----- parser half ---------------------------------------------------------------------
    def measure(self, layers: Sequence[LayerSpec], context: str | None = None,
                protocol: Protocol | None = None) -> list[Measurement]:
        """Measure ``layers`` (timed together, in one rotation) with the protocol.

        Layers whose figure is unsettled by more than ``protocol.max_spread`` (:func:`round_spread`)
        are re-measured (together) up to ``protocol.retries`` times; the most settled attempt is kept.

        Args:
            layers: Layer configurations.
            context: Overrides ``protocol.context``.
            protocol: Overrides :attr:`protocol`.

        Returns:
            One :class:`Measurement` per layer, in order, each with its load and context.

        Raises:
            MeasurementError: Busy machine under ``busy="refuse"`` or a runtime failure.
        """
        proto = protocol or self.protocol
        if context is not None:
            proto = proto.replace(context=context)
        layers = list(layers)
        if not layers:
            return []
        lats, load, overhead, anchor = self._time_anchored(layers, proto)
        loads = [load] * len(layers)
        overheads = [overhead] * len(layers)
        anchor_ms = [anchor] * len(layers)
        for attempt in range(proto.retries):
            bad = [i for i, l in enumerate(lats) if round_spread(l, overheads[i]) > proto.max_spread]
            if not bad:
                break
            log.info("re-measuring %d layer(s) whose figure is unsettled (> %.0f%% between halves of the rounds)",
                     len(bad), 100 * proto.max_spread)
            again, load2, overhead2, anchor2 = self._time_anchored([layers[i] for i in bad],
                                                                   proto.replace(seed=proto.seed + attempt + 1))
            for i, lat in zip(bad, again):
                if round_spread(lat, overhead2) < round_spread(lats[i], overheads[i]):
                    lats[i], loads[i], overheads[i], anchor_ms[i] = lat, load2, overhead2, anchor2
        for layer, lat, oh in zip(layers, lats, overheads):
            if round_spread(lat, oh) > proto.max_spread:
                log.warning("%s on %s: %s still unsettled by %.0f%% after %d re-measure(s)", layer.name,
                            self.platform.key, "minimum" if lat.estimator == "min" else "round medians",
                            100 * round_spread(lat, oh), proto.retries)
        when = now_iso()
        if not proto.subtract_overhead:  # the figures include the call overhead: nothing to add back
            overheads = [math.nan] * len(layers)
        return [Measurement(layer, self.platform, lat, when, float(ld), proto.context, oh, an)
                for layer, lat, ld, oh, an in zip(layers, lats, loads, overheads, anchor_ms)]

    def _time_anchored(self, layers: list[LayerSpec], proto: Protocol) -> tuple:
        """:meth:`_time_retrying` with the anchor layers added to the batch (``proto.anchors``).

        Returns:
            ``(latencies of layers, load, overhead, anchor_ms)`` (``anchor_ms`` NaN without anchors).
        """
        if not proto.anchors:
            return (*self._time_retrying(layers, proto), math.nan)
        from compactnet.profilers.anchors import anchor_layers

        anchors = anchor_layers()
        keys = {l.key() for l in layers}
        extra = [a for a in anchors if a.key() not in keys]  # an anchor already in the batch is timed once
        lats, load, overhead = self._time_retrying(layers + extra, proto)
        by_key = {l.key(): lat for l, lat in zip(layers + extra, lats)}
        return lats[:len(layers)], load, overhead, float(sum(by_key[a.key()].value_ms for a in anchors))

    def _time_retrying(self, layers: list[LayerSpec], proto: Protocol) -> tuple:
        """:meth:`time_layers`, timed again after a pause when the machine was busy (nothing busy is kept)."""
        from compactnet.measure import retry_when_busy

        return retry_when_busy(lambda: _timed(self.time_layers(layers, proto)),
                               f"{len(layers)} layer(s) on {self.platform.key}")

    def measure_networks(self, networks: Sequence[Sequence[LayerSpec]],
                         protocol: Protocol | None = None) -> list[Latency]:
        """Latency of whole networks (each a chain of layers), interleaved, overhead subtracted."""
        lats, _load, _overhead = _timed(self.time_networks(networks, protocol or self.protocol))
        return lats

    def close(self) -> None:
        """Release sessions or connections (nothing by default)."""


def _timed(result: Sequence[Any]) -> tuple[list[Latency], float, float]:
    """``(latencies, load, overhead_ms)`` from a runner half's 2- or 3-tuple (NaN: overhead unknown)."""
    if len(result) == 3:
        lats, load, overhead = result
        return list(lats), float(load), math.nan if overhead is None else float(overhead)
    lats, load = result
    return list(lats), float(load), math.nan


def timing_result(res: Mapping[str, Any]) -> tuple[list[Latency], float, float]:
    """Latencies, load and overhead (median ms, NaN if absent) of a :func:`run_timing_job` result."""
    oh = res.get("overhead") or {}
    overhead = latency_ms(oh) if isinstance(oh, Mapping) and oh else None
    return ([Latency.from_dict(d) for d in res["latencies"]], float(res["load"]),
            math.nan if overhead is None else float(overhead))


class RunnerProfiler(Profiler):
    """Profiles layers on any local :class:`compactnet.runtimes.Runner` (ort, openvino, ncnn, torch, synthetic).

    Args:
        runner: A runner, or a platform (key) given to :func:`compactnet.runtimes.get_runner`.
        protocol: Timing protocol.
        weight_seed: Seed of the layers' random weights.
    """

    def __init__(self, runner: Any, protocol: Protocol | None = None, weight_seed: int = 0):
        if isinstance(runner, (str, Platform)):
            from compactnet.runtimes import get_runner

            runner = get_runner(runner)
        self.runner = runner
        self.weight_seed = weight_seed
        super().__init__(runner.platform, protocol)

    def time_layers(self, layers: Sequence[LayerSpec], protocol: Protocol) -> tuple[list[Latency], float, float]:
        models = [layer_onnx(l, self.weight_seed) for l in layers]
        return timing_result(run_timing_job(self.runner, models,
                                            rotation_protocol(layers, protocol, self.platform.precision)))

    def time_networks(self, networks: Sequence[Sequence[LayerSpec]], protocol: Protocol
                      ) -> tuple[list[Latency], float, float]:
        models = [network_onnx(n, self.weight_seed) for n in networks]
        return timing_result(run_timing_job(self.runner, models, protocol.replace(context="isolated")))


# ----- synthetic ------------------------------------------------------------------------------
SYNTHETIC_VERSION = "synthetic-1"


def synthetic_platform(precision: str = "fp32", threads: int = 1) -> Platform:
    """The synthetic platform (this machine's hardware id, a fixed runtime version)."""
    return Platform("synthetic", "cpu", precision, threads, hardware_id(), SYNTHETIC_VERSION)


def _unaligned(c: int, m: int) -> bool:
    return c % m != 0


def synthetic_cost_ms(layer: LayerSpec, context: str = "rotation") -> float:
    """Noise-free latency (ms) of the synthetic platform's cost model.

    Compute at 20 GMAC/s (dense) or 2 GMAC/s (depthwise), memory at 10 GB/s, 2 us per node; channel
    counts that are not multiples of 8 cost more (a depthwise conv 2.8x, like onnxruntime's 21 us vs
    60 us at 64 vs 63 channels), multiples of 8 but not 16 a little more; ``isolated`` reads 30%
    fast (warm cache).
    """
    ms = 2e-3 + layer.bytes_moved() / 1e7
    if layer.op == "block":
        hid = layer.expansion or layer.cin
        expand = layer.h * layer.w * layer.cin * hid if hid != layer.cin else 0
        oh, ow = layer.out_hw
        ms += expand / 2e7 + oh * ow * hid * 9 / 2e6 + oh * ow * hid * layer.cout / 2e7 + 4e-3
        factor = 1.0 + (1.6 if _unaligned(hid, 8) else 0.0) + (0.25 if _unaligned(layer.cout, 8) else 0.0) \
            + (0.1 if _unaligned(hid, 16) else 0.0)
    elif layer.op == "dwconv":
        ms += layer.macs / 2e6
        factor = 2.8 if _unaligned(layer.cin, 8) else (1.1 if _unaligned(layer.cin, 16) else 1.0)
    elif layer.op in ("conv", "linear"):
        ms += layer.macs / 2e7
        factor = 1.0 + (0.25 if _unaligned(layer.cout, 8) else 0.0) + (0.15 if _unaligned(layer.cin, 8) else 0.0) \
            + (0.1 if _unaligned(layer.cout, 16) else 0.0)
    else:
        ms += layer.macs / 1e8
        factor = 1.0
    ms *= factor
    if context == "isolated":
        ms *= 0.7
    return ms


class SyntheticProfiler(Profiler):
    """A seeded fake platform: :func:`synthetic_cost_ms` times optional log-normal noise.

    Args:
        noise: Relative noise (sigma of a log-normal factor) per round median; 0 is noise-free.
        seed: Noise seed; the same seed and the same calls give the same numbers.
        delay_s: Real seconds slept per timed layer (to mimic a device in tests).
        protocol: Timing protocol (busy policy ignored: a synthetic platform is never busy).
        platform: Overrides :func:`synthetic_platform`.
        network_bias: Relative amount by which a whole network is slower than the sum of its layers.
        overhead_ms: Per-call overhead the fake platform reports (recorded in each measurement;
            layer and network latencies are, as a profiler's, already net of it). 0 by default, so
            that a predictor fitted on these samples predicts what :meth:`measure_networks` reads.
            Under ``Protocol(subtract_overhead=False)`` every layer and network reads it on top
            (one call each), as raw timings do.
    """

    def __init__(self, noise: float = 0.0, seed: int = 0, delay_s: float = 0.0, protocol: Protocol | None = None,
                 platform: Platform | None = None, network_bias: float = 0.0, overhead_ms: float = 0.0):
        super().__init__(platform or synthetic_platform(), protocol)
        self.overhead_ms = float(overhead_ms)
        self.noise = float(noise)
        self.delay_s = float(delay_s)
        self.network_bias = float(network_bias)
        self._rng = np.random.default_rng(seed)
        self.calls = 0

    def _raw_extra(self, protocol: Protocol) -> float:
        """Raw timings (``subtract_overhead=False``) include one call overhead per model."""
        return 0.0 if protocol.subtract_overhead else self.overhead_ms

    def _latency(self, base_ms: float, protocol: Protocol) -> Latency:
        """Round figures around ``base_ms``: two-sided log-normal noise under ``median``; under ``min``
        one-sided (interference only adds time), so that the minimum of the rounds is near the cost."""
        if self.noise > 0:
            z = self._rng.normal(0.0, self.noise, protocol.rounds)
            rounds = base_ms * np.exp(np.abs(z) if protocol.estimator == "min" else z)
        else:
            rounds = np.full(protocol.rounds, base_ms)
        value = float(rounds.min() if protocol.estimator == "min" else np.median(rounds))
        q1, q3 = np.percentile(rounds, [25, 75])  # the protocol's spread: IQR of the round figures
        return Latency(value, float(q1), float(q3), protocol.rounds * protocol.runs, tuple(float(r) for r in rounds),
                       estimator=protocol.estimator)

    def time_layers(self, layers: Sequence[LayerSpec], protocol: Protocol) -> tuple[list[Latency], float, float]:
        out = []
        for layer in layers:
            self.calls += 1
            if self.delay_s:
                time.sleep(self.delay_s)
            out.append(self._latency(synthetic_cost_ms(layer, protocol.context) + self._raw_extra(protocol), protocol))
        return out, 0.0, self.overhead_ms

    def time_networks(self, networks: Sequence[Sequence[LayerSpec]], protocol: Protocol
                      ) -> tuple[list[Latency], float, float]:
        out = []
        for net in networks:
            base = sum(synthetic_cost_ms(l, "rotation") for l in net) * (1.0 + self.network_bias)
            out.append(self._latency(base + self._raw_extra(protocol), protocol))
        return out, 0.0, self.overhead_ms


# ----- factory and noise floor ---------------------------------------------------------------
def get_profiler(platform: Platform | str, protocol: Protocol | None = None, **kwargs: Any) -> Profiler:
    """The profiler of a platform key: :class:`SyntheticProfiler` for ``synthetic-*``, else a
    :class:`RunnerProfiler` over :func:`compactnet.runtimes.get_runner`.

    Raises:
        ConfigError: Malformed key or a runtime/provider this machine does not have.
    """
    plat = platform if isinstance(platform, Platform) else Platform.parse(str(platform))
    if plat.runtime == "synthetic":
        return SyntheticProfiler(protocol=protocol, platform=synthetic_platform(plat.precision, plat.threads),
                                 **kwargs)
    return RunnerProfiler(plat, protocol=protocol, **kwargs)


def default_probe_layer() -> LayerSpec:
    """The configuration whose spread is a platform's noise floor: a Table-1 block (24->24, 8x8, t=6)."""
    return LayerSpec("probe", "block", 24, 24, 8, 8, stride=(1, 1), expansion=144, bn=True, act="relu6",
                     residual=True)


def noise_floor(profiler: Profiler, layer: LayerSpec | None = None, repeats: int = 20,
                context: str | None = None) -> dict:
    """Measure one configuration ``repeats`` times; report the relative spread of the medians.

    Returns:
        ``{"platform", "hardware", "runtime_version", "layer", "context", "repeats", "median_ms",
        "rel_spread" ((max - min) / median), "rel_iqr", "cv", "medians_ms"}``.
    """
    layer = layer or default_probe_layer()
    if int(repeats) < 2:
        raise bad_value("repeats", "an integer >= 2", repeats)
    proto = profiler.protocol.replace(retries=0, anchors=False)  # the probe alone, as asked
    meds = []
    for i in range(int(repeats)):
        m = profiler.measure([layer], context=context, protocol=proto.replace(seed=proto.seed + i))[0]
        meds.append(m.latency.value_ms)
    a = np.asarray(meds)
    med = float(np.median(a))
    q1, q3 = np.percentile(a, [25, 75])
    return {"platform": profiler.platform.key, "hardware": profiler.platform.hardware,
            "runtime_version": profiler.platform.runtime_version, "layer": layer.to_dict(),
            "context": context or profiler.protocol.context, "repeats": int(repeats), "median_ms": med,
            "rel_spread": float((a.max() - a.min()) / med) if med else math.nan,
            "rel_iqr": float((q3 - q1) / med) if med else math.nan,
            "cv": float(a.std(ddof=1) / a.mean()) if a.mean() else math.nan, "medians_ms": a.tolist()}
