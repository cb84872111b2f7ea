"""Frozen, JSON-serialisable records that cross every stage boundary.

``LayerSpec`` describes one layer (or fused unit) a runtime executes; ``NetworkSpec`` an ordered
network of them plus its coupled channel groups; ``Platform`` a runtime + provider + precision +
threads on some hardware; ``Latency`` a protocol measurement; ``Measurement`` one profiled layer.
No ``nn.Module`` or loose dict crosses a boundary: these do.

Extraction of a ``NetworkSpec`` from torch modules and ONNX files lives in
:mod:`compactnet.extract`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform as _pyplatform
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

from compactnet.errors import ConfigError, bad_value

#: Layer kinds a LayerSpec can describe.
OP_KINDS = ("conv", "dwconv", "linear", "avgpool", "maxpool", "gap", "add", "concat", "block")
ACTIVATIONS = (None, "relu", "relu6", "sigmoid", "hardswish")
BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "int8": 1}


def _as_pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


@dataclass(frozen=True)
class LayerSpec:
    """One layer as a runtime sees it, with its fused batch-norm and activation.

    Attributes:
        name: Unique name inside its network (module path or ONNX node name).
        op: One of :data:`OP_KINDS`. ``dwconv`` is a conv with ``groups == cin == cout``;
            ``block`` is a MobileNetV2 inverted-residual unit (expansion, depthwise, projection).
        cin: Input channels (for ``linear``: input features).
        cout: Output channels (for ``linear``: output features).
        h: Input height (1 for ``linear``).
        w: Input width (1 for ``linear``).
        kernel: Kernel size (kh, kw); (1, 1) where not applicable.
        stride: Stride (sh, sw).
        padding: Symmetric padding (ph, pw).
        groups: Conv groups.
        expansion: For ``block``: hidden width (0 elsewhere).
        bn: Batch-norm fused into the layer.
        act: Fused activation, one of :data:`ACTIVATIONS`.
        bias: The layer has a bias.
        residual: For ``block``: the unit ends with a residual add.
        in_group: Channel group of the input channels (see :class:`NetworkSpec`).
        out_group: Channel group of the output channels.
        hidden_group: For ``block``: channel group of the hidden width.
        inputs: Names of the layers feeding this one (empty: the network input).
    """

    name: str
    op: str
    cin: int
    cout: int
    h: int
    w: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    expansion: int = 0
    bn: bool = False
    act: str | None = None
    bias: bool = False
    residual: bool = False
    in_group: str = ""
    out_group: str = ""
    hidden_group: str = ""
    inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for attr in ("kernel", "stride", "padding"):
            object.__setattr__(self, attr, _as_pair(getattr(self, attr)))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if self.op not in OP_KINDS:
            raise bad_value("op", "one of " + ", ".join(OP_KINDS), self.op)
        if self.act not in ACTIVATIONS:
            raise bad_value("act", "one of " + ", ".join(map(str, ACTIVATIONS)), self.act)
        for attr in ("cin", "cout", "h", "w", "groups"):
            if int(getattr(self, attr)) < 1:
                raise bad_value(f"{self.name}.{attr}", "a positive integer", getattr(self, attr))
        if self.op == "dwconv" and not (self.groups == self.cin == self.cout):
            raise bad_value(f"{self.name}.groups", f"equal to cin and cout ({self.cin}, {self.cout}) for a dwconv",
                            self.groups)
        if self.op == "conv" and (self.cin % self.groups or self.cout % self.groups):
            raise bad_value(f"{self.name}.groups", f"a divisor of cin={self.cin} and cout={self.cout}", self.groups)

    # ----- derived shapes and costs -------------------------------------------------------
    @property
    def out_hw(self) -> tuple[int, int]:
        """Output (height, width)."""
        if self.op in ("linear", "gap"):
            return (1, 1)
        if self.op in ("add", "concat"):
            return (self.h, self.w)
        kh, kw = self.kernel
        sh, sw = self.stride
        ph, pw = self.padding
        if self.op == "block":
            kh = kw = 3
            ph = pw = 1
        return ((self.h + 2 * ph - kh) // sh + 1, (self.w + 2 * pw - kw) // sw + 1)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one inference at batch 1."""
        oh, ow = self.out_hw
        kh, kw = self.kernel
        if self.op in ("conv", "dwconv"):
            return oh * ow * self.cout * (self.cin // self.groups) * kh * kw
        if self.op == "linear":
            return self.cin * self.cout
        if self.op == "block":
            hid = self.expansion or self.cin
            expand = self.h * self.w * self.cin * hid if hid != self.cin else 0
            return expand + oh * ow * hid * 9 + oh * ow * hid * self.cout
        if self.op in ("avgpool", "maxpool"):
            return oh * ow * self.cout * kh * kw
        if self.op == "gap":
            return self.h * self.w * self.cin
        return oh * ow * self.cout  # add, concat

    @property
    def flops(self) -> int:
        """Floating-point operations (2 per MAC)."""
        return 2 * self.macs

    @property
    def params(self) -> int:
        """Learned parameters (batch-norm folded into scale and shift)."""
        kh, kw = self.kernel
        if self.op in ("conv", "dwconv"):
            p = self.cout * (self.cin // self.groups) * kh * kw
            return p + (self.cout if (self.bias or self.bn) else 0)
        if self.op == "linear":
            return self.cin * self.cout + (self.cout if self.bias else 0)
        if self.op == "block":
            hid = self.expansion or self.cin
            expand = self.cin * hid + hid if hid != self.cin else 0
            return expand + hid * 9 + hid + hid * self.cout + self.cout
        return 0

    def bytes_moved(self, precision: str = "fp32") -> int:
        """Bytes read and written: input + output activations + weights."""
        e = BYTES_PER_ELEMENT.get(precision, 4)
        oh, ow = self.out_hw
        n_in = self.cin * self.h * self.w * (2 if self.op == "add" else 1)
        return e * (n_in + self.cout * oh * ow + self.params)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        d = dataclasses.asdict(self)
        for k in ("kernel", "stride", "padding", "inputs"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LayerSpec":
        """Inverse of :meth:`to_dict`."""
        return cls(**_known_fields(cls, d))

    def key(self) -> tuple:
        """Configuration identity (everything but name, groups and wiring), for de-duplication."""
        return (self.op, self.cin, self.cout, self.h, self.w, self.kernel, self.stride, self.padding,
                self.groups, self.expansion, self.bn, self.act, self.bias, self.residual)


def _known_fields(cls: type, d: Mapping[str, Any]) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
    return dict(d)


@dataclass(frozen=True)
class NetworkSpec:
    """An ordered network of layers and the channel groups that must be trimmed together.

    Attributes:
        architecture: Model name (``mobilenetv2``, ...) or ``onnx`` for a foreign graph.
        input_shape: NCHW input shape.
        layers: Layers in execution order.
        groups: Width of every channel group, by group name. A group is a set of tensor channel
            dimensions tied together (a conv's output and the depthwise conv and residual adds
            consuming it); every layer names its ``in_group`` and ``out_group``.
        fixed: Groups that cannot be trimmed (network input, classifier output).
    """

    architecture: str
    input_shape: tuple[int, int, int, int]
    layers: tuple[LayerSpec, ...]
    groups: tuple[tuple[str, int], ...] = ()
    fixed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        object.__setattr__(self, "layers", tuple(self.layers))
        if isinstance(self.groups, Mapping):
            object.__setattr__(self, "groups", tuple(self.groups.items()))
        object.__setattr__(self, "groups", tuple((str(k), int(v)) for k, v in self.groups))
        object.__setattr__(self, "fixed", tuple(self.fixed))
        names = [l.name for l in self.layers]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ConfigError(f"layer name {dup!r} appears twice in the network")

    @property
    def group_widths(self) -> dict[str, int]:
        """Group name to width."""
        return dict(self.groups)

    @property
    def trimmable_groups(self) -> list[str]:
        """Groups that may be trimmed, in network order."""
        return [g for g, _ in self.groups if g not in self.fixed]

    def with_channels(self, widths: Mapping[str, int]) -> "NetworkSpec":
        """A trimmed variant with the given group widths; every coupled layer follows.

        Raises:
            ConfigError: An unknown or fixed group, or a non-positive width.
        """
        current = self.group_widths
        for g, w in widths.items():
            if g not in current:
                raise bad_value("channels", "group names among " + ", ".join(current), g)
            if g in self.fixed and int(w) != current[g]:
                raise bad_value(f"channels[{g}]", f"{current[g]} (the group is fixed)", w)
            if int(w) < 1:
                raise bad_value(f"channels[{g}]", "a positive channel count", w)
        new = {**current, **{g: int(w) for g, w in widths.items()}}
        layers = tuple(_retarget(l, new) for l in self.layers)
        return replace(self, layers=layers, groups=tuple(new.items()))

    @property
    def macs(self) -> int:
        """Total multiply-accumulates."""
        return sum(l.macs for l in self.layers)

    @property
    def params(self) -> int:
        """Total parameters."""
        return sum(l.params for l in self.layers)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"architecture": self.architecture, "input_shape": list(self.input_shape),
                "layers": [l.to_dict() for l in self.layers], "groups": dict(self.groups),
                "fixed": list(self.fixed)}

    def to_json(self, **kwargs: Any) -> str:
        """JSON string."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NetworkSpec":
        """Inverse of :meth:`to_dict`."""
        return cls(architecture=d["architecture"], input_shape=tuple(d["input_shape"]),
                   layers=tuple(LayerSpec.from_dict(l) for l in d["layers"]),
                   groups=tuple(d.get("groups", {}).items()), fixed=tuple(d.get("fixed", ())))

    @classmethod
    def from_json(cls, text: str) -> "NetworkSpec":
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


def _retarget(layer: LayerSpec, widths: Mapping[str, int]) -> LayerSpec:
    cin = widths.get(layer.in_group, layer.cin) if layer.in_group else layer.cin
    cout = widths.get(layer.out_group, layer.cout) if layer.out_group else layer.cout
    changes: dict[str, Any] = {"cin": cin, "cout": cout}
    if layer.op == "dwconv":
        changes["groups"] = cin
        changes["cout"] = cin
    if layer.op == "block" and layer.hidden_group:
        changes["expansion"] = widths.get(layer.hidden_group, layer.expansion)
    return replace(layer, **changes)


# ----- platforms ----------------------------------------------------------------------------
_KEY_RE = re.compile(r"^(?P<runtime>[a-z0-9]+)-(?P<provider>[a-z0-9]+)-(?P<precision>fp32|fp16|int8)-t(?P<threads>\d+)$")
RUNTIMES = ("ort", "openvino", "ncnn", "torch", "synthetic")


@dataclass(frozen=True)
class Platform:
    """Runtime + provider + precision + threads on some hardware.

    Attributes:
        runtime: ``ort``, ``openvino``, ``ncnn``, ``torch`` or ``synthetic``.
        provider: Execution provider or device (``cpu``, ``nnapi``, ``qnn``, ``coreml``, ...).
        precision: ``fp32``, ``fp16`` or ``int8``.
        threads: Intra-op threads.
        hardware: CPU model or SoC read from the machine.
        runtime_version: Version of the runtime package.
    """

    runtime: str
    provider: str = "cpu"
    precision: str = "fp32"
    threads: int = 1
    hardware: str = ""
    runtime_version: str = ""

    @property
    def key(self) -> str:
        """DESIGN's platform key ``{runtime}-{provider}-{precision}-t{threads}``."""
        return f"{self.runtime}-{self.provider}-{self.precision}-t{self.threads}"

    @classmethod
    def parse(cls, key: str, hardware: str | None = None, runtime_version: str = "") -> "Platform":
        """Parse a platform key; hardware defaults to this machine's.

        Raises:
            ConfigError: The key does not follow the grammar or names an unknown runtime.
        """
        m = _KEY_RE.match(str(key).strip().lower())
        if not m:
            raise bad_value("--platform", "a key like ort-cpu-fp32-t1 ({runtime}-{provider}-{precision}-t{threads})",
                            key)
        if m["runtime"] not in RUNTIMES:
            raise bad_value("--platform", "a runtime among " + ", ".join(RUNTIMES), m["runtime"])
        return cls(m["runtime"], m["provider"], m["precision"], int(m["threads"]),
                   hardware if hardware is not None else hardware_id(), runtime_version)

    def describe(self) -> str:
        """Key with hardware and runtime version beside it."""
        extra = ", ".join(x for x in (self.hardware, self.runtime_version and f"v{self.runtime_version}") if x)
        return f"{self.key} ({extra})" if extra else self.key

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {**dataclasses.asdict(self), "key": self.key}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Platform":
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: v for k, v in d.items() if k != "key"})


