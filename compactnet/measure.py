"""The measurement protocol (DESIGN's rule "what measured latency and speedup mean"), implemented once.

Every benchmark, search report and zoo card measures through :func:`compare` (or :func:`measure`
for one model):

* batch 1, the model's own input shape, the platform's precision and threads (see
  :mod:`compactnet.runtimes`; one intra-op thread in the ``-t1`` keys);
* every ONNX model compared is exported the same way (default-domain opset 17, IR version ≤ 10,
  as :func:`compactnet.export.export_onnx` writes); a model that is not is logged as a warning and
  the comparison records it (``export_ok=False`` with ``export_notes``);
* every model is loaded ``instances`` times (separate sessions: on the machines we measured, two
  sessions of one model can differ by 1-6% for their whole life, from memory placement), warmed
  up, then all sessions are timed **interleaved** in the same process in ``rounds`` (≥ 7) rounds
  spread over at least ``window_s`` seconds (the machine's slow stretches last seconds). Each round
  visits the sessions in a freshly shuffled (seeded) order and times ``runs`` back-to-back calls of
  each (``interleave="block"``, the default);
* a model's latency is the **minimum over a session's timed calls, median over its sessions**
  (``estimator="min"``, the rule: interference only adds time, so the minimum repeats where the
  median follows the machine's slow stretches; Chen & Revels 2016). ``estimator="median"`` (median
  of round medians) is the rule before it. Every :class:`~compactnet.spec.Latency` also keeps the
  median and 90th percentile of all calls, shown as "typical under load" and never compared;
* a speedup of model *i* is ``latency(first) / latency(i)``, with a 95 % **bootstrap interval**:
  rounds resampled jointly for all models (a round is one machine state) and each model's sessions
  resampled, widened by the runtime's measured drift between comparisons minutes apart
  (:data:`DRIFT_SD`, :func:`widen`); a target speedup **is reached** when the interval's lower bound reaches it
  (:func:`reached`). ``benchmarks/repeatability_bench.py`` measures how well the figures repeat and
  how often the intervals cover the figure pooled over repeated comparisons;
* the load beyond our own process is measured during the timing window; above ``max_load``
  (0.5 CPU cores) the comparison is refused (``busy="refuse"``) or flagged (``busy="flag"``), never
  silently kept.

Why blocks of back-to-back runs rather than alternating models call by call: a deployed model
serves repeated requests, so its latency is the one it has in its own steady cache state. Calling
models alternately would time each one after the others evicted its weights, a state that depends
on *which* models happen to be compared (the same model would read differently beside a small and
beside a large one). Shuffling the block order every round still spreads slow drifts and bursts of
machine noise over all models, and pairing rounds in the bootstrap keeps the speedup interval
honest about them. ``interleave="run"`` (alternate call by call) is available for profiling layers
in the cache state a network gives them (DESIGN's facts on layer sums).
"""

from __future__ import annotations

import gc
import logging
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from compactnet.errors import BusyError, MeasurementError, bad_value
from compactnet.spec import DEFAULT_ESTIMATOR, ESTIMATORS, LEGACY_ESTIMATOR, Latency, Platform

log = logging.getLogger(__name__)

#: Fewest rounds the protocol accepts as a measurement (fewer is allowed, but logged and marked).
MIN_ROUNDS = 7
#: Default ceiling of CPU cores kept busy by other processes.
MAX_LOAD = 0.5
#: The export rule: every model compared is written at this default-domain opset ...
PROTOCOL_OPSET = 17
#: ... and at most this IR version (onnxruntime 1.31 refuses newer).
PROTOCOL_MAX_IR = 10
BUSY_POLICIES = ("refuse", "flag", "ignore")
INTERLEAVE_MODES = ("block", "run")


# ----- timing ---------------------------------------------------------------------------------------
class JobTimeout(MeasurementError):
    """A timing job ran past its deadline."""


SHUFFLE_MODES = ("round", "pass")
FILL_MODES = ("pass", "call")
WARMUP_MODES = ("model", "pass")


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise JobTimeout("the timing job ran past its time limit (job_timeout_s)")


