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

:func:`time_layers` is a thin wrapper over :func:`compactnet.measure.time_interleaved` (the one
timing loop): it maps a context onto that loop's hooks and returns its layout, seconds shaped
``(n_fns, rounds, runs)``.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from compactnet.errors import bad_value
from compactnet.measure import JobTimeout, time_interleaved

CONTEXTS = ("rotation", "isolated", "flush")
#: Bytes the network touches between two calls of one of its layers (Table-1 MobileNetV2 weights, fp32).
DEFAULT_ROTATION_BYTES = 8 << 20

__all__ = ["CONTEXTS", "DEFAULT_ROTATION_BYTES", "JobTimeout", "cache_filler", "time_layers"]


def cache_filler(nbytes: int) -> Callable[[], None] | None:
    """A callable that writes ``nbytes`` of memory (evicting what was cached), or None for 0 bytes."""
    n = int(nbytes) // 8
    if n <= 0:
        return None
    buf = np.zeros(n, np.float64)

    def fill() -> None:
        np.add(buf, 1.0, out=buf)

    return fill


def time_layers(fns: Sequence[Callable[[], None]], context: str = "rotation", rounds: int = 7, runs: int = 40,
                warmup: int = 10, seed: int = 0, filler: Callable[[], None] | None = None,
                timer: Callable[[], int] = time.perf_counter_ns, deadline: float | None = None) -> np.ndarray:
    """Time each callable ``runs`` times in each of ``rounds`` rounds in the given context.

    All contexts first make ``warmup`` untimed passes over the callables. ``isolated`` is
    ``time_interleaved``'s ``block`` mode (``min(3, warmup)`` untimed calls per block);
    ``rotation`` and ``flush`` are its ``run`` mode with a new seeded order for every pass and the
    filler once per pass or before every call.

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
    rounds, runs, warmup = int(rounds), int(runs), max(0, int(warmup))
    if len(fns) == 0:
        return np.zeros((0, rounds, runs), np.float64)
    if context == "isolated":
        return time_interleaved(fns, rounds, runs, warmup, seed, timer, interleave="block",
                                block_warmup=min(3, warmup), warmup_by="pass", deadline=deadline)
    return time_interleaved(fns, rounds, runs, warmup, seed, timer, interleave="run", shuffle="pass",
                            filler=filler, fill="call" if context == "flush" else "pass", warmup_by="pass",
                            deadline=deadline)
