"""Sampling strategies: which layer configurations to measure.

The configuration space is a list of *units* (:class:`UnitSpace`): a layer of a network whose
input and output channel counts may vary in ``[lower bound, original width]``, its spatial size,
kernel and stride fixed by the network. By default the units are the paper's 18 (the Table-1
MobileNetV2's stem and 17 blocks at 32x32 input, :func:`mobilenetv2_space`).

Strategies (all seeded and deterministic: the same seed gives the same candidate sequence, and
no configuration is proposed twice):

``dense``     the paper's table: every (cin, cout) pair of every unit on a grid with a stated
              channel step; :attr:`DenseStrategy.count` at that step, :attr:`DenseStrategy.full_count`
              at step 1 (160,992 for the Table-1 net, as in the public code).
``random``    uniform unit, uniform channel counts.
``sobol``     a scrambled Sobol sequence (:class:`scipy.stats.qmc.Sobol`) per unit over its
              (cin, cout) plane, units taken in turn.
``prior``     the layers of a given network, then of its trimmed variants: per channel group a
              width ratio uniform in [0.25, 1], jittered by up to 2 channels.
``adaptive``  measure next where a predictor is least certain (nn-Meter): needs an
              :class:`UncertaintyModel`, which the predictors stage implements.
``space``     a prior over the layers of common CNNs at 32-224 px, not one model's units
              (:class:`compactnet.profilers.space.LayerSpaceStrategy`).
"""

from __future__ import annotations

import abc
import math
import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from compactnet.errors import ConfigError, bad_value
from compactnet.spec import LayerSpec, Measurement, NetworkSpec

from compactnet.profilers.store import layer_key

STRATEGIES = ("dense", "random", "sobol", "prior", "adaptive", "space")
#: Channel step of the dense baseline unless told otherwise.
DEFAULT_DENSE_STEP = 8


