"""Comparisons repeated while their interval is wide, pooled into one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from compactnet.errors import BusyError, ConfigError
from compactnet.measure import compare
from compactnet.runtimes import SyntheticRunner
from compactnet.sequential import compare_until, pooled, relative_width
from compactnet.spec import LayerSpec

SMALL = LayerSpec("small", "conv", 32, 32, 16, 16, kernel=3, padding=1)
BIG = LayerSpec("big", "conv", 64, 64, 16, 16, kernel=3, padding=1)
KW = {"rounds": 7, "runs": 3, "warmup": 0, "instances": 2, "window_s": 0}


def _two(seed=0, **kw):
    return compare([BIG, SMALL], SyntheticRunner(), names=["big", "small"], seed=seed, keep_times=True, **{**KW, **kw})


def test_pooled_sessions_become_instances_of_one_measurement():
    a, b = _two(0), _two(1)
    p = pooled([a, b])
    assert p.instances == 4 and p.times.shape == (2, 4, 7, 3) and p.rounds == 7
    # the pooled minimum rule over all sessions equals the rule applied to the concatenated timings
    both = np.concatenate([a.times[1], b.times[1]])
    assert p.latencies[1].value_ms == pytest.approx(np.median(both.min(axis=(1, 2))) * 1e3)
    ratio, low, high = p.speedups[1]
    assert low <= ratio <= high and p.speedups[0] == (1.0, 1.0, 1.0)
    assert pooled([a]) is a


def test_pooled_refuses_what_cannot_be_pooled():
    with pytest.raises(ConfigError, match="at least one"):
        pooled([])
    with pytest.raises(ConfigError, match="keep_times"):
        pooled([_two(), dataclasses.replace(_two(), times=None)])
    with pytest.raises(ConfigError, match="same models"):
        pooled([_two(), _two(runs=4)])


class _Scripted:
    """A compare function whose intervals are scripted (wide, then narrow)."""

    def __init__(self, widths):
        self.widths, self.seeds = list(widths), []

    def __call__(self, models, platform, seed=0, **kw):
        self.seeds.append(seed)
        comp = _two(seed)
        w = self.widths[min(len(self.seeds) - 1, len(self.widths) - 1)]
        if w is None:
            raise BusyError("busy")
        r = comp.speedups[1][0]
        return dataclasses.replace(comp, speedups=(comp.speedups[0], (r, r * (1 - w / 2), r * (1 + w / 2))))


def test_compare_until_repeats_a_wide_interval_and_stops_when_narrow():
    fn = _Scripted([0.5])
    one = compare_until([BIG, SMALL], "synthetic-cpu-fp32-t1", max_width=0.6, compare=fn)
    assert fn.seeds == [0] and one.times is None            # narrow enough: one comparison
    fn = _Scripted([0.5])
    out = compare_until([BIG, SMALL], "synthetic-cpu-fp32-t1", max_width=1e-6, max_repeats=2, compare=fn,
                        keep_times=True, keep="pooled")
    assert fn.seeds == [0, 1, 2] and out.instances == 6     # at most two more, pooled
    assert relative_width(out) == pytest.approx((out.speedups[1][2] - out.speedups[1][1]) / out.speedups[1][0])


def test_by_default_the_narrowest_comparison_is_kept():
    fn = _Scripted([0.5, 0.3, 0.4])
    out = compare_until([BIG, SMALL], "synthetic-cpu-fp32-t1", max_width=0.1, max_repeats=2, compare=fn)
    assert fn.seeds == [0, 1, 2] and relative_width(out) == pytest.approx(0.3) and out.instances == 2
    fn = _Scripted([0.5, 0.05])                                # narrow enough at the first repeat: stop there
    out = compare_until([BIG, SMALL], "synthetic-cpu-fp32-t1", max_width=0.1, compare=fn)
    assert fn.seeds == [0, 1] and relative_width(out) == pytest.approx(0.05)


def test_a_refused_repeat_keeps_what_was_measured():
    fn = _Scripted([0.5, None])
    out = compare_until([BIG, SMALL], "synthetic-cpu-fp32-t1", max_width=0.1, compare=fn)
    assert fn.seeds == [0, 1] and out.instances == 2


def test_compare_until_checks_its_arguments():
    with pytest.raises(ConfigError, match="max_width"):
        compare_until([BIG], "synthetic-cpu-fp32-t1", max_width=0)
    with pytest.raises(ConfigError, match="max_repeats"):
        compare_until([BIG], "synthetic-cpu-fp32-t1", max_width=0.1, max_repeats=-1)
    with pytest.raises(ConfigError, match="keep"):
        compare_until([BIG], "synthetic-cpu-fp32-t1", max_width=0.1, keep="mean")
    with pytest.raises(ConfigError, match="pause_s"):
        compare_until([BIG], "synthetic-cpu-fp32-t1", max_width=0.1, pause_s=-1)


def test_repeats_wait_longer_each_time(monkeypatch):
    import compactnet.sequential as seq

    slept = []
    monkeypatch.setattr(seq.time, "sleep", slept.append)
    fn = _Scripted([0.5, 0.4, 0.3])
    compare_until([BIG, SMALL], "synthetic-cpu-fp32-t1", max_width=0.1, max_repeats=2, compare=fn, pause_s=5.0)
    assert fn.seeds == [0, 1, 2] and slept == [5.0, 10.0]
    slept.clear()
    compare_until([BIG, SMALL], "synthetic-cpu-fp32-t1", max_width=0.9, compare=_Scripted([0.5]), pause_s=5.0)
    assert slept == []                                          # a narrow first comparison never waits
