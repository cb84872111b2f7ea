"""Features of a layer for latency prediction: one frozen feature table per layer kind.

A :class:`FeatureSchema` per op kind (:data:`SCHEMAS`) is the single source of column order. Every
estimator, every saved predictor and every benchmark builds its matrices through
:func:`featurize` (from :class:`~compactnet.spec.LayerSpec` records) or :func:`featurize_raw`
(from the compact numeric form :func:`raw_matrix` returns, which the batched predictor builds
without touching ``LayerSpec`` objects). A schema's :attr:`FeatureSchema.hash` is saved with every
predictor so a model is never fed columns it was not trained on.

Columns, by name (all numeric):

- shape: ``cin``, ``cout``, ``h``, ``w``, ``out_h``, ``out_w``, ``kernel``, ``kernel_w``,
  ``stride``, ``padding``, ``groups``, ``cin_per_group``, ``expansion``, ``expansion_ratio``;
- cost: ``flops``, ``params``, ``bytes`` (activations in and out plus weights, at the platform's
  precision), ``arith_intensity`` (flops per byte), ``elem_bytes`` (4 fp32, 2 fp16, 1 int8);
- fused ops: ``bn``, ``act`` (0 none, 1 relu, 2 relu6, 3 sigmoid, 4 hardswish), ``bias``,
  ``residual``;
- channel alignment (a 3x3 depthwise conv with 63 or 65 channels costs about 3x one with 64 on
  onnxruntime here): ``cin_mod4``/``cin_mod8``/``cin_mod16`` (residues), ``cin_al4``/``cin_al8``/
  ``cin_al16`` (1 when a multiple), the same for ``cout`` and, for blocks, ``exp``.

The first four columns of every schema are ``cin, cout, flops, bytes`` (baselines rely on it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from compactnet.errors import bad_value
from compactnet.spec import ACTIVATIONS, BYTES_PER_ELEMENT, OP_KINDS, LayerSpec

#: Bumped whenever a column's definition changes (part of every schema hash).
FEATURE_VERSION = 1

#: Columns of :func:`raw_matrix`, in order.
RAW_COLUMNS: tuple[str, ...] = ("op", "cin", "cout", "h", "w", "kh", "kw", "sh", "sw", "ph", "pw",
                                "groups", "expansion", "bn", "act", "bias", "residual")
RAW_INDEX = {c: i for i, c in enumerate(RAW_COLUMNS)}
OP_CODE = {op: i for i, op in enumerate(OP_KINDS)}
ACT_CODE = {a: i for i, a in enumerate(ACTIVATIONS)}

#: Columns that do not depend on channel counts: they identify a "unit" (a layer position of a
#: network) for the lookup-table baseline, which interpolates over (cin, cout) inside a unit.
UNIT_COLUMNS: frozenset[str] = frozenset({"h", "w", "out_h", "out_w", "kernel", "kernel_w", "stride",
                                          "padding", "expansion_ratio", "elem_bytes", "bn", "act",
                                          "bias", "residual"})

_LEAD = ("cin", "cout", "flops", "bytes")
_SPATIAL = ("h", "w", "out_h", "out_w")
_FUSED = ("bn", "act", "bias")


def _align(prefix: str) -> tuple[str, ...]:
    return (f"{prefix}_mod4", f"{prefix}_mod8", f"{prefix}_mod16",
            f"{prefix}_al4", f"{prefix}_al8", f"{prefix}_al16")


@dataclass(frozen=True)
class FeatureSchema:
    """The ordered feature columns of one layer kind.

    Attributes:
        kind: Op kind (one of :data:`compactnet.spec.OP_KINDS`).
        columns: Column names in matrix order.
        version: :data:`FEATURE_VERSION` when the schema was made.
    """

    kind: str
    columns: tuple[str, ...]
    version: int = FEATURE_VERSION

    @property
    def hash(self) -> str:
        """Short SHA-256 of kind, columns and version: equal hashes mean interchangeable matrices."""
        text = json.dumps({"kind": self.kind, "columns": list(self.columns), "version": self.version},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def unit_indices(self) -> tuple[int, ...]:
        """Indices of the channel-independent columns (see :data:`UNIT_COLUMNS`)."""
        return tuple(i for i, c in enumerate(self.columns) if c in UNIT_COLUMNS)

    def index(self, column: str) -> int:
        """Position of a column.

        Raises:
            ConfigError: The schema has no such column.
        """
        if column not in self.columns:
            raise bad_value("column", f"one of {', '.join(self.columns)} (schema {self.kind})", column)
        return self.columns.index(column)

    def to_dict(self) -> dict:
        """JSON-ready form, hash included."""
        return {"kind": self.kind, "columns": list(self.columns), "version": self.version, "hash": self.hash}


_CONVLIKE = _LEAD + _SPATIAL + ("params", "arith_intensity", "elem_bytes", "kernel", "kernel_w",
                                "stride", "padding", "groups", "cin_per_group") + _FUSED + _align("cin") + _align("cout")

#: One frozen schema per layer kind: the single source of column order.
SCHEMAS: dict[str, FeatureSchema] = {
    "conv": FeatureSchema("conv", _CONVLIKE),
    "dwconv": FeatureSchema("dwconv", _LEAD + _SPATIAL + ("params", "arith_intensity", "elem_bytes", "kernel",
                                                          "kernel_w", "stride", "padding") + _FUSED + _align("cin")),
    "block": FeatureSchema("block", _LEAD + _SPATIAL + ("params", "arith_intensity", "elem_bytes", "stride",
                                                        "expansion", "expansion_ratio", "act", "residual")
                           + _align("cin") + _align("cout") + _align("exp")),
    "linear": FeatureSchema("linear", _LEAD + ("params", "arith_intensity", "elem_bytes", "bias")
                            + _align("cin") + _align("cout")),
    "avgpool": FeatureSchema("avgpool", _LEAD + _SPATIAL + ("elem_bytes", "kernel", "kernel_w", "stride", "padding")
                             + _align("cin")),
    "maxpool": FeatureSchema("maxpool", _LEAD + _SPATIAL + ("elem_bytes", "kernel", "kernel_w", "stride", "padding")
                             + _align("cin")),
    "gap": FeatureSchema("gap", _LEAD + ("h", "w", "elem_bytes") + _align("cin")),
    "add": FeatureSchema("add", _LEAD + ("h", "w", "elem_bytes", "act") + _align("cin")),
    "concat": FeatureSchema("concat", _LEAD + ("h", "w", "elem_bytes") + _align("cin") + _align("cout")),
}


def schema_for(kind: str) -> FeatureSchema:
    """The schema of a layer kind.

    Raises:
        ConfigError: Unknown kind.
    """
    if kind not in SCHEMAS:
        raise bad_value("kind", "one of " + ", ".join(SCHEMAS), kind)
    return SCHEMAS[kind]


def schema_hashes() -> dict[str, str]:
    """Hash of every kind's schema, for metadata records."""
    return {k: s.hash for k, s in SCHEMAS.items()}


