"""A synthetic ground truth for tests and ``--synthetic`` benchmarks: no runtime, no timing noise
beyond what is asked for.

Latency = compute time (FLOPs at a platform throughput) + memory time (bytes at a bandwidth) +
a per-layer constant, multiplied by channel-alignment penalties (channels not a multiple of 8, 16
cost more; a depthwise conv far more, as on onnxruntime here) and by lognormal noise. Two
platforms made with :func:`synthetic_platforms` are correlated the way two runtimes on one CPU
are: same costs, different throughputs and penalties.

The real profilers' ``SyntheticProfiler`` (:mod:`compactnet.profilers`) is the one the product
uses for its own tests; this module only exists so the predictors can be tested on their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from compactnet.spec import LayerSpec, Latency, Measurement, NetworkSpec, Platform
from compactnet.predictors.features import OP_CODE, columns_from_raw, raw_matrix


@dataclass(frozen=True)
class SyntheticCosts:
    """Cost model of one synthetic platform.

    Attributes:
        gflops: Compute throughput (GFLOP/s).
        gbps: Memory bandwidth (GB/s).
        call_us: Fixed cost per layer (µs).
        pen8: Factor when a channel count is not a multiple of 8.
        pen16: Extra factor when not a multiple of 16.
        dw_pen: Extra factor for a depthwise conv with unaligned channels.
        block_scale: Factor on inverted-residual blocks (fusion quality).
    """

    gflops: float = 20.0
    gbps: float = 12.0
    call_us: float = 3.0
    pen8: float = 1.35
    pen16: float = 1.1
    dw_pen: float = 2.2
    block_scale: float = 1.0


def synthetic_platforms() -> dict[str, tuple[Platform, SyntheticCosts]]:
    """Three correlated synthetic platforms (keys ``synthetic-a/b/c-fp32-t1``)."""
    return {
        "synthetic-a-fp32-t1": (Platform("synthetic", "a", "fp32", 1, "synthetic-cpu", "0"), SyntheticCosts()),
        "synthetic-b-fp32-t1": (Platform("synthetic", "b", "fp32", 1, "synthetic-cpu", "0"),
                                SyntheticCosts(gflops=14.0, gbps=9.0, call_us=5.0, pen8=1.5, pen16=1.2, dw_pen=1.6,
                                               block_scale=1.15)),
        "synthetic-c-fp32-t1": (Platform("synthetic", "c", "fp32", 1, "synthetic-cpu", "0"),
                                SyntheticCosts(gflops=30.0, gbps=15.0, call_us=8.0, pen8=1.2, pen16=1.05,
                                               dw_pen=2.8, block_scale=0.9)),
    }


def true_latency_ms(layers: Sequence[LayerSpec], costs: SyntheticCosts, precision: str = "fp32") -> np.ndarray:
    """Noise-free latency of each layer under ``costs``."""
    raw = raw_matrix(layers)
    if len(raw) == 0:
        return np.zeros(0)
    c = columns_from_raw(raw, precision)
    ms = c["flops"] / (costs.gflops * 1e6) + c["bytes"] / (costs.gbps * 1e6) + costs.call_us / 1e3
    cin, cout = c["cin"], c["cout"]
    for ch in (cin, cout):
        ms = ms * np.where(ch % 8 != 0, costs.pen8, 1.0) * np.where(ch % 16 != 0, costs.pen16, 1.0)
    is_dw = raw[:, 0] == OP_CODE["dwconv"]
    ms = ms * np.where(is_dw & (cin % 16 != 0), costs.dw_pen, 1.0)
    ms = ms * np.where(raw[:, 0] == OP_CODE["block"], costs.block_scale, 1.0)
    return ms


def measure_synthetic(layers: Sequence[LayerSpec], platform: Platform, costs: SyntheticCosts, noise: float = 0.03,
                      seed: int = 0) -> list[Measurement]:
    """Measurements of ``layers`` with lognormal noise of relative size ``noise``."""
    rng = np.random.default_rng(seed)
    ms = true_latency_ms(layers, costs, platform.precision) * np.exp(rng.normal(0.0, noise, len(layers)))
    return [Measurement(l, platform, Latency(float(v), float(v) * (1 - noise), float(v) * (1 + noise), runs=40,
                                             rounds=(float(v),)), "2026-01-01T00:00:00Z", 0.0, "synthetic")
            for l, v in zip(layers, ms)]


def random_layers(n: int, seed: int = 0, kinds: Sequence[str] = ("conv", "dwconv", "block", "linear")) -> list[LayerSpec]:
    """``n`` random layers, cycling through ``kinds``, at CIFAR-like sizes."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        hw = int(rng.choice([4, 8, 16, 32]))
        cin = int(rng.integers(3, 161))
        cout = int(rng.integers(3, 161))
        s = int(rng.choice([1, 2]))
        if kind == "conv":
            k = int(rng.choice([1, 3]))
            out.append(LayerSpec(f"l{i}", "conv", cin, cout, hw, hw, kernel=k, stride=s, padding=k // 2, bn=True,
                                 act="relu"))
        elif kind == "dwconv":
            out.append(LayerSpec(f"l{i}", "dwconv", cin, cin, hw, hw, kernel=3, stride=s, padding=1, groups=cin,
                                 bn=True, act="relu6"))
        elif kind == "block":
            t = int(rng.choice([1, 6]))
            out.append(LayerSpec(f"l{i}", "block", cin, cout, hw, hw, stride=s, expansion=cin * t, bn=True,
                                 act="relu6", residual=(s == 1 and cin == cout)))
        elif kind == "linear":
            out.append(LayerSpec(f"l{i}", "linear", cin * 8, int(rng.integers(10, 200)), 1, 1, bias=True))
        elif kind == "gap":
            out.append(LayerSpec(f"l{i}", "gap", cin, cin, hw, hw))
        elif kind == "add":
            out.append(LayerSpec(f"l{i}", "add", cin, cin, hw, hw))
        else:
            out.append(LayerSpec(f"l{i}", kind, cin, cin, hw, hw, kernel=2, stride=2))
    return out


