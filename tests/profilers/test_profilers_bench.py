"""The profiler benchmark script runs end to end on the synthetic platform (--quick)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "profilers_bench.py"


@pytest.mark.slow
def test_quick_benchmark_prints_every_part(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("profilers_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--quick", "--no-progress", "--json", str(tmp_path / "out.json"),
                     "--store", str(tmp_path / "sparse.sqlite"), "--dense-store", str(tmp_path / "dense.sqlite")]) == 0
    out = capsys.readouterr().out
    for part in ("noise floor", "dense baseline at step 64", "EXTRAPOLATED", "sparse (sobol, layers): 30 samples",
                 "Figure-7 check", "block17", f"kept in {tmp_path / 'dense.sqlite'}"):
        assert part in out
    res = json.loads((tmp_path / "out.json").read_text())
    assert res[0]["platform"]["key"] == "synthetic-cpu-fp32-t1"
    assert len(res[0]["figure7"]["rows"]) == 18 and res[0]["dense"]["full_count"] == 160_992
    assert "fitted held-out" in out and any("held-out" in l for l in res[0]["figure7_lines"])
    assert res[0]["figure7"]["held_out"]["mean_abs_error"]["ab"] >= 0
    assert res[0]["figure7"]["composition_store_key"] == "composition/synthetic-cpu-fp32-t1/rotation"
    from compactnet.profilers.store import SampleStore
    with SampleStore(tmp_path / "dense.sqlite") as dense, SampleStore(tmp_path / "sparse.sqlite") as sparse:
        assert dense.count(distinct=True) == res[0]["dense"]["count_at_step"] > 0
        assert {m.layer.op for m in dense.measurements()} <= {"conv", "block"}  # the paper's units
        assert sparse.count(distinct=True) == 30
        assert "dwconv" in {m.layer.op for m in sparse.measurements()}  # runtime-level layers
    # run again: both stores are resumed, nothing is measured twice
    assert mod.main(["--quick", "--no-progress", "--store", str(tmp_path / "sparse.sqlite"),
                     "--dense-store", str(tmp_path / "dense.sqlite")]) == 0
    assert "sparse (sobol, layers): 0 samples" in capsys.readouterr().out
