"""Channel groups through DepGraph: paper and extended modes, trims that run, export and match their spec."""

from __future__ import annotations

import copy

import pytest
import torch
from search_tiny import TINY_MNV2, TINY_RESNET, TINY_VGG

from compactnet.errors import ConfigError
from compactnet.extract import layer_differences, network_spec_from_torch, spec_for
from compactnet.models import create_model, load_weights, save_weights
from compactnet.search.groups import (GroupPruner, config_from_model, history_from_json, history_to_json,
                                      paper_lower_bound)
from compactnet.search.importance import get_importance, keep_indices



def test_paper_mode_mobilenetv2_has_seven_stage_groups_with_the_paper_bounds():
    p = GroupPruner(create_model("mobilenetv2"), "paper")
    assert [g.name for g in p.groups] == [f"stage{i}" for i in range(7)]
    assert [g.width for g in p.groups] == [16, 24, 32, 64, 96, 160, 320]
    # block 1 >= 9; blocks 2 and 4 >= c/2 - 1 (their stages); others c/8 + 3
    assert [g.lower_bound for g in p.groups] == [9, 11, 15, 11, 15, 23, 43]
    assert p.fixed == ["features.0.0", "features.18.0"]        # stem and the last 1x1 conv
    # followers: the expansion widths of the blocks reading each stage's output
    assert [len(g.followers) for g in p.groups] == [1, 2, 3, 4, 3, 3, 0]
    # a stage's blocks are one group: stage 3 has 4 projection convs
    assert len(p.group("stage3").members) == 4
    assert paper_lower_bound(1, 16) == 9 and paper_lower_bound(2, 24) == 11 and paper_lower_bound(7, 64) == 11


def test_extended_mode_finds_every_depgraph_group():
    p = GroupPruner(create_model("mobilenetv2"), "extended")
    # DESIGN: DepGraph finds 26 groups in Table-1 MobileNetV2; the classifier output is not trimmable
    assert len(p.groups) == 25 and p.fixed == []
    hidden = [g for g in p.groups if g.root.endswith("conv.0.0") and g.root != "features.1.conv.0.0"]
    assert len(hidden) == 16 and p.groups[0].root == "features.0.0"        # 16 expansions, the stem
    assert all(g.lower_bound == max(4, -(-g.width // 8)) for g in p.groups)


def test_unknown_mode_and_bad_indices_are_refused():
    with pytest.raises(ConfigError, match="mode"):
        GroupPruner(create_model("resnet20", TINY_RESNET), "greedy")
    p = GroupPruner(create_model("resnet20", TINY_RESNET), "extended")
    with pytest.raises(ConfigError, match="keep"):
        p.prune(p.groups[0].root, [0, 0, 1])
    with pytest.raises(ConfigError, match="keep"):
        p.prune(p.groups[0].root, [99])


def _trim_all(p: GroupPruner, frac: float = 0.5) -> None:
    imp = get_importance("l2")
    for g in p.groups:
        w = max(g.lower_bound, int(p.dep_width(g.root) * frac))
        if w < p.dep_width(g.root):
            p.apply(keep_indices(imp, p, p.plan_widths(g.name, w)))


@pytest.mark.parametrize("name,channels,mode", [("mobilenetv2", TINY_MNV2, "paper"),
                                                ("mobilenetv2", TINY_MNV2, "extended"),
                                                ("resnet20", TINY_RESNET, "extended"),
                                                ("vgg16", TINY_VGG, "extended")])
def test_trimmed_models_run_export_match_their_spec_and_reload(tmp_path, name, channels, mode):
    from compactnet.export import export_onnx

    model = create_model(name, channels).eval()
    base = network_spec_from_torch(model)
    p = GroupPruner(model, mode)
    _trim_all(p)
    cfg = config_from_model(model)
    assert model.config == cfg
    x = torch.randn(2, 3, 32, 32)
    y = model.eval()(x)
    assert y.shape == (2, 10)
    got = network_spec_from_torch(model)
    # the spec of the pruned module == the registry spec of its recovered configuration
    assert layer_differences(got, spec_for(name, cfg)) == []
    # == the spec the search predicts: the base spec at the DepGraph widths
    widths = {gid: p.dep_width(gid) for gid in p.members}
    assert layer_differences(got, base.with_channels(widths)) == []
    assert got.macs < base.macs
    res = export_onnx(model, tmp_path / "m.onnx")
    assert res.max_abs_diff < 1e-3
    # weights + configuration reload into a freshly built model
    save_weights(model, tmp_path / "w.safetensors")
    again = load_weights(create_model(name, cfg), tmp_path / "w.safetensors").eval()
    torch.testing.assert_close(again(x), y)


def test_paper_mode_keeps_hidden_widths_at_six_times_the_input():
    model = create_model("mobilenetv2", TINY_MNV2)
    p = GroupPruner(model, "paper")
    plan = p.plan_widths("stage2", 10)
    assert plan[p.group("stage2").root] == 10
    assert sorted(plan.values()) == [10, 60, 60, 60]
    p.apply(keep_indices(get_importance("l2"), p, plan))
    cfg = config_from_model(model)
    assert cfg.hidden is None                       # the derived 6x widths hold exactly
    assert cfg.widths[4:7] == (10, 10, 10) and cfg.hidden_widths()[4:7] == (60, 60, 60)


def test_replaying_the_history_gives_identical_weights():
    torch.manual_seed(0)
    model = create_model("mobilenetv2", TINY_MNV2)
    fresh = copy.deepcopy(model)
    p = GroupPruner(model, "paper")
    _trim_all(p, 0.6)
    _trim_all(p, 0.8)                               # several prunes of the same group
    text = history_to_json(p.history)
    assert len(p.history) > 7
    q = GroupPruner(fresh, "paper")
    q.replay(history_from_json(text))
    a, b = model.state_dict(), fresh.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # a history does not replay on a model of other widths
    with pytest.raises(ConfigError, match="history"):
        GroupPruner(create_model("mobilenetv2", TINY_MNV2), "paper").replay(list(reversed(p.history)))


def test_paper_mode_reaches_the_papers_table2_configuration():
    from compactnet.models.mobilenetv2 import PAPER_TABLE2_WIDTHS, stage_of_width_index

    model = create_model("mobilenetv2")
    p = GroupPruner(model, "paper")
    stages = stage_of_width_index()
    imp = get_importance("l2")
    for g in p.groups:
        st = int(g.name[5:])
        target = PAPER_TABLE2_WIDTHS[stages.index(st)]
        assert target >= g.lower_bound          # Table 2 respects the public code's bounds
        p.apply(keep_indices(imp, p, p.plan_widths(g.name, target)))
    cfg = config_from_model(model)
    assert cfg.widths == PAPER_TABLE2_WIDTHS and cfg.hidden is None and cfg.last == 1280
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert layer_differences(network_spec_from_torch(model), spec_for("mobilenetv2", cfg)) == []
