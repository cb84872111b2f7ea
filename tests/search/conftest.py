"""Fixtures of the search tests: a synthetic CIFAR-like data set, an analytic latency model, a tiny preset."""

from __future__ import annotations

import pytest
from search_tiny import make_split

from compactnet.data import Cifar10
from compactnet.search.latency import MacsLatencyModel
from compactnet.search.schedule import get_preset
@pytest.fixture
def tiny_data() -> Cifar10:
    return Cifar10(make_split(96, 0), make_split(40, 1), make_split(40, 2), "synthetic", "synthetic")


@pytest.fixture
def aligned_latency() -> MacsLatencyModel:
    """MACs-proportional latency, unaligned (not multiple of 4) convs 50% slower: non-monotone in width."""
    return MacsLatencyModel(ms_per_mmac=0.01, align=4, penalty=0.5)


@pytest.fixture
def tiny_preset():
    return get_preset("quick", iterations=2, decay=0.95, candidate_steps=1, candidate_batch=16, train_subset=32,
                      bn_batches=1, val_limit=20, winner_steps=1, extra_iterations=2, final_epochs=1,
                      final_max_steps=1, distill=False)
