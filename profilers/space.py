"""The ``space`` sampling strategy: a prior over the layers common CNNs are made of.

The ``sobol`` and ``prior`` strategies sample one model's neighbourhood; a predictor fitted on
them puts a 224-px MobileNetV2 or a VGG at a fraction of its latency (issue 15's table). ``space``
covers the layer space users meet instead, in two interleaved streams:

- **family layers** (two of every three candidates): the layers of networks drawn from
  :data:`compactnet.predictors.families.FAMILIES` (MobileNetV2, MobileNetV1, ResNet-20/32 and VGG
  at 32-224 px, every width scaled by a ratio in [0.25, 1]), shuffled, from a seed of their own
  (never the calibration or test seed);
- **generic layers**: conv (kernel 1/3/5/7, stride 1/2, groups 1), depthwise conv (kernel
  3/5/7), linear, max/average pooling, global average pooling and residual adds, with spatial
  sizes from 1 to 224 and channels log-uniform in [3, 1024], at most :data:`MAX_MACS`
  multiply-accumulates (a layer's profiling time stays bounded).

When a model is named, ``profile`` puts its own neighbourhood first (``--strategy prior`` on it):
the space prior then adds breadth.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from compactnet.spec import LayerSpec

from compactnet.profilers.sampling import SamplingStrategy, UnitSpace, mobilenetv2_space

#: Seed offset of the family networks (distinct from the calibration and test sets' seeds).
FAMILY_SEED = 1_618
#: Largest multiply-accumulate count of a generic layer.
MAX_MACS = 60e6
#: Largest input or output activation of a generic layer (elements; 1.5 M = 6 MB at fp32, the size
#: of a 224-px network's largest activations).
MAX_ELEMENTS = 1.5e6
_SIZES = (1, 2, 4, 7, 8, 12, 14, 16, 24, 28, 32, 48, 56, 64, 96, 112, 160, 224)
_ACTS = ("relu", "relu6", None)


class LayerSpaceStrategy(SamplingStrategy):
    """Family layers and generic layers, interleaved two to one (see the module docstring).

    Args:
        space: Unused units (the base class wants some; default the Table-1 MobileNetV2's).
        seed: Seed of both streams.
    """

    name = "space"

    def __init__(self, space: Sequence[UnitSpace] | None = None, seed: int = 0):
        super().__init__(space if space is not None else mobilenetv2_space(), seed)

    def family_networks(self, batch: int) -> list:
        """The 15 family networks whose layers make batch ``batch`` of the family stream."""
        from compactnet.predictors.families import draw_networks

        return draw_networks(15, seed=FAMILY_SEED + 1_000 * self.seed + batch)

    def _family_layers(self) -> Iterator[LayerSpec]:
        rng = np.random.default_rng(self.seed + 1)
        for batch in range(1_000):
            layers = [l for n in self.family_networks(batch) for l in n.spec().layers]
            for i in rng.permutation(len(layers)):
                yield layers[i]

    def _generic_layers(self) -> Iterator[LayerSpec]:
        rng = np.random.default_rng(self.seed + 2)
        i = 0
        while True:
            layer = generic_layer(rng, f"space{i}")
            if layer is not None:
                i += 1
                yield layer

    def _generate(self) -> Iterator[LayerSpec]:
        fam, gen = self._family_layers(), self._generic_layers()
        while True:
            yield next(fam)
            yield next(fam)
            yield next(gen)


def _channels(rng: np.random.Generator) -> int:
    return int(round(np.exp(rng.uniform(np.log(3), np.log(1024)))))


def generic_layer(rng: np.random.Generator, name: str) -> LayerSpec | None:
    """One random layer of a common kind, or None when the draw exceeds :data:`MAX_MACS` or
    :data:`MAX_ELEMENTS` (draw again)."""
    op = str(rng.choice(["conv", "conv", "conv", "dwconv", "dwconv", "linear", "maxpool", "avgpool", "gap", "add"]))
    h = int(rng.choice(_SIZES))
    c = _channels(rng)
    if c * h * h > MAX_ELEMENTS:
        return None
    if op == "conv":
        k = int(rng.choice([1, 1, 3, 3, 5, 7]))
        s = int(rng.choice([1, 1, 2])) if h > 1 else 1
        cout = _channels(rng)
        macs = k * k * c * cout * (h // s) ** 2
        if k > h or macs > MAX_MACS or cout * (h // s) ** 2 > MAX_ELEMENTS:
            return None
        return LayerSpec(name, "conv", c, cout, h, h, kernel=(k, k), stride=(s, s), padding=(k // 2, k // 2),
                         bn=True, act=str(rng.choice(["relu", "relu6"])) if rng.random() < 0.8 else None)
    if op == "dwconv":
        k = int(rng.choice([3, 3, 5, 7]))
        s = int(rng.choice([1, 1, 2]))
        if k > h or k * k * c * (h // s) ** 2 > MAX_MACS:
            return None
        return LayerSpec(name, "dwconv", c, c, h, h, kernel=(k, k), stride=(s, s), padding=(k // 2, k // 2), groups=c,
                         bn=True, act=str(rng.choice(["relu", "relu6"])))
    if op == "linear":
        return LayerSpec(name, "linear", c, _channels(rng), 1, 1, bias=True)
    if op in ("maxpool", "avgpool"):
        if h < 2:
            return None
        return LayerSpec(name, op, c, c, h, h, kernel=(2, 2), stride=(2, 2))
    if op == "gap":
        return LayerSpec(name, "gap", c, c, h, h)
    return LayerSpec(name, "add", c, c, h, h, act=str(rng.choice(["relu", "none"])).replace("none", "") or None)


__all__ = ["LayerSpaceStrategy", "generic_layer", "MAX_MACS", "MAX_ELEMENTS"]
