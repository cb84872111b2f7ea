"""Tiny channel configurations and data for the search tests."""

from __future__ import annotations

from compactnet.data import synthetic_split

#: A Table-1 MobileNetV2 at a quarter-ish width (paper bounds still leave room to trim).
TINY_MNV2 = {"widths": [8, 12, 12, 12, 16, 16, 16, 16, 16, 16, 16, 24, 24, 24, 32, 32, 32, 48], "last": 64}
TINY_RESNET = {"stages": [8, 16, 16]}
TINY_VGG = {"widths": [8, 8, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16]}

#: Class-separable random images (class c brightens channel c % 3).
make_split = synthetic_split
