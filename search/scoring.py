"""Scoring a trim candidate: seeded subsets, short fine-tunes, batch-norm recalibration.

What the trimming loop (:mod:`compactnet.search.loop`) and the baselines run on every candidate and
winner. :func:`score_candidate` is module-level and picklable: what joblib workers (local or on a
cluster) run.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from compactnet.data import Split
from compactnet.search.groups import GroupPruner


def subset(split: Split, n: int | None, seed: int) -> Split:
    """A seeded random subset of ``n`` images (the whole split when ``n`` is None or larger).

    The stored splits are ordered by class (the packed copy is sorted), so a prefix is not a sample.
    """
    if n is None or n >= len(split):
        return split
    idx = np.sort(np.random.default_rng(seed).permutation(len(split))[:n])
    return Split(split.images[idx], split.labels[idx])


def recalibrate_bn(model: nn.Module, split: Split, batches: int, batch_size: int = 128, seed: int = 0) -> None:
    """Re-estimate every batch-norm's running statistics from ``batches`` training batches."""
    from compactnet.train import batches as iterate

    if batches <= 0:
        return
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was = model.training
    model.train()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, (xb, _yb) in enumerate(iterate(split, batch_size, True, gen, False)):
            if k >= batches:
                break
            model(xb)
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    model.train(was)


#: Gradient-norm clip of the search's short fine-tunes: about twice the usual norm of a trimmed
#: MobileNetV2's distilled fine-tune (median 2.3 on machine D), so only outlier batches are clipped.
#: Unclipped, one batch (norm 168) took the first winner of D's searches from 73.0% to 40.7%; clipped
#: at 5, the same 60 steps ended at 71.9% (results/machine-d/logs/collapse.txt).
FINETUNE_MAX_GRAD_NORM = 5.0


def finetune(model: nn.Module, split: Split, steps: int, batch_size: int, lr: float, seed: int,
             teacher: nn.Module | None = None) -> None:
    """``steps`` SGD steps (momentum 0.9, constant rate, augmentation, gradient norm clipped at
    :data:`FINETUNE_MAX_GRAD_NORM`) through :func:`compactnet.train.train`."""
    from compactnet.train import Recipe, train

    if steps <= 0:
        return
    quiet = logging.getLogger("compactnet.train")
    level = quiet.level
    quiet.setLevel(max(level, logging.WARNING))  # one "epoch 1/1" line per candidate is noise
    recipe = Recipe("search-finetune", "sgd", lr=lr, epochs=1, batch_size=batch_size, momentum=0.9,
                    weight_decay=4e-5, schedule="constant", warmup_epochs=0.0, label_smoothing=0.0, augment=True,
                    max_grad_norm=FINETUNE_MAX_GRAD_NORM)
    try:
        train(model, split, None, recipe, seed=seed, teacher=teacher, max_steps=steps, progress=False)
    finally:
        quiet.setLevel(level)


def score_candidate(model: nn.Module, mode: str, keeps: Mapping[str, Sequence[int]], train_split: Split,
                    val_split: Split, steps: int, batch_size: int, lr: float, bn_batches: int, seed: int,
                    threads: int | None = None, input_shape: Sequence[int] = (1, 3, 32, 32)) -> dict:
    """Trim a copy of ``model``, fine-tune it briefly, recalibrate batch-norm, score it on ``val_split``.

    Module-level and picklable: what joblib workers (local or on a cluster) run.

    Returns:
        ``{"val_top1", "seconds", "state"}`` (state: the candidate's weights, CPU tensors).
    """
    from compactnet.train import evaluate

    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        m = copy.deepcopy(model)
        GroupPruner(m, mode, example_input=torch.zeros(tuple(input_shape))).apply(keeps)
        finetune(m, train_split, steps, batch_size, lr, seed)
        recalibrate_bn(m, train_split, bn_batches, seed=seed)
        acc = evaluate(m, val_split)
        state = {k: v.detach().clone() for k, v in m.state_dict().items()}
    finally:
        torch.set_num_threads(old_threads)
    return {"val_top1": acc, "seconds": time.perf_counter() - t0, "state": state}


__all__ = ["FINETUNE_MAX_GRAD_NORM", "subset", "recalibrate_bn", "finetune", "score_candidate"]
