"""Zoo entries: one frozen record per published model, and the one parser of zoo names.

A zoo name reads ``{arch}.{dataset}.{platform key}.{tag}``, e.g.
``mobilenetv2.cifar10.ort-cpu-fp32-t1.s1p8x`` (no dots inside numbers: ``1.8`` is written
``1p8``). The tag is ``base`` (the untrimmed network), ``s{speedup}x`` (trimmed for a speedup
target) or ``l{latency}ms`` (trimmed for a latency budget), optionally followed by ``-{variant}``
(``s1p5x-int8``). :func:`parse_name` is the only place that reads this grammar; :func:`make_name`
the only one that writes it.

:class:`ZooEntry` is timm-style: everything a user needs to run the model and judge it (input
contract, measured figures with the data and runtime they came from, files with sizes and
SHA-256, license, provenance) sits in one JSON-serialisable record.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

from compactnet.errors import ConfigError, bad_value
from compactnet.spec import Latency, NetworkSpec, Platform
from compactnet.zoo.errors import IndexFormatError

__all__ = ["NameParts", "parse_name", "make_name", "speedup_tag", "latency_tag", "tag_speedup", "hardware_slug",
           "FileRef", "InputContract", "Metrics", "Provenance", "ZooEntry", "FILE_FORMATS"]

_PART = r"[a-z0-9]+"
_KEY = r"[a-z0-9]+-[a-z0-9]+-(?:fp32|fp16|int8)-t\d+"
_NUM = r"\d+(?:p\d+)?"
_TAG = rf"(?:base|s{_NUM}x|l{_NUM}ms)(?:-[a-z0-9]+)?"
_NAME_RE = re.compile(rf"^(?P<arch>{_PART})\.(?P<dataset>{_PART})\.(?P<platform>{_KEY})\.(?P<tag>{_TAG})$")
_NAME_HELP = ("a zoo name {arch}.{dataset}.{platform key}.{tag} such as "
              "mobilenetv2.cifar10.ort-cpu-fp32-t1.s1p8x (tag: base, s<speedup>x or l<latency>ms, "
              "'p' for the decimal point, optional -variant)")

#: File formats an entry may reference: neither is ever unpickled.
FILE_FORMATS = ("onnx", "safetensors")


def hardware_slug(hardware: str) -> str:
    """A short, file-name-safe form of a hardware string, unique per string.

    ``"Intel(R) Xeon(R) Processor @ 2.50GHz"`` -> ``"intel-xeon-processor-2-50ghz-<6 hex>"``: the
    words (trademark marks dropped) and a digest of the exact string, so two hardwares whose words
    agree still get two folders.
    """
    import hashlib

    words = re.findall(r"[a-z0-9]+", re.sub(r"\((?:r|tm|c)\)", " ", str(hardware).lower()))
    stem = "-".join(words)[:40].strip("-") or "unknown"
    return f"{stem}-{hashlib.sha256(str(hardware).encode('utf-8')).hexdigest()[:6]}"


class NameParts(NamedTuple):
    """The four parts of a zoo name."""

    arch: str
    dataset: str
    platform_key: str
    tag: str


def parse_name(name: str) -> NameParts:
    """Split a zoo name into (arch, dataset, platform key, tag).

    Raises:
        ConfigError: The name does not follow the grammar or names an unknown runtime.
    """
    m = _NAME_RE.match(str(name))
    if not m:
        raise bad_value("name", _NAME_HELP, name)
    try:
        Platform.parse(m["platform"], hardware="")  # checks the runtime is known
    except ConfigError as exc:
        raise bad_value("name", f"{_NAME_HELP}, with a known platform ({exc})", name) from exc
    return NameParts(m["arch"], m["dataset"], m["platform"], m["tag"])


def _number(value: float, digits: int = 2) -> str:
    text = f"{round(float(value), digits):.{digits}f}".rstrip("0").rstrip(".")
    return text.replace(".", "p")


def speedup_tag(speedup: float, variant: str = "") -> str:
    """Tag for a speedup target: ``1.8`` -> ``s1p8x``, ``2`` -> ``s2x``."""
    if not (math.isfinite(float(speedup)) and float(speedup) > 0):
        raise bad_value("speedup", "a positive number", speedup)
    return f"s{_number(speedup)}x" + (f"-{variant}" if variant else "")


def latency_tag(latency_ms: float, variant: str = "") -> str:
    """Tag for a latency budget: ``0.5`` -> ``l0p5ms``."""
    if not (math.isfinite(float(latency_ms)) and float(latency_ms) > 0):
        raise bad_value("latency_ms", "a positive number", latency_ms)
    return f"l{_number(latency_ms, 3)}ms" + (f"-{variant}" if variant else "")


def tag_speedup(tag: str) -> float | None:
    """Speedup target a tag names (``s1p8x`` -> 1.8; ``base`` -> 1.0; latency tags -> None)."""
    core = tag.split("-", 1)[0]
    if core == "base":
        return 1.0
    if core.startswith("s") and core.endswith("x"):
        return float(core[1:-1].replace("p", "."))
    return None


def make_name(arch: str, dataset: str, platform_key: str, tag: str = "base") -> str:
    """Build (and check) a zoo name from its parts."""
    name = f"{arch}.{dataset}.{platform_key}.{tag}"
    parse_name(name)
    return name


# ----- records ----------------------------------------------------------------------------
def _fields(cls: type, d: Mapping[str, Any], where: str) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise IndexFormatError(f"{where}: unknown field(s) {unknown} for {cls.__name__}; "
                               f"allowed: {sorted(names)}")
    return dict(d)


_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class FileRef:
    """One file of an entry.

    Attributes:
        path: POSIX path relative to the index's folder (or URL); never absolute, never ``..``.
        size: Size in bytes.
        sha256: Hex SHA-256 of the content.
        format: ``onnx`` or ``safetensors``.
        opset: ONNX default-domain opset (ONNX files only).
        ir_version: ONNX IR version (ONNX files only).
    """

    path: str
    size: int
    sha256: str
    format: str
    opset: int | None = None
    ir_version: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha256", str(self.sha256).lower())
        object.__setattr__(self, "size", int(self.size))
        if not _SHA_RE.match(self.sha256):
            raise bad_value(f"{self.path}: sha256", "64 hexadecimal digits", self.sha256)
        if self.size < 0:
            raise bad_value(f"{self.path}: size", "a non-negative byte count", self.size)
        if self.format not in FILE_FORMATS:
            raise bad_value(f"{self.path}: format", "one of " + ", ".join(FILE_FORMATS), self.format)

    def to_dict(self) -> dict:
        """JSON-ready form (ONNX fields dropped for other formats)."""
        d = dataclasses.asdict(self)
        if self.format != "onnx":
            d.pop("opset"), d.pop("ir_version")
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "file") -> "FileRef":
        """Inverse of :meth:`to_dict`."""
        return cls(**_fields(cls, d, where))


@dataclass(frozen=True)
class InputContract:
    """How to feed the model: what the ONNX input expects.

    Attributes:
        name: ONNX input name.
        shape: Input shape (batch 1).
        dtype: Element type.
        layout: Axis order, ``NCHW``.
        color: Channel order, ``RGB``.
        value_range: Range uint8 pixels are scaled to before normalisation, (0, 1).
        mean: Per-channel mean subtracted after scaling.
        std: Per-channel std divided by after subtracting the mean.
        classes: Class names in output order.
    """

    name: str = "input"
    shape: tuple[int, ...] = (1, 3, 32, 32)
    dtype: str = "float32"
    layout: str = "NCHW"
    color: str = "RGB"
    value_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for attr, conv in (("shape", int), ("value_range", float), ("mean", float), ("std", float),
                           ("classes", str)):
            object.__setattr__(self, attr, tuple(conv(v) for v in getattr(self, attr)))
        if self.layout != "NCHW":
            raise bad_value("input.layout", "'NCHW'", self.layout)
        channels = self.shape[1] if len(self.shape) == 4 else None
        for attr in ("mean", "std"):
            if getattr(self, attr) and channels is not None and len(getattr(self, attr)) != channels:
                raise bad_value(f"input.{attr}", f"{channels} values (one per channel)", getattr(self, attr))

    @classmethod
    def cifar10(cls, name: str = "input") -> "InputContract":
        """The contract of CompactNet's CIFAR-10 models (:mod:`compactnet.data` statistics)."""
        from compactnet.data import CLASSES, MEAN, STD

        return cls(name=name, mean=MEAN, std=STD, classes=CLASSES)

    def preprocess(self, images: Any) -> Any:
        """Turn uint8 RGB images (N, H, W, C) into the float32 NCHW array the model expects."""
        import numpy as np

        x = np.asarray(images)
        if x.ndim == 3:
            x = x[None]
        lo, hi = self.value_range
        x = x.astype(np.float32) / 255.0 * (hi - lo) + lo
        if self.mean:
            x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=self.dtype)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "input") -> "InputContract":
        """Inverse of :meth:`to_dict`."""
        return cls(**_fields(cls, d, where))


