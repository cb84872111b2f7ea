"""The ``space`` prior: common CNN layers at 1-224 px, bounded, seeded."""

from __future__ import annotations

import collections

from compactnet.profilers.sampling import make_strategy
from compactnet.profilers.space import MAX_ELEMENTS, MAX_MACS, LayerSpaceStrategy


def test_space_prior_covers_kinds_kernels_and_sizes_within_bounds():
    layers = make_strategy("space", seed=0).take(600)
    assert isinstance(make_strategy("space"), LayerSpaceStrategy)
    assert [l.key() for l in layers] == [l.key() for l in LayerSpaceStrategy(seed=0).take(600)]
    assert len({l.key() for l in layers}) == 600
    ops = collections.Counter(l.op for l in layers)
    assert {"conv", "dwconv", "linear", "add", "gap", "maxpool", "avgpool"} <= set(ops)
    assert {1, 3, 5, 7} <= {l.kernel[0] for l in layers if l.op == "conv"}
    assert max(l.h for l in layers) >= 160 and min(l.h for l in layers) <= 2
    for l in layers:
        if l.name.startswith("space") and l.op in ("conv", "dwconv"):
            oh = l.h // l.stride[0]
            assert l.kernel[0] ** 2 * l.cin * l.cout // l.groups * oh * oh <= MAX_MACS
            assert l.cin * l.h * l.w <= MAX_ELEMENTS