def raw_row(layer: LayerSpec) -> tuple:
    """The numeric description of one layer, in :data:`RAW_COLUMNS` order."""
    return (OP_CODE[layer.op], layer.cin, layer.cout, layer.h, layer.w, layer.kernel[0], layer.kernel[1],
            layer.stride[0], layer.stride[1], layer.padding[0], layer.padding[1], layer.groups, layer.expansion,
            layer.bn, ACT_CODE[layer.act], layer.bias, layer.residual)


def raw_matrix(layers: Iterable[LayerSpec]) -> np.ndarray:
    """Layers as an ``(n, len(RAW_COLUMNS))`` float64 matrix (cheap; see :func:`featurize_raw`)."""
    rows = [raw_row(l) for l in layers]
    if not rows:
        return np.zeros((0, len(RAW_COLUMNS)))
    return np.asarray(rows, dtype=np.float64)


def _elem_bytes(precision: str) -> float:
    if precision not in BYTES_PER_ELEMENT:
        raise bad_value("precision", "one of " + ", ".join(BYTES_PER_ELEMENT), precision)
    return float(BYTES_PER_ELEMENT[precision])


def columns_from_raw(raw: np.ndarray, precision: str = "fp32") -> dict[str, np.ndarray]:
    """Every named feature column computed from a raw matrix, vectorised.

    The cost formulas mirror :attr:`LayerSpec.macs`, :attr:`LayerSpec.params` and
    :meth:`LayerSpec.bytes_moved` (a test checks they agree).
    """
    r = {c: raw[:, i] for i, c in enumerate(RAW_COLUMNS)}
    op = r["op"]
    is_ = {k: op == v for k, v in OP_CODE.items()}
    cin, cout, h, w = r["cin"], r["cout"], r["h"], r["w"]
    kh, kw, sh, sw, ph, pw = r["kh"], r["kw"], r["sh"], r["sw"], r["ph"], r["pw"]
    groups = r["groups"]
    blk = is_["block"]
    ekh = np.where(blk, 3.0, kh)
    ekw = np.where(blk, 3.0, kw)
    eph = np.where(blk, 1.0, ph)
    epw = np.where(blk, 1.0, pw)
    oh = np.floor((h + 2 * eph - ekh) / sh) + 1
    ow = np.floor((w + 2 * epw - ekw) / sw) + 1
    flat = is_["linear"] | is_["gap"]
    same = is_["add"] | is_["concat"]
    oh = np.where(flat, 1.0, np.where(same, h, oh))
    ow = np.where(flat, 1.0, np.where(same, w, ow))
    hid = np.where(r["expansion"] > 0, r["expansion"], cin)
    convlike = is_["conv"] | is_["dwconv"]
    cpg = np.floor(cin / groups)
    macs_block = np.where(hid != cin, h * w * cin * hid, 0.0) + oh * ow * hid * 9 + oh * ow * hid * cout
    macs = np.select(
        [convlike, is_["linear"], blk, is_["avgpool"] | is_["maxpool"], is_["gap"]],
        [oh * ow * cout * cpg * kh * kw, cin * cout, macs_block, oh * ow * cout * kh * kw, h * w * cin],
        default=oh * ow * cout)
    has_b = (r["bias"] > 0) | (r["bn"] > 0)
    params_block = np.where(hid != cin, cin * hid + hid, 0.0) + hid * 9 + hid + hid * cout + cout
    params = np.select(
        [convlike, is_["linear"], blk],
        [cout * cpg * kh * kw + np.where(has_b, cout, 0.0), cin * cout + np.where(r["bias"] > 0, cout, 0.0),
         params_block], default=0.0)
    e = _elem_bytes(precision)
    n_in = cin * h * w * np.where(is_["add"], 2.0, 1.0)
    nbytes = e * (n_in + cout * oh * ow + params)
    flops = 2.0 * macs
    cols = {
        "cin": cin, "cout": cout, "h": h, "w": w, "out_h": oh, "out_w": ow, "kernel": kh, "kernel_w": kw,
        "stride": sh, "padding": ph, "groups": groups, "cin_per_group": cpg, "expansion": r["expansion"],
        "expansion_ratio": np.where(blk, hid / cin, 0.0), "flops": flops, "params": params, "bytes": nbytes,
        "arith_intensity": flops / np.maximum(nbytes, 1.0), "elem_bytes": np.full(len(raw), e),
        "bn": r["bn"], "act": r["act"], "bias": r["bias"], "residual": r["residual"],
    }
    for name, v in (("cin", cin), ("cout", cout), ("exp", hid)):
        for m in (4, 8, 16):
            res = np.mod(v, m)
            cols[f"{name}_mod{m}"] = res
            cols[f"{name}_al{m}"] = (res == 0).astype(np.float64)
    return cols


