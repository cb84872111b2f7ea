"""The measurement protocol (DESIGN's rule "what measured latency and speedup mean"), implemented once.

Every benchmark, search report and zoo card measures through :func:`compare` (or :func:`measure`
for one model):

* batch 1, the model's own input shape, the platform's precision and threads (see
  :mod:`compactnet.runtimes`; one intra-op thread in the ``-t1`` keys);
* every ONNX model compared is exported the same way (default-domain opset 17, IR version ≤ 10,
  as :func:`compactnet.export.export_onnx` writes); a model that is not is logged as a warning and
  the comparison records it (``export_ok=False`` with ``export_notes``);
* the models are loaded (compiled) once, warmed up, then timed **interleaved** in the same process
  in ``rounds`` (≥ 7) rounds. Each round visits the models in a freshly shuffled (seeded) order and
  times ``runs`` back-to-back calls of each model (``interleave="block"``, the default);
* a model's latency is the **median of its round medians**; its spread is the 25th-75th percentile
  range of the round medians (the middle half of rounds, i.e. how much the figure moves with the
  machine's state);
* a speedup of model *i* is ``latency(first) / latency(i)``, with a 95 % **bootstrap interval over
  rounds** (rounds resampled jointly for both models, since a round is one machine state);
  a target speedup **is reached** when the interval's lower bound reaches it (:func:`reached`);
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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from compactnet.errors import BusyError, MeasurementError, bad_value
from compactnet.spec import Latency, Platform

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
                     deadline: float | None = None) -> np.ndarray:
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
        for r in range(rounds):
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


def round_medians(times: np.ndarray) -> np.ndarray:
    """Median of each round: ``(rounds, runs) -> (rounds,)``; 1-D input is taken as round medians."""
    t = np.asarray(times, dtype=np.float64)
    if t.ndim == 1:
        return t
    if t.ndim != 2:
        raise bad_value("times", "an array of shape (rounds, runs) or (rounds,)", t.shape)
    return np.median(t, axis=1)


def summarise(times_model: np.ndarray) -> Latency:
    """The protocol's latency of one model from its timings.

    Args:
        times_model: Seconds, shape ``(rounds, runs)``.

    Returns:
        :class:`~compactnet.spec.Latency` with ``median_ms`` = median of the round medians,
        ``low_ms``/``high_ms`` = 25th/75th percentiles of the round medians (linear
        interpolation), ``runs`` = timed calls in all, ``rounds`` = the round medians (ms).
    """
    t = np.asarray(times_model, dtype=np.float64)
    if t.ndim != 2 or t.size == 0:
        raise bad_value("times_model", "a non-empty array of shape (rounds, runs)", t.shape)
    med = round_medians(t) * 1e3
    low, high = np.percentile(med, [25, 75])
    return Latency(float(np.median(med)), float(low), float(high), int(t.size), tuple(med.tolist()))


def bootstrap_ratio(a_rounds: np.ndarray, b_rounds: np.ndarray, n_boot: int = 2000, seed: int = 0,
                    level: float = 0.95, paired: bool | None = None) -> tuple[float, float, float]:
    """Ratio ``median(a) / median(b)`` of round medians with a percentile-bootstrap interval.

    With ``a`` the baseline and ``b`` a faster model this is ``b``'s speedup over ``a``.

    Args:
        a_rounds: Round medians of the numerator model (``(rounds,)``), or its ``(rounds, runs)``
            timings (reduced to round medians).
        b_rounds: Same for the denominator model.
        n_boot: Bootstrap resamples.
        seed: Seed of the resampling.
        level: Coverage of the interval.
        paired: Resample the same round indices for both (rounds taken at the same time share the
            machine state). Default: paired when both have the same number of rounds.

    Returns:
        ``(ratio, low, high)``.
    """
    a, b = round_medians(a_rounds), round_medians(b_rounds)
    if a.size == 0 or b.size == 0:
        raise bad_value("rounds", "at least one round per model", (a.size, b.size))
    if not 0 < level < 1:
        raise bad_value("level", "a coverage between 0 and 1, e.g. 0.95", level)
    if paired is None:
        paired = a.size == b.size
    if paired and a.size != b.size:
        raise bad_value("paired", "False when the models have different numbers of rounds", paired)
    ratio = float(np.median(a) / np.median(b))
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, a.size, (int(n_boot), a.size))
    ib = ia if paired else rng.integers(0, b.size, (int(n_boot), b.size))
    boots = np.median(a[ia], axis=1) / np.median(b[ib], axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(boots, [alpha, 1 - alpha])
    return ratio, float(low), float(high)


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


class LoadMonitor:
    """CPU cores kept busy by *other* processes over a window.

    On Linux it reads the whole machine's busy time from ``/proc/stat`` and subtracts the CPU time
    our own process (all threads, plus children it waited for) used in the same window, normalised
    by the window's length: 1.0 means one core fully used by someone else. Elsewhere it falls back to
    the 1-minute load average minus our own process's CPU use over the window.

    Use as a context manager or with :meth:`start` / :meth:`stop`; :attr:`load` holds the result.
    """

    def __init__(self, own_pid: int | None = None):
        self.own_pid = own_pid or os.getpid()
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
        """End the window and return the load beyond our process (cores, >= 0)."""
        if self._t0 is None:
            raise MeasurementError("LoadMonitor.stop() called before start()")
        stat0, own0, wall0 = self._t0
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
@dataclass(frozen=True)
class Comparison:
    """Models timed together by the protocol on one platform.

    Attributes:
        platform: Where (with hardware and runtime version).
        names: Model names, the first being the baseline.
        latencies: Each model's latency (median of round medians, IQR of round medians).
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
                "export_notes": list(self.export_notes)}

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
                   tuple(d.get("export_notes", ())))

    def table(self) -> str:
        """A plain-text table: latency, spread and speedup with its interval per model."""
        width = max(8, *(len(n) for n in self.names))
        state = f"load {self.load:.2f}" + (" BUSY (flagged)" if self.busy else "")
        head = (f"{self.platform.describe()} · {self.rounds} rounds × {self.runs} runs · {state}"
                + ("" if self.rounds >= MIN_ROUNDS else f" · fewer than {MIN_ROUNDS} rounds")
                + ("" if self.export_ok else " · NOT EXPORTED BY THE PROTOCOL: " + "; ".join(self.export_notes)))
        pct = int(round(self.level * 100))
        lines = [head, f"{'model':<{width}}  {'median ms':>10}  {'IQR of rounds':>17}  speedup [{pct}% CI]"]
        for name, lat, (r, lo, hi) in zip(self.names, self.latencies, self.speedups):
            iqr = f"{lat.low_ms:.4f}-{lat.high_ms:.4f}"
            sp = "1.00x (baseline)" if name == self.names[0] and r == 1.0 else f"{r:.2f}x [{lo:.2f}, {hi:.2f}]"
            lines.append(f"{name:<{width}}  {lat.median_ms:>10.4f}  {iqr:>17}  {sp}")
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


