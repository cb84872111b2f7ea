"""ResNet-20 for CIFAR-10 (He et al., 2016), built from a channel configuration.

Three stages of three basic blocks (16, 32, 64 channels). A block whose shape changes uses a
1x1 conv + BN shortcut (option B), so every width can be trimmed. The stem shares the first
stage's width (residual adds couple them); each block's inner width is free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from compactnet.errors import bad_value
from compactnet.models.mobilenetv2 import _init_weights

DEFAULT_STAGES: tuple[int, ...] = (16, 32, 64)
BLOCKS_PER_STAGE = 3


@dataclass(frozen=True)
class ResNet20Config:
    """Channel configuration of a (possibly trimmed) ResNet-20.

    Attributes:
        stages: Output width of each of the 3 stages (the stem has the first one).
        inner: Width inside each of the 9 basic blocks (between its two convs).
        num_classes: Classifier outputs.
    """

    stages: tuple[int, ...] = DEFAULT_STAGES
    inner: tuple[int, ...] | None = None
    num_classes: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(int(c) for c in self.stages))
        if len(self.stages) != 3:
            raise bad_value("stages", "a list of 3 channel counts", f"{len(self.stages)} values")
        if self.inner is not None:
            object.__setattr__(self, "inner", tuple(int(c) for c in self.inner))
            if len(self.inner) != 3 * BLOCKS_PER_STAGE:
                raise bad_value("inner", "a list of 9 channel counts", f"{len(self.inner)} values")
        for name, values in (("stages", self.stages), ("inner", self.inner or ())):
            for i, c in enumerate(values):
                if c < 1:
                    raise bad_value(f"{name}[{i}]", "a positive channel count", c)

    def inner_widths(self) -> tuple[int, ...]:
        """The 9 inner widths (default: the stage width)."""
        return self.inner or tuple(c for c in self.stages for _ in range(BLOCKS_PER_STAGE))

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"stages": list(self.stages), "inner": list(self.inner) if self.inner else None,
                "num_classes": self.num_classes}

    @classmethod
    def from_dict(cls, d: dict | Sequence[int]) -> "ResNet20Config":
        """Build from a JSON value: a dict with ``stages`` and optional ``inner``."""
        if isinstance(d, (list, tuple)):
            return cls(stages=tuple(d))
        unknown = set(d) - {"stages", "inner", "num_classes", "model"}
        if unknown:
            raise bad_value("channels", "keys among stages, inner, num_classes", sorted(unknown))
        return cls(stages=tuple(d.get("stages", DEFAULT_STAGES)),
                   inner=tuple(d["inner"]) if d.get("inner") else None,
                   num_classes=int(d.get("num_classes", 10)))


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual add."""

    def __init__(self, cin: int, inner: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, inner, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(inner, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    """CIFAR ResNet-20 built from a :class:`ResNet20Config`."""

    def __init__(self, config: ResNet20Config | None = None):
        super().__init__()
        self.config = config = config or ResNet20Config()
        self.stem = nn.Sequential(nn.Conv2d(3, config.stages[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(config.stages[0]), nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        cin = config.stages[0]
        inner = config.inner_widths()
        for s, cout in enumerate(config.stages):
            for b in range(BLOCKS_PER_STAGE):
                stride = 2 if s > 0 and b == 0 else 1
                blocks.append(BasicBlock(cin, inner[s * BLOCKS_PER_STAGE + b], cout, stride))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, config.num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))
