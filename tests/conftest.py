"""Shared fixtures: tiny synthetic CIFAR-10 copies in both on-disk formats."""

from __future__ import annotations

import importlib.util
import io
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch, tmp_path_factory):
    torch.set_num_threads(1)
    monkeypatch.setenv("COMPACTNET_HOME", str(tmp_path_factory.mktemp("home")))
    # a refused busy measurement is taken again at once (the library pauses seconds between attempts)
    monkeypatch.setattr("compactnet.measure.BUSY_PAUSES_S", (0.0,))


@pytest.fixture(scope="module")
def bench(request):
    """The script ``benchmarks/<BENCH>.py`` (``BENCH`` set by the test module), imported as a module.

    It is registered in ``sys.modules`` while the module's tests run (dataclasses look their module up).
    """
    name = request.module.BENCH
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
    # Make classes separable: class c brightens channel c % 3.
    for c in range(10):
        images[labels == c, :, :, c % 3] = np.clip(images[labels == c, :, :, c % 3].astype(int) + 25 * c, 0, 255)
    return images, labels.astype(np.uint8)


@pytest.fixture
def tiny_npz(tmp_path):
    """A packed-JPEG CIFAR-10 copy with 200 train and 50 test images."""
    from PIL import Image

    arrays = {}
    for split, n, seed in (("train", 200, 0), ("test", 50, 1)):
        images, labels = _images(n, seed)
        blobs = []
        for img in images:
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=95)
            blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
        offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
        arrays.update({f"{split}_jpeg": np.concatenate(blobs), f"{split}_offsets": offsets,
                       f"{split}_labels": labels})
    arrays["classes"] = np.array(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                  "ship", "truck"])
    path = tmp_path / "cifar10-jpeg.npz"
    np.savez(path, **arrays)
    return path


@pytest.fixture
def tiny_batches(tmp_path):
    """A cifar-10-batches-py folder with 5 x 40 train and 50 test images."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, n, seed in [(f"data_batch_{i}", 40, i) for i in range(1, 6)] + [("test_batch", 50, 9)]:
        images, labels = _images(n, seed)
        d = {b"data": images.transpose(0, 3, 1, 2).reshape(n, -1), b"labels": labels.tolist(),
             b"batch_label": name.encode()}
        (folder / name).write_bytes(pickle.dumps(d, protocol=2))
    return folder
