"""Network families for latency: the networks a platform's predictor is calibrated and tested on.

A latency predictor is asked about the networks users ship, not only about trims of one model, so
its whole-network measurements (the in-context correction's training set, the benchmarks' held-out
test set) are drawn from one table of families (:data:`FAMILIES`): the registry's MobileNetV2,
ResNet-20 and narrow VGG-16 plus MobileNetV1 and ResNet-32, each at several input sizes (32-224 px)
and with every free width scaled by a ratio uniform in [0.25, 1]. These extra architectures are
for latency only (they are never trained); :func:`build` makes any family's torch module.

Draws are seeded: the calibration networks a profile measures (:data:`CALIBRATION_SEED`) and the
benchmarks' test set (:data:`TEST_SEED`) come from different seeds, and
:func:`draw_networks` never returns a configuration already in ``exclude``, so the two are
disjoint by construction.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
from torch import nn

from compactnet.errors import bad_value

CALIBRATION_SEED = 3_141
TEST_SEED = 27_182
RATIO_LOW = 0.25
#: MobileNetV1 (Howard et al., 2017): stem width, then the 13 depthwise-separable blocks' widths.
V1_WIDTHS = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
#: Strides of the stem and of each block's depthwise conv (ImageNet layout at every input size).
V1_STRIDES = (2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)


@dataclass(frozen=True)
class Family:
    """One network family at one input size.

    Attributes:
        name: ``model@size`` (e.g. ``mobilenetv1@96``).
        model: Architecture: a registry name, ``mobilenetv1`` or ``resnet32``.
        hw: Input height and width (px).
        share: Share of a drawn set.
    """

    name: str
    model: str
    hw: int
    share: float


def _families(spec: Iterable[tuple[str, int, float]]) -> tuple[Family, ...]:
    return tuple(Family(f"{m}@{hw}", m, hw, s) for m, hw, s in spec)


#: The families and their shares of a drawn set.
FAMILIES: tuple[Family, ...] = _families((
    ("mobilenetv2", 32, 0.16), ("mobilenetv2", 64, 0.08), ("mobilenetv2", 96, 0.05), ("mobilenetv2", 160, 0.04),
    ("mobilenetv2", 224, 0.04), ("resnet20", 32, 0.10), ("resnet20", 64, 0.05), ("resnet32", 32, 0.07),
    ("resnet32", 48, 0.04), ("vgg16", 32, 0.10), ("vgg16", 64, 0.05), ("mobilenetv1", 32, 0.06),
    ("mobilenetv1", 64, 0.06), ("mobilenetv1", 96, 0.05), ("mobilenetv1", 160, 0.05)))
#: Architecture of each family name prefix, for leave-one-family-out splits.
ARCHITECTURES = ("mobilenetv2", "resnet", "vgg16", "mobilenetv1")


def architecture_of(model: str) -> str:
    """The architecture group of a model name (``resnet20`` and ``resnet32`` are both ``resnet``)."""
    return "resnet" if model.startswith("resnet") else model


# ----- the two latency-only architectures -----------------------------------------------------------
class MobileNetV1(nn.Module):
    """MobileNetV1 with free widths (stem + 13 blocks of depthwise 3x3 and pointwise 1x1, BN, ReLU)."""

    def __init__(self, widths: Sequence[int] = V1_WIDTHS, num_classes: int = 10):
        super().__init__()
        from compactnet.models.mobilenetv2 import _init_weights, conv_bn_act

        if len(widths) != len(V1_WIDTHS) or min(widths) < 1:
            raise bad_value("widths", f"{len(V1_WIDTHS)} positive channel counts", list(widths))
        layers: list[nn.Module] = [conv_bn_act(3, widths[0], 3, V1_STRIDES[0])]
        for cin, cout, s in zip(widths[:-1], widths[1:], V1_STRIDES[1:]):
            layers += [conv_bn_act(cin, cin, 3, s, groups=cin), conv_bn_act(cin, cout, 1)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(widths[-1], num_classes)
        _init_weights(self)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


class CifarResNet(nn.Module):
    """CIFAR ResNet-(6n+2) with free stage and inner widths (ResNet-20's blocks, ``n`` per stage)."""

    def __init__(self, stages: Sequence[int], inner: Sequence[int], blocks_per_stage: int, num_classes: int = 10):
        super().__init__()
        from compactnet.models.mobilenetv2 import _init_weights
        from compactnet.models.resnet import BasicBlock

        if len(stages) != 3 or len(inner) != 3 * blocks_per_stage:
            raise bad_value("widths", f"3 stage widths and {3 * blocks_per_stage} inner widths",
                            f"{len(stages)} and {len(inner)}")
        self.stem = nn.Sequential(nn.Conv2d(3, stages[0], 3, 1, 1, bias=False), nn.BatchNorm2d(stages[0]),
                                  nn.ReLU(inplace=True))
        blocks, cin = [], stages[0]
        for s, cout in enumerate(stages):
            for b in range(blocks_per_stage):
                blocks.append(BasicBlock(cin, inner[s * blocks_per_stage + b], cout, 2 if s > 0 and b == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        _init_weights(self)

    def forward(self, x):
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


# ----- drawing --------------------------------------------------------------------------------------
def draw_channels(model: str, rng: np.random.Generator) -> dict:
    """A random configuration of ``model``: every free width times a ratio uniform in [0.25, 1]."""
    from compactnet.predictors.testset import _DRAW, _scale

    if model == "mobilenetv1":
        return {"widths": [_scale(w, r) for w, r in zip(V1_WIDTHS, rng.uniform(RATIO_LOW, 1.0, len(V1_WIDTHS)))]}
    if model == "resnet32":
        stages = [_scale(c, r) for c, r in zip((16, 32, 64), rng.uniform(RATIO_LOW, 1.0, 3))]
        inner = [_scale(c, r) for c, r in zip([c for c in (16, 32, 64) for _ in range(5)],
                                              rng.uniform(RATIO_LOW, 1.0, 15))]
        return {"stages": stages, "inner": inner}
    if model not in _DRAW:
        raise bad_value("model", "one of " + ", ".join(sorted(set(_DRAW) | {"mobilenetv1", "resnet32"})), model)
    return _DRAW[model](rng)


def draw_networks(n: int, seed: int, families: Sequence[Family] = FAMILIES,
                  exclude: Iterable[Any] = ()) -> list[Any]:
    """``n`` networks drawn from ``families`` by their shares (at least one per family when ``n`` allows).

    Args:
        n: Networks to draw.
        seed: Seed (:data:`CALIBRATION_SEED`, :data:`TEST_SEED`, or your own).
        families: The families to draw from.
        exclude: Networks (``TestNetwork``) whose configurations must not be drawn again.

    Returns:
        :class:`~compactnet.predictors.testset.TestNetwork` records (with ``hw``), ids ``model@hw-NNN``,
        families interleaved.
    """
    from compactnet.predictors.testset import TestNetwork

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise bad_value("n", "a positive number of networks", n)
    if not families:
        raise bad_value("families", "at least one family", "none")
    shares = np.array([f.share for f in families], dtype=np.float64)
    counts = np.floor(shares / shares.sum() * n).astype(int)
    if n >= len(families):
        counts = np.maximum(counts, 1)
    while counts.sum() < n:  # largest remainders first
        counts[int(np.argmax(shares / shares.sum() * n - counts))] += 1
    while counts.sum() > n:
        counts[int(np.argmax(counts))] -= 1
    rng = np.random.default_rng(seed)
    seen = {_config_key(x.model, x.channels, getattr(x, "hw", 32)) for x in exclude}
    out: list[list[Any]] = []
    for f, k in zip(families, counts):
        nets = []
        while len(nets) < k:
            ch = draw_channels(f.model, rng)
            key = _config_key(f.model, ch, f.hw)
            if key in seen:
                continue
            seen.add(key)
            nets.append(TestNetwork(f"{f.name}-{len(nets):03d}", f.model, ch, hw=f.hw))
        out.append(nets)
    return [x for group in _interleave(out) for x in group]


def _interleave(groups: list[list[Any]]) -> list[list[Any]]:
    longest = max((len(g) for g in groups), default=0)
    return [[g[i] for g in groups if i < len(g)] for i in range(longest)]


def _config_key(model: str, channels: dict, hw: int) -> str:
    return json.dumps([model, hw, channels], sort_keys=True)


def build(model: str, channels: dict) -> nn.Module:
    """The torch module of a family network (registry models through :func:`compactnet.models.create_model`)."""
    if model == "mobilenetv1":
        return MobileNetV1(channels["widths"])
    if model == "resnet32":
        return CifarResNet(channels["stages"], channels["inner"], 5)
    from compactnet.models import create_model

    return create_model(model, channels)


def onnx_bytes(model: str, channels: dict, hw: int) -> bytes:
    """The protocol's ONNX export of a family network at its input size."""
    from compactnet.export import export_onnx

    return export_onnx(build(model, channels), input_shape=(1, 3, hw, hw), check=False).onnx_bytes


@functools.lru_cache(maxsize=2048)
def _spec(model: str, channels_json: str, hw: int) -> Any:
    from compactnet.extract import network_spec_from_torch

    return network_spec_from_torch(build(model, json.loads(channels_json)), (1, 3, hw, hw), architecture=model)


def spec(model: str, channels: dict, hw: int = 32) -> Any:
    """The :class:`~compactnet.spec.NetworkSpec` of a family network at its input size (cached)."""
    if hw == 32 and model in ("mobilenetv2", "resnet20", "vgg16"):
        from compactnet.extract import spec_for

        return spec_for(model, channels)
    return _spec(model, json.dumps(channels, sort_keys=True), int(hw))


__all__ = ["Family", "FAMILIES", "ARCHITECTURES", "CALIBRATION_SEED", "TEST_SEED", "MobileNetV1", "CifarResNet",
           "architecture_of", "draw_channels", "draw_networks", "build", "onnx_bytes", "spec"]
