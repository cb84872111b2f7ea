"""Inference runtimes behind one small interface, selected by a platform key (DESIGN's rule).

A :class:`Runner` turns an ONNX model into something the measurement protocol can time
(:meth:`Runner.load` returns a zero-argument callable running one inference on a fixed, seeded
random input of the model's own input shape) and into outputs for accuracy and parity checks
(:meth:`Runner.run`). Implementations:

* ``ort`` — onnxruntime with any execution provider it has (``cpu``, ``cuda``, ``nnapi``, ``qnn``,
  ``coreml``, ``openvino``, ``dml``, ...); fp32, fp16 (graph converted to float16 with float32 I/O)
  and int8 (static QDQ quantization, :func:`quantize_int8`).
* ``openvino`` — OpenVINO through its own ``openvino`` package (``ov.Core().compile_model``), device
  ``cpu``/``gpu``/``npu``; fp32 is forced with ``INFERENCE_PRECISION_HINT`` (the CPU plugin would
  otherwise pick bf16 on AMX machines); int8 runs the same QDQ graph as onnxruntime.
* ``ncnn`` — Tencent ncnn through its Python package; the ONNX graph is converted by ``pnnx``
  (PyPI package ``pnnx``) once per model, inside :meth:`Runner.load`, so a profiler timing ``load``
  counts the conversion. fp32 (weights and arithmetic) and fp16.
* ``synthetic`` — not a runtime: a seeded, deterministic pseudo-latency from a model's MACs and
  bytes, reported through a virtual clock (:attr:`Runner.timer`), for tests without timing noise.

Every runner's :attr:`Runner.platform` carries the hardware (:func:`compactnet.spec.hardware_id`)
and the runtime version. ``torch`` keys are recognised by :class:`~compactnet.spec.Platform` but not
implemented here: ncnn is the third kernel library.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import numpy as np
import onnx

from compactnet.errors import ConfigError, MeasurementError, ModelFileError, UnsupportedOpError, bad_value
from compactnet.export import MAX_IR_VERSION, onnx_bytes
from compactnet.spec import LayerSpec, NetworkSpec, Platform, hardware_id

log = logging.getLogger(__name__)

#: onnxruntime execution providers by the provider name used in platform keys.
ORT_PROVIDERS: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "acl": "ACLExecutionProvider",
    "armnn": "ArmNNExecutionProvider",
    "webgpu": "WebGpuExecutionProvider",
    "vitisai": "VitisAIExecutionProvider",
}
#: Providers that are not compute back-ends and never appear as platforms.
_ORT_NON_COMPUTE = {"AzureExecutionProvider"}
_OV_DEVICES = {"cpu": "CPU", "gpu": "GPU", "npu": "NPU"}
_CACHE_SIZE = 32


# ----- model helpers ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorInfo:
    """Name, shape (symbolic dimensions as 1) and numpy dtype of a graph input or output."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


def _dims(value_info: onnx.ValueInfoProto) -> tuple[int, ...]:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return ()
    return tuple(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in t.shape.dim)


def _np_dtype(value_info: onnx.ValueInfoProto) -> np.dtype:
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(value_info.type.tensor_type.elem_type))


def graph_inputs(model: onnx.ModelProto) -> list[TensorInfo]:
    """The model's real inputs (initializers excluded), symbolic dimensions taken as 1."""
    inits = {i.name for i in model.graph.initializer}
    return [TensorInfo(v.name, _dims(v), _np_dtype(v)) for v in model.graph.input if v.name not in inits]


def graph_outputs(model: onnx.ModelProto) -> list[TensorInfo]:
    """The model's outputs, symbolic dimensions taken as 1."""
    return [TensorInfo(v.name, _dims(v), _np_dtype(v)) for v in model.graph.output]


def random_inputs(infos: Sequence[TensorInfo], seed: int = 0) -> dict[str, np.ndarray]:
    """A fixed, seeded input for every graph input: standard normal floats, small non-negative ints."""
    rng = np.random.default_rng(seed)
    feed = {}
    for info in infos:
        if np.issubdtype(info.dtype, np.floating):
            feed[info.name] = rng.standard_normal(info.shape).astype(info.dtype)
        elif info.dtype == np.bool_:
            feed[info.name] = rng.integers(0, 2, info.shape).astype(np.bool_)
        else:
            feed[info.name] = rng.integers(0, 4, info.shape).astype(info.dtype)
    return feed


def _digest(data: bytes) -> str:
    """SHA-256 of model bytes, memoised by object identity (evaluation loops pass the same bytes)."""
    hit = _DIGESTS.get(id(data))
    if hit is not None and hit[0] is data:
        return hit[1]
    value = hashlib.sha256(data).hexdigest()
    _DIGESTS[id(data)] = (data, value)
    while len(_DIGESTS) > 8:
        _DIGESTS.popitem(last=False)
    return value


