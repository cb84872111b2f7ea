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
    assert mod.main(["--quick", "--no-progress", "--json", str(tmp_path / "out.json")]) == 0
    out = capsys.readouterr().out
    for part in ("noise floor", "dense baseline at step 64", "EXTRAPOLATED", "sparse (sobol): 30 samples",
                 "Figure-7 check", "block17"):
        assert part in out
    res = json.loads((tmp_path / "out.json").read_text())
    assert res[0]["platform"]["key"] == "synthetic-cpu-fp32-t1"
    assert len(res[0]["figure7"]["rows"]) == 18 and res[0]["dense"]["full_count"] == 160_992