def hardware_id() -> str:
    """This machine's CPU model (``/proc/cpuinfo``), or the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return _pyplatform.processor() or _pyplatform.machine() or "unknown"


# ----- latency --------------------------------------------------------------------------------
#: How a measured latency is reduced from its timed calls (DESIGN's measurement rule): ``min``, the
#: minimum over all timed calls (the default: interference only ever adds time, so the minimum repeats),
#: or ``median``, the median of the round medians (what a user sees on a busy device; the estimator of
#: records written before the rule changed).
ESTIMATORS = ("min", "median")
DEFAULT_ESTIMATOR = "min"
#: The estimator of a stored record that does not name one (every record before the minimum rule).
LEGACY_ESTIMATOR = "median"


def latency_ms(d: Mapping[str, Any]) -> float:
    """The protocol's figure (ms) of a latency dict, new (``value_ms``) or legacy (``median_ms``).

    Raises:
        KeyError: Neither key is present.
    """
    return float(d["value_ms"] if "value_ms" in d else d["median_ms"])


@dataclass(frozen=True)
class Latency:
    """A latency figure: the protocol's estimate with its spread, or a prediction with an interval.

    Attributes:
        value_ms: The protocol's figure in milliseconds: for a measurement, the ``estimator``'s value
            (by default the minimum over all timed calls); for a prediction, the predicted value.
        low_ms: Lower end of the spread (25th percentile of the per-round figures) or interval.
        high_ms: Upper end of the spread (75th percentile of the per-round figures) or interval.
        runs: Timed runs behind the figure (0 for a prediction).
        rounds: The per-round figures, milliseconds (round minima under ``min``, round medians under
            ``median``; empty for a prediction).
        source: ``measured`` or ``predicted``.
        estimator: How ``value_ms`` was reduced from the timed calls, one of :data:`ESTIMATORS`.
        p50_ms: Median of all timed calls: typical latency under the load the device had (never used to
            compare models; NaN when unknown).
        p90_ms: 90th percentile of all timed calls (same use; NaN when unknown).
    """

    value_ms: float
    low_ms: float = math.nan
    high_ms: float = math.nan
    runs: int = 0
    rounds: tuple[float, ...] = ()
    source: str = "measured"
    estimator: str = DEFAULT_ESTIMATOR
    p50_ms: float = math.nan
    p90_ms: float = math.nan

    def __post_init__(self) -> None:
        object.__setattr__(self, "rounds", tuple(float(r) for r in self.rounds))
        if self.source not in ("measured", "predicted"):
            raise bad_value("source", "'measured' or 'predicted'", self.source)
        if self.estimator not in ESTIMATORS:
            raise bad_value("estimator", "one of " + ", ".join(ESTIMATORS), self.estimator)
        for name in ("p50_ms", "p90_ms"):
            v = getattr(self, name)
            v = math.nan if v is None else float(v)
            object.__setattr__(self, name, math.nan if math.isnan(v) else v)

    @property
    def spread(self) -> float:
        """Relative spread (high - low) / value."""
        return (self.high_ms - self.low_ms) / self.value_ms if self.value_ms else math.nan

    def typical(self) -> str:
        """``"typical under load: median X ms, p90 Y ms"`` (empty when the percentiles are unknown)."""
        if math.isnan(self.p50_ms):
            return ""
        return f"typical under load: median {self.p50_ms:.3f} ms, p90 {self.p90_ms:.3f} ms"

    def to_dict(self) -> dict:
        """JSON-ready form (NaN written as null)."""
        d = dataclasses.asdict(self)
        d["rounds"] = list(self.rounds)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Latency":
        """Inverse of :meth:`to_dict`.

        A record written before the minimum rule (``median_ms``, no ``estimator``) reads with
        ``estimator="median"``: its figure was the median of round medians, and it stays labelled so.
        """
        d = {k: (math.nan if v is None else v) for k, v in d.items()}
        if "median_ms" in d and "value_ms" not in d:
            d["value_ms"] = d.pop("median_ms")
            d.setdefault("estimator", LEGACY_ESTIMATOR)
        return cls(**d)


@dataclass(frozen=True)
class Measurement:
    """One profiled layer on one platform.

    Attributes:
        layer: What was measured.
        platform: Where it was measured (with hardware and runtime version).
        latency: The protocol's figure, per-call overhead already subtracted.
        when: ISO-8601 UTC time of the measurement.
        load: Load average (1 min) beyond our own process when it was taken.
        context: How it was measured (``rotation``, ``isolated``, ...).
        overhead_ms: Per-call overhead of the runtime measured alongside (median of the empty
            model's figure, milliseconds) and subtracted from ``latency``; NaN when unknown
            (records written before the field existed).
        anchor_ms: Summed latency of the profiler's fixed anchor layers timed in the same batch
            (:mod:`compactnet.profilers.anchors`): how fast the machine ran at that moment, so that
            samples taken minutes apart can be put on one scale; NaN when not timed.
    """

    layer: LayerSpec
    platform: Platform
    latency: Latency
    when: str
    load: float = 0.0
    context: str = "rotation"
    overhead_ms: float = math.nan
    anchor_ms: float = math.nan

    def __post_init__(self) -> None:
        for name in ("overhead_ms", "anchor_ms"):
            v = getattr(self, name)
            v = math.nan if v is None else float(v)
            # keep the one NaN object so that records compare equal after a JSON round trip
            object.__setattr__(self, name, math.nan if math.isnan(v) else v)

    def to_dict(self) -> dict:
        """JSON-ready form (an unknown overhead written as null)."""
        return {"layer": self.layer.to_dict(), "platform": self.platform.to_dict(),
                "latency": self.latency.to_dict(), "when": self.when, "load": self.load,
                "context": self.context,
                "overhead_ms": None if math.isnan(self.overhead_ms) else self.overhead_ms,
                "anchor_ms": None if math.isnan(self.anchor_ms) else self.anchor_ms}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Measurement":
        """Inverse of :meth:`to_dict`; records without ``overhead_ms`` or ``anchor_ms`` read them as NaN."""
        return cls(LayerSpec.from_dict(d["layer"]), Platform.from_dict(d["platform"]),
                   Latency.from_dict(d["latency"]), d["when"], float(d.get("load", 0.0)),
                   d.get("context", "rotation"), d.get("overhead_ms"), d.get("anchor_ms"))
