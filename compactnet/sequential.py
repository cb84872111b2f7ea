"""Measure until the interval is narrow: protocol comparisons repeated, the narrowest kept (or pooled).

On a shared virtual machine the CPU slows down for seconds at a time. A comparison whose 3-second
window falls into such a stretch reads the same two networks with a 95% interval of [1.24, 1.88]
where a quiet one reads [1.53, 1.63] (machine D, a 1.5x search's tracking measurements): the
search cannot decide on it, so it trims on and overshoots. :func:`compare_until` times the models
again while the interval is wider than ``max_width`` (relative to the speedup), at most
``max_repeats`` more times. By default it keeps the narrowest comparison: the machine only ever
slows down, so a wide comparison is a disturbed one, and like a measurement refused because the
machine was busy it is taken again rather than used. ``keep="pooled"`` makes one comparison of them
all instead (:func:`pooled`: every comparison's sessions become instances of one measurement);
measured on machine D, pooling a disturbed repeat into a 15%-wide comparison widened it to 37%
([1.34, 1.94] for a network a quiet comparison reads 1.67x [1.53, 1.72]).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np

from compactnet.errors import MeasurementError, bad_value

log = logging.getLogger(__name__)


def relative_width(comparison: Any) -> float:
    """The widest 95% interval of the comparison's speedups, relative to its ratio (0 for one model)."""
    widths = [(hi - lo) / r for r, lo, hi in comparison.speedups[1:] if r > 0]
    return max(widths, default=0.0)


def pooled(comparisons: Sequence[Any], n_boot: int = 2000) -> Any:
    """One :class:`~compactnet.measure.Comparison` from several of the same models.

    Args:
        comparisons: Comparisons taken with ``keep_times=True``, of the same models (names), platform,
            estimator, rounds and runs.
        n_boot: Bootstrap resamples of the pooled interval.

    Raises:
        ConfigError: No comparisons, one without its timings, or comparisons that do not match.
    """
    from compactnet.measure import figures

    comps = list(comparisons)
    if not comps:
        raise bad_value("comparisons", "at least one comparison", 0)
    if len(comps) == 1:
        return comps[0]
    first = comps[0]
    if any(c.times is None for c in comps):
        raise bad_value("comparisons", "comparisons taken with keep_times=True", "one without its timings")
    same = lambda c: (c.names, c.platform.key, c.estimator, c.rounds, c.runs)  # noqa: E731
    if any(same(c) != same(first) for c in comps):
        raise bad_value("comparisons", "the same models, platform, estimator, rounds and runs",
                        [same(c) for c in comps])
    times = np.concatenate([c.times for c in comps], axis=1)  # (models, instances, rounds, runs)
    latencies, speedups = figures(times, first.estimator, first.drift_sd, n_boot=n_boot, seed=first.seed,
                                  level=first.level)
    return replace(first, latencies=latencies, speedups=speedups, load=max(c.load for c in comps),
                   busy=any(c.busy for c in comps), instances=int(times.shape[1]),
                   export_ok=all(c.export_ok for c in comps), times=times)


KEEP = ("narrowest", "pooled")
#: Defaults of the measurements that repeat a disturbed comparison (the search presets'
#: :class:`~compactnet.search.schedule.Preset` and zoo publishing): an interval wider than 12% of its
#: speedup is taken as disturbed, at most 2 comparisons more, the k-th one 5k seconds later.
MAX_WIDTH = 0.12
MAX_REPEATS = 2
REPEAT_PAUSE_S = 5.0


def compare_until(models: Sequence[Any], platform: Any, max_width: float | None = None, max_repeats: int = 2,
                  compare: Callable[..., Any] | None = None, keep: str = "narrowest", pause_s: float = 0.0,
                  **kwargs: Any) -> Any:
    """Compare ``models`` by the protocol; while the interval is wider than ``max_width``, measure again.

    Args:
        models: As for :func:`compactnet.measure.compare`.
        platform: As for :func:`compactnet.measure.compare`.
        max_width: Widest acceptable 95% interval relative to the speedup, e.g. 0.08 for ±4%
            (None: one comparison, as :func:`compactnet.measure.compare`).
        max_repeats: At most this many comparisons more.
        compare: The comparing function (default :func:`compactnet.isolated.compare_isolated`).
        keep: ``narrowest`` (default: the comparison with the narrowest interval) or ``pooled`` (all
            of them as one, :func:`pooled`).
        pause_s: Seconds to wait before the k-th repeat, times k: a slow stretch of the machine lasts
            seconds, and a repeat taken straight after a disturbed comparison often falls into the
            same stretch (DESIGN: a disturbed measurement is retried *later*).
        **kwargs: Passed to ``compare`` (every repeat gets a new ``seed``; pooling sets ``keep_times``).

    Returns:
        The comparison kept (the single one when it was narrow enough).
    """
    if max_width is not None and not max_width > 0:
        raise bad_value("max_width", "a positive relative interval width (e.g. 0.08) or None", max_width)
    if isinstance(max_repeats, bool) or int(max_repeats) != max_repeats or max_repeats < 0:
        raise bad_value("max_repeats", "a non-negative number of comparisons", max_repeats)
    if keep not in KEEP:
        raise bad_value("keep", "one of " + ", ".join(KEEP), keep)
    if isinstance(pause_s, bool) or not isinstance(pause_s, (int, float)) or not 0 <= pause_s < 600:
        raise bad_value("pause_s", "seconds between 0 and 600", pause_s)
    if compare is None:
        from compactnet.isolated import compare_isolated as compare
    seed = int(kwargs.pop("seed", 0))
    keep_times = bool(kwargs.pop("keep_times", False))
    kwargs["keep_times"] = keep_times or keep == "pooled"  # the timings travel only when they are pooled
    comps = [compare(models, platform, seed=seed, **kwargs)]
    result = comps[0]
    while max_width is not None and relative_width(result) > max_width and len(comps) <= max_repeats:
        log.info("interval %.1f%% wide (limit %.1f%%): measuring again (%d of at most %d more)",
                 100 * relative_width(result), 100 * max_width, len(comps), max_repeats)
        if pause_s:
            time.sleep(pause_s * len(comps))
        try:
            comps.append(compare(models, platform, seed=seed + len(comps), **kwargs))
        except MeasurementError as exc:  # a refused repeat keeps what was measured
            log.warning("repeat refused (%s): keeping the %d comparison(s) taken", exc, len(comps))
            break
        result = pooled(comps) if keep == "pooled" else min(comps, key=relative_width)
    if len(comps) > 1:
        log.info("kept %s of %d comparisons: %.1f%% wide", "all" if keep == "pooled" else "the narrowest",
                 len(comps), 100 * relative_width(result))
    return result if keep_times or getattr(result, "times", None) is None else replace(result, times=None)


__all__ = ["compare_until", "pooled", "relative_width", "KEEP", "MAX_WIDTH", "MAX_REPEATS", "REPEAT_PAUSE_S"]