def _resolve(model: Any) -> bytes:
    """Validated bytes of a model; a ``bytes`` object (immutable) is validated once, by identity.

    Paths are re-read every time (the file may have been rewritten) and protos re-serialised.
    """
    if not isinstance(model, bytes):
        return onnx_bytes(model)
    hit = _RESOLVED.get(id(model))
    if hit is not None and hit[0] is model:
        return model
    data = onnx_bytes(model)
    _RESOLVED[id(model)] = (model, data)
    while len(_RESOLVED) > 8:
        _RESOLVED.popitem(last=False)
    return data


_DIGESTS: OrderedDict = OrderedDict()
_RESOLVED: OrderedDict = OrderedDict()


class _LRU(OrderedDict):
    def get_or(self, key: Any, make: Callable[[], Any]) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        while len(self) > _CACHE_SIZE:
            self.popitem(last=False)
        return value


# ----- int8 / fp16 conversions ---------------------------------------------------------------------
def quantize_int8(model: bytes | str | os.PathLike | onnx.ModelProto,
                  calibration_inputs: Iterable[Mapping[str, np.ndarray]] | np.ndarray | None = None,
                  n_random: int = 8, seed: int = 0, per_channel: bool = True,
                  activation_type: str = "uint8", weight_type: str = "int8",
                  reduce_range: bool | None = None) -> bytes:
    """Static QDQ int8 quantization with onnxruntime's ``quantize_static`` (MinMax calibration).

    Args:
        model: fp32 ONNX model (path, bytes or proto).
        calibration_inputs: Calibration data: an array of samples for the single input (first
            axis: samples; each is fed at the model's batch size, 1 for our models) or an iterable
            of input feeds ``{name: array}``. None: ``n_random`` seeded standard-normal inputs
            (fine for latency, not for accuracy: pass real images for that).
        n_random: Number of random calibration inputs when none are given.
        seed: Seed of the random calibration inputs.
        per_channel: Per-output-channel weight scales (better accuracy for convs).
        activation_type: ``uint8`` or ``int8`` activations (``uint8`` with ``int8`` weights is
            x86's U8S8 fast path).
        weight_type: ``int8`` or ``uint8`` weights.
        reduce_range: Quantize weights to 7 bits. x86 CPUs without VNNI multiply u8 x s8 pairs
            with ``vpmaddubsw``, whose 16-bit sums saturate: the Table-1 MobileNetV2 fell from 74.44%
            to 66.46% top-1 on an AVX2-only AMD EPYC with 8-bit weights. None (default): 7 bits
            exactly when this CPU lacks VNNI (:func:`cpu_has_vnni`).

    Returns:
        The quantized model's bytes (IR version at most 10).

    Raises:
        ModelFileError: The model cannot be read.
        ConfigError: Bad calibration data or type names.
    """
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    if activation_type not in types:
        raise bad_value("activation_type", "'uint8' or 'int8'", activation_type)
    if weight_type not in types:
        raise bad_value("weight_type", "'uint8' or 'int8'", weight_type)
    data = onnx_bytes(model)
    proto = onnx.load_from_string(data)
    inputs = graph_inputs(proto)
    if calibration_inputs is None:
        feeds = [random_inputs(inputs, seed + i) for i in range(max(1, int(n_random)))]
    elif isinstance(calibration_inputs, np.ndarray):
        if len(inputs) != 1:
            raise ConfigError("calibration_inputs as one array needs a single-input model; "
                              f"this one has inputs {[i.name for i in inputs]}: pass a list of feeds")
        batch = inputs[0].shape[0] if inputs[0].shape else 1
        arr = np.asarray(calibration_inputs, dtype=inputs[0].dtype)
        if arr.ndim == len(inputs[0].shape) - 1:
            arr = arr[None]
        feeds = [{inputs[0].name: arr[i:i + batch]} for i in range(0, len(arr) - batch + 1, batch)]
    else:
        feeds = [dict(f) for f in calibration_inputs]
    if not feeds:
        raise bad_value("calibration_inputs", "at least one calibration sample", calibration_inputs)

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict | None:
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = iter(feeds)

    with tempfile.TemporaryDirectory(prefix="compactnet-q8-") as tmp:
        src, pre, dst = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(data)
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            src = pre
        except (RuntimeError, ValueError, onnx.shape_inference.InferenceError) as exc:
            log.info("quantization pre-processing skipped (%s)", exc)
        if reduce_range is None:
            reduce_range = not cpu_has_vnni()
        quantize_static(str(src), str(dst), _Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=types[activation_type],
                        weight_type=types[weight_type], reduce_range=bool(reduce_range))
        out = onnx.load(str(dst))
    out.ir_version = min(out.ir_version, MAX_IR_VERSION)
    return out.SerializeToString()


