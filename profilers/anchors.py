"""Anchor layers: a fixed yardstick timed in every profiling batch.

On a shared or virtual machine the CPU's speed drifts over minutes (here: the same untrimmed
MobileNetV2 read 0.37-0.60 ms in chunks seconds apart). Samples profiled minutes apart then disagree
by that drift, which no predictor can learn. The profiler therefore times these few layers of the
untrimmed Table-1 MobileNetV2 (a 1x1 expansion, its 3x3 depthwise conv and the 1x1 projection of
one block: the kinds that dominate a mobile network) inside every batch, and records their summed
latency with each sample (``Measurement.anchor_ms``). :func:`anchor_normalized` puts every sample on
one scale: its latency times the median anchor figure over all samples divided by its own batch's,
the same normalisation the predictors' test set applies to whole networks with its reference.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from typing import Sequence

import numpy as np

from compactnet.spec import LayerSpec, Measurement

log = logging.getLogger(__name__)

#: Layers of the untrimmed MobileNetV2 used as anchors (block 7: 8x8 input, 64 -> 384 -> 64 channels).
ANCHOR_NAMES = ("features.7.conv.0.0", "features.7.conv.1.0", "features.7.conv.2.0")


@functools.lru_cache(maxsize=1)
def anchor_layers() -> tuple[LayerSpec, ...]:
    """The anchor layers, taken from the untrimmed MobileNetV2's spec (renamed ``anchor/...``)."""
    from compactnet.extract import spec_for

    by_name = {l.name: l for l in spec_for("mobilenetv2").layers}
    return tuple(dataclasses.replace(by_name[n], name=f"anchor/{n}") for n in ANCHOR_NAMES)


def anchor_normalized(measurements: Sequence[Measurement]) -> list[Measurement]:
    """Samples put on one speed scale by their batch's anchor figure.

    Each sample with an anchor figure gets its latency (median and interval) multiplied by
    ``median(anchor_ms of all samples) / its anchor_ms``; samples without one (profiled before
    anchors existed, or with ``Protocol(anchors=False)``) are kept as measured, with a warning
    when both kinds are mixed.

    Args:
        measurements: Samples of one platform.

    Returns:
        The samples in order: new :class:`Measurement` objects for the anchored ones, the others as
        given (no input is changed).
    """
    ms = list(measurements)
    anchored = np.array([math.isfinite(m.anchor_ms) and m.anchor_ms > 0 for m in ms])
    if not anchored.any():
        return ms
    if not anchored.all():
        log.warning("%d of %d samples were profiled without anchor layers; they keep their own speed scale",
                    int((~anchored).sum()), len(ms))
    ref = float(np.median([m.anchor_ms for m, a in zip(ms, anchored) if a]))
    out = []
    for m, a in zip(ms, anchored):
        if a:
            f = ref / m.anchor_ms
            lat = m.latency
            lat = dataclasses.replace(lat, value_ms=lat.value_ms * f, low_ms=lat.low_ms * f,
                                      high_ms=lat.high_ms * f, rounds=tuple(r * f for r in lat.rounds),
                                      p50_ms=lat.p50_ms * f, p90_ms=lat.p90_ms * f)
            m = dataclasses.replace(m, latency=lat)
        out.append(m)
    return out


__all__ = ["ANCHOR_NAMES", "anchor_layers", "anchor_normalized"]
