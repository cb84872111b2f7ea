"""Small helpers shared by the compression methods: module surgery, layer shapes, data subsets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from compactnet.data import MEAN, STD, Split
from compactnet.errors import bad_value


def get_module(model: nn.Module, name: str) -> nn.Module:
    """The sub-module at dotted path ``name``.

    Raises:
        ConfigError: No such module (the message lists a few that exist).
    """
    mods = dict(model.named_modules())
    if name not in mods:
        some = [n for n, m in mods.items() if isinstance(m, (nn.Conv2d, nn.Linear))][:8]
        raise bad_value("layer", "a module path of the model, e.g. " + ", ".join(some), name)
    return mods[name]


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the sub-module at dotted path ``name`` by ``new``."""
    parent_name, _, attr = name.rpartition(".")
    parent = get_module(model, parent_name) if parent_name else model
    setattr(parent, attr, new)


@dataclass(frozen=True)
class LayerShape:
    """Input and output shapes (batch 1) of one conv or linear module."""

    name: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]


def layer_shapes(model: nn.Module, input_shape: Sequence[int], kinds: tuple = (nn.Conv2d, nn.Linear)
                 ) -> dict[str, LayerShape]:
    """Shapes seen by every module of ``kinds`` in one forward pass on a zero input (eval mode)."""
    shapes: dict[str, LayerShape] = {}
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, kinds):
            def hook(m: nn.Module, inp: Any, out: Any, name: str = name) -> None:
                shapes[name] = LayerShape(name, tuple(inp[0].shape), tuple(out.shape))
            hooks.append(mod.register_forward_hook(hook))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            p = next(model.parameters(), None)
            model(torch.zeros(tuple(input_shape), dtype=p.dtype if p is not None else torch.float32))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return shapes


def subset(split: Split, fraction_or_n: float | int | None, seed: int = 0) -> Split:
    """A seeded, class-stratified subset: a fraction (a float, 0 < f <= 1) or a count of images (an int).

    Raises:
        ConfigError: A float outside (0, 1] (never silently read as a count) or a count below 1.
    """
    n_total = len(split)
    if fraction_or_n is None:
        return split
    if isinstance(fraction_or_n, float):
        if not 0 < fraction_or_n <= 1:
            raise bad_value("dataset_scale", "a fraction in (0, 1] (pass an int for a number of images)",
                            fraction_or_n)
        n = max(1, int(round(n_total * fraction_or_n)))
    else:
        n = int(fraction_or_n)
        if n < 1:
            raise bad_value("subset size", "a positive number of images", fraction_or_n)
    if n >= n_total:
        return split
    rng = np.random.default_rng(seed)
    labels = split.labels
    classes = np.unique(labels)
    order = rng.permutation(n_total)
    per = [order[labels[order] == c] for c in classes]
    idx: list[int] = []
    k = 0
    while len(idx) < n:  # round-robin over classes keeps the subset balanced
        for p in per:
            if k < len(p) and len(idx) < n:
                idx.append(int(p[k]))
        k += 1
    idx_arr = np.sort(np.asarray(idx))
    return Split(split.images[idx_arr], split.labels[idx_arr])


def normalised_images(split: Split) -> np.ndarray:
    """NCHW float32 images normalised exactly as :mod:`compactnet.train` feeds them."""
    x = split.images.transpose(0, 3, 1, 2).astype(np.float32)
    mean = np.asarray(MEAN, np.float32).reshape(1, 3, 1, 1) * 255
    std = np.asarray(STD, np.float32).reshape(1, 3, 1, 1) * 255
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def compare_fn(compare: Callable | None) -> Callable:
    """The protocol's :func:`compactnet.measure.compare`, or an injected replacement (tests)."""
    if compare is not None:
        return compare
    from compactnet.measure import compare as protocol_compare

    return protocol_compare


__all__ = ["get_module", "set_module", "LayerShape", "layer_shapes", "subset", "normalised_images", "compare_fn"]