def time_interleaved(fns: Sequence[Callable[[], None]], rounds: int = 7, runs: int = 40, warmup: int = 10,
                     seed: int = 0, timer: Callable[[], int] = time.perf_counter_ns, *,
                     interleave: str = "block", block_warmup: int = 1,
                     progress: Callable[[int, int], None] | None = None, shuffle: str = "round",
                     filler: Callable[[], None] | None = None, fill: str = "pass", warmup_by: str = "model",
                     deadline: float | None = None, window_s: float = 0.0,
                     sleep: Callable[[float], None] = time.sleep) -> np.ndarray:
    """Time several callables interleaved in rounds.

    Each callable is first called ``warmup`` times (untimed). Then, in every round, the models are
    visited in a seeded random order; with ``interleave="block"`` each model makes
    ``block_warmup`` untimed calls and then ``runs`` timed back-to-back calls; with
    ``interleave="run"`` the round makes ``runs`` passes, each calling every model once in the
    round's order. Every call is timed on its own; the garbage collector is off while timing.

    The keyword hooks serve the layer profilers (:func:`compactnet.profilers.timing.time_layers`):
    a new order for every pass, an untimed cache-evicting ``filler``, warm-up in passes over all
    models, and a job ``deadline``. Their defaults leave the protocol loop above unchanged.

    Args:
        fns: Zero-argument callables, one inference each.
        rounds: Number of rounds (the protocol uses ≥ 7).
        runs: Timed calls per model per round.
        warmup: Untimed calls per model before the first round.
        seed: Seed of the round orders.
        timer: Clock in integer nanoseconds (a virtual clock for simulated runtimes).
        interleave: ``block`` (default) or ``run``; see the module docstring for the choice.
        block_warmup: Untimed calls at the start of each block (``block`` mode only).
        progress: Called with (rounds done, rounds) after every round.
        shuffle: ``round`` (default: one seeded order per round) or ``pass`` (``run`` mode: a new
            seeded order for every pass).
        filler: Untimed step run before each pass (``run`` mode) or block (``block`` mode) with
            ``fill="pass"``, or before every timed call with ``fill="call"``; None for none.
        fill: ``pass`` (default) or ``call``; where ``filler`` runs.
        warmup_by: ``model`` (default: each model's warm-up calls back to back) or ``pass``
            (``warmup`` passes, each calling every model once in list order).
        deadline: ``time.monotonic()`` value after which :class:`JobTimeout` is raised; checked
            before every warm-up step, block and pass.
        window_s: Spread the rounds over at least this many seconds: round ``r`` starts no earlier
            than ``r * window_s / rounds`` after the first (the loop pauses when it is early), so that
            one slow stretch of the machine (seconds long) cannot hold every round. 0: back to back.
        sleep: The pause (a no-op or a virtual clock's advance in tests).

    Returns:
        Seconds, shape ``(len(fns), rounds, runs)``.

    Raises:
        ConfigError: A non-positive count or an unknown mode.
        JobTimeout: The deadline passed.
    """
    if not fns:
        raise bad_value("models", "at least one model", len(fns))
    for name, v, low in (("rounds", rounds, 1), ("runs", runs, 1), ("warmup", warmup, 0),
                         ("block_warmup", block_warmup, 0)):
        if int(v) != v or v < low:
            raise bad_value(name, f"an integer >= {low}", v)
    for name, v, allowed in (("interleave", interleave, INTERLEAVE_MODES), ("shuffle", shuffle, SHUFFLE_MODES),
                             ("fill", fill, FILL_MODES), ("warmup_by", warmup_by, WARMUP_MODES)):
        if v not in allowed:
            raise bad_value(name, "one of " + ", ".join(allowed), v)
    if not window_s >= 0:
        raise bad_value("window_s", "a non-negative number of seconds", window_s)
    rounds, runs, warmup, block_warmup = int(rounds), int(runs), int(warmup), int(block_warmup)
    n = len(fns)
    out = np.zeros((n, rounds, runs), dtype=np.float64)
    rng = np.random.default_rng(seed)
    pass_fill = filler if fill == "pass" else None
    call_fill = filler if fill == "call" else None
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        if warmup_by == "model":
            for fn in fns:
                _check_deadline(deadline)
                for _ in range(warmup):
                    fn()
        else:
            for _ in range(warmup):
                _check_deadline(deadline)
                for fn in fns:
                    fn()
        per_pass = interleave == "run" and shuffle == "pass"
        t_first = time.monotonic()
        for r in range(rounds):
            if window_s > 0 and r > 0:
                early = t_first + r * window_s / rounds - time.monotonic()
                if early > 0:
                    if deadline is not None:
                        early = min(early, max(0.0, deadline - time.monotonic()))
                    sleep(early)
            order = None if per_pass else rng.permutation(n)
            if interleave == "block":
                for i in order:
                    _check_deadline(deadline)
                    if pass_fill is not None:
                        pass_fill()
                    fn = fns[i]
                    for _ in range(block_warmup):
                        fn()
                    row = out[i, r]
                    for k in range(runs):
                        if call_fill is not None:
                            call_fill()
                        t0 = timer()
                        fn()
                        row[k] = timer() - t0
            else:
                for k in range(runs):
                    _check_deadline(deadline)
                    if pass_fill is not None:
                        pass_fill()
                    if per_pass:
                        order = rng.permutation(n)
                    for i in order:
                        if call_fill is not None:
                            call_fill()
                        t0 = timer()
                        fns[i]()
                        out[i, r, k] = timer() - t0
            if progress is not None:
                progress(r + 1, rounds)
    finally:
        if gc_was_on:
            gc.enable()
    return out * 1e-9


def _check_estimator(estimator: str) -> str:
    if estimator not in ESTIMATORS:
        raise bad_value("estimator", "one of " + ", ".join(ESTIMATORS), estimator)
    return estimator


def _resolve_estimator(estimator: str | None) -> str:
    """The estimator given, or the process default (:func:`default_estimator`), checked."""
    return _check_estimator(estimator or default_estimator())


#: Environment variable naming the process's estimator (``min`` or ``median``).
ESTIMATOR_ENV = "COMPACTNET_ESTIMATOR"
_estimator_override: str | None = None


def default_estimator() -> str:
    """The estimator measurements use when none is given: :func:`set_default_estimator`'s, else
    ``$COMPACTNET_ESTIMATOR``, else ``min`` (the rule).

    Raises:
        ConfigError: ``$COMPACTNET_ESTIMATOR`` names no estimator.
    """
    if _estimator_override is not None:
        return _estimator_override
    env = os.environ.get(ESTIMATOR_ENV)
    if env:
        if env not in ESTIMATORS:
            raise bad_value(f"${ESTIMATOR_ENV}", "one of " + ", ".join(ESTIMATORS), env)
        return env
    return DEFAULT_ESTIMATOR


def set_default_estimator(estimator: str | None) -> None:
    """Set the process's estimator (the CLI's ``--estimator``); None goes back to the environment/rule."""
    global _estimator_override
    _estimator_override = None if estimator is None else _check_estimator(estimator)


def round_figures(times: np.ndarray, estimator: str | None = None) -> np.ndarray:
    """Each round's figure: its minimum (``min``) or median (``median``): ``(rounds, runs) -> (rounds,)``.

    1-D input is taken as round figures already. ``estimator`` None: :func:`default_estimator`.
    """
    estimator = _resolve_estimator(estimator)
    t = np.asarray(times, dtype=np.float64)
    if t.ndim == 1:
        return t
    if t.ndim != 2:
        raise bad_value("times", "an array of shape (rounds, runs) or (rounds,)", t.shape)
    return t.min(axis=1) if estimator == "min" else np.median(t, axis=1)


