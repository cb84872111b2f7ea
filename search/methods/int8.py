"""Post-training static int8 (QDQ) through onnxruntime's quantization tools, calibrated on real images.

The fp32 model is exported the protocol's way (:func:`compactnet.export.export_onnx`, opset 17) and
quantized by :func:`compactnet.runtimes.quantize_int8` (``quantize_static``, QDQ format, MinMax
calibration, per-channel int8 weights, uint8 activations) with calibration batches built from a
seeded, class-stratified subset of the *training* split, normalised as training feeds them. The
result is the platform precision ``int8`` graph (``ort-cpu-int8-t1`` runs this kind of graph).

Two pairs are produced: a dynamic-batch pair for accuracy (evaluated batched through onnxruntime)
and a batch-1 pair for timing (the protocol's shape); MinMax calibration does not depend on the
batch size, so both int8 graphs carry the same scales.

Timing an already-quantized graph: the runners of an ``int8`` platform key quantize what they are
given (with random calibration), so a QDQ graph handed to ``ort-cpu-int8-t1`` would be quantized
again. Every helper here times the graphs on the ``fp32`` runner of the same runtime, provider and
threads (:func:`timing_platform`), which runs each graph as it is, and records which one it used.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from torch import nn

from compactnet.errors import bad_value
from compactnet.search.methods._common import compare_fn, normalised_images, subset

log = logging.getLogger(__name__)


def calibration_batches(train_split: Any, n_images: int = 256, batch_size: int = 32, seed: int = 0,
                        input_name: str = "input") -> list[dict[str, np.ndarray]]:
    """Calibration feeds ``[{input_name: (B, 3, 32, 32) float32}, ...]`` from real training images.

    Raises:
        ConfigError: A non-positive count.
    """
    if n_images < 1 or batch_size < 1:
        raise bad_value("n_images/batch_size", "positive integers", (n_images, batch_size))
    x = normalised_images(subset(train_split, int(n_images), seed))
    return [{input_name: x[i:i + batch_size]} for i in range(0, len(x), batch_size)]


@dataclass
class Int8Models:
    """fp32 and int8 ONNX graphs of one model.

    Attributes:
        fp32: fp32 graph, dynamic batch (for accuracy).
        int8: QDQ int8 graph, dynamic batch (for accuracy).
        fp32_b1: fp32 graph, batch 1 (for timing), or None.
        int8_b1: QDQ int8 graph, batch 1 (for timing), or None.
        calibration_images: Training images used to calibrate.
        seconds: Export + quantization seconds.
    """

    fp32: bytes
    int8: bytes
    fp32_b1: bytes | None
    int8_b1: bytes | None
    calibration_images: int
    seconds: float


def quantize_model(model: nn.Module, train_split: Any, n_calibration: int = 256, seed: int = 0,
                   input_shape: Sequence[int] = (1, 3, 32, 32), per_channel: bool = True,
                   timing_pair: bool = True) -> Int8Models:
    """Export ``model`` and quantize it to static QDQ int8, calibrated on ``n_calibration`` training images.

    Args:
        model: The fp32 network.
        train_split: Training split the calibration images come from (never validation or test).
        n_calibration: Calibration images (class-stratified, seeded).
        seed: Seed of the calibration subset.
        input_shape: Batch-1 NCHW input shape.
        per_channel: Per-output-channel weight scales.
        timing_pair: Also produce the batch-1 graphs the measurement protocol times.
    """
    from compactnet.export import INPUT_NAME, export_onnx
    from compactnet.runtimes import quantize_int8

    t0 = time.perf_counter()
    fp32 = export_onnx(model, input_shape=input_shape, dynamic_batch=True).onnx_bytes
    feeds = calibration_batches(train_split, n_calibration, 32, seed, INPUT_NAME)
    int8 = quantize_int8(fp32, feeds, per_channel=per_channel)
    fp32_b1 = int8_b1 = None
    if timing_pair:
        fp32_b1 = export_onnx(model, input_shape=input_shape).onnx_bytes
        single = [{INPUT_NAME: f[INPUT_NAME][i:i + 1]} for f in feeds for i in range(len(f[INPUT_NAME]))]
        int8_b1 = quantize_int8(fp32_b1, single, per_channel=per_channel)
    n = sum(len(f[INPUT_NAME]) for f in feeds)
    return Int8Models(fp32, int8, fp32_b1, int8_b1, n, time.perf_counter() - t0)


def timing_platform(platform: Any) -> Any:
    """The platform (or runner) on which already-quantized graphs are timed as they are.

    A platform key or :class:`~compactnet.spec.Platform` of another precision becomes the ``fp32``
    platform of the same runtime, provider, threads and hardware (``ort-cpu-int8-t1`` ->
    ``ort-cpu-fp32-t1``). A ready runner of onnxruntime or OpenVINO at ``int8`` (which quantizes its
    input) is replaced by the ``fp32`` runner of its platform; other runners (the synthetic test
    runtime, which never converts graphs) are returned as they are.
    """
    from dataclasses import replace

    from compactnet.runtimes import Runner, get_runner
    from compactnet.spec import Platform

    if isinstance(platform, Runner):
        plat = platform.platform
        if plat.precision != "fp32" and plat.runtime in ("ort", "openvino"):
            return get_runner(replace(plat, precision="fp32"))
        return platform
    plat = platform if isinstance(platform, Platform) else Platform.parse(str(platform))
    return plat if plat.precision == "fp32" else replace(plat, precision="fp32")


def _platform_label(platform: Any) -> str:
    plat = getattr(platform, "platform", platform)
    return getattr(plat, "key", str(plat))


def seeded_limit(split: Any, limit: int | None, seed: int = 0) -> Any:
    """A seeded random subset of ``limit`` images, kept in split order (the whole split when ``limit`` is None).

    The stored splits are sorted by class, so the first ``limit`` images are a few classes only.
    """
    import numpy as np

    from compactnet.data import Split

    if limit is None or limit >= len(split):
        return split
    if limit < 1:
        raise bad_value("limit", "a positive number of images", limit)
    idx = np.sort(np.random.default_rng(seed).choice(len(split), int(limit), replace=False))
    return Split(split.images[idx], split.labels[idx])


def evaluate_onnx(model: bytes | str | Any, split: Any, batch_size: int = 250, limit: int | None = None,
                  threads: int = 1, seed: int = 0) -> float:
    """Top-1 (percent) of an ONNX classifier on a split, by real onnxruntime inference (batched).

    The graph needs a dynamic batch dimension unless ``batch_size`` matches its fixed batch.
    ``limit`` evaluates a seeded random subset of that many images (:func:`seeded_limit`).
    """
    from compactnet.runtimes import OrtRunner

    split = seeded_limit(split, limit, seed)
    runner = OrtRunner(f"ort-cpu-fp32-t{max(1, int(threads))}")  # the graph is already in its precision
    x = normalised_images(split)
    correct = 0
    for i in range(0, len(x), batch_size):
        logits = runner.run(model, {"input": x[i:i + batch_size]})[0]
        correct += int((logits.argmax(1) == split.labels[i:i + batch_size]).sum())
    return 100.0 * correct / max(1, len(split))


def measure_int8_speedup(models: Int8Models, platform: Any = "ort-cpu-fp32-t1", compare: Callable | None = None,
                         **compare_kw: Any) -> Any:
    """fp32 vs int8 (batch-1 graphs) by the protocol; ``speedups[1]`` is the int8 speedup.

    The int8 graph already holds its QDQ nodes, so both run on the ``fp32`` runner of the
    platform's runtime (:func:`timing_platform`: ``ort-cpu-int8-t1`` is timed on
    ``ort-cpu-fp32-t1``, whose runner feeds each graph as it is; the int8 runner would quantize the
    int8 graph again with random calibration).
    """
    if models.fp32_b1 is None or models.int8_b1 is None:
        raise bad_value("models", "an Int8Models made with timing_pair=True", "no batch-1 graphs")
    return compare_fn(compare)([models.fp32_b1, models.int8_b1], timing_platform(platform), names=["fp32", "int8"],
                               **compare_kw)


def int8_report(model: nn.Module, data: Any, platform: Any = None, n_calibration: int = 256, seed: int = 0,
                input_shape: Sequence[int] = (1, 3, 32, 32), compare: Callable | None = None,
                eval_split: str = "test", limit: int | None = None, threads: int = 1, **compare_kw: Any) -> dict:
    """Top-1 of the fp32 and int8 ONNX graphs on ``eval_split`` and, with a platform, the measured speedup.

    Returns:
        JSON-ready dict; ``models`` (the :class:`Int8Models`) is added under the key ``"_models"``
        for callers that want the graphs (drop it before writing JSON).
    """
    models = quantize_model(model, data.train, n_calibration, seed, input_shape, timing_pair=platform is not None)
    split = getattr(data, eval_split)
    out: dict[str, Any] = {
        "calibration_images": models.calibration_images, "quantize_s": models.seconds,
        "fp32_onnx_bytes": len(models.fp32), "int8_onnx_bytes": len(models.int8),
        f"{eval_split}_top1_fp32": evaluate_onnx(models.fp32, split, limit=limit, threads=threads),
        f"{eval_split}_top1_int8": evaluate_onnx(models.int8, split, limit=limit, threads=threads),
    }
    if platform is not None:
        comp = measure_int8_speedup(models, platform, compare, **compare_kw)
        r, lo, hi = comp.speedups[1]
        out["measured"] = {"speedup": r, "low": lo, "high": hi, "comparison": comp.to_dict(),
                           "requested_platform": _platform_label(platform),
                           "timed_on": _platform_label(timing_platform(platform))}
    out["_models"] = models
    return out


__all__ = ["calibration_batches", "Int8Models", "quantize_model", "timing_platform", "seeded_limit", "evaluate_onnx",
           "measure_int8_speedup", "int8_report"]
