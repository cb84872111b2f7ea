"""Low-rank decomposition (accnn): a conv becomes a vertical and a horizontal conv, a linear two linears.

A conv with weight ``(N, C, d, d)`` (any ``kh x kw`` kernel, groups 1) is replaced by a ``(K, C, d, 1)``
conv followed by a ``(N, K, 1, d)`` conv (Tai et al. 2016, the closed-form solution accnn's
``acc_conv.py`` uses): the weight reshaped to the ``(C*kh, N*kw)`` matrix ``M[(c,i),(n,j)] = W[n,c,i,j]``
is factorised by SVD, ``M ~ U_K S_K V_K^T``; the vertical filters are ``U_K sqrt(S_K)``, the horizontal
ones ``sqrt(S_K) V_K^T``. At full rank the pair reproduces the conv exactly (up to rounding). The
conv's stride and padding are split (vertical part on the first conv, horizontal on the second); its
bias moves to the second conv and a batch-norm after the conv stays after the second conv. A linear
layer ``(out, in)`` becomes ``(K, in)`` + ``(out, K)`` by truncated SVD.

Ranks are chosen for a requested theoretical speedup (whole-network MACs) by the product of PCA
energies (Zhang et al. 2015, accnn's ``rank_selection``): a greedy that repeatedly takes the rank
step losing the least log-energy per MAC saved. With a latency predictor
(:func:`select_ranks_latency`), the same greedy runs on predicted latency on the target platform
instead (per step: the rank step with the best predicted latency gain per log-energy lost). Ranks can
also be given as JSON ``{layer_name: rank}`` (:func:`load_rank_config`); the chosen configuration is
saved the same way (:func:`save_rank_config`).

Typical use::

    ranks = select_ranks(model, speedup=2.0)              # or select_ranks_latency(model, predictor, 2.0)
    save_rank_config("ranks.json", ranks, model_name="resnet20")
    small = decompose(model, ranks)                       # a new module; `model` is unchanged
    report = lowrank_report(model, small, data, platform="ort-cpu-fp32-t1")
"""

from __future__ import annotations

import copy
import functools
import heapq
import json
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from compactnet.errors import ConfigError, bad_value
from compactnet.search.methods._common import compare_fn, get_module, layer_shapes, set_module
from compactnet.spec import LayerSpec, NetworkSpec

log = logging.getLogger(__name__)

RANK_CONFIG_VERSION = 1