def _reduce(figures: np.ndarray, estimator: str, axis: int = -1) -> np.ndarray:
    """The estimator over round figures: the minimum of round minima, or the median of round medians."""
    return figures.min(axis=axis) if estimator == "min" else np.median(figures, axis=axis)


def round_medians(times: np.ndarray) -> np.ndarray:
    """Median of each round: ``(rounds, runs) -> (rounds,)``; 1-D input is taken as round medians."""
    return round_figures(times, "median")


def _as_instances(times: np.ndarray, name: str) -> np.ndarray:
    """Timings as ``(instances, rounds, runs)``: a ``(rounds, runs)`` array is one instance."""
    t = np.asarray(times, dtype=np.float64)
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3 or t.size == 0:
        raise bad_value(name, "a non-empty array of shape (rounds, runs) or (instances, rounds, runs)", t.shape)
    return t


def summarise(times_model: np.ndarray, estimator: str | None = None) -> Latency:
    """The protocol's latency of one model from its timings.

    Args:
        times_model: Seconds, shape ``(rounds, runs)``, or ``(instances, rounds, runs)`` when the
            model was loaded several times (separate sessions: a session's memory placement moves
            its latency by a few percent, so the protocol times several and takes their median).
        estimator: ``min`` (default): per instance, the minimum over its timed calls; ``median``:
            per instance, the median of its round medians (the rule before the minimum). Either way
            the model's figure is the median over its instances. None: :func:`default_estimator`.

    Returns:
        :class:`~compactnet.spec.Latency` with ``value_ms`` = the estimator's figure, ``rounds`` =
        the per-round figures (round minima or medians, median over instances, ms),
        ``low_ms``/``high_ms`` = their 25th/75th percentiles, ``runs`` = timed calls in all, and
        ``p50_ms``/``p90_ms`` = the median and 90th percentile of all timed calls (typical under
        load; never used to compare).
    """
    t = _as_instances(times_model, "times_model")
    estimator = _resolve_estimator(estimator)
    per_round = _per_round(t, estimator) * 1e3  # (instances, rounds)
    value = float(np.median(_reduce(per_round, estimator, axis=1)))
    fig = np.median(per_round, axis=0)
    low, high = np.percentile(fig, [25, 75])
    p50, p90 = np.percentile(t, [50, 90]) * 1e3
    return Latency(value, float(low), float(high), int(t.size), tuple(fig.tolist()),
                   estimator=estimator, p50_ms=float(p50), p90_ms=float(p90))


def _boot_figures(per_round: np.ndarray, rounds_idx: np.ndarray, inst_idx: np.ndarray, estimator: str) -> np.ndarray:
    """Bootstrap figures of one model: per-round figures ``(instances, rounds)`` resampled by round
    (``(n_boot, rounds)`` indices) and by instance (``(n_boot, instances)``), reduced by the estimator
    per instance and by the median over instances."""
    per_inst = _reduce(per_round[:, rounds_idx], estimator, axis=2)  # (instances, n_boot)
    picked = np.take_along_axis(per_inst.T, inst_idx, axis=1)  # (n_boot, instances)
    return np.median(picked, axis=1)


def bootstrap_ratio(a_rounds: np.ndarray, b_rounds: np.ndarray, n_boot: int = 2000, seed: int = 0,
                    level: float = 0.95, paired: bool | None = None,
                    estimator: str | None = None) -> tuple[float, float, float]:
    """Ratio ``est(a) / est(b)`` of two models' figures with a percentile-bootstrap interval.

    With ``a`` the baseline and ``b`` a faster model this is ``b``'s speedup over ``a``. Rounds are
    resampled (jointly for both models when paired: rounds taken at the same time share the
    machine state) and, with several instances per model, instances too (each model's own: the
    session-to-session differences are part of the uncertainty). Under ``min`` a resample's figure
    is the minimum of its resampled round minima, under ``median`` the median of its round medians,
    then the median over instances. The coverage of these intervals on repeated comparisons is
    measured by ``benchmarks/repeatability_bench.py``.

    Args:
        a_rounds: The numerator model's round figures ``(rounds,)``, its timings ``(rounds, runs)``,
            or its instances' timings ``(instances, rounds, runs)``.
        b_rounds: Same for the denominator model.
        n_boot: Bootstrap resamples.
        seed: Seed of the resampling.
        level: Coverage of the interval.
        paired: Resample the same round indices for both. Default: paired when both have the same
            number of rounds.
        estimator: ``min`` or ``median`` (None: :func:`default_estimator`).

    Returns:
        ``(ratio, low, high)``.
    """
    estimator = _resolve_estimator(estimator)
    fa, fb = (np.atleast_2d(_per_round(x, estimator)) for x in (a_rounds, b_rounds))
    if fa.size == 0 or fb.size == 0:
        raise bad_value("rounds", "at least one round per model", (fa.size, fb.size))
    if not 0 < level < 1:
        raise bad_value("level", "a coverage between 0 and 1, e.g. 0.95", level)
    ra, rb = fa.shape[1], fb.shape[1]
    if paired is None:
        paired = ra == rb
    if paired and ra != rb:
        raise bad_value("paired", "False when the models have different numbers of rounds", paired)
    ratio = float(np.median(_reduce(fa, estimator, axis=1)) / np.median(_reduce(fb, estimator, axis=1)))
    rng = np.random.default_rng(seed)
    n_boot = int(n_boot)
    ia = rng.integers(0, ra, (n_boot, ra))
    ib = ia if paired else rng.integers(0, rb, (n_boot, rb))
    ka = rng.integers(0, fa.shape[0], (n_boot, fa.shape[0]))
    kb = rng.integers(0, fb.shape[0], (n_boot, fb.shape[0]))
    boots = _boot_figures(fa, ia, ka, estimator) / _boot_figures(fb, ib, kb, estimator)
    alpha = (1 - level) / 2
    low, high = np.quantile(boots, [alpha, 1 - alpha])
    return ratio, float(low), float(high)


