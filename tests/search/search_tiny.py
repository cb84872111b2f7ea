"""Tiny channel configurations and data for the search tests."""

from __future__ import annotations

import numpy as np

from compactnet.data import Split

#: A Table-1 MobileNetV2 at a quarter-ish width (paper bounds still leave room to trim).
TINY_MNV2 = {"widths": [8, 12, 12, 12, 16, 16, 16, 16, 16, 16, 16, 24, 24, 24, 32, 32, 32, 48], "last": 64}
TINY_RESNET = {"stages": [8, 16, 16]}
TINY_VGG = {"widths": [8, 8, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16]}


def make_split(n: int, seed: int) -> Split:
    """Class-separable random images (class c brightens channel c % 3)."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.int64)
    images = rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
    for c in range(10):
        sel = labels == c
        images[sel, :, :, c % 3] = np.clip(images[sel, :, :, c % 3].astype(int) + 20 * c, 0, 255)
    return Split(images, labels)
