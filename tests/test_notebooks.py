"""The four journey notebooks run top to bottom in their CI setting (``COMPACTNET_NB_CI=1``).

Each notebook is executed with nbclient in a fresh kernel: it must finish without an error, draw
at least one plot, and stay within DESIGN's CI budget (90 s per notebook; ``COMPACTNET_NB_BUDGET_S``
overrides it on a slow machine). The committed notebooks must carry no outputs.
"""

from __future__ import annotations

import os
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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs before committing"


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
