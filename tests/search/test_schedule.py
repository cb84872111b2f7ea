"""Eq. 1-2 schedule, Table-3 checks, presets and the per-group width choice."""

from __future__ import annotations

import numpy as np
import pytest

from compactnet.errors import ConfigError
from compactnet.search.schedule import (choose_width, final_speedup, geometric_sum, get_preset, solve_t_init,
                                        sub_targets, table3_settings)


@pytest.mark.parametrize("t_init,n,d,t_final", [(2.0, 24, 0.96, 1.45), (2.5, 30, 0.98, 1.80), (2.0, 48, 0.98, 1.46),
                                                (1.5, 36, 0.96, 1.21)])
def test_table3_final_speedups(t_init, n, d, t_final):
    assert final_speedup(t_init, n, d) == pytest.approx(t_final, abs=0.005)


@pytest.mark.parametrize("t_init,n,d", [(2.0, 24, 0.96), (2.5, 30, 0.98), (2.0, 48, 0.98)])
def test_solve_t_init_inverts_table3(t_init, n, d):
    t_final = round(final_speedup(t_init, n, d), 2)
    assert solve_t_init(t_final, n, d) == pytest.approx(t_init, abs=0.02)
    # and exactly on the unrounded value
    assert solve_t_init(final_speedup(t_init, n, d), n, d) == pytest.approx(t_init, rel=1e-12)


def test_sub_targets_sum_to_the_final_latency():
    l0, n, d = 10.0, 30, 0.98
    t_init = solve_t_init(1.8, n, d)
    deltas = sub_targets(l0, t_init, n, d)
    assert len(deltas) == n and np.all(np.diff(deltas) < 0)
    assert l0 / (l0 - deltas.sum()) == pytest.approx(1.8)
    assert deltas[0] == pytest.approx((l0 - l0 / t_init) / n * d)


def test_geometric_sum_and_bad_values():
    assert geometric_sum(3, 0.5) == pytest.approx(0.5 + 0.25 + 0.125)
    assert geometric_sum(4, 1.0) == 4
    with pytest.raises(ConfigError, match="speedup"):
        solve_t_init(0.9, 10, 0.9)
    with pytest.raises(ConfigError, match="beyond the schedule"):
        solve_t_init(20.0, 4, 0.5)
    with pytest.raises(ConfigError, match="decay"):
        geometric_sum(3, 1.5)


def test_table3_settings_pick_the_nearest_row():
    assert table3_settings(1.8) == (30, 0.98)
    assert table3_settings(1.5) == (24, 0.96)
    assert table3_settings(1.3, "npu") == (36, 0.96)
    assert get_preset("paper").schedule(1.8) == (30, 0.98)
    assert get_preset("quick").schedule(1.8)[0] < 10


def test_presets_and_overrides():
    p = get_preset("quick", candidate_steps=3, val_limit=None)
    assert p.candidate_steps == 3 and p.val_limit == get_preset("quick").val_limit  # None ignored
    with pytest.raises(ConfigError, match="--preset"):
        get_preset("fast")
    with pytest.raises(ConfigError, match="override"):
        get_preset("quick", epochs=3)


def test_choose_width_takes_the_largest_count_meeting_the_cut_in_a_non_monotone_case():
    counts = [8, 9, 10, 11, 12, 13, 14, 15]
    # latency is not monotone: aligned 8 and 12 are fast, unaligned counts slow
    pred = np.array([5.0, 7.2, 7.4, 7.6, 6.0, 8.0, 8.2, 8.4])
    cur = 9.0
    # cuts: 8: 4.0, 9: 1.8, 10: 1.6, 11: 1.4, 12: 3.0, 13: 1.0, 14: 0.8, 15: 0.6
    assert choose_width(counts, pred, cur, delta_ms=1.0) == 13
    assert choose_width(counts, pred, cur, delta_ms=1.5) == 12      # not 10: 12 is faster than 9-11
    assert choose_width(counts, pred, cur, delta_ms=2.5) == 12
    assert choose_width(counts, pred, cur, delta_ms=3.5) == 8
    assert choose_width(counts, pred, cur, delta_ms=4.5) is None


def test_choose_width_prefers_aligned_counts_within_tolerance():
    counts = list(range(8, 17))
    pred = np.linspace(5.0, 9.0, len(counts))       # monotone here
    cur = 10.0
    plain = choose_width(counts, pred, cur, delta_ms=1.2)
    assert plain == 15
    assert choose_width(counts, pred, cur, 1.2, align=8, tolerance=0.1) == 15      # 8 keeps < 90% of 15
    assert choose_width(counts, pred, cur, 1.2, align=4, tolerance=0.1) == 15      # 12 keeps < 90% of 15
    assert choose_width(counts, pred, cur, 1.2, align=4, tolerance=0.25) == 12
    assert choose_width(counts, pred, cur, 1.2, align=8, tolerance=0.5) == 8
