"""MobileNetV2 for CIFAR-10 exactly as Table 1 of the CompactNet paper.

Stem conv 3->32 with stride 2 on 32x32 input, 17 inverted-residual blocks, a 1x1 conv to 1280
channels (the last feature map is 1x1), global average pooling and a 1280->10 classifier.

The network is built from a channel configuration: the 18 block output widths (stem plus 17
blocks, the paper's "18 layers"), optionally the 17 hidden (expansion) widths and the width of
the last 1x1 conv. Blocks of one stage are joined by residual adds and must share a width.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from compactnet.errors import bad_value

#: (expansion t, output channels c, repeats n, first stride s) per stage, Table 1.
STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_WIDTH = 32
LAST_WIDTH = 1280
#: The 18 block output widths of the untrimmed network (stem first).
DEFAULT_WIDTHS: tuple[int, ...] = (STEM_WIDTH,) + tuple(c for _, c, n, _ in STAGES for _ in range(n))
#: Table 2 of the paper: the trimmed configuration reported for the mobile CPU.
PAPER_TABLE2_WIDTHS: tuple[int, ...] = (
    32, 12, 20, 20, 24, 24, 24, 12, 12, 12, 12, 22, 22, 22, 24, 24, 24, 44,
)


def block_plan() -> list[tuple[int, int, int]]:
    """Return (expansion, stride, stage index) for each of the 17 blocks."""
    plan = []
    for stage, (t, _c, n, s) in enumerate(STAGES):
        for i in range(n):
            plan.append((t, s if i == 0 else 1, stage))
    return plan


def stage_of_width_index() -> list[int]:
    """Stage id of each of the 18 width entries (-1 for the stem)."""
    return [-1] + [stage for _t, _s, stage in block_plan()]


@dataclass(frozen=True)
class MobileNetV2Config:
    """Channel configuration of a (possibly trimmed) Table-1 MobileNetV2.

    Attributes:
        widths: 18 block output widths, stem first.
        hidden: 17 expansion widths; ``None`` means 6x (or 1x for block 1) the block's input.
        last: Width of the final 1x1 conv.
        num_classes: Classifier outputs.
    """

    widths: tuple[int, ...] = DEFAULT_WIDTHS
    hidden: tuple[int, ...] | None = None
    last: int = LAST_WIDTH
    num_classes: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if self.hidden is not None:
            object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        _check_widths("widths", self.widths, len(DEFAULT_WIDTHS))
        if self.hidden is not None:
            _check_widths("hidden", self.hidden, len(DEFAULT_WIDTHS) - 1)
        if self.hidden is not None and self.hidden[0] != self.widths[0]:
            raise bad_value("hidden[0]", f"equal to widths[0]={self.widths[0]} (block 1 has no "
                            "expansion: its depthwise conv runs on the stem's output)", self.hidden[0])
        if int(self.last) < 1:
            raise bad_value("last", "a positive channel count", self.last)
        stages = stage_of_width_index()
        for i in range(2, len(self.widths)):
            if stages[i] == stages[i - 1] and self.widths[i] != self.widths[i - 1]:
                raise bad_value(
                    f"widths[{i}]",
                    f"equal to widths[{i - 1}]={self.widths[i - 1]} (blocks of one stage are "
                    "joined by residual adds and share one width)",
                    self.widths[i],
                )

    def hidden_widths(self) -> tuple[int, ...]:
        """The 17 expansion widths, derived as in the paper when not given."""
        if self.hidden is not None:
            return self.hidden
        return tuple(self.widths[i] * t for i, (t, _s, _st) in enumerate(block_plan()))

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"widths": list(self.widths), "hidden": list(self.hidden) if self.hidden else None,
                "last": self.last, "num_classes": self.num_classes}

    @classmethod
    def from_dict(cls, d: dict | Sequence[int]) -> "MobileNetV2Config":
        """Build from a JSON value: a list of 18 widths or a dict with ``widths``."""
        if isinstance(d, (list, tuple)):
            return cls(widths=tuple(d))
        unknown = set(d) - {"widths", "hidden", "last", "num_classes", "model"}
        if unknown:
            raise bad_value("channels", "keys among widths, hidden, last, num_classes", sorted(unknown))
        return cls(
            widths=tuple(d.get("widths", DEFAULT_WIDTHS)),
            hidden=tuple(d["hidden"]) if d.get("hidden") else None,
            last=int(d.get("last", LAST_WIDTH)),
            num_classes=int(d.get("num_classes", 10)),
        )


def _check_widths(name: str, values: Sequence[int], length: int) -> None:
    if len(values) != length:
        raise bad_value(name, f"a list of {length} channel counts", f"{len(values)} values")
    for i, w in enumerate(values):
        if w < 1:
            raise bad_value(f"{name}[{i}]", "a positive channel count", w)


def conv_bn_act(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Conv (no bias) + BatchNorm (+ ReLU6)."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: optional 1x1 expansion, 3x3 depthwise, 1x1 linear projection."""

    def __init__(self, cin: int, hidden: int, cout: int, stride: int, expand: bool, residual: bool):
        super().__init__()
        layers: list[nn.Module] = []
        if expand:
            layers.append(conv_bn_act(cin, hidden, 1))
        else:
            hidden = cin
        layers.append(conv_bn_act(hidden, hidden, 3, stride, groups=hidden))
        layers.append(conv_bn_act(hidden, cout, 1, act=False))
        self.conv = nn.Sequential(*layers)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.residual else out


class MobileNetV2(nn.Module):
    """Table-1 MobileNetV2 built from a :class:`MobileNetV2Config`."""

    def __init__(self, config: MobileNetV2Config | None = None, dropout: float = 0.2):
        super().__init__()
        self.config = config = config or MobileNetV2Config()
        w = config.widths
        hidden = config.hidden_widths()
        blocks: list[nn.Module] = [conv_bn_act(3, w[0], 3, stride=2)]
        for i, (t, s, stage) in enumerate(block_plan()):
            first_of_stage = i == 0 or block_plan()[i - 1][2] != stage
            blocks.append(InvertedResidual(w[i], hidden[i], w[i + 1], s, expand=t != 1,
                                           residual=not first_of_stage))
        blocks.append(conv_bn_act(w[-1], config.last, 1))
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.last, config.num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.classifier(self.dropout(x))


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
