"""benchmarks/tradeoff_figure.py: the Table-5 grid and the accuracy-vs-speedup figure from cell reports."""

from __future__ import annotations

import json

import pytest

BENCH = "tradeoff_figure"  # imported by the `bench` fixture of tests/conftest.py


def _row(variant, top1, x, delta_c=None):
    return {"variant": variant, "test_top1": top1, "delta_vs_baseline": top1 - 74.0, "delta_vs_control": delta_c,
            "predicted_speedup": x * 0.9, "wall_s": 240.0, "measured_speedup": x, "measured_low": x * 0.95,
            "measured_high": x * 1.05}


def _cell(folder, key, target, search_top1):
    folder.mkdir(parents=True)
    rows = [_row("original", 74.0, 1.0), _row("search", search_top1, target * 1.1, search_top1 - 74.2),
            _row("random", search_top1 - 0.3, target * 1.1, search_top1 - 74.5), _row("control", 74.2, 1.02, 0.0)]
    (folder / "report.json").write_text(json.dumps({
        "settings": {"platform": key}, "platform": f"{key} (Test CPU, v1)", "target_speedup": target, "rows": rows}))
    return folder


def test_grid_and_figure(bench, tmp_path, capsys):
    cells = [_cell(tmp_path / "a", "ort-cpu-fp32-t1", 2.5, 73.0), _cell(tmp_path / "b", "ort-cpu-fp32-t1", 1.5, 73.9),
             _cell(tmp_path / "c", "ncnn-cpu-fp32-t1", 1.8, 73.5), tmp_path / "unfinished"]
    (tmp_path / "unfinished").mkdir()
    assert bench.main([*map(str, cells), "--figure", str(tmp_path / "f.png"), "--markdown", str(tmp_path / "t.md")]) == 0
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.startswith("| ")][1:]
    # sorted by runtime then target; every variant of every finished cell; the unfinished one named
    assert [line.split(" | ")[:3] for line in lines[::3]] == [["| ncnn-cpu-fp32-t1", "1.8x", "search"],
                                                              ["| ort-cpu-fp32-t1", "1.5x", "search"],
                                                              ["| ort-cpu-fp32-t1", "2.5x", "search"]]
    assert "| 1.65x [1.57, 1.73] | 73.90 | -0.10 | -0.30 |" in out.out and "unfinished" in out.err
    assert (tmp_path / "f.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "t.md").read_text().strip() == out.out.strip()


def test_no_finished_cell_is_a_clear_error(bench, tmp_path):
    with pytest.raises(SystemExit, match="no finished cell"):
        bench.main([str(tmp_path)])
