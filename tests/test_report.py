"""compactnet.report: self-contained HTML of a search output folder or a profiling run."""

from __future__ import annotations

import base64
import json
import re
import sqlite3

import pytest

from compactnet.errors import CompactNetError
from compactnet.report import detect_kind, find_sample_store, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _images(page: str) -> list[bytes]:
    """Decoded embedded PNG images of a page."""
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def _trajectory() -> list[dict]:
    groups = {"g1": 32, "g2": 64, "g3": 96}
    widths = dict(groups)
    out = []
    for i, (g, w, ms, val) in enumerate([("g2", 48, 0.80, 91.5), ("g3", 72, 0.66, 90.8), ("g1", 24, 0.55, 89.9)]):
        before = widths[g]
        widths[g] = w
        out.append({"iteration": i + 1, "phase": "schedule", "group": g, "width_before": before, "width": w,
                    "predicted_ms": ms, "predicted_speedup": 1.0 / ms, "val_top1": val, "channels": dict(widths),
                    "candidates": [{"group": g, "width_before": before, "width": w, "predicted_ms": ms,
                                    "val_top1": val, "seconds": 1.5}], "seconds": 4.0 + i})
    return out


@pytest.fixture
def search_dir(tmp_path):
    d = tmp_path / "search-out"
    d.mkdir()
    traj = _trajectory()
    (d / "trajectory.json").write_text(json.dumps(traj))
    report = {
        "command": "compactnet optimize --model mobilenetv2 --platform ort-cpu-fp32-t1 --speedup 1.6",
        "model": "mobilenetv2", "mode": "paper", "importance": "l2", "preset": {"name": "quick"},
        "platform": {"key": "ort-cpu-fp32-t1", "describe": "ort-cpu-fp32-t1 (Test CPU 9000, v1.31.1)"},
        "target_speedup": 1.6, "stop_reason": "",
        "predicted": {"original_ms": 1.0, "trimmed_ms": 0.55, "speedup": 1.0 / 0.55},
        "measured": {"original_ms": 0.84, "trimmed_ms": 0.5, "speedup": 1.68, "low": 1.61, "high": 1.74,
                     "reached": True},
        "measurements": [{"iteration": 3, "predicted_ms": 0.55, "original_ms": 0.84, "trimmed_ms": 0.51,
                          "speedup": 1.647, "low": 1.603, "high": 1.702, "reached": True}],
        "original": {"val_top1": 92.4, "test_top1": 91.9, "val_subset_top1": 92.0, "params": 2236682,
                     "flops": 12345678},
        "trimmed": {"val_top1": 90.1, "test_top1": 89.7, "params": 1200000, "flops": 6000000},
        "channels": {"original": {"g1": 32, "g2": 64, "g3": 96}, "trimmed": traj[-1]["channels"]},
        "timings": {"load_s": 1.0, "candidates_s": 30.0, "winner_finetune_s": 12.0, "final_retrain_s": 50.0,
                    "total_s": 99.0},
        "data": {"copy": "packed-jpeg", "test_hash": "0123456789abcdef"},
    }
    (d / "report.json").write_text(json.dumps(report))
    return d


@pytest.fixture
def store_dir(tmp_path):
    """A folder with a tiny sample store of two platforms, a noise floor and a Figure-7 check."""
    from compactnet.profilers import SampleStore, SyntheticProfiler, figure7, noise_floor
    from compactnet.profilers.sampling import make_strategy
    from compactnet.spec import Platform

    d = tmp_path / "profile-run"
    prof = SyntheticProfiler(noise=0.02, seed=0)
    layers = make_strategy("sobol", seed=0).take(20)
    other = SyntheticProfiler(noise=0.02, seed=1, platform=Platform("synthetic", "cpu", "int8", 1, "Test CPU", "s1"))
    with SampleStore(d / "samples.sqlite") as store:
        store.add(prof.measure(layers))
        store.add(prof.measure(layers[:3]))  # repeats
        store.add(other.measure(layers[:8]))
    (d / "noise.json").write_text(json.dumps(noise_floor(prof, repeats=5)))
    (d / "figure7.json").write_text(json.dumps(figure7(prof).to_dict()))
    return d


