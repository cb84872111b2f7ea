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


def test_figure7_fits_the_call_overhead_and_reports_a_held_out_error():
    rep = figure7(SyntheticProfiler(overhead_ms=0.03))
    c = rep.composition
    assert c.overhead_ms == pytest.approx(0.03, abs=1e-9) and c.context == "rotation"
    assert (c.scale, c.call_ms) == pytest.approx((1.0, 0.03), abs=1e-6)
    assert rep.in_sample.mean_abs_error("o") == pytest.approx(0.0, abs=1e-9)
    h = rep.held_out
    assert h is not None and len(h.units) == 18 and h.config != rep.in_sample.config
    assert rep.held_out_error == pytest.approx(0.0, abs=1e-6)
    # raw timings carry one call overhead each: the raw sum over-counts n - 1 of them
    assert sum(h.raw_unit_ms) - h.raw_network_ms[-1] == pytest.approx(17 * 0.03, abs=1e-9)
    summary = rep.to_dict()["summary"]
    assert {"relu_subtracted", "fitted_in_sample", "fitted_held_out", "relu_subtracted_held_out"} <= set(summary)
    text = rep.table()
    for part in ("relu-subtracted", "fitted in-sample", "held-out", "o = 0.0300 ms"):
        assert part in text


def test_figure7_held_out_error_differs_from_in_sample_under_a_network_bias():
    rep = figure7(SyntheticProfiler(overhead_ms=0.02, network_bias=0.1), seed=1)
    assert rep.mean_abs_error == pytest.approx(1 - 1 / 1.1)  # relu column as before
    assert rep.in_sample.mean_abs_error("ab") < rep.mean_abs_error
    assert rep.held_out_error > 0 and rep.held_out_error != rep.in_sample.mean_abs_error("ab")
    again = figure7(SyntheticProfiler(overhead_ms=0.02, network_bias=0.1), seed=1)
    assert again.to_dict() == rep.to_dict()  # deterministic
    other = figure7(SyntheticProfiler(overhead_ms=0.02, network_bias=0.1), seed=2)
    assert other.held_out.config != rep.held_out.config


def test_figure7_options_and_bad_input():
    from compactnet.extract import mobilenetv2_units

    prof = SyntheticProfiler(overhead_ms=0.01)
    old = figure7(prof, fit=False)
    assert old.composition is None and old.held_out is None and "summary" in old.to_dict()
    no_held = figure7(prof, holdout=None)
    assert no_held.composition is not None and no_held.held_out is None
    units = list(mobilenetv2_units(include_last=False))
    with pytest.raises(ConfigError, match="holdout"):
        figure7(prof, holdout=None, holdout_units=units)  # the fitted configuration itself is not held out
    with pytest.raises(ConfigError, match="at least 2 units"):
        figure7(prof, units=units[:1])
    short = figure7(prof, units=units[:4], holdout_relu=False)
    assert len(short.held_out.units) == 4 and short.held_out.relu_errors == ()