def default_lower(width: int) -> int:
    """Smallest channel count sampled for a width: ``width // 8 + 3`` (the public code's loosest bound)."""
    return max(1, min(int(width), int(width) // 8 + 3))


@dataclass(frozen=True)
class UnitSpace:
    """One unit of the configuration space.

    Attributes:
        layer: The unit as in the untrimmed network.
        cin_range: Inclusive (low, high) input channels; low == high means fixed.
        cout_range: Inclusive (low, high) output channels.
        tied: Output channels equal input channels (depthwise conv, pooling, add).
    """

    layer: LayerSpec
    cin_range: tuple[int, int]
    cout_range: tuple[int, int]
    tied: bool = False

    def make(self, cin: int, cout: int) -> LayerSpec:
        """The unit with ``cin`` input and ``cout`` output channels (hidden width scaled with ``cin``)."""
        l = self.layer
        cin = int(cin)
        cout = cin if self.tied else int(cout)
        changes: dict[str, Any] = {"cin": cin, "cout": cout, "name": f"{l.name}@{cin}x{cout}"}
        if l.op == "dwconv":
            changes["groups"] = cin
        elif l.op == "conv" and l.groups > 1:
            changes["groups"] = l.groups if (cin % l.groups == 0 and cout % l.groups == 0) else 1
        if l.op == "block":
            ratio = (l.expansion or l.cin) / l.cin
            changes["expansion"] = max(1, int(round(ratio * cin)))
            changes["residual"] = bool(l.residual and cin == cout)
        return replace(l, **changes)

    @property
    def signature(self) -> tuple:
        """What, besides (cin, cout), decides the configurations :meth:`make` builds: two units with
        the same signature give the same configuration for the same channel counts."""
        l = self.layer
        ratio = round((l.expansion or l.cin) / l.cin, 9) if l.op == "block" else 0
        groups = l.groups if l.op == "conv" else 0
        return (l.op, l.h, l.w, l.kernel, l.stride, l.padding, groups, ratio, l.bn, l.act, l.bias, l.residual,
                self.tied)

    @property
    def size(self) -> int:
        """Distinct configurations of this unit at channel step 1."""
        n_in = self.cin_range[1] - self.cin_range[0] + 1
        return n_in if self.tied else n_in * (self.cout_range[1] - self.cout_range[0] + 1)


def _tied(layer: LayerSpec) -> bool:
    return layer.op in ("dwconv", "avgpool", "maxpool", "gap", "add")


def mobilenetv2_space(config: Any = None, lower: str = "loose") -> list[UnitSpace]:
    """The paper's 18 units (stem conv + 17 blocks of the Table-1 MobileNetV2, 32x32 input).

    Args:
        config: A :class:`~compactnet.models.MobileNetV2Config` (default: untrimmed).
        lower: ``loose`` (:func:`default_lower`) or ``full`` (every count from 1, the dense table's range).

    Returns:
        One :class:`UnitSpace` per unit; the stem's input (3 image channels) is fixed.
    """
    from compactnet.extract import mobilenetv2_units

    if lower not in ("loose", "full"):
        raise bad_value("lower", "'loose' or 'full'", lower)
    lo = default_lower if lower == "loose" else (lambda w: 1)
    units = list(mobilenetv2_units(config, include_last=False))
    out = []
    for i, u in enumerate(units):
        cin_r = (u.cin, u.cin) if i == 0 else (lo(u.cin), u.cin)
        out.append(UnitSpace(u, cin_r, (lo(u.cout), u.cout), _tied(u)))
    return out


def network_space(network: NetworkSpec, lower: str = "loose") -> list[UnitSpace]:
    """Units from the layers of any :class:`NetworkSpec`: a channel count varies unless its group is
    fixed (or the layer names no group)."""
    if lower not in ("loose", "full"):
        raise bad_value("lower", "'loose' or 'full'", lower)
    lo = default_lower if lower == "loose" else (lambda w: 1)
    fixed = set(network.fixed)
    out = []
    for l in network.layers:
        cin_fixed = not l.in_group or l.in_group in fixed
        cout_fixed = not l.out_group or l.out_group in fixed
        out.append(UnitSpace(l, (l.cin, l.cin) if cin_fixed else (lo(l.cin), l.cin),
                             (l.cout, l.cout) if cout_fixed else (lo(l.cout), l.cout), _tied(l)))
    return out


def resolve_space(network: NetworkSpec | Sequence[UnitSpace] | None = None, lower: str = "loose") -> list[UnitSpace]:
    """A configuration space from a network, an explicit unit list, or the Table-1 default."""
    if network is None:
        return mobilenetv2_space(lower=lower)
    if isinstance(network, NetworkSpec):
        return network_space(network, lower)
    units = list(network)
    if not all(isinstance(u, UnitSpace) for u in units):
        raise bad_value("network", "a NetworkSpec, a list of UnitSpace or None", type(network).__name__)
    return units


# ----- strategies --------------------------------------------------------------------------------
class SamplingStrategy(abc.ABC):
    """A deterministic sequence of distinct layer configurations.

    Args:
        space: The units to sample.
        seed: Seed of the sequence.
    """

    name: str = ""

    def __init__(self, space: Sequence[UnitSpace], seed: int = 0):
        if not space:
            raise bad_value("space", "at least one unit", "an empty space")
        self.space = list(space)
        self.seed = int(seed)
        self._iter: Iterator[LayerSpec] | None = None

    @abc.abstractmethod
    def _generate(self) -> Iterator[LayerSpec]:
        """Candidates, possibly repeating; finite or endless."""

    def stream(self) -> Iterator[LayerSpec]:
        """A fresh iterator over the distinct candidates, always the same for the same seed."""
        seen: set[str] = set()
        for layer in self._generate():
            k = layer_key(layer)
            if k not in seen:
                seen.add(k)
                yield layer

    def take(self, n: int) -> list[LayerSpec]:
        """The first ``n`` distinct candidates (fewer when the space runs out)."""
        out = []
        for layer in self.stream():
            if len(out) >= n:
                break
            out.append(layer)
        return out

    def next_batch(self, k: int, measured: Sequence[Measurement] = ()) -> list[LayerSpec]:
        """The next ``k`` candidates of this strategy's sequence (empty when exhausted).

        ``measured`` (what has been measured so far) is ignored except by adaptive strategies.
        """
        if self._iter is None:
            self._iter = self.stream()
        out = []
        for layer in self._iter:
            out.append(layer)
            if len(out) >= k:
                break
        return out

    def reset(self) -> None:
        """Restart :meth:`next_batch` from the first candidate."""
        self._iter = None


def _grid(lo: int, hi: int, step: int) -> list[int]:
    if lo == hi:
        return [hi]
    return sorted(set(range(max(lo, step), hi + 1, step)) | {hi})


class DenseStrategy(SamplingStrategy):
    """Every (cin, cout) pair of every unit on a grid ``{step, 2 step, ...} + {original}``.

    Attributes:
        step: Channel step.
        count: Configurations at this step.
        full_count: Configurations at step 1 (the paper's full table).
    """

    name = "dense"

    def __init__(self, space: Sequence[UnitSpace], seed: int = 0, step: int = DEFAULT_DENSE_STEP):
        super().__init__(space, seed)
        if int(step) < 1:
            raise bad_value("step", "a positive channel step", step)
        self.step = int(step)

    def _pairs(self, u: UnitSpace, step: int) -> Iterator[tuple[int, int]]:
        cins = _grid(u.cin_range[0], u.cin_range[1], step)
        if u.tied:
            for c in cins:
                yield c, c
            return
        couts = _grid(u.cout_range[0], u.cout_range[1], step)
        for ci in cins:
            for co in couts:
                yield ci, co

    def _generate(self) -> Iterator[LayerSpec]:
        for u in self.space:
            for ci, co in self._pairs(u, self.step):
                yield u.make(ci, co)

    @property
    def count(self) -> int:
        """Distinct configurations at :attr:`step` (what is measured: units with identical
        configurations, e.g. repeated blocks of a stage, share their measurements)."""
        return sum(1 for _ in self.stream())

    @property
    def entries(self) -> int:
        """Table entries at :attr:`step`, one per unit and (cin, cout) pair, as the paper counts them."""
        return sum(1 for u in self.space for _ in self._pairs(u, self.step))

    @property
    def full_count(self) -> int:
        """Table entries at step 1 (computed, not enumerated): 160,992 for the Table-1 net, as in the paper."""
        return sum(u.size for u in self.space)

    @property
    def full_distinct(self) -> int:
        """Distinct configurations at step 1 (enumerated once, about a second for the Table-1 net)."""
        if not hasattr(self, "_full_distinct"):
            seen: set[tuple] = set()
            for u in self.space:
                sig = u.signature
                seen.update((sig, ci, co) for ci, co in self._pairs(u, 1))
            self._full_distinct = len(seen)
        return self._full_distinct


class RandomStrategy(SamplingStrategy):
    """Uniform unit, then uniform channel counts in the unit's ranges."""

    name = "random"

    def _generate(self) -> Iterator[LayerSpec]:
        rng = np.random.default_rng(self.seed)
        total = sum(u.size for u in self.space)
        produced: set[str] = set()
        misses = 0
        while len(produced) < total and misses < 10_000:
            u = self.space[int(rng.integers(len(self.space)))]
            ci = int(rng.integers(u.cin_range[0], u.cin_range[1] + 1))
            co = int(rng.integers(u.cout_range[0], u.cout_range[1] + 1))
            layer = u.make(ci, co)
            k = layer_key(layer)
            if k in produced:
                misses += 1
                continue
            misses = 0
            produced.add(k)
            yield layer


class SobolStrategy(SamplingStrategy):
    """A scrambled Sobol sequence per unit over its (cin, cout) plane; units in turn."""

    name = "sobol"

    def _unit_stream(self, index: int, u: UnitSpace) -> Iterator[LayerSpec]:
        from scipy.stats import qmc

        sampler = qmc.Sobol(d=2, scramble=True, seed=np.random.default_rng([self.seed, index]))
        seen: set[tuple[int, int]] = set()
        misses = 0
        n_in = u.cin_range[1] - u.cin_range[0] + 1
        n_out = u.cout_range[1] - u.cout_range[0] + 1
        while len(seen) < u.size and misses < 2048:
            for p in sampler.random(64):
                ci = u.cin_range[0] + min(n_in - 1, int(p[0] * n_in))
                co = ci if u.tied else u.cout_range[0] + min(n_out - 1, int(p[1] * n_out))
                if (ci, co) in seen:
                    misses += 1
                    continue
                misses = 0
                seen.add((ci, co))
                yield u.make(ci, co)

    def _generate(self) -> Iterator[LayerSpec]:
        streams = [self._unit_stream(i, u) for i, u in enumerate(self.space)]
        while streams:
            alive = []
            for s in streams:
                layer = next(s, None)
                if layer is not None:
                    alive.append(s)
                    yield layer
            streams = alive


class PriorStrategy(SamplingStrategy):
    """The network's layers, then those of random trimmed variants.

    Args:
        network: The network to trim (default: the Table-1 MobileNetV2, trimmed per stage).
        low: Smallest width ratio.
        jitter: Channels added or removed at random after scaling.
    """

    name = "prior"

    def __init__(self, space: Sequence[UnitSpace] | None = None, seed: int = 0, network: NetworkSpec | None = None,
                 low: float = 0.25, jitter: int = 2):
        self.network = network
        super().__init__(space if space is not None else resolve_space(network), seed)
        if not 0 < low <= 1:
            raise bad_value("low", "a ratio in (0, 1]", low)
        self.low = float(low)
        self.jitter = int(jitter)

    def _variant_layers(self, rng: np.random.Generator | None) -> list[LayerSpec]:
        if self.network is not None:
            widths = self.network.group_widths
            new = {}
            for g in self.network.trimmable_groups:
                new[g] = self._scale(widths[g], rng)
            return list(self.network.with_channels(new).layers)
        from compactnet.extract import mobilenetv2_units
        from compactnet.models.mobilenetv2 import DEFAULT_WIDTHS, MobileNetV2Config, stage_of_width_index

        stages = stage_of_width_index()
        per_stage: dict[int, int] = {}
        widths = []
        for i, w in enumerate(DEFAULT_WIDTHS):
            if i == 0:  # the public code never trims the stem
                widths.append(w)
                continue
            if stages[i] not in per_stage:
                per_stage[stages[i]] = self._scale(w, rng)
            widths.append(per_stage[stages[i]])
        return list(mobilenetv2_units(MobileNetV2Config(widths=tuple(widths)), include_last=False))

    def _scale(self, width: int, rng: np.random.Generator | None) -> int:
        if rng is None:
            return width
        w = int(round(rng.uniform(self.low, 1.0) * width)) + int(rng.integers(-self.jitter, self.jitter + 1))
        return int(min(width, max(1, w)))

    def _generate(self) -> Iterator[LayerSpec]:
        rng = np.random.default_rng(self.seed)
        seen: set[str] = set()
        misses = 0
        first = True
        while misses < 200:  # stop once 200 variants in a row bring nothing new
            fresh = False
            for layer in self._variant_layers(None if first else rng):
                k = layer_key(layer)
                if k not in seen:
                    seen.add(k)
                    fresh = True
                    yield layer
            first = False
            misses = 0 if fresh else misses + 1


@runtime_checkable
class UncertaintyModel(Protocol):
    """What adaptive sampling needs from a predictor (implemented by the predictors stage)."""

    def fit(self, measurements: Sequence[Measurement]) -> "UncertaintyModel":
        """Fit on measurements; return self."""
        ...

    def interval_width(self, layers: Sequence[LayerSpec]) -> np.ndarray:
        """Width of the predictive interval (ms, or relative) of each layer; larger = less certain."""
        ...


class AdaptiveStrategy(SamplingStrategy):
    """Start with a Sobol design, then measure where the model's intervals are widest (nn-Meter).

    Each batch: fit the model on what was measured, draw a pool of fresh random candidates
    (seeded by the seed and the number of measurements), take the ``k`` with the widest intervals.

    Args:
        space: Units.
        model: An :class:`UncertaintyModel`.
        seed: Seed.
        initial: Sobol candidates before the model is used.
        pool: Candidates scored per batch.
    """

    name = "adaptive"

    def __init__(self, space: Sequence[UnitSpace], model: UncertaintyModel, seed: int = 0, initial: int = 32,
                 pool: int = 512):
        super().__init__(space, seed)
        if not isinstance(model, UncertaintyModel):
            raise bad_value("model", "an object with fit(measurements) and interval_width(layers)",
                            type(model).__name__)
        self.model = model
        self.initial = int(initial)
        self.pool = int(pool)
        self._sobol = SobolStrategy(space, seed)

    def _generate(self) -> Iterator[LayerSpec]:  # the model-free part of the sequence
        return self._sobol.stream()

    def next_batch(self, k: int, measured: Sequence[Measurement] = ()) -> list[LayerSpec]:
        measured = list(measured)
        done = {layer_key(m.layer) for m in measured}
        if len(measured) < self.initial:
            return [l for l in self._sobol.take(self.initial + k + len(done))
                    if layer_key(l) not in done][:k]
        self.model.fit(measured)
        rnd = RandomStrategy(self.space, seed=self.seed * 1_000_003 + len(measured))
        cands = [l for l in rnd.take(self.pool + len(done)) if layer_key(l) not in done][: self.pool]
        if not cands:
            return []
        widths = np.asarray(self.model.interval_width(cands), np.float64)
        order = np.argsort(-widths, kind="stable")[:k]
        return [cands[i] for i in order]


def make_strategy(name: str | SamplingStrategy, seed: int = 0,
                  network: NetworkSpec | Sequence[UnitSpace] | None = None, step: int = DEFAULT_DENSE_STEP,
                  model: UncertaintyModel | None = None, **kwargs: Any) -> SamplingStrategy:
    """Build a strategy by name (a strategy instance is returned as is).

    Args:
        name: One of :data:`STRATEGIES`.
        seed: Seed of the candidate sequence.
        network: The network whose layers span the space (default: the Table-1 MobileNetV2's 18
            units), or an explicit list of :class:`UnitSpace`.
        step: Channel step of ``dense``.
        model: The :class:`UncertaintyModel` of ``adaptive``.

    Raises:
        ConfigError: Unknown name, or ``adaptive`` without a model.
    """
    if isinstance(name, SamplingStrategy):
        return name
    if name not in STRATEGIES:
        raise bad_value("--strategy", "one of " + ", ".join(STRATEGIES), name)
    if name == "dense":
        space = resolve_space(network, lower="full")
        return DenseStrategy(space, seed, step=step)
    if name == "space":
        from compactnet.profilers.space import LayerSpaceStrategy

        return LayerSpaceStrategy(seed=seed)
    if name == "prior":
        net = network if isinstance(network, NetworkSpec) else None
        space = None if net is not None or network is None else resolve_space(network)
        return PriorStrategy(space, seed, network=net, **kwargs)
    space = resolve_space(network)
    if name == "random":
        return RandomStrategy(space, seed)
    if name == "sobol":
        return SobolStrategy(space, seed)
    if model is None:
        raise ConfigError("--strategy adaptive needs a predictor with uncertainty (model=...); the predictors "
                          "stage provides one")
    return AdaptiveStrategy(space, model, seed, **kwargs)
