"""ONNX export of any supported model, done one way everywhere (DESIGN's measurement rule).

Every model CompactNet times, profiles or publishes goes through :func:`export_onnx`: the
TorchScript exporter (``dynamo=False``: deterministic, fast, and the only one of torch 2.13's two
exporters that writes opset 17 for our models; the dynamo exporter up-converts to opset 18), opset
17, an input named ``input`` and an output named ``logits``, and the IR version pinned at or below 10
(onnx 1.23 writes IR 14 by default, which onnxruntime 1.31 refuses). After export, onnxruntime runs
the graph on a seeded random input and the result is compared with torch's eval-mode output.

:func:`load_onnx` reads an ONNX file (or bytes) with a clear :class:`~compactnet.errors.ModelFileError`
for a missing, empty, truncated or corrupt file.
"""

from __future__ import annotations

import io
import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from compactnet.errors import ConfigError, ModelFileError, UnsupportedOpError, bad_value

log = logging.getLogger(__name__)

#: Highest ONNX IR version onnxruntime 1.31 accepts.
MAX_IR_VERSION = 10
#: Lowest IR version that can carry opset 17.
MIN_IR_VERSION = 8
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class ExportParityError(ModelFileError):
    """onnxruntime's output of an exported model differs from torch's by more than the tolerance.

    Attributes:
        max_abs_diff: The largest absolute difference found.
    """

    def __init__(self, message: str, max_abs_diff: float):
        super().__init__(message)
        self.max_abs_diff = max_abs_diff


@dataclass(frozen=True)
class ExportResult:
    """An exported model.

    Attributes:
        onnx_bytes: The serialised ONNX model.
        path: Where it was written, or None when kept in memory.
        max_abs_diff: Largest |onnxruntime - torch| over the check input (NaN when not checked).
        opset: Default-domain opset of the graph.
        ir_version: ONNX IR version written in the file.
        input_shape: Input shape used for export (and the check).
        dynamic_batch: The batch dimension is symbolic (``batch``).
    """

    onnx_bytes: bytes
    path: Path | None
    max_abs_diff: float
    opset: int
    ir_version: int
    input_shape: tuple[int, ...]
    dynamic_batch: bool

    @property
    def model(self) -> onnx.ModelProto:
        """The model as an ``onnx.ModelProto`` (parsed on each access)."""
        return onnx.load_from_string(self.onnx_bytes)

    def to_dict(self) -> dict:
        """JSON-ready summary (without the bytes)."""
        return {"path": str(self.path) if self.path else None,
                "max_abs_diff": None if math.isnan(self.max_abs_diff) else self.max_abs_diff,
                "opset": self.opset, "ir_version": self.ir_version,
                "input_shape": list(self.input_shape), "dynamic_batch": self.dynamic_batch,
                "size_bytes": len(self.onnx_bytes)}