def featurize_raw(raw: np.ndarray, kind: str, precision: str = "fp32") -> np.ndarray:
    """Feature matrix of one kind from raw rows (all rows must be of that kind).

    Args:
        raw: Matrix from :func:`raw_matrix` (or built directly in :data:`RAW_COLUMNS` order).
        kind: Layer kind whose schema orders the columns.
        precision: ``fp32``, ``fp16`` or ``int8`` (the platform's).

    Returns:
        ``(n, len(schema.columns))`` float32 matrix.
    """
    schema = schema_for(kind)
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim != 2 or raw.shape[1] != len(RAW_COLUMNS):
        raise bad_value("raw", f"a matrix with {len(RAW_COLUMNS)} columns ({', '.join(RAW_COLUMNS)})",
                        f"shape {raw.shape}")
    if len(raw) and np.any(raw[:, 0] != OP_CODE[kind]):
        bad = OP_KINDS[int(raw[raw[:, 0] != OP_CODE[kind]][0, 0])]
        raise bad_value("raw", f"rows of kind {kind!r} only", f"a row of kind {bad!r}")
    cols = columns_from_raw(raw, precision)
    return np.column_stack([cols[c] for c in schema.columns]).astype(np.float32) if len(raw) else \
        np.zeros((0, len(schema.columns)), dtype=np.float32)


def featurize(layers: Sequence[LayerSpec], kind: str | None = None, precision: str = "fp32") -> np.ndarray:
    """Feature matrix of layers of one kind.

    Args:
        layers: Layers, all of the same op kind.
        kind: That kind (default: the first layer's op).
        precision: ``fp32``, ``fp16`` or ``int8``.

    Raises:
        ConfigError: Mixed kinds, an unknown kind or precision.
    """
    layers = list(layers)
    if kind is None:
        if not layers:
            raise bad_value("layers", "at least one layer when kind is not given", "an empty list")
        kind = layers[0].op
    return featurize_raw(raw_matrix(layers), kind, precision)


def split_by_kind(layers: Sequence[LayerSpec]) -> dict[str, list[int]]:
    """Indices of the layers of each kind, kinds in first-seen order."""
    out: dict[str, list[int]] = {}
    for i, l in enumerate(layers):
        out.setdefault(l.op, []).append(i)
    return out


__all__ = ["FEATURE_VERSION", "RAW_COLUMNS", "RAW_INDEX", "OP_CODE", "ACT_CODE", "UNIT_COLUMNS", "FeatureSchema",
           "SCHEMAS", "schema_for", "schema_hashes", "raw_row", "raw_matrix", "columns_from_raw", "featurize_raw",
           "featurize", "split_by_kind"]
