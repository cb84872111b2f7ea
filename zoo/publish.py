"""Turn a search result (or a baseline) into a zoo entry, measuring what the card reports.

:func:`publish` reads a search output folder (trimmed ``*.safetensors`` weights, a channels JSON,
``model.onnx``, ``report.json``, ``trajectory.json``); :func:`publish_model` does the work for
any weights + channels (a baseline: ``channels=None``). Both

1. build the model from the registry and its safetensors weights, and take the ONNX file (the
   given one, checked against torch with onnxruntime, or a fresh :func:`compactnet.export.export_onnx`);
2. measure the test top-1 on CIFAR-10 (:func:`compactnet.train.evaluate` on
   :func:`compactnet.data.load_cifar10`'s test split, recording the data copy and test hash);
3. measure latency by the protocol on the platform, interleaved with the untrimmed architecture
   (:func:`compactnet.measure.compare`), giving the speedup with its interval;
4. copy the ONNX and weights into the zoo folder (``models/<name>/...`` or content-addressed
   ``files/<sha256>.<ext>``), add the entry to the index and rewrite ``index.html``.

Measurement is injectable (``measure_latency``, ``measure_accuracy``) so tests run in a second
with the synthetic platform and tiny data. Never publish while another CPU-heavy job runs: the
protocol refuses or flags busy-machine measurements.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from compactnet.errors import CompactNetError, ConfigError, ModelFileError, bad_value
from compactnet.sequential import MAX_REPEATS, MAX_WIDTH, REPEAT_PAUSE_S
from compactnet.spec import Latency, NetworkSpec, Platform, hardware_id
from compactnet.zoo.catalogue import write_catalogue
from compactnet.zoo.entry import (FileRef, InputContract, Metrics, Provenance, ZooEntry, hardware_slug, latency_tag,
                                  make_name, speedup_tag, tag_speedup)
from compactnet.zoo.index import ZooIndex, load_index, save_index
from compactnet.zoo.download import sha256_file

log = logging.getLogger(__name__)

__all__ = ["LatencyResult", "AccuracyResult", "protocol_latency", "cifar10_accuracy", "publish", "publish_model",
           "read_result_dir", "SearchResult", "LAYOUTS"]

#: Where artefacts go inside the zoo folder: by entry name or by content hash.
LAYOUTS = ("name", "content")


@dataclass(frozen=True)
class LatencyResult:
    """What a latency measurer returns for one candidate.

    Attributes:
        latency: The candidate's protocol latency.
        speedup: Baseline latency / candidate latency (None when no baseline was timed).
        speedup_low: Lower end of the speedup's 95% interval.
        speedup_high: Upper end of it.
        platform: Platform measured on, with hardware and runtime version.
        load: Machine load beyond our process during the measurement.
        baseline_latency: The baseline's latency in the same run.
        when: ISO-8601 UTC time of the measurement.
    """

    latency: Latency
    speedup: float | None
    speedup_low: float | None
    speedup_high: float | None
    platform: Platform
    load: float | None = None
    baseline_latency: Latency | None = None
    when: str = ""


@dataclass(frozen=True)
class AccuracyResult:
    """Test top-1 (percent) with the data copy and test-set hash it used."""

    top1: float
    data_copy: str
    test_hash: str


#: ``measure_latency(candidate_onnx, baseline_onnx or None, platform_key) -> LatencyResult``
LatencyFn = Callable[[Path, "Path | None", str], LatencyResult]
#: ``measure_accuracy(torch_model) -> AccuracyResult``
AccuracyFn = Callable[[Any], AccuracyResult]


def protocol_latency(rounds: int = 10, max_width: float | None = MAX_WIDTH, max_repeats: int = MAX_REPEATS,
                     repeat_pause_s: float = REPEAT_PAUSE_S, isolate: bool = True, **kwargs: Any) -> LatencyFn:
    """The default latency measurer: the search's protocol comparison, baseline first.

    The same measurement a search's final decision takes (:func:`compactnet.sequential.compare_until`
    over :func:`compactnet.isolated.compare_isolated`): timed in the memory-locked measuring worker, and
    a comparison whose 95% interval is wider than ``max_width`` (disturbed by a slow stretch of the
    machine) measured again ``repeat_pause_s`` x k seconds later, the narrowest kept. On machine D a single
    in-process comparison read [1.27, ...] for a network its search had measured at 1.66x
    [1.61, 1.71] minutes before, and the entry was refused.

    A comparison taken on a busy machine is refused (``compare`` raises by default; a flagged one
    is refused here): zoo figures are never taken under load.

    Args:
        rounds: Interleaved rounds (the protocol needs at least 7).
        max_width: Widest acceptable interval relative to the speedup (None: one comparison).
        max_repeats: At most this many comparisons more.
        repeat_pause_s: Seconds before the k-th repeat, times k.
        isolate: Time in the measuring worker process (False: in this process).
        **kwargs: Passed to ``compare`` (``runs``, ``warmup``, ``busy``, ``max_load``, ...).
    """

    def run(candidate: Path, baseline: Path | None, platform: str) -> LatencyResult:
        from compactnet.errors import MeasurementError
        from compactnet.isolated import compare_isolated
        from compactnet.measure import compare
        from compactnet.sequential import compare_until

        models = [str(candidate)] if baseline is None else [str(baseline), str(candidate)]
        names = ["candidate"] if baseline is None else ["baseline", "candidate"]
        comp = compare_until(models, platform, max_width=max_width if baseline is not None else None,
                             max_repeats=max_repeats, compare=compare_isolated if isolate else compare,
                             pause_s=repeat_pause_s, names=names, rounds=rounds, **kwargs)
        if comp.busy or not comp.protocol_ok:
            raise MeasurementError(f"the latency measurement on {platform} does not meet the protocol (busy={comp.busy}, "
                                   f"rounds={comp.rounds}); not publishing it: measure on an idle machine")
        ratio, low, high = comp.speedup("candidate")
        if baseline is None:
            low = high = None
        return LatencyResult(comp.latency("candidate"), float(ratio), _f(low), _f(high), comp.platform,
                             _f(comp.load), comp.latency("baseline") if baseline is not None else None, comp.when)

    return run


def _check_not_worse(old: ZooEntry, top1: float) -> None:
    """Refuse to replace an entry by a less accurate model under the same name (same budget, same hardware).

    A name stands for a budget: users pull the entry of their budget, so a replacement must not lose
    accuracy there. On machine D a 2.5x search that stopped at 1.98x would have replaced the 1.8x ncnn
    entry (71.90%) by a 68.61% model.

    Raises:
        ConfigError: ``top1`` below the existing entry's.
    """
    if old.metrics.top1 is not None and top1 < old.metrics.top1:
        raise ConfigError(f"{old.name!r} on {old.hardware!r} has test top-1 {old.metrics.top1:.2f}%; this model has "
                          f"{top1:.2f}%: replacing it would offer a worse model for the same budget. Publish it "
                          "under another name (tag=...), or pass force=True (--force) to replace it anyway")


def _f(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cifar10_accuracy(data: str | os.PathLike | None = None, limit: int | None = None, seed: int = 0) -> AccuracyFn:
    """The default accuracy measurer: top-1 on the CIFAR-10 test split.

    All 10,000 images unless ``limit``: then a seeded random subset of that many, kept in split
    order (the packed split is sorted by class, so its first images are a few classes only); the
    recorded test hash is the subset's.
    """

    def run(model: Any) -> AccuracyResult:
        from compactnet.data import load_cifar10, split_hash
        from compactnet.search.methods.int8 import seeded_limit
        from compactnet.train import evaluate

        ds = load_cifar10(data)
        test = seeded_limit(ds.test, limit, seed)
        return AccuracyResult(float(evaluate(model, test)), ds.copy, split_hash(test))

    return run


# ----- reading a search result ------------------------------------------------------------
@dataclass(frozen=True)
class SearchResult:
    """The parts of a search output folder publishing needs.

    Attributes:
        weights: Trimmed weights (safetensors).
        channels: Channel configuration (as the registry reads it).
        architecture: Model name.
        onnx: ``model.onnx`` if present.
        report: ``report.json`` content (empty if missing).
        original_onnx: The untrimmed network exported the same way (``original.onnx``), if present.
    """

    weights: Path
    channels: Any
    architecture: str
    onnx: Path | None
    report: Mapping[str, Any]
    original_onnx: Path | None = None


def _first(d: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        cur: Any = d
        for part in k.split("."):
            cur = cur.get(part) if isinstance(cur, Mapping) else None
        if cur is not None:
            return cur
    return None


def read_result_dir(result_dir: str | os.PathLike) -> SearchResult:
    """Find weights, channels, ONNX files and report in a search output folder.

    Reads what ``compactnet optimize`` writes (``weights.safetensors``, ``channels.json``,
    ``model.onnx``, ``original.onnx``, ``report.json``) and tolerates a folder holding just one
    ``*.safetensors`` file and a channels JSON.

    Raises:
        ModelFileError: No (or several ambiguous) safetensors files, or no channel configuration.
    """
    root = Path(result_dir)
    if not root.is_dir():
        raise bad_value("result_dir", "a search output folder", str(result_dir))
    report: Mapping[str, Any] = {}
    if (root / "report.json").is_file():
        try:
            report = json.loads((root / "report.json").read_bytes().decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"{root / 'report.json'} is not valid UTF-8 JSON ({getattr(exc, 'msg', exc)})") from exc
    weights = sorted(root.glob("*.safetensors"))
    if len(weights) > 1:
        preferred = [w for w in weights if w.stem in ("weights", "model", "trimmed")]
        weights = preferred[:1] if preferred else weights
    if len(weights) != 1:
        raise ModelFileError(f"{root} must hold exactly one *.safetensors weights file (or one named weights/model/"
                             f"trimmed); found {[w.name for w in weights]}")
    channels: Any = None
    chan_files = [p for p in sorted(root.glob("*.json")) if "channel" in p.stem]
    if chan_files:
        try:
            channels = json.loads(chan_files[0].read_bytes().decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"{chan_files[0]} is not valid UTF-8 JSON ({getattr(exc, 'msg', exc)})") from exc
    if channels is None:
        rep_channels = report.get("channels") if isinstance(report, Mapping) else None
        channels = rep_channels.get("config") if isinstance(rep_channels, Mapping) and "config" in rep_channels \
            else rep_channels
    if channels is None:
        raise ModelFileError(f"{root} holds no channel configuration (channels.json or report.json 'channels')")
    arch = _first(report, "model", "architecture") or (channels.get("model") if isinstance(channels, dict) else None)
    if not arch:
        raise ModelFileError(f"{root}: neither report.json nor the channels file names the model architecture")
    if isinstance(channels, dict):
        channels = {k: v for k, v in channels.items() if k != "model"}
    onnx_path, original = root / "model.onnx", root / "original.onnx"
    return SearchResult(weights[0], channels, str(arch), onnx_path if onnx_path.is_file() else None, report,
                        original if original.is_file() else None)


# ----- helpers ----------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    return sha256_file(path)


def _copy_atomic(src: Path, dest: Path) -> None:
    if dest.is_file() and dest.stat().st_size == src.stat().st_size and _sha256(dest) == _sha256(src):
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def _onnx_info(path: Path) -> tuple[int, int, str]:
    """(opset, IR version, input name) of an ONNX file."""
    from compactnet.export import load_onnx

    proto = load_onnx(path)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    inits = {i.name for i in proto.graph.initializer}
    inputs = [i.name for i in proto.graph.input if i.name not in inits]
    return int(opset or 0), int(proto.ir_version), inputs[0] if inputs else "input"


def _torch_and_onnx_outputs(model: Any, onnx_path: Path, input_shape: tuple[int, ...]) -> tuple[Any, Any]:
    """Outputs of the torch model and of its ONNX file (onnxruntime, one thread) on one seeded input."""
    import numpy as np
    import onnxruntime as ort
    import torch

    x = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(x)).numpy()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    return ref, sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _stored_copy(index: ZooIndex, zoo_dir: Path, digest: str, size: int) -> str | None:
    """The path of a file of the zoo with these bytes already (an entry's file with this SHA-256), or None.

    The same weights published for three runtimes (the untrimmed baseline) are stored once.
    """
    for e in index:
        for ref in e.files.values():
            if ref.sha256 == digest and ref.size == size and (zoo_dir / ref.path).is_file():
                return ref.path
    return None


def _shared(index: ZooIndex, rel: str, key: tuple[str, str]) -> bool:
    """Whether an entry other than ``key`` refers to the zoo file ``rel`` (then it must not change)."""
    return any(ref.path == rel for e in index if e.key != key for ref in e.files.values())


def _repo_root(start: Path) -> Path | None:
    for d in (start.resolve(), *start.resolve().parents):
        if (d / ".git").exists():
            return d
    return None


#: An absolute path inside a command line: after the start, a space, a quote, ``=`` or ``file://``.
_ABS_PATH = re.compile(r"""(?:(?<=^)|(?<=[\s'"=])|(?<=file://))(/[^\s'"|;&<>()]+)""")


def portable_path(path: str | os.PathLike, zoo_dir: str | os.PathLike) -> str:
    """One path as a zoo records it: repository-relative inside the repository that holds the zoo
    folder; elsewhere only its last part, marked ``outside-repo:`` (relative paths are kept)."""
    p = Path(path)
    if not p.is_absolute():
        return str(path)
    root = _repo_root(Path(zoo_dir)) or Path(zoo_dir).resolve().parent
    try:
        return p.resolve().relative_to(root).as_posix() or "."
    except ValueError:
        return f"outside-repo:{p.name}"


def portable_paths(text: str, zoo_dir: str | os.PathLike) -> str:
    """A command line with every absolute path made portable (:func:`portable_path`), the rest as written."""
    return _ABS_PATH.sub(lambda m: portable_path(m.group(1), zoo_dir), text or "")


def _check_parity(model: Any, onnx_path: Path, input_shape: tuple[int, ...], atol: float = 1e-3) -> None:
    import numpy as np

    ref, got = _torch_and_onnx_outputs(model, onnx_path, input_shape)
    diff = float(np.max(np.abs(got - ref))) if got.shape == ref.shape else math.inf
    if not diff <= atol:
        raise ModelFileError(f"{onnx_path} does not compute what the weights do (max abs diff {diff:.3g} > {atol}); "
                             "pass the ONNX file exported from these weights, or none to export it")


def _fmt_x(v: float | None) -> str:
    return "unknown" if v is None else f"{v:.2f}x"


def _accuracy_result(v: AccuracyResult | Mapping[str, Any]) -> AccuracyResult:
    if isinstance(v, AccuracyResult):
        return v
    if isinstance(v, Mapping) and {"top1", "data_copy", "test_hash"} <= set(v):
        return AccuracyResult(float(v["top1"]), str(v["data_copy"]), str(v["test_hash"]))
    raise bad_value("int8_accuracy", "an AccuracyResult or a mapping with top1, data_copy, test_hash", v)


def _check_int8_graph(model: Any, onnx_path: Path, input_shape: tuple[int, ...]) -> None:
    """The int8 graph holds QDQ nodes and computes (to quantization error) what the weights do."""
    import numpy as np

    from compactnet.export import load_onnx

    ops = {n.op_type for n in load_onnx(onnx_path).graph.node}
    if not {"QuantizeLinear", "DequantizeLinear"} & ops:
        raise ModelFileError(f"{onnx_path} holds no QuantizeLinear/DequantizeLinear nodes: it is not an int8 (QDQ) "
                             "graph; quantize it first (compactnet quantize)")
    ref, got = _torch_and_onnx_outputs(model, onnx_path, input_shape)
    if got.shape != ref.shape or not float(np.max(np.abs(got - ref))) <= 0.5 * float(np.max(np.abs(ref))) + 0.5:
        raise ModelFileError(f"{onnx_path} does not compute what the weights do, even allowing for quantization; "
                             "pass the int8 graph quantized from these weights")


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("compactnet")
    except PackageNotFoundError:
        return ""


def _network(arch: str, channels: Any) -> NetworkSpec | None:
    try:
        from compactnet.extract import spec_for

        return spec_for(arch, channels)
    except (ImportError, CompactNetError, ValueError, TypeError) as exc:
        log.warning("no NetworkSpec recorded for %s (%s); predictors will rebuild it from the channels", arch, exc)
        return None


def _predicted(report: Mapping[str, Any]) -> Latency | None:
    v = _first(report, "predicted_latency")
    if isinstance(v, Mapping) and ("value_ms" in v or "median_ms" in v):
        return Latency.from_dict({**v, "source": "predicted"})
    v = _first(report, "predicted.trimmed_ms", "predicted_latency_ms")
    return Latency(float(v), source="predicted") if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _search_command(report: Mapping[str, Any]) -> str:
    """The report's command, or the ``compactnet optimize`` command its fields describe."""
    cmd = _first(report, "command", "provenance.command")
    if cmd:
        return str(cmd)
    model, key = _first(report, "model"), _platform_key(_first(report, "platform"))
    if not model or not key:
        return ""
    parts = ["compactnet optimize", f"--model {model}", f"--platform {key}"]
    if _num(_first(report, "target_latency_ms")) is not None:
        parts.append(f"--latency-ms {_num(_first(report, 'target_latency_ms')):g}")
    elif _num(_first(report, "target_speedup")) is not None:
        parts.append(f"--speedup {_num(_first(report, 'target_speedup')):g}")
    preset = _first(report, "preset.name", "preset")
    if isinstance(preset, str):
        parts.append(f"--preset {preset}")
    return " ".join(parts) + "  (reconstructed from report.json)"


# ----- publishing -------------------------------------------------------------------------
def publish_model(weights: str | os.PathLike, arch: str, index_path: str | os.PathLike, platform: str,
                  channels: Any = None, *, onnx: str | os.PathLike | None = None, tag: str | None = None,
                  target_speedup: float | None = None, dataset: str = "cifar10",
                  baseline_onnx: str | os.PathLike | None = None,
                  measure_latency: LatencyFn | None = None, measure_accuracy: AccuracyFn | None = None,
                  data: str | os.PathLike | None = None, rounds: int = 10, predictor: Any = None,
                  predicted_latency: Latency | None = None, val_top1: float | None = None,
                  license: str = "Apache-2.0", command: str = "", publish_command: str = "", source: str = "",
                  layout: str = "name", replace_existing: bool = False, catalogue: bool = True,
                  description: str = "", force: bool = False, int8_onnx: str | os.PathLike | None = None,
                  int8_accuracy: AccuracyResult | Mapping[str, Any] | None = None) -> ZooEntry:
    """Publish weights + channels as a zoo entry (see the module docstring for the steps).

    Args:
        weights: Safetensors weights of ``create_model(arch, channels)``.
        arch: Registry model name.
        index_path: The zoo index (``index.json``); created if missing. Its folder is the zoo folder.
        platform: Platform key measured on (and named in the entry).
        channels: Channel configuration (None: the untrimmed architecture, tag ``base``).
        onnx: An ONNX export of these weights (checked against torch); None exports one.
        tag: Name tag; default ``base`` for the untrimmed channels, else from ``target_speedup``,
            else from the measured speedup's lower bound, rounded down to one decimal.
        target_speedup: The speedup the search aimed at (names the entry).
        dataset: Data set name in the entry name.
        baseline_onnx: The untrimmed model to time against; None exports ``create_model(arch)``.
        measure_latency: Latency measurer; default :func:`protocol_latency` with ``rounds``.
        measure_accuracy: Accuracy measurer; default :func:`cifar10_accuracy` on ``data``.
        data: CIFAR-10 location for the default accuracy measurer.
        rounds: Protocol rounds for the default latency measurer.
        predictor: Optional latency predictor for the platform (object with ``predict(NetworkSpec) -> Latency``,
            a callable, or a portable predictor folder for :func:`compactnet.predictors.load_portable`).
        predicted_latency: A predicted latency to record (e.g. the search report's).
        val_top1: Validation top-1 to record (from the search report).
        license: SPDX license of the weights.
        command: The command that produced the weights.
        publish_command: The command publishing them.
        source: Where the weights came from (recorded).
        layout: ``name`` (``models/<name>/model.onnx``) or ``content`` (``files/<sha256>.onnx``).
        replace_existing: Replace an entry of the same name instead of failing.
        catalogue: Rewrite ``index.html`` beside the index.
        description: One line for listings.
        force: Publish an entry named after a speedup target (``s1p8x``) even when the measured
            speedup's lower bound misses that target (refused otherwise). The card records the
            measured interval either way.
        int8_onnx: For an ``int8`` platform key (required there): the QDQ int8 graph of these weights
            (batch 1, opset 17, e.g. ``compactnet quantize``'s ``model.int8.b1.onnx``). It is the
            entry's ONNX file and is timed as it is on the ``fp32`` runner of the same runtime (the
            int8 runner would quantize it again). Its untrimmed counterpart, the int8 baseline, is
            ``baseline_onnx`` (also required for a trimmed entry: int8 alone speeds a model up).
        int8_accuracy: For an ``int8`` platform key (required there): the int8 graph's test top-1
            evaluated through onnxruntime (:func:`compactnet.search.methods.int8.evaluate_onnx`), as an
            :class:`AccuracyResult` or a mapping with ``top1``, ``data_copy``, ``test_hash``. The
            torch model's top-1 is not the int8 graph's, so it is never measured in its place.

    Returns:
        The new entry (already saved in the index).

    Raises:
        ConfigError: Bad arguments, a duplicate name without ``replace_existing``, a target-named
            entry whose measured lower bound misses the target without ``force``, a replacement less
            accurate than the entry it replaces without ``force``, or an ``int8``
            platform without ``int8_onnx`` and ``int8_accuracy`` (and ``baseline_onnx``).
        ModelFileError: Weights or ONNX that do not fit the architecture.
    """
    from compactnet.models import create_model, get_entry, load_weights, parse_channels

    if layout not in LAYOUTS:
        raise bad_value("layout", "one of " + ", ".join(LAYOUTS), layout)
    plat = Platform.parse(platform, hardware="")
    plat_key = plat.key
    int8 = plat.precision == "int8"
    if int8 and (int8_onnx is None or int8_accuracy is None):
        raise ConfigError(f"publishing on {plat_key} needs the int8 graph and its own top-1: pass int8_onnx= (the QDQ "
                          "graph of these weights, e.g. compactnet quantize's model.int8.b1.onnx) and int8_accuracy= "
                          "(its test top-1 evaluated through onnxruntime); the fp32 weights' figures are not the "
                          f"int8 model's (received int8_onnx={int8_onnx!r}, int8_accuracy={int8_accuracy!r})")
    if not int8 and (int8_onnx is not None or int8_accuracy is not None):
        raise bad_value("int8_onnx/int8_accuracy", f"only with an int8 platform key (not {plat_key})",
                        {"int8_onnx": int8_onnx, "int8_accuracy": int8_accuracy})
    arch = get_entry(arch).name
    config = parse_channels(arch, channels)
    channels_dict = config.to_dict()
    is_base = config == parse_channels(arch, None)
    index_path = Path(index_path)
    zoo_dir = index_path.parent
    index = load_index(index_path) if index_path.is_file() else ZooIndex((), source=str(index_path))
    zoo_dir.mkdir(parents=True, exist_ok=True)
    if tag is None and is_base:
        tag = "base"
    elif tag is None and target_speedup is not None:
        tag = speedup_tag(target_speedup)
    if tag is not None:
        name = make_name(arch, dataset, plat_key, tag)
        if measure_latency is None and index.has(name, hardware_id()) and not replace_existing:
            raise ConfigError(f"zoo index {index_path} already has {name!r} on this hardware ({hardware_id()}); "
                              "pass replace_existing=True (--replace)")

    if int8 and not is_base and baseline_onnx is None:
        raise ConfigError(f"publishing a trimmed model on {plat_key} needs baseline_onnx= (the untrimmed model's int8 "
                          "graph): int8 alone speeds a model up, so the speedup is taken against the int8 baseline")

    model = load_weights(create_model(arch, config), weights)
    model.eval()
    input_shape = tuple(get_entry(arch).input_shape)

    with tempfile.TemporaryDirectory(dir=zoo_dir, prefix=".publish-") as tmpdir:
        tmp = Path(tmpdir)
        if int8:
            onnx_path = Path(int8_onnx)
            _check_int8_graph(model, onnx_path, input_shape)
        elif onnx is not None:
            onnx_path = Path(onnx)
            _check_parity(model, onnx_path, input_shape)
        else:
            from compactnet.export import export_onnx

            onnx_path = tmp / "model.onnx"
            export_onnx(model, onnx_path, input_shape=input_shape)
        opset, ir_version, input_name = _onnx_info(onnx_path)
        if ir_version > 10 or opset != 17:
            raise ModelFileError(f"{onnx_path} has opset {opset} and IR {ir_version}; the protocol needs opset 17, "
                                 "IR <= 10 (export with compactnet.export.export_onnx, or pass onnx=None)")

        acc = _accuracy_result(int8_accuracy) if int8 else (measure_accuracy or cifar10_accuracy(data))(model)
        base_path: Path | None = None
        if not is_base:
            if baseline_onnx is not None:
                base_path = Path(baseline_onnx)
            else:
                from compactnet.export import export_onnx

                base_path = tmp / "baseline.onnx"
                export_onnx(create_model(arch), base_path, input_shape=input_shape)
        # graphs already in their precision are timed on the fp32 runner of the same runtime
        timing_key = plat_key if not int8 else Platform.parse(plat_key.replace("-int8-", "-fp32-"), hardware="").key
        lat = (measure_latency or protocol_latency(rounds))(onnx_path, base_path, timing_key)
        target = tag_speedup(tag) if tag is not None else None
        if target is not None and tag.split("-", 1)[0] != "base" and not force:
            low = lat.speedup_low
            if low is None or low < target:
                raise ConfigError(
                    f"the entry would be named {make_name(arch, dataset, plat_key, tag)!r} (a {target:g}x target) but "
                    f"the measured speedup is {_fmt_x(lat.speedup)} with lower bound {_fmt_x(low)}, which misses it; "
                    "publish it under the measured speedup (tag=None, target_speedup=None), or pass force=True "
                    "(--force) to keep the target's name (the card records the measured interval)")

        if tag is None:
            if lat.speedup is None:
                raise ConfigError("cannot name the entry: give tag= or target_speedup= (no speedup was measured)")
            # named after what the measurement guarantees: the interval's lower bound, rounded down
            sure = lat.speedup_low if lat.speedup_low is not None else lat.speedup
            tag = speedup_tag(max(1.0, math.floor(sure * 10 + 1e-9) / 10))
        name = make_name(arch, dataset, plat_key, tag)
        hardware = lat.platform.hardware or hardware_id()
        if index.has(name, hardware):
            if not replace_existing:
                raise ConfigError(f"zoo index {index_path} already has {name!r} on {hardware!r}; pass "
                                  "replace_existing=True (--replace)")
            if not force:
                _check_not_worse(index.get(name, hardware), acc.top1)

        network = _network(arch, channels_dict)
        if predictor is not None and predicted_latency is None:
            target = network if network is not None else str(onnx_path)
            from compactnet.zoo.select import _resolve_predictor

            predicted_latency = _resolve_predictor(predictor)(target)

        refs = {}
        for role, src, ext, fmt in (("onnx", onnx_path, "onnx", "onnx"),
                                    ("weights", Path(weights), "safetensors", "safetensors")):
            digest = _sha256(src)
            rel = _stored_copy(index, zoo_dir, digest, src.stat().st_size)
            if rel is None:
                rel = (f"models/{name}/{hardware_slug(hardware)}/{'model' if role == 'onnx' else 'weights'}.{ext}"
                       if layout == "name" else f"files/{digest}.{ext}")
                if _shared(index, rel, (name, hardware)):  # other entries keep their bytes: never overwrite
                    rel = f"files/{digest}.{ext}"
                _copy_atomic(src, zoo_dir / rel)
            refs[role] = FileRef(rel, src.stat().st_size, digest, fmt,
                                 opset if fmt == "onnx" else None, ir_version if fmt == "onnx" else None)

    measured_platform = replace(lat.platform, precision="int8") if int8 else lat.platform
    metrics = Metrics(
        top1=acc.top1, data_copy=acc.data_copy, test_hash=acc.test_hash, val_top1=val_top1,
        latency=lat.latency, runtime_version=measured_platform.runtime_version,
        speedup=lat.speedup, speedup_low=lat.speedup_low, speedup_high=lat.speedup_high,
        baseline=f"{arch} untrimmed ({make_name(arch, dataset, plat_key, 'base')})",
        predicted_latency=predicted_latency,
        measured_at=lat.when or _now(), load=lat.load)
    entry = ZooEntry(
        name=name, architecture=arch, dataset=dataset, platform=plat_key,
        hardware=hardware, channels=channels_dict,
        input=InputContract.cifar10(input_name) if dataset == "cifar10" else InputContract(name=input_name,
                                                                                           shape=input_shape),
        metrics=metrics, onnx=refs["onnx"], weights=refs["weights"], license=license,
        provenance=Provenance(command=portable_paths(command, zoo_dir),
                              publish_command=portable_paths(publish_command, zoo_dir),
                              source=portable_path(source or str(weights), zoo_dir),
                              compactnet_version=_version(), git_commit=_git_commit(),
                              created=_now()),
        network=network, description=description)
    index = index.add(entry, replace_existing=replace_existing)
    save_index(index, index_path)
    if catalogue:
        write_catalogue(index, zoo_dir / "index.html")
    log.info("published %s to %s", name, index_path)
    return entry


def publish(result_dir: str | os.PathLike, index_path: str | os.PathLike, platform: str | None = None,
            **kwargs: Any) -> ZooEntry:
    """Publish a search output folder (``compactnet optimize``'s) as a zoo entry.

    From the report: the architecture, platform, target (speedup or latency; it names the entry),
    validation top-1, predicted latency and the command are recorded; ``original.onnx`` is the
    baseline the latency is measured against. Test top-1 and latency are measured anew (see
    :func:`publish_model`, whose keyword arguments this accepts and which override the report's).

    Args:
        result_dir: The search output folder.
        index_path: The zoo index (``index.json``).
        platform: Platform key; default the report's.
        **kwargs: Passed to :func:`publish_model`.
    """
    res = read_result_dir(result_dir)
    rep = res.report
    platform = platform or _platform_key(_first(rep, "platform"))
    if not platform:
        raise bad_value("platform", "a platform key (the report names none)", platform)
    target_ms = _num(_first(rep, "target_latency_ms"))
    if "tag" not in kwargs and target_ms is not None and "target_speedup" not in kwargs:
        kwargs["tag"] = latency_tag(target_ms)
    kwargs.setdefault("target_speedup", _num(_first(rep, "target_speedup")))
    kwargs.setdefault("val_top1", _num(_first(rep, "trimmed.val_top1", "val_top1")))
    kwargs.setdefault("predicted_latency", _predicted(rep))
    kwargs.setdefault("command", _search_command(rep))
    kwargs.setdefault("source", str(Path(result_dir)))
    kwargs.setdefault("onnx", res.onnx)
    kwargs.setdefault("baseline_onnx", res.original_onnx)
    return publish_model(res.weights, res.architecture, index_path, platform, res.channels, **kwargs)


def _platform_key(v: Any) -> str | None:
    if isinstance(v, Mapping):
        v = v.get("key") or (Platform.from_dict(v).key if "runtime" in v else None)
    return str(v) if v else None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
