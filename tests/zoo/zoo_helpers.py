"""Helpers shared by the zoo tests: synthetic entries with given figures and file bytes."""

from __future__ import annotations

import hashlib

from compactnet.spec import Latency
from compactnet.zoo.entry import FileRef, InputContract, Metrics, Provenance, ZooEntry

HW = "Test CPU 9000"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_entry(name: str, onnx_bytes: bytes = b"onnx" * 10, weights_bytes: bytes = b"w" * 50,
               onnx_path: str | None = None, weights_path: str | None = None, hardware: str = HW,
               top1: float | None = 90.0, latency_ms: float | None = 1.0, speedup: float | None = 1.0,
               speedup_low: float | None = None, channels: dict | None = None, network=None) -> ZooEntry:
    arch, dataset, platform, _tag = name.split(".")
    lat = Latency(latency_ms, latency_ms * 0.98, latency_ms * 1.02, 280, (latency_ms,) * 7) if latency_ms else None
    return ZooEntry(
        name=name, architecture=arch, dataset=dataset, platform=platform, hardware=hardware,
        channels=channels or {"stages": [4, 8, 8], "inner": None, "num_classes": 10},
        input=InputContract.cifar10(),
        metrics=Metrics(top1=top1, data_copy="packed-jpeg", test_hash="0123456789abcdef", latency=lat,
                        runtime_version="1.31.1", speedup=speedup,
                        speedup_low=speedup_low if speedup_low is not None else (speedup * 0.97 if speedup else None),
                        speedup_high=speedup * 1.03 if speedup else None),
        onnx=FileRef(onnx_path or f"models/{name}/model.onnx", len(onnx_bytes), sha(onnx_bytes), "onnx", 17, 10),
        weights=FileRef(weights_path or f"models/{name}/weights.safetensors", len(weights_bytes), sha(weights_bytes),
                        "safetensors"),
        provenance=Provenance(command="compactnet optimize --model resnet20 --speedup 1.5"),
        network=network)
