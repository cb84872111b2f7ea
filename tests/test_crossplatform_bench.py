"""benchmarks/crossplatform_bench.py on the repository's zoo, timed by the synthetic runtime."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_table7_bench_times_every_entry_once_and_resumes(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import crossplatform_bench as xb
    finally:
        sys.path.pop(0)
    args = ["--index", str(ROOT / "zoo" / "index.json"), "--platforms", "synthetic-cpu-fp32-t1", "--rounds", "7",
            "--out", str(tmp_path), "--quiet"]
    assert xb.main(args) == 0
    rec = json.loads((tmp_path / "synthetic-cpu-fp32-t1.json").read_text())
    index = json.loads((ROOT / "zoo" / "index.json").read_text())["entries"]
    trimmed = {e["onnx"]["sha256"] for e in index if not e["name"].endswith(".base")}
    assert rec["names"][0] == "base" and len(rec["names"]) == 1 + len(trimmed)   # identical files timed once
    report = (tmp_path / "report.md").read_text()
    assert all(n in report for n in rec["names"][1:]) and "cross-hardware" in report
    # a second run reads the saved comparison instead of timing again
    assert xb.main(args) == 0 and json.loads((tmp_path / "synthetic-cpu-fp32-t1.json").read_text()) == rec
    capsys.readouterr()
