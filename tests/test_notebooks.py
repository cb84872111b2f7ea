"""The four journey notebooks run top to bottom in their CI setting (``COMPACTNET_NB_CI=1``).

Each notebook is executed with nbclient in a fresh kernel: it must finish without an error, draw
at least one plot, and stay within DESIGN's CI budget (90 s per notebook; ``COMPACTNET_NB_BUDGET_S``
overrides it on a slow machine). The committed notebooks carry the outputs of one run in their full
setting on the development machine (plots, key figures, the machine and runtime versions first), with
no error output and no absolute path of the machine that ran them.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: Notebooks that read CIFAR-10 (skipped when no copy is found).
NEEDS_DATA = {"03-search-mobilenetv2", "04-zoo"}
CELL_TIMEOUT_S = 120
BUDGET_S = float(os.environ.get("COMPACTNET_NB_BUDGET_S", "90"))


def test_the_four_journeys_are_there():
    assert [p.stem for p in NOTEBOOKS] == ["01-profile-new-platform", "02-predict-latency", "03-search-mobilenetv2",
                                           "04-zoo"]


#: An absolute path of the machine that ran a notebook (after a space, quote, bracket or "=").
ABSOLUTE_PATH = re.compile(r"(?:^|[\s'\"(\[=:]|file://)"
                           r"(/(?:tmp|work|home|root|usr|opt|var|mnt|srv|etc|data|scratch|Users|Volumes|private)/"
                           r"[^\s'\"]*)")
MAX_IMAGE_BYTES = 300_000


def _texts(output) -> list[str]:
    if output.output_type == "stream":
        return [output.text]
    if output.output_type == "error":
        return [output.ename, output.evalue, *output.traceback]
    return [v for k, v in output.get("data", {}).items() if k.startswith("text/") and isinstance(v, str)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_with_the_outputs_of_a_real_run(path):
    """Outputs of one full-setting run: plots and figures, no error, no machine's absolute path."""
    import base64

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs for c in code[:1]), f"{path.name}: run it (full setting) and commit its outputs"
    first = "".join(t for o in code[0].outputs for t in _texts(o))
    assert "full setting" in first and "machine:" in first and "onnxruntime" in first, \
        f"{path.name}: the first output names the setting, the machine and the runtime versions"
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: run top to bottom once in a fresh kernel"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"], f"{path.name} holds an error output"
    images = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} shows no plot"
    assert max(len(base64.b64decode(i)) for i in images) <= MAX_IMAGE_BYTES, f"{path.name}: an image over 300 KB"
    leaks = [m.group(1) for o in outputs for t in _texts(o) for m in ABSOLUTE_PATH.finditer(t)]
    assert not leaks, f"{path.name} shows absolute paths of the machine that ran it: {leaks[:3]}"


def test_the_absolute_path_check_catches_what_it_should():
    found = [m.group(1) for t in ("saved to /tmp/x/predictor", "report: '/work/main/r.html'", "(/home/u/a.py:3)",
                                  "file:///home/u/z.json", "see $COMPACTNET_NB_OUT/01/run.json",
                                  "https://example.org/home/x", "1/2 done")
             for m in ABSOLUTE_PATH.finditer(t)]
    assert found == ["/tmp/x/predictor", "/work/main/r.html", "/home/u/a.py:3)", "/home/u/z.json"]


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory):
    """One COMPACTNET_HOME for all notebooks: CIFAR-10 is decoded once, not once per notebook."""
    return tmp_path_factory.mktemp("nb-home")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_ci_setting(path, tmp_path, monkeypatch, shared_home):
    if path.stem in NEEDS_DATA:
        from compactnet.data import resolve_data_path
        from compactnet.errors import DataError

        try:
            resolve_data_path()
        except DataError as exc:
            pytest.skip(f"no CIFAR-10 copy: {exc}")
    from nbclient.exceptions import CellExecutionError

    # the kernel inherits the environment: CI budgets, private outputs, the shared data cache
    monkeypatch.setenv("COMPACTNET_NB_CI", "1")
    monkeypatch.setenv("COMPACTNET_NB_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("COMPACTNET_HOME", str(shared_home))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"{path.name} failed in its CI setting:\n{exc}")
    elapsed = time.perf_counter() - t0
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert images, f"{path.name} drew no plot"
    assert elapsed < BUDGET_S, f"{path.name} took {elapsed:.0f} s in its CI setting (budget {BUDGET_S:.0f} s)"
