"""Channel groups of a torch CNN and pruning through Torch-Pruning's DepGraph (the mechanism).

A *DepGraph group* is every tensor dimension tied to one conv's output channels: the convs
writing them (several when residual adds join blocks), their batch-norms, the depthwise convs
running on them and the input channels of every consumer. Removing channel ``k`` of the group
removes it everywhere at once; Torch-Pruning does the surgery, nothing here edits a layer by hand.

A *search group* (:class:`ChannelGroup`) is what the search trims in one step:

- ``extended`` mode: every DepGraph group (stem, stage outputs, every hidden width, the last
  1x1 conv), the classifier's output excepted; lower bound ``max(4, ceil(c / 8))``.
- ``paper`` mode (MobileNetV2): the 7 stage-output groups (a stage's blocks are joined by residual
  adds, so its block widths are one group); the stem and the last 1x1 conv are never trimmed;
  the paper's lower bounds (block 1 keeps >= 9, blocks 2 and 4 keep >= c/2 - 1, the others
  >= c/8 + 3, ``c`` the width before the search, a stage keeping the largest bound of its
  blocks). A stage's *followers* are the hidden (expansion) widths of the blocks reading the
  stage's output; they are trimmed with it in proportion, ``round(h * w_new / w_old)``, which
  keeps the untrimmed network's 6x exactly (6c -> 6c'); the hidden channels kept are the most
  important of the hidden group itself. Other models in ``paper`` mode get every DepGraph group
  with the generic bound ``ceil(c / 8) + 3`` (the paper defines its groups for MobileNetV2 only).

Every prune is recorded as a :class:`PruneRecord` (DepGraph group id = module path of the group's
first conv, kept indices in the numbering before the prune); :meth:`GroupPruner.replay` applies a
recorded history to a fresh model built from the same weights and yields the same network.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from compactnet.errors import ConfigError, bad_value

log = logging.getLogger(__name__)

MODES = ("paper", "extended")


@dataclass(frozen=True)
class PruneRecord:
    """One prune of one DepGraph group.

    Attributes:
        group: DepGraph group id (module path of the group's first conv).
        keep: Channel indices kept, in the group's numbering before this prune (sorted).
        width_before: Group width before the prune.
    """

    group: str
    keep: tuple[int, ...]
    width_before: int

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"group": self.group, "keep": list(self.keep), "width_before": self.width_before}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PruneRecord":
        """Inverse of :meth:`to_dict`."""
        return cls(str(d["group"]), tuple(int(k) for k in d["keep"]), int(d["width_before"]))


def history_to_json(history: Sequence[PruneRecord]) -> str:
    """Serialise a pruning history."""
    return json.dumps([r.to_dict() for r in history])


def history_from_json(text: str) -> list[PruneRecord]:
    """Parse a pruning history written by :func:`history_to_json`."""
    return [PruneRecord.from_dict(d) for d in json.loads(text)]


@dataclass(frozen=True)
class ChannelGroup:
    """A search group: what one trimming step changes.

    Attributes:
        name: Search-level name (``stage3`` in paper mode, the DepGraph id in extended mode).
        root: DepGraph group id of the trimmed channels.
        width: Width when the search started.
        lower_bound: Fewest channels the search may keep.
        followers: DepGraph group ids trimmed with it in proportion (paper mode's hidden widths).
        members: Module paths of the convs writing the group's channels.
    """

    name: str
    root: str
    width: int
    lower_bound: int
    followers: tuple[str, ...] = ()
    members: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"name": self.name, "root": self.root, "width": self.width, "lower_bound": self.lower_bound,
                "followers": list(self.followers), "members": list(self.members)}


def paper_lower_bound(width_index: int, c: int) -> int:
    """The public CompactNet code's lower bound for one of the 18 block-output widths.

    Args:
        width_index: Index among the 18 widths (0 = stem, 1 = block 1, ...).
        c: The width before the search.
    """
    if width_index == 1:
        bound = 9
    elif width_index in (2, 4):
        bound = math.ceil(c / 2 - 1)
    else:
        bound = math.ceil(c / 8 + 3)
    return max(1, min(int(bound), c))


def extended_lower_bound(c: int) -> int:
    """Lower bound of a group in extended mode: ``max(4, ceil(c / 8))`` (never above ``c``)."""
    return max(1, min(c, max(4, math.ceil(c / 8))))


def _example_input(model: nn.Module, example_input: torch.Tensor | None) -> torch.Tensor:
    if example_input is not None:
        return example_input
    shape = (1, 3, 32, 32)
    try:
        from compactnet.models import get_entry, model_name_of

        shape = get_entry(model_name_of(model)).input_shape
    except ConfigError:
        pass
    return torch.randn(*shape)


def _is_out_fn(dg: Any, fn: Callable) -> bool:
    return bool(dg.is_out_channel_pruning_fn(fn))


class GroupPruner:
    """A model, its dependency graph, its search groups and its pruning history.

    Args:
        model: The CNN (pruned in place).
        mode: ``paper`` or ``extended`` (see the module docstring).
        example_input: Input used to trace the graph (default: the registry's input shape).
        ignored: Module paths never pruned (default: the last linear layer, i.e. the classifier output).
        bounds_from: Widths the lower bounds are computed from, by DepGraph id (default: the
            model's current widths). Pass the original widths when rebuilding a pruner on a
            partly trimmed model, so the bounds stay the search's.

    Raises:
        ConfigError: An unknown mode.
    """

    def __init__(self, model: nn.Module, mode: str = "paper", example_input: torch.Tensor | None = None,
                 ignored: Sequence[str] | None = None, bounds_from: Mapping[str, int] | None = None):
        import torch_pruning as tp

        if mode not in MODES:
            raise bad_value("mode", "'paper' or 'extended'", mode)
        self.model = model
        self.mode = mode
        self.history: list[PruneRecord] = []
        self._names = {m: n for n, m in model.named_modules()}
        self._modules = dict(model.named_modules())
        self._order = {n: i for i, n in enumerate(self._modules)}
        self._example = _example_input(model, example_input)
        if ignored is None:
            linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
            ignored = linears[-1:]
        ignored_mods = [self._modules[n] for n in ignored]
        was_training = model.training
        model.eval()
        with torch.enable_grad():
            # ignored layers are left out of the *roots* only: their input channels must still follow
            self.dg = tp.DependencyGraph().build_dependency(model, example_inputs=self._example, verbose=False)
        model.train(was_training)
        self._ignored = ignored_mods
        self.members: dict[str, tuple[str, ...]] = self._find_dep_groups()
        self.groups: list[ChannelGroup] = self._build_groups(bounds_from or {})
        self._by_name = {g.name: g for g in self.groups}

    # ----- DepGraph groups ----------------------------------------------------------------------
    def _find_dep_groups(self) -> dict[str, tuple[str, ...]]:
        # Torch-Pruning's get_all_groups() builds every group over all its channels (seconds on
        # MobileNetV2); the coupled layers are found as well from a sample of indices spread over
        # the width (both ends included, so split/concat branches are reached).
        import torch_pruning as tp

        found: dict[str, tuple[str, ...]] = {}
        seen: set[str] = set()
        ignored = set(self._ignored)
        for name, m in self._modules.items():
            if name in seen or m in ignored or not isinstance(m, (nn.Conv2d, nn.Linear)):
                continue
            if m not in self.dg.module2node:
                continue
            width = m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
            fn = tp.prune_conv_out_channels if isinstance(m, nn.Conv2d) else tp.prune_linear_out_channels
            sample = sorted(set(range(0, width, max(1, width // 16))) | {width - 1})
            group = self.dg.get_pruning_group(m, fn, sample)
            convs = sorted({self._names[d.target.module] for d, _ in group
                            if _is_out_fn(self.dg, d.handler) and isinstance(d.target.module, (nn.Conv2d, nn.Linear))
                            and d.target.module in self._names}, key=self._order.__getitem__)
            if any(self._modules[c] in ignored for c in convs):
                seen.update(convs)
                continue
            seen.update(convs)
            if convs:
                found[convs[0]] = tuple(convs)
        return dict(sorted(found.items(), key=lambda kv: self._order[kv[0]]))

    @property
    def dep_groups(self) -> list[str]:
        """DepGraph group ids in network order."""
        return list(self.members)

    def dep_width(self, gid: str) -> int:
        """Current width of a DepGraph group."""
        m = self._modules[gid]
        return int(m.out_channels if isinstance(m, nn.Conv2d) else m.out_features)

    def dep_group(self, gid: str, idxs: Sequence[int] | None = None) -> Any:
        """The Torch-Pruning ``Group`` of a DepGraph group id, over ``idxs`` (default: all channels)."""
        import torch_pruning as tp

        m = self._modules[gid]
        fn = tp.prune_conv_out_channels if isinstance(m, nn.Conv2d) else tp.prune_linear_out_channels
        if idxs is None:
            idxs = list(range(self.dep_width(gid)))
        return self.dg.get_pruning_group(m, fn, list(idxs))

    # ----- search groups -----------------------------------------------------------------------
    def _build_groups(self, bounds_from: Mapping[str, int]) -> list[ChannelGroup]:
        from compactnet.models import MobileNetV2

        base = {gid: int(bounds_from.get(gid, self.dep_width(gid))) for gid in self.members}
        if self.mode == "paper" and isinstance(self.model, MobileNetV2):
            return self._paper_mobilenetv2(base)
        if self.mode == "paper":
            log.warning("paper mode defines its groups for MobileNetV2 only; %s gets every DepGraph group "
                        "with the bound ceil(c/8)+3", type(self.model).__name__)
            bound = lambda c: max(1, min(c, math.ceil(c / 8 + 3)))  # noqa: E731
        else:
            bound = extended_lower_bound
        return [ChannelGroup(gid, gid, self.dep_width(gid), bound(base[gid]), (), mem)
                for gid, mem in self.members.items()]

    def _paper_mobilenetv2(self, base: Mapping[str, int]) -> list[ChannelGroup]:
        from compactnet.models.mobilenetv2 import block_plan

        plan = block_plan()
        feats = self.model.features  # type: ignore[attr-defined]
        conv_of = {mod: name for name, mod in self.model.named_modules()}

        def gid_of(conv: nn.Module) -> str:
            name = conv_of[conv]
            for gid, mem in self.members.items():
                if name in mem:
                    return gid
            raise ConfigError(f"{name} is in no DepGraph group")

        groups = []
        for stage in sorted({st for _t, _s, st in plan}):
            blocks = [b for b, (_t, _s, st) in enumerate(plan) if st == stage]
            root = gid_of(feats[blocks[0] + 1].conv[-1][0])
            # width index i (1..17) is block i-1's output; bounds from the widths before the search
            bound = max(paper_lower_bound(b + 1, base[root]) for b in blocks)
            followers = tuple(gid_of(feats[b + 1].conv[0][0]) for b in range(1, len(plan))
                              if plan[b][0] != 1 and gid_of(feats[b].conv[-1][0]) == root)
            groups.append(ChannelGroup(f"stage{stage}", root, self.dep_width(root), bound, followers,
                                       self.members[root]))
        return groups

    def group(self, name: str) -> ChannelGroup:
        """A search group by name.

        Raises:
            ConfigError: No such group.
        """
        if name not in self._by_name:
            raise bad_value("group", "one of " + ", ".join(self._by_name), name)
        return self._by_name[name]

    @property
    def fixed(self) -> list[str]:
        """DepGraph groups no search group trims (paper mode: the stem, the last conv)."""
        used = {g.root for g in self.groups} | {f for g in self.groups for f in g.followers}
        return [gid for gid in self.members if gid not in used]

    def widths(self) -> dict[str, int]:
        """Current width of every search group."""
        return {g.name: self.dep_width(g.root) for g in self.groups}

    def candidate_counts(self, name: str) -> list[int]:
        """Channel counts the group can be trimmed to now: lower bound .. current width - 1."""
        g = self.group(name)
        return list(range(g.lower_bound, self.dep_width(g.root)))

    def plan_widths(self, name: str, width: int) -> dict[str, int]:
        """New width of every DepGraph group touched by trimming search group ``name`` to ``width``."""
        g = self.group(name)
        cur = self.dep_width(g.root)
        out = {g.root: int(width)}
        for f in g.followers:
            out[f] = max(1, int(round(self.dep_width(f) * width / cur)))
        return out

    # ----- pruning -----------------------------------------------------------------------------
    def prune(self, gid: str, keep: Sequence[int]) -> PruneRecord:
        """Keep only channels ``keep`` of DepGraph group ``gid`` (all coupled layers follow).

        Raises:
            ConfigError: Indices out of range, duplicated, or none kept.
        """
        width = self.dep_width(gid)
        keep = sorted(int(k) for k in keep)
        if not keep or len(set(keep)) != len(keep) or keep[0] < 0 or keep[-1] >= width:
            raise bad_value(f"keep[{gid}]", f"distinct channel indices in 0..{width - 1}, at least one",
                            keep[:8])
        record = PruneRecord(gid, tuple(keep), width)
        drop = sorted(set(range(width)) - set(keep))
        if drop:
            group = self.dep_group(gid, drop)
            group.prune(record_history=False)
        self.history.append(record)
        self._refresh_config()
        return record

    def apply(self, keeps: Mapping[str, Sequence[int]]) -> list[PruneRecord]:
        """Prune several DepGraph groups (a search group and its followers) in the given order."""
        return [self.prune(gid, keep) for gid, keep in keeps.items()]

    def replay(self, history: Iterable[PruneRecord | Mapping[str, Any]]) -> None:
        """Apply a recorded pruning history to this (fresh, same-weights) model."""
        for rec in history:
            rec = rec if isinstance(rec, PruneRecord) else PruneRecord.from_dict(rec)
            if self.dep_width(rec.group) != rec.width_before:
                raise ConfigError(f"pruning history does not fit this model: group {rec.group} has "
                                  f"{self.dep_width(rec.group)} channels, the record expects {rec.width_before}")
            self.prune(rec.group, rec.keep)

    def _refresh_config(self) -> None:
        cfg = config_from_model(self.model)
        if cfg is not None:
            self.model.config = cfg  # type: ignore[attr-defined]


# ----- channel configuration of registry models ---------------------------------------------------
def config_from_model(model: nn.Module) -> Any | None:
    """Recover the registry channel configuration of a (pruned) registry model; ``None`` for others.

    The result rebuilds the same network with :func:`compactnet.models.create_model`, so trimmed
    weights can be saved as safetensors and reloaded with ``create_model(name, config)`` +
    ``load_weights``.
    """
    from compactnet.models import MobileNetV2, MobileNetV2Config, ResNet20, ResNet20Config, VGG, VGGConfig
    from compactnet.models.mobilenetv2 import block_plan

    if isinstance(model, MobileNetV2):
        feats = model.features
        widths = [feats[0][0].out_channels] + [feats[b + 1].conv[-1][0].out_channels for b in range(17)]
        hidden = [feats[b + 1].conv[-2][0].out_channels for b in range(17)]
        derived = [widths[i] * t for i, (t, _s, _st) in enumerate(block_plan())]
        return MobileNetV2Config(widths=tuple(widths), hidden=None if hidden == derived else tuple(hidden),
                                 last=feats[-1][0].out_channels, num_classes=model.classifier.out_features)
    if isinstance(model, ResNet20):
        blocks = list(model.layers)
        stages = tuple(blocks[3 * s + 2].conv2.out_channels for s in range(3))
        inner = tuple(b.conv1.out_channels for b in blocks)
        default = tuple(c for c in stages for _ in range(3))
        return ResNet20Config(stages=stages, inner=None if inner == default else inner,
                              num_classes=model.fc.out_features)
    if isinstance(model, VGG):
        convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
        return VGGConfig(widths=tuple(c.out_channels for c in convs), num_classes=model.classifier.out_features)
    return None


def channels_json(model_name: str, config: Any) -> dict:
    """The channel-configuration JSON ``create_model(name, channels=path)`` reads."""
    return {"model": model_name, **config.to_dict()}


def write_channels(path: str | Path, model_name: str, config: Any) -> Path:
    """Write :func:`channels_json` atomically."""
    from compactnet.search._io import atomic_write_json

    return atomic_write_json(path, channels_json(model_name, config))


__all__ = ["MODES", "PruneRecord", "ChannelGroup", "GroupPruner", "paper_lower_bound", "extended_lower_bound",
           "config_from_model", "channels_json", "write_channels", "history_to_json", "history_from_json"]
