"""Fisher pruning (Theis et al. 2018) as an importance criterion of the trimming search.

The cost of removing channel ``c`` of a feature map ``a`` is estimated by the Fisher information of
a mask ``m_c`` multiplying it (at ``m = 1``)::

    Delta_c = 1 / (2N) * sum_n ( sum_{h,w} a_{nchw} * dL/da_{nchw} )^2

over ``N`` training images. The mask sits on each batch-norm output (a conv's output after its
affine, before the activation): zeroing it there is what removing the filter does to the next
layer. A DepGraph group's score for a channel is the sum of ``Delta`` over every batch-norm of the
group (a stage's blocks, an expansion conv and its depthwise conv); a group with no batch-norm uses
its convs' outputs instead.

This is not the first-order Taylor criterion (``|w * dL/dw|`` on weights, what
``get_importance("fisher")`` currently aliases to ``taylor``): Fisher squares the per-image
activation-gradient product before averaging over images.

Use it by passing the object, ``optimize(..., importance=FisherImportance())`` or
``ProgressiveSearch(..., importance=FisherImportance())``; :func:`get_importance` returns an
:class:`~compactnet.search.importance.Importance` instance unchanged. The loop calls
:meth:`FisherImportance.prepare` once per iteration with a few training batches (``needs_gradients``).
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from compactnet.errors import bad_value
from compactnet.search.importance import Importance

log = logging.getLogger(__name__)


class FisherImportance(Importance):
    """Fisher pruning signal per channel, accumulated over training batches by :meth:`prepare`."""

    name = "fisher"
    needs_gradients = True

    def __init__(self) -> None:
        self.fisher: dict[nn.Module, torch.Tensor] = {}
        self.images = 0

    def prepare(self, model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
                seed: int = 0) -> None:
        """Accumulate ``Delta`` of every batch-norm and conv output over ``batches`` (model in eval mode)."""
        if batches is None:
            raise bad_value("batches", "training batches for the fisher criterion", None)
        targets = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.Conv2d))]
        sums = {m: None for m in targets}
        hooks = []

        def hook(mod: nn.Module, _inp: Any, out: torch.Tensor) -> torch.Tensor:
            a = out
            y = out + 0  # later in-place activations act on the copy: `a` and its gradient stay pre-activation

            def grad_hook(g: torch.Tensor, a: torch.Tensor = a, mod: nn.Module = mod) -> None:
                per_image = (a.detach() * g).sum(dim=(2, 3)).double().pow(2).sum(0)
                sums[mod] = per_image if sums[mod] is None else sums[mod] + per_image

            if a.requires_grad:
                a.register_hook(grad_hook)
            return y

        for m in targets:
            hooks.append(m.register_forward_hook(hook))
        was = model.training
        model.eval()
        model.zero_grad(set_to_none=True)
        n = 0
        try:
            with torch.enable_grad():
                for xb, yb in batches:
                    F.cross_entropy(model(xb), yb).backward()
                    n += len(yb)
        finally:
            for h in hooks:
                h.remove()
            model.zero_grad(set_to_none=True)
            model.train(was)
        self.images = n
        self.fisher = {m: s / (2 * max(1, n)) for m, s in sums.items() if s is not None}
        log.debug("fisher importance from %d images over %d feature maps", n, len(self.fisher))

    def scores(self, group: Any) -> torch.Tensor:
        import torch_pruning as tp

        n = len(group[0].idxs)
        if not self.fisher:
            raise bad_value("fisher importance", "prepare(model, batches) called before scoring", "no statistics")
        total_bn = torch.zeros(n, dtype=torch.float64)
        total_conv = torch.zeros(n, dtype=torch.float64)
        found_bn = False
        conv_out = (tp.prune_conv_out_channels, tp.prune_depthwise_conv_out_channels)
        for item in group:
            dep, idxs = item.dep, item.idxs
            mod = dep.target.module
            root = getattr(item, "root_idxs", None) or list(range(len(idxs)))
            if any(r is None for r in root) or mod not in self.fisher:
                continue
            # the statistics are per *output* channel: a conv's input-channel dependency indexes something else
            if isinstance(mod, nn.BatchNorm2d) and dep.handler == tp.prune_batchnorm_out_channels:
                total_bn.index_add_(0, torch.tensor(root), self.fisher[mod][list(idxs)])
                found_bn = True
            elif isinstance(mod, nn.Conv2d) and dep.handler in conv_out:
                total_conv.index_add_(0, torch.tensor(root), self.fisher[mod][list(idxs)])
        return total_bn if found_bn else total_conv


__all__ = ["FisherImportance"]
