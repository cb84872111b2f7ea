"""Which channels to keep (the policy): swappable importance criteria over DepGraph groups.

A criterion maps a Torch-Pruning group (every layer coupled to a set of channels) to one score
per channel; the search keeps the channels of largest score. Criteria:

- ``l2`` (default, as the paper): the L2 norm of the filters writing each channel, summed over
  every conv of the group (a stage's blocks, or an expansion conv and its depthwise conv).
- ``group-l2``: Torch-Pruning's ``GroupMagnitudeImportance(p=2)``: also counts batch-norm scales
  and the consumers' input weights.
- ``random``: seeded random scores (the baseline a published study found hard to beat).
- ``taylor``: first-order Taylor (Molchanov et al. 2019), |w * dL/dw| summed per channel, through
  Torch-Pruning's ``GroupTaylorImportance``, with gradients accumulated over a few training batches
  (:meth:`Importance.prepare`).

Any callable ``(group) -> 1-D tensor`` can be passed instead of a name.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

import torch
from torch import nn

from compactnet.errors import bad_value

log = logging.getLogger(__name__)

CRITERIA = ("l2", "group-l2", "random", "taylor", "fisher")


class Importance:
    """Base criterion: ``scores(group) -> tensor`` with one score per channel of the group."""

    name = "base"
    needs_gradients = False

    def prepare(self, model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
                seed: int = 0) -> None:
        """Called once per iteration on the current model before scoring (no-op by default)."""

    def scores(self, group: Any) -> torch.Tensor:  # pragma: no cover - abstract
        """One score per channel of ``group`` (larger = more important)."""
        raise NotImplementedError

    def keep(self, group: Any, k: int) -> list[int]:
        """Indices (sorted) of the ``k`` most important channels; ties go to the lower index."""
        s = self.scores(group).detach().double().cpu()
        if k >= len(s):
            return list(range(len(s)))
        # stable: sort by (-score, index)
        order = sorted(range(len(s)), key=lambda i: (-float(s[i]), i))
        return sorted(order[:k])

    def __call__(self, group: Any) -> torch.Tensor:
        return self.scores(group)


class FilterL2(Importance):
    """L2 norm of the filters writing each channel (the paper's criterion), over the group's convs."""

    name = "l2"

    @torch.no_grad()
    def scores(self, group: Any) -> torch.Tensor:
        import torch_pruning as tp

        out_fns = (tp.prune_conv_out_channels, tp.prune_depthwise_conv_out_channels, tp.prune_linear_out_channels)
        n = len(group[0].idxs)
        total = torch.zeros(n, dtype=torch.float64)
        for item in group:
            dep, idxs = item.dep, item.idxs
            layer = dep.target.module
            if dep.handler not in out_fns or not isinstance(layer, (nn.Conv2d, nn.Linear)):
                continue
            root = getattr(item, "root_idxs", None) or list(range(len(idxs)))
            if any(r is None for r in root):
                continue
            w = layer.weight.detach()[list(idxs)].flatten(1).double()
            total.index_add_(0, torch.tensor(root), w.pow(2).sum(1))
        return total.sqrt()


class TorchPruningImportance(Importance):
    """Wrap any Torch-Pruning importance object."""

    def __init__(self, criterion: Any, name: str = "tp"):
        self.criterion = criterion
        self.name = name

    def scores(self, group: Any) -> torch.Tensor:
        s = self.criterion(group)
        if s is None:
            return torch.zeros(len(group[0].idxs))
        return s


class RandomScores(Importance):
    """Seeded random scores: reproducible, and re-seeded every iteration by :meth:`prepare`."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.gen = torch.Generator().manual_seed(seed)

    def prepare(self, model: nn.Module, batches: Iterable | None = None, seed: int = 0) -> None:
        self.gen.manual_seed(int(seed))

    def scores(self, group: Any) -> torch.Tensor:
        return torch.rand(len(group[0].idxs), generator=self.gen)


class Taylor(TorchPruningImportance):
    """First-order Taylor importance; gradients from a few batches (:meth:`prepare`)."""

    needs_gradients = True

    def __init__(self) -> None:
        import torch_pruning as tp

        super().__init__(tp.importance.GroupTaylorImportance(), "taylor")

    def prepare(self, model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
                seed: int = 0) -> None:
        """Accumulate the training loss's gradients over ``batches`` (model in eval mode: BN fixed)."""
        import torch.nn.functional as F

        if batches is None:
            raise bad_value("batches", "training batches for the taylor criterion", None)
        was = model.training
        model.eval()
        model.zero_grad(set_to_none=True)
        n = 0
        with torch.enable_grad():
            for xb, yb in batches:
                F.cross_entropy(model(xb), yb).backward()
                n += 1
        model.train(was)
        log.debug("taylor importance from %d batches", n)

    def scores(self, group: Any) -> torch.Tensor:
        for item in group:
            layer = item.dep.target.module
            if isinstance(layer, (nn.Conv2d, nn.Linear)) and layer.weight.grad is None:
                layer.weight.grad = torch.zeros_like(layer.weight)
        return super().scores(group)


def get_importance(criterion: str | Importance | Callable, seed: int = 0) -> Importance:
    """An importance criterion by name (``l2``, ``group-l2``, ``random``, ``taylor``, ``fisher``) or a callable.

    Raises:
        ConfigError: An unknown name.
    """
    if isinstance(criterion, Importance):
        return criterion
    if callable(criterion) and not isinstance(criterion, str):
        return TorchPruningImportance(criterion, getattr(criterion, "__name__", type(criterion).__name__))
    name = str(criterion).lower().replace("_", "-")
    if name in ("l2", "filter-l2", "magnitude"):
        return FilterL2()
    if name == "group-l2":
        import torch_pruning as tp

        return TorchPruningImportance(tp.importance.GroupMagnitudeImportance(p=2), "group-l2")
    if name == "random":
        return RandomScores(seed)
    if name == "taylor":
        return Taylor()
    if name == "fisher":
        from compactnet.search.methods.fisher import FisherImportance

        return FisherImportance()
    raise bad_value("importance", "one of " + ", ".join(CRITERIA) + " or a callable", criterion)


def keep_indices(importance: Importance, pruner: Any, widths: dict[str, int]) -> dict[str, list[int]]:
    """Kept channel indices for each DepGraph group of a trim plan (``{group id: new width}``)."""
    return {gid: importance.keep(pruner.dep_group(gid), w) for gid, w in widths.items()}


__all__ = ["CRITERIA", "Importance", "FilterL2", "TorchPruningImportance", "RandomScores", "Taylor",
           "get_importance", "keep_indices"]