def toy_network(widths: dict[str, int] | None = None) -> NetworkSpec:
    """A small MobileNetV2-like network with three trimmable groups (for tests)."""
    layers = (
        LayerSpec("stem", "conv", 3, 32, 32, 32, kernel=3, stride=2, padding=1, bn=True, act="relu6",
                  in_group="input", out_group="g0"),
        LayerSpec("b1", "block", 32, 24, 16, 16, stride=2, expansion=192, bn=True, act="relu6",
                  in_group="g0", out_group="g1"),
        LayerSpec("b2", "block", 24, 24, 8, 8, stride=1, expansion=144, bn=True, act="relu6", residual=True,
                  in_group="g1", out_group="g1"),
        LayerSpec("b3", "block", 24, 48, 8, 8, stride=2, expansion=144, bn=True, act="relu6",
                  in_group="g1", out_group="g2"),
        LayerSpec("dw", "dwconv", 48, 48, 4, 4, kernel=3, padding=1, groups=48, bn=True, act="relu6",
                  in_group="g2", out_group="g2"),
        LayerSpec("head", "conv", 48, 256, 4, 4, bn=True, act="relu6", in_group="g2", out_group="last"),
        LayerSpec("fc", "linear", 256, 10, 1, 1, bias=True, in_group="last", out_group="classes"),
    )
    spec = NetworkSpec("toy", (1, 3, 32, 32), layers,
                       groups=(("input", 3), ("g0", 32), ("g1", 24), ("g2", 48), ("last", 256), ("classes", 10)),
                       fixed=("input", "classes"))
    return spec.with_channels(widths) if widths else spec


__all__ = ["SyntheticCosts", "synthetic_platforms", "true_latency_ms", "measure_synthetic", "random_layers",
           "toy_network"]