# ----- modules ------------------------------------------------------------------------------------
class LowRankConv2d(nn.Module):
    """A ``(K, C, kh, 1)`` conv followed by a ``(N, K, 1, kw)`` conv.

    Attributes:
        first: Vertical conv: kernel ``(kh, 1)``, stride ``(sh, 1)``, padding ``(ph, 0)``, no bias.
        second: Horizontal conv: kernel ``(1, kw)``, stride ``(1, sw)``, padding ``(0, pw)``, the
            original conv's bias.
    """

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int], rank: int, bias: bool):
        super().__init__()
        kh, kw = kernel
        sh, sw = stride
        ph, pw = padding
        self.first = nn.Conv2d(cin, rank, (kh, 1), stride=(sh, 1), padding=(ph, 0), bias=False)
        self.second = nn.Conv2d(rank, cout, (1, kw), stride=(1, sw), padding=(0, pw), bias=bias)

    @property
    def rank(self) -> int:
        """K."""
        return int(self.first.out_channels)

    # the replaced conv's interface, for code reading channel counts off convs (channel configurations)
    @property
    def in_channels(self) -> int:
        """C."""
        return int(self.first.in_channels)

    @property
    def out_channels(self) -> int:
        """N."""
        return int(self.second.out_channels)

    @property
    def kernel_size(self) -> tuple[int, int]:
        """(kh, kw) of the replaced conv."""
        return (int(self.first.kernel_size[0]), int(self.second.kernel_size[1]))

    @property
    def stride(self) -> tuple[int, int]:
        """(sh, sw) of the replaced conv."""
        return (int(self.first.stride[0]), int(self.second.stride[1]))

    @property
    def padding(self) -> tuple[int, int]:
        """(ph, pw) of the replaced conv."""
        return (int(self.first.padding[0]), int(self.second.padding[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


class LowRankLinear(nn.Module):
    """``Linear(in, K, bias=False)`` followed by ``Linear(K, out)``."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool):
        super().__init__()
        self.first = nn.Linear(in_features, rank, bias=False)
        self.second = nn.Linear(rank, out_features, bias=bias)

    @property
    def rank(self) -> int:
        """K."""
        return int(self.first.out_features)

    @property
    def in_features(self) -> int:
        """Input features of the replaced linear."""
        return int(self.first.in_features)

    @property
    def out_features(self) -> int:
        """Output features of the replaced linear."""
        return int(self.second.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


# ----- which layers, their costs and energies ------------------------------------------------------
@dataclass(frozen=True)
class LayerInfo:
    """A decomposable layer.

    Attributes:
        name: Module path.
        kind: ``conv`` or ``linear``.
        cin: Input channels / features.
        cout: Output channels / features.
        kernel: ``(kh, kw)`` (``(1, 1)`` for linear).
        stride: ``(sh, sw)``.
        padding: ``(ph, pw)``.
        in_hw: Input ``(H, W)`` at the model's input shape.
        out_hw: Output ``(Ho, Wo)``.
        macs: MACs of the original layer.
        macs_per_rank: MACs the decomposed pair costs per unit of rank.
        max_rank: ``min(C*kh, N*kw)`` (conv) or ``min(in, out)`` (linear): full rank, exact.
        energy: Cumulative PCA energy ``sum(s[:K]^2) / sum(s^2)`` for K = 1..max_rank.
    """

    name: str
    kind: str
    cin: int
    cout: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    macs: int
    macs_per_rank: int
    max_rank: int
    energy: tuple[float, ...] = field(repr=False, default=())

    def decomposed_macs(self, rank: int | None) -> int:
        """MACs at ``rank`` (None: the original layer)."""
        return self.macs if rank is None else self.macs_per_rank * int(rank)

    @property
    def break_even_rank(self) -> int:
        """Largest rank whose decomposed pair costs fewer MACs than the layer (0: none)."""
        return min(self.max_rank, (self.macs - 1) // self.macs_per_rank)

    def energy_at(self, rank: int | None) -> float:
        """PCA energy kept at ``rank`` (1.0 for the original layer)."""
        return 1.0 if rank is None else float(self.energy[int(rank) - 1])


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def conv_matrix(weight: torch.Tensor) -> torch.Tensor:
    """The ``(C*kh, N*kw)`` matrix ``M[(c,i),(n,j)] = W[n,c,i,j]`` of a conv weight ``(N, C, kh, kw)``."""
    n, c, kh, kw = weight.shape
    return weight.permute(1, 2, 0, 3).reshape(c * kh, n * kw)


def _matrix(mod: nn.Module) -> torch.Tensor:
    w = mod.weight.detach().to(torch.float64)
    return conv_matrix(w) if isinstance(mod, nn.Conv2d) else w


def _decomposable(mod: nn.Module) -> str | None:
    """Why ``mod`` cannot be decomposed, or None when it can."""
    if isinstance(mod, nn.Linear):
        return None
    if not isinstance(mod, nn.Conv2d):
        return f"{type(mod).__name__} is neither a Conv2d nor a Linear"
    if mod.groups != 1:
        return f"a grouped/depthwise conv (groups={mod.groups})"
    if _pair(mod.dilation) != (1, 1):
        return f"a dilated conv (dilation={mod.dilation})"
    if isinstance(mod.padding, str) or mod.padding_mode != "zeros":
        return f"padding {mod.padding!r} / mode {mod.padding_mode!r} (only explicit zero padding)"
    return None


def layer_infos(model: nn.Module, input_shape: Sequence[int] = (1, 3, 32, 32), include_pointwise: bool = False,
                include_linear: bool = True, layers: Sequence[str] | None = None) -> dict[str, LayerInfo]:
    """Every decomposable layer of ``model`` with its costs and PCA energies, in module order.

    Args:
        model: The network.
        input_shape: NCHW input shape (spatial sizes set the MACs).
        include_pointwise: Also 1x1 convs (decomposed across channels only).
        include_linear: Also linear layers.
        layers: Only these module paths (checked: each must exist and be decomposable).

    Raises:
        ConfigError: A named layer is missing or cannot be decomposed.
    """
    shapes = layer_shapes(model, input_shape)
    mods = dict(model.named_modules())
    if layers is not None:
        for name in layers:
            mod = get_module(model, name)
            why = _decomposable(mod)
            if why:
                raise bad_value(f"layer {name}", "a Conv2d (groups 1) or Linear layer", why)
            if name not in shapes:
                raise bad_value(f"layer {name}", "a layer the forward pass uses", "an unused module")
        names = list(layers)
    else:
        names = []
        for name, mod in mods.items():
            if name not in shapes or _decomposable(mod):
                continue
            if isinstance(mod, nn.Conv2d) and _pair(mod.kernel_size) == (1, 1) and not include_pointwise:
                continue
            if isinstance(mod, nn.Linear) and not include_linear:
                continue
            names.append(name)
    out: dict[str, LayerInfo] = {}
    for name in names:
        mod, sh = mods[name], shapes[name]
        s = torch.linalg.svdvals(_matrix(mod)).numpy()
        e = np.cumsum(s ** 2)
        energy = tuple((e / e[-1]).tolist()) if e[-1] > 0 else tuple(np.linspace(1 / len(s), 1, len(s)).tolist())
        if isinstance(mod, nn.Conv2d):
            kh, kw = _pair(mod.kernel_size)
            (h, w), (ho, wo) = sh.in_shape[2:4], sh.out_shape[2:4]
            macs = ho * wo * mod.out_channels * mod.in_channels * kh * kw
            per_rank = ho * w * mod.in_channels * kh + ho * wo * mod.out_channels * kw
            out[name] = LayerInfo(name, "conv", mod.in_channels, mod.out_channels, (kh, kw), _pair(mod.stride),
                                  _pair(mod.padding), (h, w), (ho, wo), macs, per_rank,
                                  min(mod.in_channels * kh, mod.out_channels * kw), energy)
        else:
            rows = int(np.prod(sh.in_shape[:-1])) // max(1, sh.in_shape[0])
            macs = rows * mod.in_features * mod.out_features
            out[name] = LayerInfo(name, "linear", mod.in_features, mod.out_features, (1, 1), (1, 1), (0, 0), (1, 1),
                                  (1, 1), macs, rows * (mod.in_features + mod.out_features),
                                  min(mod.in_features, mod.out_features), energy)
    return out


# ----- decomposition ------------------------------------------------------------------------------
@torch.no_grad()
def decompose_module(mod: nn.Module, rank: int) -> nn.Module:
    """The low-rank replacement of one conv or linear module (closed form, SVD).

    Raises:
        ConfigError: The module cannot be decomposed, or the rank is outside ``1..max_rank``.
    """
    why = _decomposable(mod)
    if why:
        raise bad_value("layer", "a Conv2d (groups 1) or Linear layer", why)
    m = _matrix(mod)
    max_rank = min(m.shape)
    if int(rank) != rank or not 1 <= rank <= max_rank:
        raise bad_value("rank", f"an integer in 1..{max_rank} for this layer", rank)
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    k = int(rank)
    root = s[:k].sqrt()
    dtype = mod.weight.dtype
    bias = mod.bias is not None
    if isinstance(mod, nn.Conv2d):
        n, c, kh, kw = mod.weight.shape
        new = LowRankConv2d(c, n, (kh, kw), _pair(mod.stride), _pair(mod.padding), k, bias)
        first = (u[:, :k] * root).T.reshape(k, c, kh, 1)
        second = (root[:, None] * vh[:k]).reshape(k, n, kw).permute(1, 0, 2).reshape(n, k, 1, kw)
    else:
        new = LowRankLinear(mod.in_features, mod.out_features, k, bias)
        first = root[:, None] * vh[:k]
        second = u[:, :k] * root
    new.first.weight.copy_(first.to(dtype))
    new.second.weight.copy_(second.to(dtype))
    if bias:
        new.second.bias.copy_(mod.bias.detach())
    new.to(mod.weight.device)
    new.train(mod.training)
    return new


def _check_ranks(model: nn.Module, ranks: Mapping[str, int], infos: Mapping[str, LayerInfo] | None) -> None:
    mods = dict(model.named_modules())
    for name, r in ranks.items():
        if name not in mods:
            some = [n for n, m in mods.items() if not _decomposable(m)][:10]
            raise ConfigError(f"rank configuration names layer {name!r}, which the model does not have; "
                              f"decomposable layers include: {', '.join(some)}")
        why = _decomposable(mods[name])
        if why:
            raise bad_value(f"rank configuration layer {name}", "a Conv2d (groups 1) or Linear layer", why)
        mat = mods[name].weight
        max_rank = (min(mat.shape[1] * mat.shape[2], mat.shape[0] * mat.shape[3]) if mat.ndim == 4
                    else min(mat.shape))
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 1 <= int(r) <= max_rank:
            raise bad_value(f"rank of {name}", f"an integer in 1..{max_rank} (full rank {max_rank} is exact)", r)


def decompose(model: nn.Module, ranks: Mapping[str, int], inplace: bool = False) -> nn.Module:
    """Replace every layer named in ``ranks`` by its low-rank pair.

    Args:
        model: The trained network.
        ranks: ``{module path: rank}``.
        inplace: Modify ``model`` itself (default: a deep copy is decomposed and returned).

    Returns:
        The decomposed network.

    Raises:
        ConfigError: A missing layer, a layer that cannot be decomposed, or a rank out of range.
    """
    _check_ranks(model, ranks, None)
    out = model if inplace else copy.deepcopy(model)
    for name, r in ranks.items():
        set_module(out, name, decompose_module(get_module(out, name), int(r)))
    return out


def decompose_layer(model: nn.Module, name: str, rank: int, inplace: bool = False) -> nn.Module:
    """Decompose one named layer (accnn's ``acc_conv.py`` / ``acc_fc.py``)."""
    return decompose(model, {name: rank}, inplace=inplace)


def restructure(model: nn.Module, ranks: Mapping[str, int]) -> nn.Module:
    """Replace the named layers by low-rank pairs *of the right shapes* without computing an SVD.

    For loading the weights of a decomposed network saved with
    :func:`compactnet.models.save_weights`: ``load_weights(restructure(create_model(...), ranks), path)``.
    The model is changed in place and returned.
    """
    _check_ranks(model, ranks, None)
    for name, r in ranks.items():
        mod = get_module(model, name)
        bias = mod.bias is not None
        if isinstance(mod, nn.Conv2d):
            new: nn.Module = LowRankConv2d(mod.in_channels, mod.out_channels, _pair(mod.kernel_size),
                                           _pair(mod.stride), _pair(mod.padding), int(r), bias)
        else:
            new = LowRankLinear(mod.in_features, mod.out_features, int(r), bias)
        set_module(model, name, new)
    return model


def ranks_of(model: nn.Module) -> dict[str, int]:
    """``{module path: rank}`` of every low-rank pair in a decomposed model."""
    return {n: m.rank for n, m in model.named_modules() if isinstance(m, (LowRankConv2d, LowRankLinear))}


# ----- costs --------------------------------------------------------------------------------------
def total_macs(model: nn.Module, input_shape: Sequence[int] = (1, 3, 32, 32)) -> int:
    """Whole-network MACs from the extracted spec (every layer: convs, linears, adds, pools)."""
    from compactnet.extract import network_spec_from_torch

    return int(network_spec_from_torch(model, input_shape).macs)


def theoretical_speedup(original: nn.Module, decomposed: nn.Module, input_shape: Sequence[int] = (1, 3, 32, 32)
                        ) -> float:
    """Whole-network MACs of ``original`` over those of ``decomposed``."""
    return total_macs(original, input_shape) / total_macs(decomposed, input_shape)


def predicted_macs(total: int, infos: Mapping[str, LayerInfo], ranks: Mapping[str, int | None]) -> int:
    """Whole-network MACs after decomposing ``infos`` layers at ``ranks`` (None or absent: kept)."""
    return int(total + sum(infos[n].decomposed_macs(r) - infos[n].macs for n, r in ranks.items() if r is not None))


# ----- rank selection by PCA energy and MACs (accnn / Zhang et al.) -------------------------------
def select_ranks(model: nn.Module, speedup: float, input_shape: Sequence[int] = (1, 3, 32, 32),
                 include_pointwise: bool = False, include_linear: bool = True,
                 layers: Sequence[str] | None = None, infos: Mapping[str, LayerInfo] | None = None
                 ) -> dict[str, int]:
    """Ranks reaching a theoretical (whole-network MACs) ``speedup`` with the largest energy product.

    Greedy, as Zhang et al. and accnn's ``rank_selection``: each layer starts undecomposed (energy 1);
    a step either decomposes a layer at its break-even rank (the largest rank costing fewer MACs than
    the layer) or lowers a decomposed layer's rank by one; the step with the least log-energy lost
    per MAC saved is taken, until the network's MACs are at most ``original / speedup``.

    Returns:
        ``{module path: rank}`` of the layers to decompose (layers left whole are absent).

    Raises:
        ConfigError: A speedup below 1, or beyond what rank 1 everywhere would give.
    """
    if not speedup >= 1:
        raise bad_value("speedup", "a theoretical speedup >= 1, e.g. 2.0", speedup)
    infos = dict(infos) if infos is not None else layer_infos(model, input_shape, include_pointwise,
                                                              include_linear, layers)
    total = total_macs(model, input_shape)
    target = total / speedup
    floor = predicted_macs(total, infos, {n: 1 for n, i in infos.items() if i.break_even_rank >= 1})
    if floor > target:
        raise bad_value("speedup", f"at most {total / floor:.2f}x (rank 1 in every decomposable layer of the "
                        f"{len(infos)} considered)", speedup)
    ranks: dict[str, int | None] = {n: None for n in infos}
    cur = total

    def move(name: str) -> tuple[float, int, int] | None:
        info, r = infos[name], ranks[name]
        nxt = info.break_even_rank if r is None else r - 1
        if nxt < 1:
            return None
        saved = info.decomposed_macs(r) - info.decomposed_macs(nxt)
        lost = math.log(max(info.energy_at(r), 1e-300)) - math.log(max(info.energy_at(nxt), 1e-300))
        return lost / saved, nxt, saved

    heap = []
    for name in infos:
        m = move(name)
        if m:
            heapq.heappush(heap, (m[0], name, m[1], m[2]))
    while cur > target and heap:
        _cost, name, nxt, saved = heapq.heappop(heap)
        ranks[name] = nxt
        cur -= saved
        m = move(name)
        if m:
            heapq.heappush(heap, (m[0], name, m[1], m[2]))
    chosen = {n: int(r) for n, r in ranks.items() if r is not None}
    log.info("ranks for %.2fx theoretical speedup: %s (%.2fx reached)", speedup, chosen, total / cur)
    return chosen


# ----- rank selection by predicted latency ---------------------------------------------------------
def decomposed_spec(spec: NetworkSpec, infos: Mapping[str, LayerInfo], ranks: Mapping[str, int]) -> NetworkSpec:
    """The spec of the network with ``ranks`` applied, built from the original's spec (no torch).

    A decomposed conv ``name`` becomes ``name.first`` (kernel ``(kh, 1)``, no batch-norm/activation)
    and ``name.second`` (kernel ``(1, kw)``, the original's batch-norm and activation); a linear
    becomes two linears. Matches :func:`compactnet.extract.network_spec_from_torch` of the
    decomposed model up to names (see :func:`compactnet.extract.layer_differences`).

    Raises:
        ConfigError: A layer of ``ranks`` is not in the spec.
    """
    by_name = {l.name: l for l in spec.layers}
    for name in ranks:
        if name not in by_name or name not in infos:
            raise bad_value("ranks", "layers present in the spec and in the layer infos", name)
    if not ranks:
        return spec
    renamed = {n: f"{n}.second" for n in ranks}
    layers: list[LayerSpec] = []
    groups = list(spec.groups)
    for l in spec.layers:
        if l.name not in ranks:
            if any(i in renamed for i in l.inputs):
                l = replace(l, inputs=tuple(renamed.get(i, i) for i in l.inputs))
            layers.append(l)
            continue
        k = int(ranks[l.name])
        groups.append((f"{l.name}.first", k))
        layers += _pair_specs(l, infos[l.name], k, tuple(renamed.get(i, i) for i in l.inputs))
    return replace(spec, layers=tuple(layers), groups=tuple(groups))


@functools.lru_cache(maxsize=65536)
def _pair_specs(l: LayerSpec, info: LayerInfo, k: int, inputs: tuple[str, ...]) -> tuple[LayerSpec, LayerSpec]:
    g = f"{l.name}.first"
    if l.op == "linear":
        first = replace(l, name=g, cout=k, bias=False, act=None, bn=False, out_group=g, inputs=inputs)
        second = replace(l, name=f"{l.name}.second", cin=k, in_group=g, inputs=(g,))
        return first, second
    (kh, kw), (sh, sw), (ph, pw) = info.kernel, info.stride, info.padding
    first = replace(l, name=g, cout=k, kernel=(kh, 1), stride=(sh, 1), padding=(ph, 0), bn=False, act=None,
                    bias=False, groups=1, op="conv", out_group=g, inputs=inputs)
    second = replace(l, name=f"{l.name}.second", cin=k, h=info.out_hw[0], w=info.in_hw[1], kernel=(1, kw),
                     stride=(1, sw), padding=(0, pw), groups=1, op="conv", in_group=g, inputs=(g,))
    return first, second


class _SpecLatency:
    """Predicted latency of decomposed variants, from ``predict_many(specs)`` or a callable on ONNX bytes."""

    def __init__(self, predictor: Any, model: nn.Module, input_shape: Sequence[int]):
        self.predictor = predictor
        self.model = model
        self.input_shape = tuple(input_shape)
        if not (hasattr(predictor, "predict_many") or callable(predictor)):
            raise bad_value("predictor", "an object with predict_many(list[NetworkSpec]) or a callable on an "
                            "ONNX model returning milliseconds", type(predictor).__name__)

    def __call__(self, spec: NetworkSpec, infos: Mapping[str, LayerInfo], variants: Sequence[Mapping[str, int]]
                 ) -> np.ndarray:
        if hasattr(self.predictor, "predict_many"):
            specs = [decomposed_spec(spec, infos, v) for v in variants]
            return np.asarray(self.predictor.predict_many(specs), dtype=float)
        from compactnet.export import export_onnx

        out = []
        for v in variants:  # a callable on ONNX: build and export each variant (slow; small models)
            m = restructure(copy.deepcopy(self.model), v)
            out.append(float(self.predictor(export_onnx(m, input_shape=self.input_shape, check=False).onnx_bytes)))
        return np.asarray(out, dtype=float)


def rank_grid(max_rank: int, points: int = 24) -> list[int]:
    """Candidate ranks ``1..max_rank``: all of them when few, else a geometric grid plus multiples of 8."""
    if max_rank <= points:
        return list(range(1, max_rank + 1))
    geo = np.unique(np.round(np.geomspace(1, max_rank, points)).astype(int))
    eights = [r for r in range(8, max_rank + 1, 8)]
    if len(eights) > points:
        eights = eights[:: math.ceil(len(eights) / points)]
    return sorted(set(geo.tolist()) | set(eights) | {max_rank})


@dataclass
class LatencyRankSelection:
    """Result of :func:`select_ranks_latency`.

    Attributes:
        ranks: ``{module path: rank}``.
        original_ms: Predicted latency of the original network.
        predicted_ms: Predicted latency of the decomposed network.
        steps: Per greedy step: layer, rank, predicted ms, energy kept.
        reached: The predicted speedup reached the request.
    """

    ranks: dict[str, int]
    original_ms: float
    predicted_ms: float
    steps: list[dict] = field(default_factory=list)
    reached: bool = True

    @property
    def predicted_speedup(self) -> float:
        """Predicted latency speedup."""
        return self.original_ms / self.predicted_ms if self.predicted_ms > 0 else math.nan


def select_ranks_latency(model: nn.Module, predictor: Any, speedup: float,
                         input_shape: Sequence[int] = (1, 3, 32, 32), include_pointwise: bool = False,
                         include_linear: bool = True, layers: Sequence[str] | None = None,
                         grid_points: int = 24, max_steps: int = 1000, step_window: int = 4,
                         infos: Mapping[str, LayerInfo] | None = None) -> LatencyRankSelection:
    """Ranks reaching a predicted latency ``speedup`` on the predictor's platform.

    Greedy on predicted latency: per step, every (layer, lower rank on the layer's grid) candidate
    is predicted in one batched call; among those predicted faster than the current network, the
    one with the largest predicted gain per log-PCA-energy lost is taken (a step losing no energy
    is taken first). Stops when the predicted latency is at most ``original / speedup``, or when no
    step is predicted faster (``reached=False``, with a warning).

    Args:
        model: The trained network.
        predictor: ``predict_many(list[NetworkSpec]) -> ms`` (a fitted
            :class:`~compactnet.predictors.network.LatencyPredictor`, a search latency model), or a
            callable taking ONNX bytes and returning ms.
        speedup: Requested predicted speedup.
        grid_points: Candidate ranks per layer (see :func:`rank_grid`).
        max_steps: Bound on greedy steps.
        step_window: Grid ranks below its current one tried per decomposed layer and step.

    Raises:
        ConfigError: A speedup below 1 or an unusable predictor.
    """
    from compactnet.extract import network_spec_from_torch

    if not speedup >= 1:
        raise bad_value("speedup", "a speedup >= 1, e.g. 2.0", speedup)
    infos = dict(infos) if infos is not None else layer_infos(model, input_shape, include_pointwise,
                                                              include_linear, layers)
    lat = _SpecLatency(predictor, model, input_shape)
    spec = network_spec_from_torch(model, input_shape)
    l0 = float(lat(spec, infos, [{}])[0])
    target = l0 / speedup
    grids = {n: rank_grid(i.max_rank, grid_points) for n, i in infos.items()}
    ranks: dict[str, int] = {}
    cur = l0
    steps: list[dict] = []
    for _ in range(max_steps):
        if cur <= target:
            break
        cands = []
        for n, info in infos.items():
            r = ranks.get(n)
            lower = [k for k in grids[n] if r is None or k < r]
            # an undecomposed layer: every grid rank (large ones may be slower than the layer);
            # a decomposed one: the next few steps down
            cands += [(n, k) for k in (lower if r is None else lower[-step_window:])]
        if not cands:
            break
        preds = lat(spec, infos, [{**ranks, n: k} for n, k in cands])
        best, best_score = None, -math.inf
        for (n, k), p in zip(cands, preds):
            gain = cur - float(p)
            if gain <= 0:
                continue
            lost = math.log(max(infos[n].energy_at(ranks.get(n)), 1e-300)) - math.log(max(infos[n].energy_at(k), 1e-300))
            score = math.inf if lost <= 1e-12 else gain / lost
            # ties (free steps): the larger gain, then the higher rank
            key = (score, gain if score == math.inf else 0.0, k)
            if best is None or key > best_score:
                best, best_score = (n, k, float(p)), key
        if best is None:
            break
        n, k, p = best
        ranks[n] = k
        cur = p
        steps.append({"layer": n, "rank": k, "predicted_ms": p, "energy": infos[n].energy_at(k)})
    reached = cur <= target
    if not reached:
        log.warning("predicted speedup %.2fx misses the requested %.2fx: no further rank step is predicted faster",
                    l0 / cur, speedup)
    return LatencyRankSelection(ranks, l0, cur, steps, reached)


# ----- configuration files -------------------------------------------------------------------------
def save_rank_config(path: str | Path, ranks: Mapping[str, int], model_name: str | None = None,
                     **extra: Any) -> Path:
    """Write ``{"version", "model", "ranks": {layer: rank}, ...extra}`` as JSON (atomically)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    doc = {"version": RANK_CONFIG_VERSION, "model": model_name, "ranks": {k: int(v) for k, v in ranks.items()},
           **extra}
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(p)
    return p


def load_rank_config(path_or_mapping: str | Path | Mapping[str, Any]) -> dict[str, int]:
    """Read a rank configuration: a JSON file or mapping, ``{layer: rank}`` or ``{"ranks": {...}}``.

    Raises:
        ConfigError: A missing or malformed file, or a non-integer rank.
    """
    if isinstance(path_or_mapping, Mapping):
        doc: Any = dict(path_or_mapping)
        where = "rank configuration"
    else:
        p = Path(path_or_mapping)
        where = f"rank configuration {p}"
        if not p.is_file():
            raise ConfigError(f"{where} does not exist; write a JSON object {{\"layer.name\": rank, ...}}")
        try:
            doc = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if isinstance(doc, Mapping) and "ranks" in doc:
        doc = doc["ranks"]
    if not isinstance(doc, Mapping):
        raise bad_value(where, "a JSON object {layer: rank}", type(doc).__name__)
    out = {}
    for k, v in doc.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise bad_value(f"{where}[{k}]", "a positive integer rank", v)
        out[str(k)] = int(v)
    return out


# ----- report --------------------------------------------------------------------------------------
def measure_speedup(original: nn.Module, decomposed: nn.Module, platform: Any,
                    input_shape: Sequence[int] = (1, 3, 32, 32), compare: Callable | None = None,
                    **compare_kw: Any) -> Any:
    """Original vs decomposed by the measurement protocol (both exported alike, timed interleaved).

    Args:
        compare: Replacement for :func:`compactnet.measure.compare` (tests); same signature.

    Returns:
        The :class:`~compactnet.measure.Comparison` (``speedups[1]`` is the decomposed one's).
    """
    from compactnet.export import export_onnx

    files = [export_onnx(m, input_shape=input_shape).onnx_bytes for m in (original, decomposed)]
    return compare_fn(compare)(files, platform, names=["original", "lowrank"], **compare_kw)


def lowrank_report(original: nn.Module, decomposed: nn.Module, data: Any = None, platform: Any = None,
                   input_shape: Sequence[int] = (1, 3, 32, 32), finetune_recipe: Any = None,
                   teacher: nn.Module | None = None, compare: Callable | None = None, seed: int = 0,
                   eval_split: str = "test", progress: bool = False, **compare_kw: Any) -> dict:
    """accnn's table row: theoretical vs measured speedup, top-1 before and after fine-tuning.

    Args:
        original: The trained network.
        decomposed: Its decomposition (fine-tuned in place when ``finetune_recipe`` is given).
        data: Object with ``train``/``val``/``test`` splits (None: no accuracy).
        platform: Platform key for the measured speedup (None: not measured).
        finetune_recipe: A :class:`compactnet.train.Recipe` (or a recipe name) for fine-tuning
            through :func:`compactnet.train.train` on ``data.train`` (None: no fine-tuning).
        teacher: Distil this model into the fine-tune (e.g. ``original``).
        compare: Replacement of :func:`compactnet.measure.compare` (tests).
        eval_split: Split reported (``test`` for figures; ``val`` while choosing).

    Returns:
        JSON-ready dict: ranks, MACs, params, theoretical speedup, measured comparison, top-1.
    """
    from compactnet.train import evaluate, get_recipe, train

    out: dict[str, Any] = {"ranks": ranks_of(decomposed)}
    m0, m1 = total_macs(original, input_shape), total_macs(decomposed, input_shape)
    p0 = sum(p.numel() for p in original.parameters())
    p1 = sum(p.numel() for p in decomposed.parameters())
    out.update({"macs_original": m0, "macs_decomposed": m1, "theoretical_speedup": m0 / m1,
                "params_original": p0, "params_decomposed": p1})
    if platform is not None:
        comp = measure_speedup(original, decomposed, platform, input_shape, compare, **compare_kw)
        r, lo, hi = comp.speedups[1]
        out["measured"] = {"speedup": r, "low": lo, "high": hi, "comparison": comp.to_dict()}
    if data is not None:
        split = getattr(data, eval_split)
        out[f"{eval_split}_top1_original"] = evaluate(original, split)
        out[f"{eval_split}_top1_decomposed"] = evaluate(decomposed, split)
        if finetune_recipe is not None:
            recipe = get_recipe(finetune_recipe) if isinstance(finetune_recipe, str) else finetune_recipe
            res = train(decomposed, data.train, data.val, recipe, seed=seed, teacher=teacher, progress=progress)
            out[f"{eval_split}_top1_finetuned"] = evaluate(decomposed, split)
            out["finetune"] = {"recipe": recipe.name, "epochs": recipe.epochs, "best_epoch": res.best_epoch,
                               "best_val": res.best_val, "wall_s": res.wall_s}
    return out


__all__ = ["LowRankConv2d", "LowRankLinear", "LayerInfo", "layer_infos", "conv_matrix", "decompose_module",
           "decompose", "decompose_layer", "restructure", "ranks_of", "total_macs", "theoretical_speedup",
           "predicted_macs", "select_ranks", "decomposed_spec", "rank_grid", "LatencyRankSelection",
           "select_ranks_latency", "save_rank_config", "load_rank_config", "measure_speedup", "lowrank_report"]