@dataclass(frozen=True)
class Metrics:
    """Figures of an entry, each with what it was obtained on.

    Attributes:
        top1: Test top-1 accuracy, percent.
        data_copy: CIFAR-10 copy the accuracy used (``packed-jpeg`` or ``original``).
        test_hash: Hash of the test images used (:func:`compactnet.data.split_hash`).
        val_top1: Validation top-1, percent (the figure the search chose on), if known.
        latency: Latency measured by the protocol on the entry's platform and hardware.
        runtime_version: Version of the runtime that measured ``latency``.
        speedup: Ratio baseline latency / this latency, measured interleaved by the protocol.
        speedup_low: Lower end of the speedup's 95% bootstrap interval.
        speedup_high: Upper end of it.
        baseline: What the speedup is relative to (a zoo name or a description).
        predicted_latency: The predictor's figure for this network on the platform, if any.
        measured_at: ISO-8601 UTC time of the latency measurement.
        load: Machine load (beyond our process) during the measurement.
    """

    top1: float | None = None
    data_copy: str = ""
    test_hash: str = ""
    val_top1: float | None = None
    latency: Latency | None = None
    runtime_version: str = ""
    speedup: float | None = None
    speedup_low: float | None = None
    speedup_high: float | None = None
    baseline: str = ""
    predicted_latency: Latency | None = None
    measured_at: str = ""
    load: float | None = None

    @property
    def latency_ms(self) -> float | None:
        """Measured latency (the card's estimator), ms."""
        return self.latency.value_ms if self.latency is not None else None

    def to_dict(self) -> dict:
        """JSON-ready form (NaN as null)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for k in ("latency", "predicted_latency"):
            d[k] = d[k].to_dict() if d[k] is not None else None
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "metrics") -> "Metrics":
        """Inverse of :meth:`to_dict`."""
        d = _fields(cls, d, where)
        for k in ("latency", "predicted_latency"):
            if d.get(k) is not None:
                d[k] = Latency.from_dict(d[k])
        return cls(**d)


@dataclass(frozen=True)
class Provenance:
    """Where an entry came from.

    Attributes:
        command: The command line that produced the model (search or training).
        publish_command: The command that published it.
        source: The result folder or weights it was published from (as given).
        compactnet_version: Package version at publishing time.
        git_commit: Repository commit at publishing time, if known.
        created: ISO-8601 UTC time of publishing.
    """

    command: str = ""
    publish_command: str = ""
    source: str = ""
    compactnet_version: str = ""
    git_commit: str = ""
    created: str = ""

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "provenance") -> "Provenance":
        """Inverse of :meth:`to_dict`."""
        return cls(**_fields(cls, d, where))


@dataclass(frozen=True)
class ZooEntry:
    """One published model.

    Attributes:
        name: Zoo name (see :func:`parse_name`); its parts must agree with the fields below.
        architecture: Registry name of the base architecture (``mobilenetv2``, ...).
        dataset: Data set (``cifar10``).
        platform: Platform key the model was trimmed for and measured on.
        hardware: Hardware the figures were measured on.
        channels: Channel configuration as the model registry reads it
            (``compactnet.models.parse_channels``), e.g. ``{"widths": [...], "hidden": [...]}``.
        input: Input contract.
        metrics: Measured (and predicted) figures.
        onnx: The ONNX file (opset 17, IR <= 10).
        weights: The safetensors weights for ``create_model(architecture, channels)``.
        license: SPDX license of the weights.
        provenance: Commands and versions behind the entry.
        network: The network as a :class:`NetworkSpec` (for predictors), if recorded.
        description: One line for listings.
    """

    name: str
    architecture: str
    dataset: str
    platform: str
    hardware: str
    channels: Mapping[str, Any]
    input: InputContract
    metrics: Metrics
    onnx: FileRef
    weights: FileRef
    license: str = "Apache-2.0"
    provenance: Provenance = field(default_factory=Provenance)
    network: NetworkSpec | None = None
    description: str = ""

    def __post_init__(self) -> None:
        parts = parse_name(self.name)
        for attr, value in (("architecture", parts.arch), ("dataset", parts.dataset), ("platform", parts.platform_key)):
            if getattr(self, attr) != value:
                raise bad_value(f"{self.name}: {attr}", f"{value!r} (as the name says)", getattr(self, attr))
        if self.onnx.format != "onnx" or self.weights.format != "safetensors":
            raise bad_value(f"{self.name}: files", "an onnx file and a safetensors weights file",
                            (self.onnx.format, self.weights.format))
        object.__setattr__(self, "channels", copy.deepcopy(dict(self.channels)))

    def __hash__(self) -> int:
        return hash((self.name, self.hardware))

    @property
    def key(self) -> tuple[str, str]:
        """What identifies an entry in an index: the same name may be published for two hardwares."""
        return (self.name, self.hardware)

    @property
    def folder(self) -> str:
        """Relative folder of the entry's files (``{name}/{hardware slug}``): in the zoo and in caches."""
        return f"{self.name}/{hardware_slug(self.hardware)}"

    # ----- derived -----------------------------------------------------------------------
    @property
    def tag(self) -> str:
        """The tag part of the name (``base``, ``s1p8x``, ...)."""
        return parse_name(self.name).tag

    @property
    def target_speedup(self) -> float | None:
        """Speedup target the tag names (1.0 for ``base``)."""
        return tag_speedup(self.tag)

    @property
    def files(self) -> dict[str, FileRef]:
        """Files by role: ``onnx`` and ``weights``."""
        return {"onnx": self.onnx, "weights": self.weights}

    @property
    def size_bytes(self) -> int:
        """Download size: ONNX plus weights."""
        return self.onnx.size + self.weights.size

    def platform_record(self) -> Platform:
        """The entry's platform with hardware and runtime version."""
        return Platform.parse(self.platform, hardware=self.hardware, runtime_version=self.metrics.runtime_version)

    def network_spec(self) -> NetworkSpec:
        """The recorded :class:`NetworkSpec`, else one built by :func:`compactnet.extract.spec_for`."""
        if self.network is not None:
            return self.network
        from compactnet.extract import spec_for

        return spec_for(self.architecture, dict(self.channels))

    # ----- JSON --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "name": self.name, "architecture": self.architecture, "dataset": self.dataset,
            "platform": self.platform, "hardware": self.hardware, "channels": copy.deepcopy(dict(self.channels)),
            "input": self.input.to_dict(), "metrics": self.metrics.to_dict(),
            "onnx": self.onnx.to_dict(), "weights": self.weights.to_dict(), "license": self.license,
            "provenance": self.provenance.to_dict(),
            "network": self.network.to_dict() if self.network is not None else None,
            "description": self.description,
        }

    def to_json(self, **kwargs: Any) -> str:
        """JSON string."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ZooEntry":
        """Inverse of :meth:`to_dict`.

        Raises:
            IndexFormatError: Missing or unknown fields.
            ConfigError: A value outside what is allowed (bad name, hash, format...).
        """
        where = f"entry {d.get('name', '?')!r}" if isinstance(d, Mapping) else "entry"
        if not isinstance(d, Mapping):
            raise IndexFormatError(f"{where}: expected a JSON object, got {type(d).__name__}")
        d = _fields(cls, d, where)
        missing = [k for k in ("name", "architecture", "dataset", "platform", "hardware", "channels", "input",
                               "metrics", "onnx", "weights") if k not in d]
        if missing:
            raise IndexFormatError(f"{where}: missing field(s) {missing}")
        try:
            d["input"] = InputContract.from_dict(d["input"], f"{where}.input")
            d["metrics"] = Metrics.from_dict(d["metrics"], f"{where}.metrics")
            d["onnx"] = FileRef.from_dict(d["onnx"], f"{where}.onnx")
            d["weights"] = FileRef.from_dict(d["weights"], f"{where}.weights")
            d["provenance"] = Provenance.from_dict(d.get("provenance") or {}, f"{where}.provenance")
            d["network"] = NetworkSpec.from_dict(d["network"]) if d.get("network") else None
        except (TypeError, KeyError, AttributeError) as exc:
            raise IndexFormatError(f"{where}: malformed ({type(exc).__name__}: {exc})") from exc
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "ZooEntry":
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))