def test_search_report_embeds_plots_and_key_figures(search_dir):
    assert detect_kind(search_dir) == "search"
    out = write_report(search_dir)
    assert out == search_dir / "report.html"
    page = out.read_text()
    imgs = _images(page)
    # trajectory, channels, speedups, timings
    assert len(imgs) == 4 and all(i.startswith(PNG_SIGNATURE) for i in imgs)
    assert "ort-cpu-fp32-t1 (Test CPU 9000, v1.31.1)" in page
    assert "1.68x" in page and "[1.61, 1.74]" in page and "target reached" in page
    assert "1.82x" in page  # predicted speedup 1 / 0.55
    assert "89.70" in page and "91.90" in page  # test top-1
    for g, w0, w1 in (("g1", 32, 24), ("g2", 64, 48), ("g3", 96, 72)):
        assert re.search(rf"<td>{g}</td><td>{w0}</td><td>{w1}</td>", page), g
    assert "final_retrain_s" in page and "compactnet optimize --model mobilenetv2" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained


def test_search_report_of_a_running_search_and_custom_path(search_dir, tmp_path):
    (search_dir / "report.json").unlink()  # a live run has only the trajectory
    out = write_report(search_dir, tmp_path / "elsewhere" / "r.html")
    page = out.read_text()
    assert out.is_file() and "No report.json yet" in page
    assert len(_images(page)) == 2  # trajectory and channels (recovered from the trajectory)
    assert re.search(r"<td>g2</td><td>64</td><td>48</td>", page)


def test_profile_report_from_folder_and_from_store_file(store_dir):
    assert detect_kind(store_dir) == "profile"
    page = write_report(store_dir).read_text()
    imgs = _images(page)
    # samples, distributions, latency vs MACs, noise floor, Figure 7
    assert len(imgs) == 5 and all(i.startswith(PNG_SIGNATURE) for i in imgs)
    assert "synthetic-cpu-fp32-t1" in page and "synthetic-cpu-int8-t1" in page
    assert re.search(r"<td>synthetic-cpu-fp32-t1</td><td>rotation</td><td>[^<]*</td><td>[^<]*</td><td>23</td>"
                     r"<td>20</td>", page)
    assert "Figure-7 check" in page and "Noise floor" in page and "block" in page
    store = store_dir / "samples.sqlite"
    assert find_sample_store(store_dir) == store
    out = write_report(store)
    assert out == store_dir / "samples.report.html" and len(_images(out.read_text())) >= 3


def test_report_refuses_what_is_neither(tmp_path):
    with pytest.raises(CompactNetError, match="neither a search output"):
        write_report(tmp_path)
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    (tmp_path / "notes.json").write_text("{}")
    with pytest.raises(CompactNetError, match="found: notes.json, other.sqlite"):
        write_report(tmp_path)
    with pytest.raises(CompactNetError, match="RESULT_DIR"):
        write_report(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "trajectory.json").write_text("{not json")
    with pytest.raises(CompactNetError, match="not readable JSON"):
        write_report(bad)


def test_the_trajectory_plots_speedups_so_recalibration_does_not_move_the_scale():
    from compactnet.report import trajectory_series

    # iteration 3 came after a recalibration that doubled every predicted millisecond: the
    # milliseconds jump, the predicted speedup (a ratio over the original under the same predictor) does not
    traj = [{"iteration": 1, "predicted_ms": 0.8, "predicted_speedup": 1.25, "val_top1": 90.0},
            {"iteration": 2, "predicted_ms": 0.7, "predicted_speedup": 1.43, "val_top1": 89.0},
            {"iteration": 3, "predicted_ms": 1.3, "predicted_speedup": 1.54, "val_top1": 88.5}]
    report = {"original": {"val_subset_top1": 91.0},
              "measurements": [{"iteration": 2, "speedup": 1.3, "low": 1.25, "high": 1.36},
                               {"iteration": 3, "speedup": 1.6, "low": 1.1, "high": 2.2, "busy": True},
                               {"iteration": 3, "refused": "busy"}]}
    ser = trajectory_series(traj, report)
    assert ser["x"] == [1.0, 1.25, 1.43, 1.54] and ser["y"] == [91.0, 90.0, 89.0, 88.5]
    assert ser["labels"] == ["0", "1", "2", "3"]
    assert ser["measured"] == [{"speedup": 1.3, "low": 1.25, "high": 1.36, "val_top1": 89.0, "iteration": 2}]