def cpu_has_vnni(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether this x86 CPU has a VNNI dot-product instruction (AVX512-VNNI, AVX-VNNI or AMX).

    Non-x86 CPUs and machines without ``/proc/cpuinfo`` count as having it: their int8 kernels do
    not go through x86's saturating ``vpmaddubsw``.
    """
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return True
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return True
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def convert_fp16(model: bytes | str | os.PathLike | onnx.ModelProto) -> bytes:
    """The graph with float16 weights and arithmetic, keeping float32 inputs and outputs."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = onnx.load_from_string(onnx_bytes(model))
    out = convert_float_to_float16(proto, keep_io_types=True)
    out.ir_version = min(out.ir_version, MAX_IR_VERSION)
    return out.SerializeToString()


# ----- interface ------------------------------------------------------------------------------------
class Runner(abc.ABC):
    """One inference runtime configured for one platform.

    Attributes:
        platform: The platform, with ``hardware`` and ``runtime_version`` filled in.
        timer: Clock the measurement protocol reads, in integer nanoseconds
            (``time.perf_counter_ns`` for real runtimes, a virtual clock for ``synthetic``).
        apply_load_policy: The protocol refuses or flags a busy machine for this runner (True for
            every real runtime; False by default for ``synthetic``, whose times ignore the load).
    """

    runtime: ClassVar[str] = ""
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)

    def __init__(self, platform: Platform | str):
        p = Platform.parse(platform) if isinstance(platform, str) else platform
        if p.runtime != self.runtime:
            raise bad_value("platform", f"a {self.runtime}-... key for {type(self).__name__}", p.key)
        if p.precision not in self.precisions:
            raise bad_value("--platform precision", f"one of {', '.join(self.precisions)} for {self.runtime}",
                            p.precision)
        if p.threads < 1:
            raise bad_value("--platform threads", "at least 1 (t1, t2, ...)", p.threads)
        self.platform = replace(p, hardware=p.hardware or self._hardware(), runtime_version=self._version())
        self.timer: Callable[[], int] = time.perf_counter_ns
        #: Whether the protocol's busy-machine policy applies (False only for simulated timings).
        self.apply_load_policy = True

    @abc.abstractmethod
    def load(self, model: Any) -> Callable[[], None]:
        """Compile the model once and return a callable running one inference.

        The callable feeds a fixed, seeded random input of the model's own input shape and dtype
        (batch as in the graph; symbolic dimensions as 1) and discards the outputs.

        Raises:
            ModelFileError: The model cannot be read.
            UnsupportedOpError: The runtime cannot execute or convert the graph.
        """

    @abc.abstractmethod
    def run(self, model: Any, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run the model on the given inputs and return its outputs in graph order."""

    def _version(self) -> str:
        return ""

    def _hardware(self) -> str:
        return hardware_id()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.platform.describe()})"


def _prepared(model: Any) -> tuple[bytes, onnx.ModelProto]:
    data = _resolve(model)
    return data, onnx.load_from_string(data)


# ----- onnxruntime ------------------------------------------------------------------------------------
class OrtRunner(Runner):
    """onnxruntime with one execution provider.

    Session options follow the protocol: ``intra_op_num_threads`` = the platform's threads,
    ``inter_op_num_threads`` = 1, sequential execution, ``ORT_ENABLE_ALL`` graph optimisation.

    Args:
        platform: ``ort-{provider}-{precision}-t{threads}``.
        provider_options: Options passed to the execution provider (e.g. QNN's ``backend_path``).
    """

    runtime = "ort"
    precisions = ("fp32", "fp16", "int8")

    def __init__(self, platform: Platform | str, provider_options: Mapping[str, Any] | None = None):
        super().__init__(platform)
        import onnxruntime as ort

        prov = self.platform.provider
        if prov not in ORT_PROVIDERS:
            raise bad_value("--platform provider", "one of " + ", ".join(ORT_PROVIDERS), prov)
        available = [p for p in ort.get_available_providers() if p not in _ORT_NON_COMPUTE]
        if ORT_PROVIDERS[prov] not in available:
            names = {v: k for k, v in ORT_PROVIDERS.items()}
            have = ", ".join(names.get(p, p) for p in available)
            raise ConfigError(f"--platform provider {prov!r} ({ORT_PROVIDERS[prov]}) is not available in this "
                              f"onnxruntime {ort.__version__}; available providers: {have}. Install the "
                              f"onnxruntime build that has it (e.g. onnxruntime-gpu, onnxruntime-qnn)")
        self.ep = ORT_PROVIDERS[prov]
        self.provider_options = dict(provider_options or {})
        if prov == "qnn" and "backend_path" not in self.provider_options:
            self.provider_options["backend_path"] = "QnnHtp.dll" if os.name == "nt" else "libQnnHtp.so"
        self._converted = _LRU()
        self._sessions = _LRU()

    def _version(self) -> str:
        import onnxruntime as ort

        return ort.__version__

    def convert(self, model: Any) -> bytes:
        """The model's bytes in the platform's precision (int8: QDQ-quantized, cached per model)."""
        data = _resolve(model)
        if self.platform.precision == "fp32":
            return data
        key = (_digest(data), self.platform.precision)
        if self.platform.precision == "int8":
            return self._converted.get_or(key, lambda: quantize_int8(data))
        return self._converted.get_or(key, lambda: convert_fp16(data))

    def session(self, model: Any):
        """A new ``onnxruntime.InferenceSession`` for the model, configured by the protocol."""
        return self._session(self.convert(model))

    def _session(self, data: bytes):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.platform.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        providers: list = [(self.ep, self.provider_options)] if self.ep != "CPUExecutionProvider" else []
        providers.append("CPUExecutionProvider")
        errors = tuple(getattr(ort.capi.onnxruntime_pybind11_state, n) for n in
                       ("Fail", "InvalidGraph", "InvalidArgument", "InvalidProtobuf", "NoSuchFile",
                        "NotImplemented", "RuntimeException"))
        try:
            sess = ort.InferenceSession(data, so, providers=providers)
        except errors as exc:
            kind = UnsupportedOpError if "NOT_IMPLEMENTED" in str(exc) or "NotImplemented" in type(exc).__name__ \
                else ModelFileError
            raise kind(f"onnxruntime ({self.ep}) cannot load the model: {str(exc).strip().splitlines()[0]}") from exc
        if self.ep not in sess.get_providers():
            raise MeasurementError(f"onnxruntime did not register {self.ep} for this model (it fell back to "
                                   f"{sess.get_providers()}); check the provider's installation and options")
        return sess

    def load(self, model: Any) -> Callable[[], None]:
        sess = self.session(model)
        infos = [TensorInfo(i.name, tuple(d if isinstance(d, int) and d > 0 else 1 for d in i.shape),
                            np.dtype(_ORT_TYPES.get(i.type, np.float32))) for i in sess.get_inputs()]
        feed = random_inputs(infos)
        names = [o.name for o in sess.get_outputs()]
        run = sess.run

        def infer() -> None:
            run(names, feed)

        infer.session = sess  # type: ignore[attr-defined]
        return infer

    def run(self, model: Any, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        data = self.convert(model)
        sess = self._sessions.get_or(_digest(data), lambda: self._session(data))
        return [np.asarray(o) for o in sess.run(None, dict(inputs))]


_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
              "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


# ----- OpenVINO -------------------------------------------------------------------------------------
class OpenVinoRunner(Runner):
    """OpenVINO through its own ``openvino`` package.

    ``compile_model`` gets ``INFERENCE_NUM_THREADS`` = threads, ``PERFORMANCE_HINT`` = ``LATENCY``,
    ``NUM_STREAMS`` = 1 and ``INFERENCE_PRECISION_HINT`` = ``f32`` (fp32, int8) or ``f16``; one
    infer request runs synchronous inference. int8 compiles the QDQ graph of :func:`quantize_int8`.
    """

    runtime = "openvino"
    precisions = ("fp32", "fp16", "int8")

    def __init__(self, platform: Platform | str, config: Mapping[str, Any] | None = None):
        super().__init__(platform)
        import openvino as ov

        self.core = ov.Core()
        prov = self.platform.provider
        devices = list(self.core.available_devices)
        if prov not in _OV_DEVICES:
            raise bad_value("--platform provider", "one of " + ", ".join(_OV_DEVICES) + " for openvino", prov)
        self.device = _OV_DEVICES[prov]
        if not any(d.split(".")[0] == self.device for d in devices):
            raise ConfigError(f"--platform provider {prov!r} (OpenVINO device {self.device}) is not available; "
                              f"available devices: {', '.join(d.lower() for d in devices) or 'none'}")
        self.config = {"INFERENCE_NUM_THREADS": self.platform.threads, "PERFORMANCE_HINT": "LATENCY",
                       "NUM_STREAMS": "1",
                       "INFERENCE_PRECISION_HINT": "f16" if self.platform.precision == "fp16" else "f32"}
        if self.device != "CPU":
            self.config.pop("INFERENCE_NUM_THREADS")
        self.config.update(config or {})
        self._converted = _LRU()
        self._compiled = _LRU()

    def _version(self) -> str:
        import openvino as ov

        return ov.get_version()

    def compile(self, model: Any):
        """The model compiled for the device with the protocol's configuration."""
        data = _resolve(model)
        if self.platform.precision == "int8":
            data = self._converted.get_or(_digest(data), lambda: quantize_int8(data))
        try:
            ov_model = self.core.read_model(data)
            return self.core.compile_model(ov_model, self.device, self.config)
        except RuntimeError as exc:
            msg = str(exc).strip().splitlines()
            detail = next((m for m in msg if m and not m.startswith("Exception from")), msg[0] if msg else "")
            raise UnsupportedOpError(f"OpenVINO ({self.device}) cannot compile the model: {detail}") from exc

    def load(self, model: Any) -> Callable[[], None]:
        import openvino as ov

        compiled = self.compile(model)
        req = compiled.create_infer_request()
        infos = [TensorInfo(p.get_any_name(), tuple(int(d) for d in p.get_shape()),
                            np.dtype(p.get_element_type().to_dtype())) for p in compiled.inputs]
        feed = random_inputs(infos)
        for i, info in enumerate(infos):
            req.set_input_tensor(i, ov.Tensor(feed[info.name]))
        infer_call = req.infer

        def infer() -> None:
            infer_call()

        infer.request = req  # type: ignore[attr-defined]
        return infer

    def run(self, model: Any, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        data = _resolve(model)
        compiled = self._compiled.get_or(_digest(data), lambda: self.compile(data))
        result = compiled(dict(inputs))
        return [np.asarray(result[o]) for o in compiled.outputs]


# ----- ncnn -------------------------------------------------------------------------------------------
def pnnx_executable() -> str | None:
    """Path of the ``pnnx`` converter shipped by the ``pnnx`` PyPI package (or on PATH)."""
    try:
        import pnnx  # noqa: F401  (the package ships the binary next to its __init__)
    except ImportError:
        return shutil.which("pnnx")
    exe = Path(pnnx.__file__).parent / "pnnx"
    return str(exe) if exe.is_file() and os.access(exe, os.X_OK) else shutil.which("pnnx")


@dataclass(frozen=True)
class NcnnModel:
    """An ONNX graph converted to ncnn: ``.param``/``.bin`` files and the ONNX I/O it maps to.

    Attributes:
        param: Path of the ``.param`` file (graph).
        bin: Path of the ``.bin`` file (weights).
        inputs: ONNX inputs, in the order of ncnn's ``in0, in1, ...``.
        outputs: ONNX outputs (shapes from shape inference), in the order of ``out0, ...``.
        seconds: Wall time of the pnnx conversion.
    """

    param: Path
    bin: Path
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    seconds: float


class NcnnRunner(Runner):
    """ncnn through its Python package; ONNX is converted with ``pnnx`` (once per model, cached).

    fp32 converts with ``fp16=0`` and turns off ncnn's fp16/bf16 storage and arithmetic; fp16 keeps
    pnnx's fp16 weights and enables them. Batch must be 1 (ncnn has no batch axis). Converted files
    live in a temporary folder owned by the runner and removed with it.
    """

    runtime = "ncnn"
    precisions = ("fp32", "fp16")
    timeout_s: ClassVar[float] = 600.0

    def __init__(self, platform: Platform | str):
        super().__init__(platform)
        import ncnn  # noqa: F401

        if self.platform.provider != "cpu":
            raise bad_value("--platform provider", "'cpu' for ncnn (this build runs no Vulkan device here)",
                            self.platform.provider)
        self.exe = pnnx_executable()
        if self.exe is None:
            raise ConfigError("ncnn needs the pnnx converter: pip install pnnx")
        self._dir = tempfile.TemporaryDirectory(prefix="compactnet-ncnn-")
        self._converted: dict[tuple[str, bool], NcnnModel] = {}
        self._nets = _LRU()

    def _version(self) -> str:
        import ncnn

        return str(getattr(ncnn, "__version__", ""))

    def convert(self, model: Any) -> NcnnModel:
        """Convert an ONNX model to ncnn with pnnx (cached by content for the runner's lifetime)."""
        data, proto = _prepared(model)
        fp16 = self.platform.precision == "fp16"
        key = (_digest(data), fp16)
        if key not in self._converted:
            self._converted[key] = self._convert(data, proto, fp16, f"{key[0][:20]}-{int(fp16)}")
        return self._converted[key]

    def _convert(self, data: bytes, proto: onnx.ModelProto, fp16: bool, stem: str) -> NcnnModel:
        ins = graph_inputs(proto)
        for info in ins:
            if info.shape and info.shape[0] != 1:
                raise bad_value("model input batch", "1 for ncnn", info.shape[0])
        try:
            proto_inf = onnx.shape_inference.infer_shapes(proto)
        except onnx.shape_inference.InferenceError:
            proto_inf = proto
        outs = graph_outputs(proto_inf)
        shapes = ",".join("[" + ",".join(str(d) for d in i.shape) + "]" + _PNNX_TYPES.get(i.dtype.name, "f32")
                          for i in ins)
        param_p, bin_p = Path(self._dir.name, stem + ".param"), Path(self._dir.name, stem + ".bin")
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="compactnet-pnnx-") as tmp:
            src = Path(tmp, "model.onnx")
            src.write_bytes(data)
            args = [self.exe, str(src), f"inputshape={shapes}", f"fp16={int(fp16)}",
                    f"ncnnparam={param_p}", f"ncnnbin={bin_p}", f"ncnnpy={tmp}/model_ncnn.py",
                    f"pnnxparam={tmp}/model.pnnx.param", f"pnnxbin={tmp}/model.pnnx.bin",
                    f"pnnxpy={tmp}/model_pnnx.py", f"pnnxonnx={tmp}/model.pnnx.onnx"]
            try:
                proc = subprocess.run(args, cwd=tmp, capture_output=True, text=True, timeout=self.timeout_s)
            except subprocess.TimeoutExpired as exc:
                raise MeasurementError(f"pnnx did not convert the model within {self.timeout_s:.0f} s") from exc
        if proc.returncode != 0 or not param_p.is_file() or not bin_p.is_file():
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise UnsupportedOpError(f"pnnx could not convert the model to ncnn (exit {proc.returncode}): {tail}")
        unsupported = sorted({line.split()[0] for line in param_p.read_text().splitlines()[2:]
                              if line.split() and line.split()[0].startswith(("pnnx.", "F.", "torch.",
                                                                               "Tensor.", "aten::", "nn."))})
        if unsupported:
            raise UnsupportedOpError(f"pnnx left operators ncnn cannot run: {unsupported}")
        return NcnnModel(param_p, bin_p, tuple(ins), tuple(outs), time.perf_counter() - t0)

    def net(self, model: Any):
        """A fresh ``ncnn.Net`` loaded with the converted model and the platform's options."""
        import ncnn

        conv = self.convert(model)
        net = ncnn.Net()
        opt = net.opt
        opt.num_threads = self.platform.threads
        opt.use_vulkan_compute = False
        fp16 = self.platform.precision == "fp16"
        for attr in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic"):
            if hasattr(opt, attr):
                setattr(opt, attr, fp16)
        if hasattr(opt, "use_bf16_storage"):
            opt.use_bf16_storage = False
        if net.load_param(str(conv.param)) != 0:
            raise ModelFileError(f"ncnn could not parse the .param pnnx produced ({conv.param})")
        if net.load_model(str(conv.bin)) != 0:
            raise ModelFileError(f"ncnn could not read the .bin weights pnnx produced ({conv.bin})")
        return net, conv

    def _mats(self, conv: NcnnModel, inputs: Mapping[str, np.ndarray]):
        import ncnn

        mats = []
        for info in conv.inputs:
            if info.name not in inputs:
                raise bad_value("inputs", f"a feed for every model input ({[i.name for i in conv.inputs]})",
                                sorted(inputs))
            arr = np.ascontiguousarray(inputs[info.name], dtype=np.float32)
            if arr.ndim >= 2:
                if arr.shape[0] != 1:
                    raise bad_value("input batch", "1 for ncnn", arr.shape[0])
                arr = arr[0]
            mats.append(ncnn.Mat(np.ascontiguousarray(arr)).clone())
        return mats

    def load(self, model: Any) -> Callable[[], None]:
        net, conv = self.net(model)
        in_names, out_names = list(net.input_names()), list(net.output_names())
        mats = self._mats(conv, random_inputs(conv.inputs))
        pairs = list(zip(in_names, mats))
        create = net.create_extractor

        def infer() -> None:
            ex = create()
            for name, mat in pairs:
                ex.input(name, mat)
            for name in out_names:
                ex.extract(name)

        infer.net = net  # type: ignore[attr-defined]
        return infer

    def run(self, model: Any, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        data = _resolve(model)
        net, conv = self._nets.get_or((_digest(data), self.platform.precision), lambda: self.net(data))
        in_names, out_names = list(net.input_names()), list(net.output_names())
        mats = self._mats(conv, inputs)
        ex = net.create_extractor()
        for name, mat in zip(in_names, mats):
            ex.input(name, mat)
        outs = []
        for name, info in zip(out_names, conv.outputs):
            ret, mat = ex.extract(name)
            if ret != 0:
                raise MeasurementError(f"ncnn failed to compute output {info.name} (code {ret})")
            arr = np.array(mat)
            if info.shape and int(np.prod(info.shape)) == arr.size:
                arr = arr.reshape(info.shape)
            else:
                arr = arr[None]
            outs.append(arr)
        return outs


_PNNX_TYPES = {"float32": "f32", "float16": "f16", "float64": "f64", "int64": "i64", "int32": "i32",
               "int8": "i8", "uint8": "u8"}


# ----- synthetic --------------------------------------------------------------------------------------
class SyntheticRunner(Runner):
    """A seeded, deterministic pseudo-runtime for tests: latency from MACs and bytes, no sleeping.

    One call of a loaded model advances a virtual clock (:attr:`timer`) by
    ``(overhead + macs / mac_rate + bytes / bandwidth) * noise``. ``noise`` is
    ``exp(sigma * |z|)`` (one-sided: interference only adds time, as on the machines we measured;
    ``two_sided=True`` gives ``exp(sigma * z)``), with probability ``burst_p`` an extra ``burst``
    factor, and inside a slow stretch an extra ``stretch`` factor: a stretch starts at a call with
    probability ``stretch_p`` and lasts ``stretch_calls`` calls (the CPU running slower for
    seconds). The same seed and call sequence give the same times. :meth:`expected_s` is the
    noise-free latency, for checking the protocol's statistics. :meth:`run` delegates to onnxruntime (CPU) so accuracy code still works.

    Models may be ONNX (path, bytes, proto), a :class:`~compactnet.spec.LayerSpec` or a
    :class:`~compactnet.spec.NetworkSpec`. ``apply_load_policy=True`` makes the protocol treat it
    like a real runtime on a busy machine (for testing the policy).
    """

    runtime = "synthetic"
    precisions = ("fp32", "fp16", "int8")

    def __init__(self, platform: Platform | str = "synthetic-cpu-fp32-t1", seed: int = 0,
                 overhead_s: float = 10e-6, mac_rate: float = 20e9, bandwidth: float = 10e9,
                 sigma: float = 0.03, burst_p: float = 0.0, burst: float = 1.5,
                 apply_load_policy: bool = False, two_sided: bool = False, stretch_p: float = 0.0,
                 stretch_calls: int = 200, stretch: float = 1.5):
        super().__init__(platform)
        self.platform = replace(self.platform, hardware="synthetic")
        self.apply_load_policy = apply_load_policy
        self.seed = seed
        self.overhead_s, self.mac_rate, self.bandwidth = overhead_s, mac_rate, bandwidth
        self.sigma, self.burst_p, self.burst = sigma, burst_p, burst
        self.two_sided = bool(two_sided)
        self.stretch_p, self.stretch_calls, self.stretch = float(stretch_p), int(stretch_calls), float(stretch)
        self._stretch_left = 0
        self._rng = np.random.default_rng(seed)
        self._now = 0
        self._lock = threading.Lock()
        self.timer = self._clock
        self.calls = 0

    def _hardware(self) -> str:
        return "synthetic"

    def _version(self) -> str:
        return "1"

    def _clock(self) -> int:
        return self._now

    def cost(self, model: Any) -> tuple[int, int]:
        """(MACs, bytes moved) of one inference at the platform's precision."""
        elem = {"fp32": 4, "fp16": 2, "int8": 1}[self.platform.precision]
        if isinstance(model, LayerSpec):
            return model.macs, model.bytes_moved(self.platform.precision)
        if isinstance(model, NetworkSpec):
            return model.macs, sum(l.bytes_moved(self.platform.precision) for l in model.layers)
        return onnx_cost(onnx.load_from_string(_resolve(model)), elem)

    def expected_s(self, model: Any) -> float:
        """Noise-free latency of one inference, seconds."""
        macs, nbytes = self.cost(model)
        threads_speedup = 1.0 + 0.8 * (self.platform.threads - 1)
        return self.overhead_s + macs / (self.mac_rate * threads_speedup) + nbytes / self.bandwidth

    def load(self, model: Any) -> Callable[[], None]:
        base_ns = self.expected_s(model) * 1e9

        def infer() -> None:
            with self._lock:
                z = self._rng.standard_normal()
                factor = math.exp(self.sigma * (z if self.two_sided else abs(z)))
                if self.burst_p and self._rng.random() < self.burst_p:
                    factor *= self.burst
                if self._stretch_left == 0 and self.stretch_p and self._rng.random() < self.stretch_p:
                    self._stretch_left = self.stretch_calls
                if self._stretch_left:
                    self._stretch_left -= 1
                    factor *= self.stretch
                self._now += max(1, int(round(base_ns * factor)))
                self.calls += 1

        return infer

    def run(self, model: Any, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        if isinstance(model, (LayerSpec, NetworkSpec)):
            raise bad_value("model", "an ONNX model (a spec has no weights to run)", type(model).__name__)
        return OrtRunner("ort-cpu-fp32-t1").run(model, inputs)


def onnx_cost(model: onnx.ModelProto, elem_bytes: int = 4) -> tuple[int, int]:
    """(MACs, bytes moved) of an ONNX graph after shape inference.

    MACs count Conv (``N·Co·Ho·Wo·Ci/g·kh·kw``), Gemm/MatMul (output elements × K) and one per
    output element for every other node; bytes are weights plus every node's output activations
    and the graph inputs, at ``elem_bytes`` per element.
    """
    try:
        m = onnx.shape_inference.infer_shapes(model)
    except onnx.shape_inference.InferenceError as exc:
        raise ModelFileError(f"shape inference failed on the model: {exc}") from exc
    shapes: dict[str, tuple[int, ...]] = {}
    for v in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
        shapes[v.name] = _dims(v)
    for init in m.graph.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)
    inits = {i.name for i in m.graph.initializer}
    macs = 0
    act = sum(int(np.prod(shapes.get(i.name, ()) or (0,))) for i in graph_inputs(m))
    for node in m.graph.node:
        out = shapes.get(node.output[0], ()) if node.output else ()
        n_out = int(np.prod(out)) if out else 0
        act += sum(int(np.prod(shapes.get(o, ()) or (0,))) for o in node.output)
        if node.op_type in ("Conv", "ConvTranspose", "QLinearConv", "ConvInteger") and len(node.input) > 1:
            w = shapes.get(node.input[1 if node.op_type != "QLinearConv" else 3], ())
            macs += n_out * int(np.prod(w[1:])) if len(w) > 1 else n_out
        elif node.op_type in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"):
            a = shapes.get(node.input[0], ())
            k = a[-1] if a else 1
            if node.op_type == "Gemm" and any(at.name == "transA" and at.i for at in node.attribute) and len(a) > 1:
                k = a[-2]
            macs += n_out * int(k)
        else:
            macs += n_out
    weights = sum(int(np.prod(shapes[i])) if shapes[i] else 1 for i in inits)
    return int(macs), int((act + weights) * elem_bytes)


# ----- registry -----------------------------------------------------------------------------------------
_RUNNERS: dict[str, type[Runner]] = {"ort": OrtRunner, "openvino": OpenVinoRunner, "ncnn": NcnnRunner,
                                     "synthetic": SyntheticRunner}


def get_runner(platform: Platform | str, **kwargs: Any) -> Runner:
    """The runner for a platform key or :class:`~compactnet.spec.Platform`.

    Args:
        platform: E.g. ``ort-cpu-fp32-t1``, ``openvino-cpu-fp32-t1``, ``ncnn-cpu-fp32-t1``.
        **kwargs: Passed to the runner (``provider_options`` for ort, ``config`` for openvino,
            noise parameters for synthetic).

    Raises:
        ConfigError: Unknown runtime, unavailable provider/device or unsupported precision; the
            message names what is available.
    """
    p = Platform.parse(platform) if isinstance(platform, str) else platform
    cls = _RUNNERS.get(p.runtime)
    if cls is None:
        raise bad_value("--platform runtime", "one of " + ", ".join(_RUNNERS) + " (torch is not implemented: "
                        "ncnn is the third kernel library)", p.runtime)
    try:
        return cls(p, **kwargs)
    except ImportError as exc:
        raise ConfigError(f"--platform {p.key} needs the {exc.name or p.runtime} package: "
                          f"pip install {_PACKAGES.get(p.runtime, p.runtime)}") from exc


_PACKAGES = {"ort": "onnxruntime", "openvino": "openvino", "ncnn": "ncnn pnnx"}


def available_platforms(threads: int = 1) -> list[Platform]:
    """The platforms this machine can run, probed from installed packages, providers and devices.

    Lists fp32 for every compute provider/device of each installed runtime, plus ``int8`` for
    onnxruntime's and OpenVINO's CPU; thread count and other precisions are free parameters of the
    key. Hardware and runtime version are filled in.
    """
    hw = hardware_id()
    out: list[Platform] = []
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    if ort is not None:
        names = {v: k for k, v in ORT_PROVIDERS.items()}
        for prov in ort.get_available_providers():
            if prov in _ORT_NON_COMPUTE or prov not in names:
                continue
            out.append(Platform("ort", names[prov], "fp32", threads, hw, ort.__version__))
            if names[prov] == "cpu":
                out.append(Platform("ort", "cpu", "int8", threads, hw, ort.__version__))
    try:
        import openvino as ov
    except ImportError:
        ov = None
    if ov is not None:
        devices = {d.split(".")[0] for d in ov.Core().available_devices}
        for name, dev in _OV_DEVICES.items():
            if dev in devices:
                out.append(Platform("openvino", name, "fp32", threads, hw, ov.get_version()))
                if name == "cpu":
                    out.append(Platform("openvino", "cpu", "int8", threads, hw, ov.get_version()))
    try:
        import ncnn
    except ImportError:
        ncnn = None
    if ncnn is not None and pnnx_executable() is not None:
        out.append(Platform("ncnn", "cpu", "fp32", threads, hw, str(getattr(ncnn, "__version__", ""))))
    return out


__all__ = ["Runner", "OrtRunner", "OpenVinoRunner", "NcnnRunner", "SyntheticRunner", "TensorInfo",
           "NcnnModel", "get_runner", "available_platforms", "quantize_int8", "convert_fp16", "onnx_cost",
           "graph_inputs", "graph_outputs", "random_inputs", "pnnx_executable", "ORT_PROVIDERS"]
