"""The sample store round-trips measurements, exports, survives concurrent writers."""

from __future__ import annotations

import csv
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from compactnet.errors import CompactNetError, DataError
from compactnet.profilers.base import SyntheticProfiler
from compactnet.profilers.sampling import make_strategy
from compactnet.profilers.store import SampleStore, layer_key


def _measure(n: int, seed: int = 0):
    prof = SyntheticProfiler(noise=0.02, seed=seed, overhead_ms=0.01)
    return prof.measure(make_strategy("random", seed=seed).take(n))


def test_round_trip_keys_and_distinct(tmp_path):
    ms = _measure(10)
    with SampleStore(tmp_path / "s.sqlite") as st:
        assert st.add(ms, run_id="r1") == 10
        assert st.add(ms[:3]) == 3  # a repeat is data
        plat = ms[0].platform
        assert st.count(plat.key) == 13 and st.count(plat.key, distinct=True) == 10
        assert st.keys(plat.key, "rotation", plat.hardware) == {layer_key(m.layer) for m in ms}
        assert st.keys(plat.key, "isolated") == set()
        back = st.measurements(plat.key, distinct=True)
        assert back == ms
        assert back[0].overhead_ms == pytest.approx(0.01)  # the per-call overhead is kept with each record
        assert st.platforms()[0]["distinct"] == 10
        journal = st._conn.execute("PRAGMA journal_mode").fetchone()[0]
        assert journal == "wal"


def test_export_csv_and_parquet(tmp_path):
    ms = _measure(5)
    with SampleStore(tmp_path / "s.sqlite") as st:
        st.add(ms)
        assert st.export_csv(tmp_path / "s.csv") == 5
        rows = list(csv.DictReader(open(tmp_path / "s.csv")))
        assert [float(r["value_ms"]) for r in rows] == pytest.approx([m.latency.value_ms for m in ms])
        assert rows[0]["platform_key"] == "synthetic-cpu-fp32-t1" and rows[0]["hardware"]
        assert {r["estimator"] for r in rows} == {"min"}
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            try:
                import pandas  # noqa: F401
            except ImportError:
                with pytest.raises(CompactNetError, match="pyarrow"):
                    st.export_parquet(tmp_path / "s.parquet")
                return
        assert st.export_parquet(tmp_path / "s.parquet") == 5


def test_not_a_store_is_a_clear_error(tmp_path):
    bad = tmp_path / "junk.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DataError, match="not a CompactNet sample store"):
        SampleStore(bad)


def test_two_processes_writing_at_once(tmp_path):
    path = tmp_path / "shared.sqlite"
    SampleStore(path).close()
    script = textwrap.dedent(f"""
        import sys
        from compactnet.spec import LayerSpec
        from compactnet.profilers.base import SyntheticProfiler
        from compactnet.profilers.store import SampleStore
        seed = int(sys.argv[1])
        layers = [LayerSpec("c" + str(i), "conv", 8 + i, 16 * seed, 8, 8) for i in range(120)]
        prof = SyntheticProfiler(seed=seed)
        st = SampleStore({str(path)!r})
        for i in range(0, 120, 3):
            st.add(prof.measure(layers[i:i + 3]), run_id=str(seed))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(s)]) for s in (1, 2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with SampleStore(path) as st:
        assert st.count() == 240
        assert st._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        runs = st._conn.execute("SELECT run_id, COUNT(*) FROM measurements GROUP BY run_id").fetchall()
        assert sorted(runs) == [("1", 120), ("2", 120)]


def test_count_respects_hardware(tmp_path):
    from dataclasses import replace
    ms = _measure(6)
    other = [replace(m, platform=replace(m.platform, hardware="another-cpu")) for m in _measure(4, seed=1)]
    with SampleStore(tmp_path / "s.sqlite") as st:
        st.add(ms + other)
        key = ms[0].platform.key
        assert st.count(key, distinct=True) == len({layer_key(m.layer) for m in ms + other})
        assert st.count(key, "rotation", distinct=True, hardware=ms[0].platform.hardware) == 6
        assert st.count(key, hardware="another-cpu") == 4


def test_keys_by_estimator_so_that_profiling_measures_old_configurations_anew(tmp_path):
    from compactnet.profilers.base import Protocol
    from compactnet.profilers.run import profile

    layers = make_strategy("sobol", seed=0).take(4)
    old = SyntheticProfiler(protocol=Protocol(estimator="median")).measure(layers)
    with SampleStore(tmp_path / "s.sqlite") as st:
        st.add(old)
        key = old[0].platform.key
        assert len(st.keys(key)) == 4 and len(st.keys(key, estimator="median")) == 4
        assert st.keys(key, estimator="min") == set()
    prof = SyntheticProfiler()
    res = profile(prof.platform, "sobol", samples=4, store=tmp_path / "s.sqlite", context="rotation",
                  progress=False, profiler=prof)
    with SampleStore(tmp_path / "s.sqlite") as st:
        assert len(st.keys(key, estimator="min")) == 4 and st.count(key) == 8
    assert res is not None