def _per_round(x: np.ndarray, estimator: str) -> np.ndarray:
    """Round figures ``(instances, rounds)`` of 1-D round figures, 2-D timings or 3-D instance timings."""
    t = np.asarray(x, dtype=np.float64)
    if t.ndim == 1:
        return t[None]
    if t.ndim == 2:
        return round_figures(t, estimator)[None]
    if t.ndim == 3:
        return np.stack([round_figures(ti, estimator) for ti in t])
    raise bad_value("rounds", "round figures, (rounds, runs) or (instances, rounds, runs) timings", t.shape)


# ----- machine load -----------------------------------------------------------------------------------
def _proc_stat_busy() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat, or None where there is none."""
    try:
        with open("/proc/stat") as fh:
            parts = fh.readline().split()
    except OSError:
        return None
    if not parts or parts[0] != "cpu":
        return None
    v = [int(x) for x in parts[1:]]
    v += [0] * (8 - len(v))
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def _proc_cpu_ticks(pid: int) -> int:
    """CPU jiffies used by a process (all threads) and its waited-for children."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return 0
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime, stime, cutime, cstime are fields 14-17.
    return sum(int(x) for x in fields[11:15])


#: Shortest window the load is judged over (seconds); see :meth:`LoadMonitor.stop`.
MIN_LOAD_WINDOW_S = 0.25


class LoadMonitor:
    """CPU cores kept busy by *other* processes over a window.

    On Linux it reads the whole machine's busy time from ``/proc/stat`` and subtracts the CPU time
    our own process (all threads, plus children it waited for) used in the same window, normalised
    by the window's length: 1.0 means one core fully used by someone else. Elsewhere it falls back to
    the 1-minute load average minus our own process's CPU use over the window.

    Use as a context manager or with :meth:`start` / :meth:`stop`; :attr:`load` holds the result.
    """

    def __init__(self, own_pid: int | None = None, min_window_s: float = MIN_LOAD_WINDOW_S):
        self.own_pid = own_pid or os.getpid()
        self.min_window_s = float(min_window_s)
        self.load = math.nan
        self._t0: tuple | None = None

    def _own(self) -> float:
        """Our CPU seconds."""
        if self.own_pid == os.getpid() and not os.path.exists("/proc/self/stat"):
            return time.process_time()
        return _proc_cpu_ticks(self.own_pid) / _CLK_TCK

    def start(self) -> "LoadMonitor":
        self._t0 = (_proc_stat_busy(), self._own(), time.monotonic())
        return self

    def stop(self) -> float:
        """End the window and return the load beyond our process (cores, >= 0).

        A window shorter than ``min_window_s`` (:data:`MIN_LOAD_WINDOW_S`) is extended by sleeping (our process idle, so
        only the others' use is added): CPU time is counted in clock ticks (10 ms), and over a few
        ticks one tick of our own process counted on the wrong side reads as 0.3-0.7 cores of others.
        """
        if self._t0 is None:
            raise MeasurementError("LoadMonitor.stop() called before start()")
        stat0, own0, wall0 = self._t0
        short = self.min_window_s - (time.monotonic() - wall0)
        if short > 0:
            time.sleep(short)
        stat1, own1, wall1 = _proc_stat_busy(), self._own(), time.monotonic()
        own = max(0.0, own1 - own0)
        if stat0 is not None and stat1 is not None and stat1[1] > stat0[1]:
            ncpu = os.cpu_count() or 1
            busy_s = (stat1[0] - stat0[0]) / _CLK_TCK
            window_s = (stat1[1] - stat0[1]) / _CLK_TCK / ncpu
            self.load = max(0.0, (busy_s - own) / window_s)
        else:
            try:
                avg = os.getloadavg()[0]
            except (OSError, AttributeError):
                self.load = math.nan
                return self.load
            self.load = max(0.0, avg - own / max(wall1 - wall0, 1e-9))
        return self.load

    def __enter__(self) -> "LoadMonitor":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


try:
    _CLK_TCK = os.sysconf("SC_CLK_TCK")
except (AttributeError, ValueError, OSError):
    _CLK_TCK = 100


def machine_load(own_pid: int | None = None, window: float = 0.5) -> float:
    """CPU cores kept busy by processes other than ours, measured over ``window`` seconds.

    Our process sleeps meanwhile, so what is measured is the others' use. See :class:`LoadMonitor`.

    Returns:
        Cores busy beyond our own process (0.0 idle, 1.0 one core fully used), NaN when the platform
        exposes neither ``/proc/stat`` nor a load average.
    """
    mon = LoadMonitor(own_pid).start()
    time.sleep(max(0.0, float(window)))
    return mon.stop()


