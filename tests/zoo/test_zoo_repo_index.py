"""Every entry of the repository's own zoo index loads and runs in each local runtime."""

from __future__ import annotations

import re

import numpy as np
import pytest

from compactnet.zoo.download import REPO_INDEX
from compactnet.zoo.index import load_index


def _entries():
    """One entry per distinct ONNX file (the same network published for several runtimes runs once)."""
    if not REPO_INDEX.is_file():
        return []
    seen, out = set(), []
    for e in load_index(REPO_INDEX):
        if e.onnx.sha256 not in seen:
            seen.add(e.onnx.sha256)
            out.append(e)
    return out


ENTRIES = _entries()


def _local_platforms():
    from compactnet.runtimes import available_platforms

    keys = []
    for p in available_platforms():
        if p.provider == "cpu" and p.precision == "fp32" and p.runtime in ("ort", "openvino", "ncnn") \
                and p.key not in keys:
            keys.append(p.key)
    return keys


def test_repository_index_is_valid_when_present():
    if not REPO_INDEX.is_file():
        pytest.skip(f"{REPO_INDEX} not written yet")
    index = load_index(REPO_INDEX)  # schema, unique names, valid entries
    for e in index:
        for ref in (e.onnx, e.weights):
            path = REPO_INDEX.parent / ref.path
            assert path.is_file(), f"{e.name}: {ref.path} is missing from the repository"
            assert path.stat().st_size == ref.size
        # provenance records repository-relative paths only (no machine's absolute paths)
        for text in (e.provenance.command, e.provenance.publish_command, e.provenance.source):
            assert not re.search(r"(?:^|[\s'\"=])/(?:tmp|work|home|root|usr|opt|var|mnt)/", text or ""), (e.name, text)


@pytest.mark.runtime
@pytest.mark.parametrize("name, hardware", [(e.name, e.hardware) for e in ENTRIES] or [pytest.param(
    None, None, marks=pytest.mark.skip(reason="the repository's zoo index has no entries yet"))],
    ids=[f"{e.name}@{e.hardware}" for e in ENTRIES] or None)
def test_entry_loads_and_runs_in_each_local_runtime(name, hardware, tmp_path):
    import torch

    from compactnet.runtimes import get_runner
    from compactnet.zoo.download import load

    files = load(name, index_url=str(REPO_INDEX), cache_dir=tmp_path, progress=False, build_model=True,
                 hardware=hardware)
    e = files.entry
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (1, e.input.shape[2], e.input.shape[3], e.input.shape[1]), dtype=np.uint8)
    x = e.input.preprocess(images)
    assert x.shape == tuple(e.input.shape)
    with torch.no_grad():
        ref = files.model(torch.from_numpy(x)).numpy()
    assert ref.shape == (1, len(e.input.classes))
    platforms = _local_platforms()
    assert platforms, "no local runtime found"
    for key in platforms:
        out = np.asarray(get_runner(key).run(str(files.onnx), {e.input.name: x})[0]).reshape(ref.shape)
        assert np.all(np.isfinite(out)), key
        np.testing.assert_allclose(out, ref, atol=1e-2, rtol=1e-3, err_msg=f"{name} on {key}")
        assert int(out.argmax()) == int(ref.argmax()), key