def export_onnx(model, path: str | os.PathLike | None = None,
                input_shape: Sequence[int] = (1, 3, 32, 32), opset: int = 17,
                ir_version: int = MAX_IR_VERSION, dynamic_batch: bool = False, check: bool = True,
                atol: float = 1e-4, seed: int = 0) -> ExportResult:
    """Export a torch model to ONNX the protocol's way and check it against onnxruntime.

    The model is exported in eval mode (its training flag is restored afterwards), with the
    TorchScript exporter and constant folding, input ``input`` and output ``logits``. A registered
    model (``mobilenetv2``, ``resnet20``, ``vgg16``) gets its registry name as the ``architecture``
    metadata property, so specs extracted from the file name it as the torch model does.

    Args:
        model: A ``torch.nn.Module`` taking one NCHW float tensor.
        path: Where to write the ``.onnx`` file (parents created, written atomically); None keeps
            it in memory only.
        input_shape: Example input shape (batch first).
        opset: Default-domain opset (the protocol uses 17).
        ir_version: IR version to pin; clipped to at most 10 (onnxruntime 1.31's maximum).
        dynamic_batch: Make the batch dimension symbolic. The check then runs at batch 2.
        check: Run onnxruntime on a seeded random input and compare with torch.
        atol: Largest allowed absolute difference in the check.
        seed: Seed of the check input.

    Returns:
        The :class:`ExportResult`.

    Raises:
        ConfigError: A bad argument (IR version below 8, negative tolerance, non-module model).
        UnsupportedOpError: torch cannot express an operator of the model in ONNX.
        ExportParityError: onnxruntime's output differs from torch's by more than ``atol``
            (a :class:`~compactnet.errors.ModelFileError`; the message gives the difference).
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise bad_value("model", "a torch.nn.Module", type(model).__name__)
    ir = min(int(ir_version), MAX_IR_VERSION)
    if ir < MIN_IR_VERSION:
        raise bad_value("ir_version", f"between {MIN_IR_VERSION} and {MAX_IR_VERSION} (opset 17 needs IR >= 8)",
                        ir_version)
    if not (atol >= 0):
        raise bad_value("atol", "a non-negative number", atol)
    shape = tuple(int(v) for v in input_shape)
    if len(shape) < 2 or min(shape) < 1:
        raise bad_value("input_shape", "a shape of positive sizes with the batch first, e.g. (1, 3, 32, 32)",
                        input_shape)
    try:
        first = next(model.parameters())
        device = first.device
    except StopIteration:
        device = torch.device("cpu")

    was_training = model.training
    model.eval()
    example = torch.zeros(shape, dtype=torch.float32, device=device)
    buf = io.BytesIO()
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # torch 2.9+ marks the TorchScript exporter deprecated; it is still the deterministic one.
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=int(opset),
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes=dynamic_axes, do_constant_folding=True)
    except torch.onnx.errors.UnsupportedOperatorError as exc:
        raise UnsupportedOpError(f"torch cannot export {type(model).__name__} to ONNX opset {opset}: {exc}") from exc
    except torch.onnx.errors.OnnxExporterError as exc:
        raise ModelFileError(f"ONNX export of {type(model).__name__} failed: {exc}") from exc
    finally:
        model.train(was_training)

    proto = onnx.load_from_string(buf.getvalue())
    proto.ir_version = ir
    architecture = _registry_name(model)
    if architecture is not None:
        # Lets network_spec_from_onnx (and `compactnet spec`) name the architecture as torch does.
        onnx.helper.set_model_props(proto, {"architecture": architecture})
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ModelFileError(f"the exported ONNX graph of {type(model).__name__} is invalid: {exc}") from exc
    data = proto.SerializeToString()
    graph_opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), int(opset))

    diff = math.nan
    if check:
        check_shape = (2, *shape[1:]) if dynamic_batch else shape
        x = np.random.default_rng(seed).standard_normal(check_shape).astype(np.float32)
        with torch.no_grad():
            model.eval()
            try:
                ref = model(torch.from_numpy(x).to(device)).detach().cpu().numpy()
            finally:
                model.train(was_training)
        got = _ort_outputs(data, x)
        if got.shape != ref.shape:
            raise ExportParityError(f"onnxruntime's output shape {got.shape} differs from torch's {ref.shape}",
                                    math.inf)
        diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)))) if ref.size else 0.0
        if not diff <= atol:
            raise ExportParityError(
                f"onnxruntime's output differs from torch's by max abs diff {diff:.3g} > atol {atol:g} "
                f"(output magnitude {float(np.max(np.abs(ref))):.3g}); the export is not faithful", diff)
        log.info("exported %s: opset %d, IR %d, max abs diff vs torch %.3g", type(model).__name__,
                 graph_opset, ir, diff)

    out_path = None
    if path is not None:
        out_path = Path(path)
        _atomic_write(out_path, data)
    return ExportResult(data, out_path, diff, int(graph_opset), ir, shape, bool(dynamic_batch))


def _registry_name(model) -> str | None:
    """Registry name of a registered CompactNet model, None for any other module."""
    from compactnet.models import model_name_of

    try:
        return model_name_of(model)
    except ConfigError:
        return None


def _ort_outputs(data: bytes, x: np.ndarray) -> np.ndarray:
    """First output of the model run by onnxruntime on CPU with default optimisation."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def load_onnx(source: str | os.PathLike | bytes, check: bool = True) -> onnx.ModelProto:
    """Read an ONNX model with a clear error when the file is missing, truncated or corrupt.

    Args:
        source: Path of an ``.onnx`` file, or its bytes.
        check: Also run ``onnx.checker`` on the parsed graph (catches cuts that still parse).

    Returns:
        The parsed ``onnx.ModelProto`` (external data, if any, loaded).

    Raises:
        ModelFileError: Missing, empty, unparsable or invalid model.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, where = bytes(source), "ONNX bytes"
        base = None
    else:
        p = Path(source)
        where = f"ONNX file {p}"
        if not p.is_file():
            raise ModelFileError(f"{where} does not exist")
        data = p.read_bytes()
        base = p.parent
    if not data:
        raise ModelFileError(f"{where} is empty")
    try:
        proto = onnx.load_from_string(data)
    except (DecodeError, ValueError) as exc:
        raise ModelFileError(f"{where} is not a valid ONNX model (truncated or corrupt: {exc})") from exc
    if not proto.graph.node and not proto.graph.output:
        raise ModelFileError(f"{where} holds no graph (truncated or not an ONNX file)")
    if base is not None and any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        try:
            onnx.external_data_helper.load_external_data_for_model(proto, str(base))
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"{where}: its external weight data cannot be read ({exc})") from exc
    if check:
        try:
            onnx.checker.check_model(proto)
        except onnx.checker.ValidationError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFileError(f"{where} is not a valid ONNX model (truncated or corrupt: {first})") from exc
    return proto


def onnx_bytes(model: str | os.PathLike | bytes | onnx.ModelProto) -> bytes:
    """Serialised bytes of a model given as a path, bytes or ``ModelProto`` (validated).

    Raises:
        ModelFileError: A missing, truncated or corrupt model.
        ConfigError: An object of another type.
    """
    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString()
    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
        load_onnx(data)
        return data
    if isinstance(model, (str, os.PathLike)):
        p = Path(model)
        proto = load_onnx(p)
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
            return proto.SerializeToString()
        return p.read_bytes()
    raise ConfigError(f"model must be an ONNX path, bytes or onnx.ModelProto; got {type(model).__name__}")


__all__ = ["ExportResult", "ExportParityError", "export_onnx", "load_onnx", "onnx_bytes",
           "INPUT_NAME", "OUTPUT_NAME", "MAX_IR_VERSION"]