def loadavg_1min() -> float:
    """The 1-minute load average (NaN where there is none), recorded for reference."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return math.nan


# ----- comparison ------------------------------------------------------------------------------------
#: Seconds over which a comparison spreads its rounds, per runtime: the machine's slow stretches last
#: seconds, so rounds taken within one second can all fall into one of them (DESIGN's facts: 7 x 20
#: calls in about a second moved the minimum 3-6%). Checked with ``benchmarks/repeatability_bench.py
#: --window S --instances K`` (README, "How latency is measured").
WINDOW_S: dict[str, float] = {"ort": 3.0, "openvino": 3.0, "ncnn": 3.0, "torch": 3.0, "synthetic": 0.0}
#: Window of a runtime not in :data:`WINDOW_S`.
DEFAULT_WINDOW_S = 3.0
#: Instances (separate sessions) per model a comparison loads and times side by side, per runtime:
#: the same model in two sessions can differ by several percent for the whole session (memory
#: placement), which no number of calls to one session averages out. Measured as above: on machine C
#: three sessions of one network, timed in one window, spread by 0.6-0.8% (median) and up to 6%.
INSTANCES: dict[str, int] = {"ort": 3, "openvino": 3, "ncnn": 3, "torch": 3, "synthetic": 1}
DEFAULT_INSTANCES = 3


def _runtime(platform: Platform | str) -> str:
    """The runtime of a platform or platform key."""
    return (platform if isinstance(platform, Platform) else Platform.parse(str(platform))).runtime


def default_instances(platform: Platform | str) -> int:
    """The protocol's instances per model for a platform or platform key."""
    return INSTANCES.get(_runtime(platform), DEFAULT_INSTANCES)


#: Relative standard deviation of a speedup between comparisons minutes apart that the bootstrap over
#: one comparison's rounds and sessions does not see (the machine's speed drifts over minutes, and not
#: equally for every network), per runtime and estimator. It is added to every speedup interval in
#: quadrature (:func:`widen`). Measured on machine C (Intel Xeon, session 5) by
#: ``benchmarks/repeatability_bench.py`` (120 networks measured twice; its ``drift`` line re-estimates
#: it on any machine; ``--pairs`` mode checks the coverage). Without it the stated 95% intervals covered
#: 77-85% of 60 repeated comparisons per runtime there. The ``min`` values are the larger of the two
#: runs' estimates (120 networks twice: 1.5 / 0.9 / 1.1%; 4 pairs x 15: 1.4 / 1.3 / 1.45%).
DRIFT_SD: dict[tuple[str, str], float] = {
    ("ort", "min"): 0.015, ("openvino", "min"): 0.013, ("ncnn", "min"): 0.015,
    ("ort", "median"): 0.019, ("openvino", "median"): 0.012, ("ncnn", "median"): 0.022,
    ("synthetic", "min"): 0.0, ("synthetic", "median"): 0.0}
#: Drift of a runtime and estimator not in :data:`DRIFT_SD` (the largest ``min`` figure above).
DEFAULT_DRIFT_SD = 0.015


def default_drift(platform: Platform | str, estimator: str | None = None) -> float:
    """The protocol's between-comparison drift (relative sd) for a platform and estimator."""
    return DRIFT_SD.get((_runtime(platform), estimator or default_estimator()), DEFAULT_DRIFT_SD)


def widen(ratio: float, low: float, high: float, drift_sd: float, level: float = 0.95) -> tuple[float, float, float]:
    """A bootstrap interval widened by a drift term: each side's log half-width and ``z * drift_sd``
    are added in quadrature (``z`` the normal quantile of ``level``); the interval's asymmetry is kept."""
    if not drift_sd > 0 or not ratio > 0:
        return ratio, low, high
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 2)
    zd = z * float(drift_sd)
    lo = ratio * math.exp(-math.hypot(math.log(ratio / low), zd)) if low > 0 else low
    hi = ratio * math.exp(math.hypot(math.log(high / ratio), zd)) if high > 0 else high
    return ratio, float(lo), float(hi)


def default_window(platform: Platform | str) -> float:
    """The protocol's round window (seconds) for a platform or platform key."""
    return WINDOW_S.get(_runtime(platform), DEFAULT_WINDOW_S)


