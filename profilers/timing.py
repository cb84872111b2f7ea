"""Timing loops that put a layer in the cache state a network gives it.

A layer timed alone, call after call, keeps its weights in cache and reads about 40% fast in sum
(DESIGN's facts). Three measuring *contexts*:

``rotation`` (default)
    Every timed call of a layer is preceded by calls to the other layers of the batch (in a
    seeded order that changes every cycle) and, once per cycle, by an untimed pass over a buffer
    (``rotation_bytes``, default about the Table-1 MobileNetV2's weights) so that a small batch
    evicts as much as the network would between two calls of one of its layers.
``flush``
    Like ``rotation`` but the buffer pass runs before *every* timed call (slowest; coldest).
``isolated``
    Each layer's runs back to back (the paper's "minimum of 10 runs" setting; warm cache).

All loops return an array of seconds shaped ``(n_fns, rounds, runs)``, the layout of
:func:`compactnet.measure.time_interleaved`.
"""

from __future__ import annotations

import gc
import time
from typing import Callable, Sequence

import numpy as np

from compactnet.errors import MeasurementError, bad_value

CONTEXTS = ("rotation", "isolated", "flush")
#: Bytes the network touches between two calls of one of its layers (Table-1 MobileNetV2 weights, fp32).
DEFAULT_ROTATION_BYTES = 8 << 20


class JobTimeout(MeasurementError):
    """A timing job ran past its deadline."""


def cache_filler(nbytes: int) -> Callable[[], None] | None:
    """A callable that writes ``nbytes`` of memory (evicting what was cached), or None for 0 bytes."""
    n = int(nbytes) // 8
    if n <= 0:
        return None
    buf = np.zeros(n, np.float64)

    def fill() -> None:
        np.add(buf, 1.0, out=buf)

    return fill


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise JobTimeout("the timing job ran past its time limit (job_timeout_s)")


def time_layers(fns: Sequence[Callable[[], None]], context: str = "rotation", rounds: int = 7, runs: int = 40,
                warmup: int = 10, seed: int = 0, filler: Callable[[], None] | None = None,
                timer: Callable[[], int] = time.perf_counter_ns, deadline: float | None = None) -> np.ndarray:
    """Time each callable ``runs`` times in each of ``rounds`` rounds in the given context.

    Args:
        fns: One inference each (e.g. :meth:`compactnet.runtimes.Runner.load` results).
        context: ``rotation``, ``flush`` or ``isolated`` (module docstring).
        rounds: Rounds (DESIGN: at least 7).
        runs: Timed calls per function per round.
        warmup: Untimed calls per function before the first round.
        seed: Seed of the call order.
        filler: Untimed cache-evicting step (:func:`cache_filler`); once per cycle in ``rotation``,
            before every call in ``flush``, unused in ``isolated``.
        timer: Nanosecond clock.
        deadline: ``time.monotonic()`` value after which :class:`JobTimeout` is raised.

    Returns:
        Seconds, shaped ``(len(fns), rounds, runs)``.

    Raises:
        ConfigError: Unknown context or non-positive counts.
        JobTimeout: The deadline passed.
    """
    if context not in CONTEXTS:
        raise bad_value("context", "one of " + ", ".join(CONTEXTS), context)
    for name, v in (("rounds", rounds), ("runs", runs)):
        if int(v) < 1:
            raise bad_value(name, "a positive integer", v)
    n = len(fns)
    out = np.zeros((n, rounds, runs), np.float64)
    if n == 0:
        return out
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        return _loop(fns, context, rounds, runs, warmup, np.random.default_rng(seed), filler, timer, deadline, out)
    finally:
        if gc_was_on:
            gc.enable()


def _loop(fns, context, rounds, runs, warmup, rng, filler, timer, deadline, out) -> np.ndarray:
    n = len(fns)
    for _ in range(max(0, warmup)):
        _check_deadline(deadline)
        for f in fns:
            f()
    if context == "isolated":
        for r in range(rounds):
            for i in rng.permutation(n):
                _check_deadline(deadline)
                f = fns[i]
                for k in range(min(3, warmup)):
                    f()
                row = out[i, r]
                for k in range(runs):
                    t0 = timer()
                    f()
                    row[k] = timer() - t0
        return out * 1e-9
    per_call = context == "flush"
    for r in range(rounds):
        for k in range(runs):
            _check_deadline(deadline)
            if filler is not None and not per_call:
                filler()
            for i in rng.permutation(n):
                if per_call and filler is not None:
                    filler()
                f = fns[i]
                t0 = timer()
                f()
                out[i, r, k] = timer() - t0
    return out * 1e-9
