"""Profiling runs: budgets, resume, a SIGKILL mid-run loses nothing; the Figure-7 check."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from compactnet.errors import ConfigError
from compactnet.profilers.base import Protocol, RunnerProfiler, SyntheticProfiler
from compactnet.profilers.run import platform_table, profile
from compactnet.profilers.sampling import make_strategy
from compactnet.profilers.store import SampleStore, layer_key
from compactnet.profilers.validate import figure7

SYN = "synthetic-cpu-fp32-t1"


def test_resume_skips_what_is_stored(tmp_path):
    path = tmp_path / "s.sqlite"
    r1 = profile(SYN, "sobol", samples=40, store=path, seed=2, progress=False, batch_size=7)
    assert (r1.measured, r1.skipped, r1.stopped_by) == (40, 0, "samples")
    r2 = profile(SYN, "sobol", samples=40, store=path, seed=2, progress=False)
    assert (r2.measured, r2.skipped) == (0, 40)
    r3 = profile(SYN, "sobol", samples=60, store=path, seed=2, progress=False)
    assert (r3.measured, r3.skipped, r3.distinct_in_store) == (20, 40, 60)
    with SampleStore(path) as st:
        assert st.keys(SYN) == {layer_key(l) for l in make_strategy("sobol", seed=2).take(60)}
    iso = profile(SYN, "sobol", samples=10, store=path, seed=2, progress=False, context="isolated")
    assert iso.measured == 10  # another context is another sample


def test_budgets(tmp_path):
    with pytest.raises(ConfigError, match="budget"):
        profile(SYN, "random", store=tmp_path / "s.sqlite", progress=False)
    slow = SyntheticProfiler(delay_s=0.02)
    r = profile(SYN, "random", seconds=0.3, store=tmp_path / "s.sqlite", profiler=slow, progress=True, batch_size=4)
    assert r.stopped_by == "seconds" and 4 <= r.measured < 40


def test_dense_report_labels_the_extrapolation(tmp_path):
    r = profile(SYN, "dense", step=32, store=tmp_path / "s.sqlite", progress=False, batch_size=64)
    d = r.dense
    assert r.stopped_by == "exhausted" and r.measured == d["count_at_step"] <= d["entries_at_step"]
    assert d["full_count"] == 160_992 and d["full_distinct"] <= 160_992
    assert "extrapolated" in d["full_wall_s_label"]
    assert d["full_wall_s"] == pytest.approx(r.seconds_per_sample * d["full_distinct"])


_SCRIPT = textwrap.dedent("""
    import sys
    from compactnet.spec import LayerSpec
    from compactnet.profilers.base import SyntheticProfiler
    from compactnet.profilers.run import profile
    from compactnet.profilers.sampling import UnitSpace
    # a small explicit space: no torch import, so the subprocess starts fast
    units = [UnitSpace(LayerSpec(f"b{i}", "block", c, c, hw, hw, kernel=3, padding=1, expansion=6 * c,
                                 residual=True, bn=True, act="relu6"), (c // 8 + 3, c), (c // 8 + 3, c))
             for i, (c, hw) in enumerate([(24, 8), (32, 4), (64, 2), (96, 2)])]
    profile("synthetic-cpu-fp32-t1", "sobol", samples=int(sys.argv[2]), store=sys.argv[1], seed=5,
            network=units, profiler=SyntheticProfiler(noise=0.05, seed=1, delay_s=float(sys.argv[3])),
            batch_size=3, progress=False)
""")


def _run(store, samples, delay):
    return subprocess.Popen([sys.executable, "-c", _SCRIPT, str(store), str(samples), str(delay)])


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path):
    killed, clean = tmp_path / "killed.sqlite", tmp_path / "clean.sqlite"
    n = 90
    proc = _run(killed, n, 0.02)
    deadline = time.monotonic() + 60
    at_kill = 0
    while time.monotonic() < deadline:
        if killed.exists():
            try:
                with SampleStore(killed, timeout_s=5) as st:
                    at_kill = st.count()
            except Exception:  # the file may be mid-creation
                at_kill = 0
        if at_kill >= 15:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    with SampleStore(killed) as st:
        partial = st.count()
        assert st._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert 15 <= partial < n  # killed genuinely mid-run
    assert _run(killed, n, 0.0).wait(timeout=120) == 0
    assert _run(clean, n, 0.0).wait(timeout=120) == 0
    with SampleStore(killed) as a, SampleStore(clean) as b:
        assert a.count(distinct=True) == b.count(distinct=True) == n
        assert a.keys() == b.keys()
        assert a.count() == n  # nothing measured twice, nothing lost


def test_figure7_on_synthetic_profilers():
    from compactnet.extract import mobilenetv2_units

    rep = figure7(SyntheticProfiler(network_bias=0.10))
    assert len(rep.rows) == 18 and rep.rows[-1].last_unit == "block17"
    assert all(r.error == pytest.approx(1 / 1.1 - 1) for r in rep.rows)
    assert "error" in rep.table()
    exact = figure7(SyntheticProfiler())
    assert exact.max_abs_error == pytest.approx(0.0, abs=1e-12)
    # a runner-backed profiler: layer latencies (rotation, overhead subtracted) vs prefix networks
    from compactnet.runtimes import get_runner

    units = list(mobilenetv2_units(include_last=False))[:3]
    prof = RunnerProfiler(get_runner(SYN, sigma=0.0), Protocol(rounds=3, runs=3, warmup=1, busy="ignore"))
    rep = figure7(prof, units=units)
    assert [r.units for r in rep.rows] == [1, 2, 3]
    assert all(abs(r.error) < 0.5 for r in rep.rows)
    assert rep.rows[2].summed_ms > rep.rows[0].summed_ms


def test_platform_table_lists_platforms():
    rows = platform_table(noise=False, include_synthetic=True)
    assert any(r["key"] == SYN for r in rows)
    assert any(r["key"] == "ort-cpu-fp32-t1" and r["runtime_version"] for r in rows)
    assert all({"key", "hardware", "runtime_version", "noise_floor"} <= set(r) for r in rows)