@dataclass(frozen=True)
class Comparison:
    """Models timed together by the protocol on one platform.

    Attributes:
        platform: Where (with hardware and runtime version).
        names: Model names, the first being the baseline.
        latencies: Each model's latency (the estimator's figure, IQR of the round figures, and the
            median and 90th percentile of all calls as "typical under load").
        speedups: ``(ratio, low, high)`` of ``latency(first) / latency(i)`` with its bootstrap
            interval; ``(1, 1, 1)`` for the first model.
        load: CPU cores busy beyond our process (the larger of a short check before and the
            measurement over the timing window).
        busy: ``load`` exceeded ``max_load`` and the policy was ``flag`` (or ``ignore``).
        when: ISO-8601 UTC time at the start of timing.
        rounds: Rounds timed.
        runs: Timed calls per model per round.
        warmup: Untimed calls per model before the first round.
        seed: Seed of the round orders and the bootstrap.
        interleave: ``block`` or ``run``.
        level: Coverage of the speedup intervals.
        max_load: The load ceiling applied.
        loadavg: 1-minute load average at the end, for reference.
        export_ok: Every ONNX model compared was exported as the protocol requires (default-domain
            opset 17, IR version <= 10); False when one was not (see ``export_notes``). Models that
            are not ONNX (specs timed by the synthetic runtime) are not checked.
        export_notes: One line per model that breaks the export rule, naming it and what it has.
        estimator: ``min`` (the rule) or ``median``; comparisons recorded before the minimum rule
            read ``median``.
        window_s: Seconds over which the rounds were spread (0: back to back or unknown).
        instances: Sessions per model timed side by side (1 for records before the field).
        drift_sd: The drift term added to the speedup intervals (0: bootstrap alone).
        times: The raw timings in seconds, ``(models, instances, rounds, runs)``, when asked for
            with ``compare(..., keep_times=True)`` (not serialised).
    """

    platform: Platform
    names: tuple[str, ...]
    latencies: tuple[Latency, ...]
    speedups: tuple[tuple[float, float, float], ...]
    load: float
    busy: bool
    when: str
    rounds: int = MIN_ROUNDS
    runs: int = 40
    warmup: int = 10
    seed: int = 0
    interleave: str = "block"
    level: float = 0.95
    max_load: float = MAX_LOAD
    loadavg: float = math.nan
    export_ok: bool = True
    export_notes: tuple[str, ...] = ()
    estimator: str = DEFAULT_ESTIMATOR
    window_s: float = 0.0
    instances: int = 1
    drift_sd: float = 0.0
    times: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "export_notes", tuple(str(n) for n in self.export_notes))
        object.__setattr__(self, "latencies", tuple(self.latencies))
        object.__setattr__(self, "speedups", tuple(tuple(float(x) for x in s) for s in self.speedups))
        if not (len(self.names) == len(self.latencies) == len(self.speedups)):
            raise bad_value("names/latencies/speedups", "lists of one length", (len(self.names),
                            len(self.latencies), len(self.speedups)))

    @property
    def protocol_ok(self) -> bool:
        """At least 7 rounds and a machine that was not busy."""
        return self.rounds >= MIN_ROUNDS and not self.busy

    def index(self, model: int | str) -> int:
        """Position of a model given by index or name."""
        if isinstance(model, str):
            if model not in self.names:
                raise bad_value("model", "one of " + ", ".join(self.names), model)
            return self.names.index(model)
        if not -len(self.names) <= int(model) < len(self.names):
            raise bad_value("model", f"an index below {len(self.names)}", model)
        return int(model) % len(self.names)

    def latency(self, model: int | str) -> Latency:
        """Latency of a model by index or name."""
        return self.latencies[self.index(model)]

    def speedup(self, model: int | str) -> tuple[float, float, float]:
        """``(ratio, low, high)`` of a model by index or name."""
        return self.speedups[self.index(model)]

    def to_dict(self) -> dict:
        """JSON-ready form (NaN written as null)."""
        nan = lambda v: None if isinstance(v, float) and math.isnan(v) else v  # noqa: E731
        return {"platform": self.platform.to_dict(), "names": list(self.names),
                "latencies": [l.to_dict() for l in self.latencies],
                "speedups": [{"ratio": r, "low": lo, "high": hi} for r, lo, hi in self.speedups],
                "load": nan(self.load), "busy": self.busy, "when": self.when, "rounds": self.rounds,
                "runs": self.runs, "warmup": self.warmup, "seed": self.seed, "interleave": self.interleave,
                "level": self.level, "max_load": self.max_load, "loadavg": nan(self.loadavg),
                "protocol_ok": self.protocol_ok, "export_ok": self.export_ok,
                "export_notes": list(self.export_notes), "estimator": self.estimator, "window_s": self.window_s,
                "instances": self.instances, "drift_sd": self.drift_sd}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Comparison":
        """Inverse of :meth:`to_dict`."""
        un = lambda v: math.nan if v is None else float(v)  # noqa: E731
        return cls(Platform.from_dict(d["platform"]), tuple(d["names"]),
                   tuple(Latency.from_dict(l) for l in d["latencies"]),
                   tuple((s["ratio"], s["low"], s["high"]) for s in d["speedups"]),
                   un(d.get("load")), bool(d["busy"]), d["when"], int(d.get("rounds", MIN_ROUNDS)),
                   int(d.get("runs", 40)), int(d.get("warmup", 10)), int(d.get("seed", 0)),
                   d.get("interleave", "block"), float(d.get("level", 0.95)),
                   float(d.get("max_load", MAX_LOAD)), un(d.get("loadavg")), bool(d.get("export_ok", True)),
                   tuple(d.get("export_notes", ())), d.get("estimator", LEGACY_ESTIMATOR),
                   float(d.get("window_s") or 0.0), int(d.get("instances", 1)), float(d.get("drift_sd") or 0.0))

    def table(self) -> str:
        """A plain-text table: latency, spread and speedup with its interval per model."""
        width = max(8, *(len(n) for n in self.names))
        state = f"load {self.load:.2f}" + (" BUSY (flagged)" if self.busy else "")
        head = (f"{self.platform.describe()} · {self.instances} instance(s) × {self.rounds} rounds × {self.runs} "
                f"runs over {self.window_s:g} s"
                f" · estimator {self.estimator} · {state}"
                + ("" if self.rounds >= MIN_ROUNDS else f" · fewer than {MIN_ROUNDS} rounds")
                + ("" if self.export_ok else " · NOT EXPORTED BY THE PROTOCOL: " + "; ".join(self.export_notes)))
        pct = int(round(self.level * 100))
        col = f"{self.estimator} ms"
        lines = [head, f"{'model':<{width}}  {col:>10}  {'IQR of rounds':>17}  {'typical p50/p90 ms':>18}  "
                       f"speedup [{pct}% CI]"]
        for name, lat, (r, lo, hi) in zip(self.names, self.latencies, self.speedups):
            iqr = f"{lat.low_ms:.4f}-{lat.high_ms:.4f}"
            typ = f"{lat.p50_ms:.4f}/{lat.p90_ms:.4f}" if lat.p50_ms == lat.p50_ms else "n/a"
            sp = "1.00x (baseline)" if name == self.names[0] and r == 1.0 else f"{r:.2f}x [{lo:.2f}, {hi:.2f}]"
            lines.append(f"{name:<{width}}  {lat.value_ms:>10.4f}  {iqr:>17}  {typ:>18}  {sp}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _default_names(models: Sequence[Any]) -> list[str]:
    names = []
    for i, m in enumerate(models):
        if isinstance(m, (str, os.PathLike)):
            name = Path(m).stem
        else:
            name = getattr(m, "name", None) if not isinstance(m, (bytes, bytearray)) else None
            name = name if isinstance(name, str) and name else f"model{i}"
        names.append(name if name not in names else f"{name}#{i}")
    return names


def compare(models: Sequence[Any], platform: Any, names: Sequence[str] | None = None, rounds: int = 10,
            runs: int = 20, warmup: int = 10, busy: str = "refuse", max_load: float = MAX_LOAD, seed: int = 0,
            *, interleave: str = "block", level: float = 0.95, n_boot: int = 2000, check_window: float = 0.5,
            progress: Callable[[int, int], None] | None = None, estimator: str | None = None,
            window_s: float | None = None, instances: int | None = None, drift_sd: float | None = None,
            keep_times: bool = False) -> Comparison:
    """Time models together by the protocol and report latencies and speedups vs the first.

    Args:
        models: ONNX models (path, bytes or ``onnx.ModelProto``; for the synthetic runtime also
            ``LayerSpec``/``NetworkSpec``). The first is the baseline.
        platform: Platform key, :class:`~compactnet.spec.Platform`, or a ready
            :class:`~compactnet.runtimes.Runner`.
        names: Display names (default: file stems, or ``model0``, ``model1``, ...).
        rounds: Rounds (the protocol needs ≥ 7; fewer is allowed for tests, logged and recorded).
        runs: Timed calls per model per round.
        warmup: Untimed calls per model before timing.
        busy: What to do when other processes keep more than ``max_load`` cores busy:
            ``refuse`` (raise), ``flag`` (keep, mark ``busy=True``, log a warning) or ``ignore``
            (keep, mark ``busy=True``, no warning).
        max_load: Cores busy beyond our process that are tolerated.
        seed: Seed of the round orders and the bootstrap.
        interleave: ``block`` (default) or ``run``; see :func:`time_interleaved`.
        level: Coverage of the speedup intervals.
        n_boot: Bootstrap resamples.
        check_window: Seconds of the load check before loading and timing (0 skips it).
        progress: Called with (rounds done, rounds).
        estimator: ``min`` (the rule: per session the minimum over its timed calls) or ``median``
            (median of round medians: the old rule, for a dedicated device whose figures should
            include its steady-state jitter); None: :func:`default_estimator`.
        window_s: Seconds over which the rounds are spread (default: :func:`default_window` of the
            platform's runtime).
        instances: Sessions per model, timed side by side; a model's figure is the median over
            them (default: :func:`default_instances` of the platform's runtime).
        drift_sd: Between-comparison drift added to every speedup interval (:func:`widen`; default
            :func:`default_drift` of the platform and estimator; 0 gives the bootstrap's alone).
        keep_times: Keep the raw timings in :attr:`Comparison.times` (e.g. to reduce them by
            both estimators).

    Returns:
        The :class:`Comparison`.

    Raises:
        MeasurementError: The machine is busy and ``busy="refuse"``.
        ConfigError: Bad arguments or platform.
        ModelFileError: A model cannot be read.
    """
    from compactnet.runtimes import Runner, get_runner

    if busy not in BUSY_POLICIES:
        raise bad_value("busy", "one of " + ", ".join(BUSY_POLICIES), busy)
    if not max_load >= 0:
        raise bad_value("max_load", "a non-negative number of cores", max_load)
    models = list(models)
    if not models:
        raise bad_value("models", "at least one model", 0)
    names = list(names) if names is not None else _default_names(models)
    if len(names) != len(models) or len(set(names)) != len(names):
        raise bad_value("names", f"{len(models)} distinct names, one per model", names)
    estimator = _resolve_estimator(estimator)
    runner = platform if isinstance(platform, Runner) else get_runner(platform)
    window_s = default_window(runner.platform) if window_s is None else float(window_s)
    instances = default_instances(runner.platform) if instances is None else instances
    if isinstance(instances, bool) or int(instances) != instances or instances < 1:
        raise bad_value("instances", "a positive number of sessions per model", instances)
    instances = int(instances)
    policy = busy if runner.apply_load_policy else "ignore"
    export_notes = [n for n in (_export_note(m, name) for m, name in zip(models, names)) if n]
    if export_notes:
        log.warning("models not exported as the protocol requires (opset %d, IR <= %d); their comparison is "
                    "recorded with export_ok=False: %s", PROTOCOL_OPSET, PROTOCOL_MAX_IR, "; ".join(export_notes))
    if rounds < MIN_ROUNDS:
        log.warning("%d rounds is fewer than the protocol's %d: the figures are not protocol measurements",
                    rounds, MIN_ROUNDS)

    def check(load: float, when: str) -> None:
        if policy == "refuse" and load > max_load:
            raise BusyError(
                f"the machine is busy: other processes kept {load:.2f} CPU cores busy {when} "
                f"(limit {max_load:g}); stop the other CPU-heavy jobs (training, benchmarks) and measure "
                f"again, or pass busy='flag' to keep a flagged measurement")

    fns = [runner.load(m) for m in models for _ in range(instances)]  # model-major, a new session each

    def attempt() -> tuple[np.ndarray, float, str]:
        pre = machine_load(window=check_window) if check_window > 0 and runner.apply_load_policy else math.nan
        if not math.isnan(pre):
            check(pre, "before the measurement")
        when = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with LoadMonitor(min_window_s=MIN_LOAD_WINDOW_S if runner.apply_load_policy else 0.0) as mon:
            times = time_interleaved(fns, rounds, runs, warmup, seed, runner.timer, interleave=interleave,
                                     progress=progress, window_s=window_s)
        during = mon.load
        check(during if not math.isnan(during) else 0.0, "during the measurement")
        return times, max(x for x in (pre, during, 0.0) if not math.isnan(x)), when

    times, load, when = retry_when_busy(attempt, f"the comparison on {runner.platform.key}")
    is_busy = load > max_load and runner.apply_load_policy
    if is_busy and policy == "flag":
        log.warning("measurement on %s flagged: other processes kept %.2f CPU cores busy (limit %g); "
                    "do not publish these figures", runner.platform.key, load, max_load)
    times = times.reshape(len(models), instances, *times.shape[1:])
    drift = default_drift(runner.platform, estimator) if drift_sd is None else float(drift_sd)
    latencies, speedups = figures(times, estimator, drift, n_boot=n_boot, seed=seed, level=level)
    return Comparison(runner.platform, tuple(names), tuple(latencies), tuple(speedups), float(load),
                      bool(is_busy), when, int(rounds), int(runs), int(warmup), int(seed), interleave,
                      float(level), float(max_load), loadavg_1min(), not export_notes, tuple(export_notes),
                      estimator, window_s, instances, drift, times if keep_times else None)


def figures(times: np.ndarray, estimator: str, drift_sd: float, n_boot: int = 2000, seed: int = 0,
            level: float = 0.95) -> tuple[tuple[Latency, ...], tuple[tuple[float, float, float], ...]]:
    """Every model's latency and its speedup over the first, from the raw timings of a comparison.

    Args:
        times: Seconds, ``(models, instances, rounds, runs)``.
        estimator: ``min`` or ``median`` (:func:`summarise`).
        drift_sd: Between-comparison drift added to the intervals (:func:`widen`).
        n_boot, seed, level: Of the bootstrap (:func:`bootstrap_ratio`).

    Returns:
        ``(latencies, speedups)``; the first model's speedup is ``(1, 1, 1)``.
    """
    latencies = tuple(summarise(t, estimator) for t in times)
    speedups = [widen(*bootstrap_ratio(times[0], t, n_boot=n_boot, seed=seed, level=level, estimator=estimator),
                      drift_sd, level) for t in times]
    speedups[0] = (1.0, 1.0, 1.0)
    return latencies, tuple(speedups)


#: How often a measurement refused because the machine was busy is taken again, and the pauses (s)
#: before each new attempt: short bursts of other work (a page-cache flush, a cron job, the host
#: stealing time from a virtual machine) should not abort an hour of profiling or a search.
BUSY_RETRIES = 3
BUSY_PAUSES_S = (2.0, 5.0, 15.0)


def retry_when_busy(fn: Callable[[], Any], what: str, retries: int | None = None,
                    pauses: Sequence[float] | None = None) -> Any:
    """Call ``fn``; when it raises :class:`BusyError`, pause and call it again, at most ``retries`` times.

    Nothing measured while the machine was busy is kept: each attempt times everything anew. After
    the last attempt the :class:`BusyError` propagates with the number of attempts in its message.
    """
    retries = BUSY_RETRIES if retries is None else retries
    pauses = tuple(BUSY_PAUSES_S if pauses is None else pauses) or (0.0,)
    for i in range(retries + 1):
        try:
            return fn()
        except BusyError as exc:
            if i == retries:
                raise BusyError(f"{exc} (after {retries + 1} attempts over pauses of "
                                f"{', '.join(f'{p:g}' for p in pauses[:retries])} s)") from exc
            pause = pauses[min(i, len(pauses) - 1)]
            log.warning("%s: %s; timing again in %g s (attempt %d of %d)", what, str(exc).split(";")[0], pause,
                        i + 2, retries + 1)
            time.sleep(pause)
    raise AssertionError("unreachable")


def onnx_versions(model: Any) -> tuple[int, int] | None:
    """``(default-domain opset, IR version)`` of an ONNX model given as a path, bytes or ``ModelProto``.

    Returns:
        None for anything that is not a readable ONNX model (the runtime reports unreadable files).
    """
    import onnx
    from google.protobuf.message import DecodeError

    try:
        if isinstance(model, onnx.ModelProto):
            proto = model
        elif isinstance(model, (bytes, bytearray, memoryview)):
            proto = onnx.load_from_string(bytes(model))
        elif isinstance(model, (str, os.PathLike)):
            proto = onnx.load(os.fspath(model), load_external_data=False)
        else:
            return None
    except (DecodeError, ValueError, OSError):
        return None
    opset = next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    return opset, int(proto.ir_version)


def _export_note(model: Any, name: str) -> str | None:
    """A line saying how ``model`` breaks DESIGN's export rule, or None when it follows it (or is not ONNX)."""
    versions = onnx_versions(model)
    if versions is None:
        return None
    opset, ir = versions
    if opset == PROTOCOL_OPSET and ir <= PROTOCOL_MAX_IR:
        return None
    return f"{name}: opset {opset}, IR {ir}"


def measure(model: Any, platform: Any, **kw: Any) -> Latency:
    """One model's latency by the protocol (see :func:`compare` for the keyword arguments)."""
    return compare([model], platform, **kw).latencies[0]


def reached(comparison: Comparison, index: int | str, target: float) -> bool:
    """Whether model ``index`` reaches a target speedup over the first model.

    A target is reached when the lower bound of the speedup's bootstrap interval is at least the
    target and the comparison is a protocol measurement (:attr:`Comparison.protocol_ok`: at least
    7 rounds on a machine that was not busy). A comparison with fewer rounds or flagged as taken on a
    busy machine reaches nothing.

    Raises:
        ConfigError: A non-positive target or an unknown model.
    """
    if not target > 0:
        raise bad_value("target", "a positive speedup, e.g. 1.5", target)
    _, low, _ = comparison.speedup(index)
    return comparison.protocol_ok and low >= target


__all__ = ["time_interleaved", "JobTimeout", "round_medians", "round_figures", "default_window", "ESTIMATORS",
           "DEFAULT_ESTIMATOR", "default_estimator", "set_default_estimator", "DRIFT_SD", "default_drift", "widen",
           "WINDOW_S", "INSTANCES", "default_instances", "summarise", "bootstrap_ratio", "figures", "machine_load", "loadavg_1min",
           "LoadMonitor", "Comparison", "compare", "measure", "reached", "onnx_versions", "MIN_ROUNDS", "MAX_LOAD",
           "PROTOCOL_OPSET", "PROTOCOL_MAX_IR"]