def compare(models: Sequence[Any], platform: Any, names: Sequence[str] | None = None, rounds: int = 7,
            runs: int = 40, warmup: int = 10, busy: str = "refuse", max_load: float = MAX_LOAD, seed: int = 0,
            *, interleave: str = "block", level: float = 0.95, n_boot: int = 2000, check_window: float = 0.5,
            progress: Callable[[int, int], None] | None = None) -> Comparison:
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
    runner = platform if isinstance(platform, Runner) else get_runner(platform)
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

    fns = [runner.load(m) for m in models]

    def attempt() -> tuple[np.ndarray, float, str]:
        pre = machine_load(window=check_window) if check_window > 0 and runner.apply_load_policy else math.nan
        if not math.isnan(pre):
            check(pre, "before the measurement")
        when = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with LoadMonitor() as mon:
            times = time_interleaved(fns, rounds, runs, warmup, seed, runner.timer, interleave=interleave,
                                     progress=progress)
        during = mon.load
        check(during if not math.isnan(during) else 0.0, "during the measurement")
        return times, max(x for x in (pre, during, 0.0) if not math.isnan(x)), when

    times, load, when = retry_when_busy(attempt, f"the comparison on {runner.platform.key}")
    is_busy = load > max_load and runner.apply_load_policy
    if is_busy and policy == "flag":
        log.warning("measurement on %s flagged: other processes kept %.2f CPU cores busy (limit %g); "
                    "do not publish these figures", runner.platform.key, load, max_load)
    latencies = [summarise(t) for t in times]
    base = np.median(times[0], axis=1)
    speedups = [bootstrap_ratio(base, np.median(t, axis=1), n_boot=n_boot, seed=seed, level=level)
                for t in times]
    speedups[0] = (1.0, 1.0, 1.0)
    return Comparison(runner.platform, tuple(names), tuple(latencies), tuple(speedups), float(load),
                      bool(is_busy), when, int(rounds), int(runs), int(warmup), int(seed), interleave,
                      float(level), float(max_load), loadavg_1min(), not export_notes, tuple(export_notes))


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


__all__ = ["time_interleaved", "JobTimeout", "round_medians", "summarise", "bootstrap_ratio", "machine_load", "loadavg_1min",
           "LoadMonitor", "Comparison", "compare", "measure", "reached", "onnx_versions", "MIN_ROUNDS", "MAX_LOAD",
           "PROTOCOL_OPSET", "PROTOCOL_MAX_IR"]
