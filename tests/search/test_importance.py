"""Importance criteria decide which channels survive."""

from __future__ import annotations

import pytest
import torch
from search_tiny import TINY_RESNET

from compactnet.errors import ConfigError
from compactnet.models import create_model
from compactnet.search.groups import GroupPruner
from compactnet.search.importance import get_importance


def _pruner():
    torch.manual_seed(0)
    return GroupPruner(create_model("resnet20", TINY_RESNET), "extended")


def test_l2_keeps_the_filters_of_largest_norm():
    p = _pruner()
    gid = "layers.0.conv1"
    conv = dict(p.model.named_modules())[gid]
    with torch.no_grad():
        conv.weight[3].zero_()
        conv.weight[5] *= 10
    keep = get_importance("l2").keep(p.dep_group(gid), 7)
    assert 3 not in keep and 5 in keep and len(keep) == 7 and keep == sorted(keep)
    scores = get_importance("l2").scores(p.dep_group(gid))
    assert torch.argmax(scores).item() == 5
    assert scores[3].item() == pytest.approx(0.0)


def test_l2_sums_over_every_conv_of_a_residual_group():
    p = _pruner()
    gid = "stem.0"                                   # the stem and stage 1's second convs share channels
    mods = dict(p.model.named_modules())
    assert len(p.members[gid]) == 4
    with torch.no_grad():
        for name in p.members[gid]:
            mods[name].weight[2].zero_()
    assert 2 not in get_importance("l2").keep(p.dep_group(gid), 7)


def test_random_is_seeded_and_taylor_uses_gradients():
    p = _pruner()
    g = p.dep_group("layers.0.conv1")
    a, b = get_importance("random", seed=1), get_importance("random", seed=1)
    a.prepare(p.model, None, seed=5)
    b.prepare(p.model, None, seed=5)
    assert a.keep(g, 4) == b.keep(g, 4)
    t = get_importance("taylor")
    assert t.needs_gradients
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    t.prepare(p.model, [(x, y)])
    s = t.scores(p.dep_group("layers.0.conv1"))
    assert s.shape == (8,) and torch.isfinite(s).all() and s.sum() > 0
    assert len(get_importance("group-l2").keep(g, 3)) == 3


def test_unknown_criterion_is_refused():
    with pytest.raises(ConfigError, match="importance"):
        get_importance("entropy")
