"""A narrow VGG-16 for CIFAR-10: VGG-16's 13 convs at half width, BN, one linear classifier.

Full-width VGG-16 trains at about 50 images/s on the 2-core development CPU (10 hours for 40
epochs); half width cuts FLOPs about 4x while keeping the plain-conv structure later issues need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from compactnet.errors import bad_value
from compactnet.models.mobilenetv2 import _init_weights

#: Conv widths of the narrow VGG-16; a max-pool follows the convs whose index is in POOL_AFTER.
DEFAULT_WIDTHS: tuple[int, ...] = (32, 32, 64, 64, 128, 128, 128, 256, 256, 256, 256, 256, 256)
POOL_AFTER: frozenset[int] = frozenset({1, 3, 6, 9, 12})


@dataclass(frozen=True)
class VGGConfig:
    """Channel configuration of a (possibly trimmed) narrow VGG-16.

    Attributes:
        widths: Output width of each of the 13 convs.
        num_classes: Classifier outputs.
    """

    widths: tuple[int, ...] = DEFAULT_WIDTHS
    num_classes: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(c) for c in self.widths))
        if len(self.widths) != len(DEFAULT_WIDTHS):
            raise bad_value("widths", f"a list of {len(DEFAULT_WIDTHS)} channel counts",
                            f"{len(self.widths)} values")
        for i, c in enumerate(self.widths):
            if c < 1:
                raise bad_value(f"widths[{i}]", "a positive channel count", c)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"widths": list(self.widths), "num_classes": self.num_classes}

    @classmethod
    def from_dict(cls, d: dict | Sequence[int]) -> "VGGConfig":
        """Build from a JSON value: a list of 13 widths or a dict with ``widths``."""
        if isinstance(d, (list, tuple)):
            return cls(widths=tuple(d))
        unknown = set(d) - {"widths", "num_classes", "model"}
        if unknown:
            raise bad_value("channels", "keys among widths, num_classes", sorted(unknown))
        return cls(widths=tuple(d.get("widths", DEFAULT_WIDTHS)), num_classes=int(d.get("num_classes", 10)))


class VGG(nn.Module):
    """Narrow VGG-16 built from a :class:`VGGConfig`."""

    def __init__(self, config: VGGConfig | None = None):
        super().__init__()
        self.config = config = config or VGGConfig()
        layers: list[nn.Module] = []
        cin = 3
        for i, cout in enumerate(config.widths):
            layers += [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            if i in POOL_AFTER:
                layers.append(nn.MaxPool2d(2))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, config.num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))
