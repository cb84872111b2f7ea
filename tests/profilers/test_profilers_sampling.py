"""Sampling strategies are deterministic, distinct, inside their ranges, and the dense count is the paper's."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from compactnet.errors import ConfigError
from compactnet.profilers.sampling import (AdaptiveStrategy, DenseStrategy, UncertaintyModel, make_strategy,
                                           mobilenetv2_space)
from compactnet.profilers.store import layer_key

ORIGINAL = [32, 16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320]


def test_dense_counts_match_the_papers_table():
    dense = make_strategy("dense", step=16)
    assert isinstance(dense, DenseStrategy)
    # the paper's table: stem 3 -> 1..32, then every (cin, cout) pair of the 17 blocks
    full = 32 + sum(a * b for a, b in zip(ORIGINAL[:-1], ORIGINAL[1:]))
    assert dense.full_count == full == 160_992

    def grid(c, s):
        return len(set(range(s, c + 1, s)) | {c})
    at16 = grid(32, 16) + sum(grid(a, 16) * grid(b, 16) for a, b in zip(ORIGINAL[:-1], ORIGINAL[1:]))
    assert dense.entries == at16
    layers = dense.take(10_000)
    # repeated blocks of a stage have identical configurations: measured once
    assert len(layers) == dense.count == len({layer_key(l) for l in layers}) < at16
    keys = {layer_key(l) for l in layers}
    for u in mobilenetv2_space(lower="full"):  # the original widths are always on the grid
        assert layer_key(u.make(u.layer.cin, u.layer.cout)) in keys
    assert dense.count < dense.full_distinct < dense.full_count
    small = make_strategy("dense", step=1, network=mobilenetv2_space(lower="full")[:8])
    assert small.full_distinct == small.count  # the signature agrees with enumeration
    assert all(l.cin == 3 for l in layers if l.name.startswith("stem"))


@pytest.mark.parametrize("name", ["random", "sobol", "prior"])
def test_same_seed_same_sequence(name):
    a = make_strategy(name, seed=7).take(120)
    b = make_strategy(name, seed=7).take(120)
    c = make_strategy(name, seed=8).take(120)
    assert [layer_key(l) for l in a] == [layer_key(l) for l in b]
    assert [layer_key(l) for l in a] != [layer_key(l) for l in c]
    assert len({layer_key(l) for l in a}) == 120
    # next_batch walks the same sequence
    s = make_strategy(name, seed=7)
    batched = s.next_batch(50) + s.next_batch(70)
    assert [layer_key(l) for l in batched] == [layer_key(l) for l in a]


@pytest.mark.parametrize("name", ["random", "sobol"])
def test_samples_stay_in_the_unit_ranges(name):
    space = {u.layer.name: u for u in mobilenetv2_space()}
    for l in make_strategy(name, seed=1).take(300):
        u = space[l.name.split("@")[0]]
        assert u.cin_range[0] <= l.cin <= u.cin_range[1]
        assert u.cout_range[0] <= l.cout <= u.cout_range[1]
        if l.op == "block":
            ratio = u.layer.expansion / u.layer.cin
            assert l.expansion == max(1, round(ratio * l.cin))
            assert l.residual == (u.layer.residual and l.cin == l.cout)


def test_sobol_visits_units_in_turn():
    counts = Counter(l.name.split("@")[0] for l in make_strategy("sobol", seed=0).take(18 * 5))
    assert set(counts.values()) == {5} and len(counts) == 18


def test_prior_starts_with_the_network_then_trimmed_variants():
    layers = make_strategy("prior", seed=0).take(200)
    originals = {u.layer.name: u.layer for u in mobilenetv2_space()}
    distinct = list({layer_key(o): o for o in originals.values()}.values())
    assert [layer_key(l) for l in layers[:len(distinct)]] == [layer_key(o) for o in distinct]
    for l in layers[len(distinct):]:
        o = originals[l.name]
        assert l.cout <= o.cout and l.cout >= int(0.25 * o.cout) - 3
    assert all(l.cin == 3 and l.cout == 32 for l in layers if l.name == "stem")


class _WidestCin:
    def __init__(self):
        self.fitted = 0

    def fit(self, measurements):
        self.fitted = len(measurements)
        return self

    def interval_width(self, layers):
        return np.array([l.cin for l in layers], float)


def test_adaptive_picks_the_widest_intervals():
    model = _WidestCin()
    assert isinstance(model, UncertaintyModel)
    from compactnet.profilers.base import SyntheticProfiler

    strat = make_strategy("adaptive", seed=0, model=model, initial=8, pool=64)
    assert isinstance(strat, AdaptiveStrategy)
    prof = SyntheticProfiler()
    first = strat.next_batch(8, [])
    measured = prof.measure(first)
    nxt = strat.next_batch(4, measured)
    assert model.fitted == 8
    pool = [l for l in make_strategy("random", seed=0 * 1_000_003 + 8).take(64 + 8)
            if layer_key(l) not in {layer_key(m.layer) for m in measured}][:64]
    assert sorted(l.cin for l in nxt) == sorted(sorted(l.cin for l in pool)[-4:])
    again = make_strategy("adaptive", seed=0, model=_WidestCin(), initial=8, pool=64).next_batch(4, measured)
    assert [layer_key(l) for l in again] == [layer_key(l) for l in nxt]


def test_bad_strategy_names_and_missing_model():
    with pytest.raises(ConfigError, match="strategy"):
        make_strategy("grid")
    with pytest.raises(ConfigError, match="adaptive"):
        make_strategy("adaptive")
