"""The sample store: every measurement appended to an SQLite file.

One row per :class:`~compactnet.spec.Measurement`, keyed by platform key + hardware + layer key +
measuring context, with the runtime version, load, measurement and storage times and the record
as JSON. Writes are append-only transactions in WAL mode with ``synchronous=FULL``: a process
killed at any moment (SIGKILL) leaves every committed batch intact and nothing half-written, and
two processes writing at once wait for each other (``busy_timeout``) instead of corrupting the file.

The same configuration may be stored more than once (a repeat is data); :meth:`SampleStore.keys`
and ``distinct=True`` give the distinct configurations a resumed run skips. Each record's JSON keeps
the per-call overhead measured with it (``Measurement.overhead_ms``), which predictors add back once
per whole network.
"""

from __future__ import annotations

import csv
import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Iterable

from compactnet.errors import CompactNetError, DataError, bad_value
from compactnet.spec import LEGACY_ESTIMATOR, LayerSpec, Measurement, latency_ms

from compactnet.profilers.base import now_iso

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    platform_key TEXT NOT NULL,
    hardware TEXT NOT NULL,
    runtime_version TEXT NOT NULL,
    layer_key TEXT NOT NULL,
    context TEXT NOT NULL,
    op TEXT NOT NULL,
    median_ms REAL NOT NULL,
    load REAL,
    measured_at TEXT NOT NULL,
    stored_at TEXT NOT NULL,
    run_id TEXT NOT NULL DEFAULT '',
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS measurements_key ON measurements (platform_key, context, layer_key);
"""

CSV_COLUMNS = ("id", "platform_key", "hardware", "runtime_version", "context", "op", "cin", "cout", "h", "w",
               "kernel", "stride", "padding", "groups", "expansion", "bn", "act", "bias", "residual",
               "value_ms", "estimator", "low_ms", "high_ms", "runs", "load", "measured_at", "stored_at", "run_id")


def layer_key(layer: LayerSpec) -> str:
    """The configuration identity of a layer as a stable string (JSON of :meth:`LayerSpec.key`)."""
    return json.dumps([list(v) if isinstance(v, tuple) else v for v in layer.key()], separators=(",", ":"))


class SampleStore:
    """An SQLite file of measurements.

    Args:
        path: The database file (created with its folder when missing).
        timeout_s: How long a writer waits for another writer's lock.

    Raises:
        DataError: The file exists but is not a sample store (or is corrupt).
    """

    def __init__(self, path: str | Path, timeout_s: float = 60.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout_s = float(timeout_s)
        self._lock = threading.Lock()
        self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(str(self.path), timeout=self.timeout_s, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for stmt in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(stmt)
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if row is None:
                    conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) != SCHEMA_VERSION:
                    raise DataError(f"sample store {self.path} has schema version {row[0]}; this CompactNet "
                                    f"reads version {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{self.path} is not a CompactNet sample store (SQLite said: {exc})") from exc
        return conn

    # ----- writing -------------------------------------------------------------------------
    def add(self, measurements: Measurement | Iterable[Measurement], run_id: str = "") -> int:
        """Append measurements in one transaction (all or none are stored).

        Returns:
            The number of rows written.
        """
        if isinstance(measurements, Measurement):
            measurements = [measurements]
        stored = now_iso()
        rows = [(m.platform.key, m.platform.hardware, m.platform.runtime_version, layer_key(m.layer), m.context,
                 m.layer.op, float(m.latency.value_ms), None if m.load != m.load else float(m.load), m.when, stored,
                 run_id, json.dumps(m.to_dict(), allow_nan=True)) for m in measurements]
        if not rows:
            return 0
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT INTO measurements (platform_key, hardware, runtime_version, layer_key, context, op, "
                    "median_ms, load, measured_at, stored_at, run_id, record) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return len(rows)

    def set_meta(self, key: str, value: str) -> None:
        """Record a metadata string (e.g. a fitted composition, :mod:`~compactnet.profilers.composition`),
        replacing an older value under ``key``."""
        if not isinstance(key, str) or not key or key == "schema_version":
            raise bad_value("key", "a non-empty string other than schema_version", key)
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(value)))

    def get_meta(self, key: str) -> str | None:
        """A metadata string, or None."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    # ----- reading -------------------------------------------------------------------------
    def _where(self, platform_key: str | None, context: str | None, hardware: str | None) -> tuple[str, list]:
        clauses, args = [], []
        for col, val in (("platform_key", platform_key), ("context", context), ("hardware", hardware)):
            if val is not None:
                clauses.append(f"{col} = ?")
                args.append(val)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def keys(self, platform_key: str | None = None, context: str | None = None,
             hardware: str | None = None, estimator: str | None = None) -> set[str]:
        """Distinct layer keys (:func:`layer_key`) stored for a platform/context/hardware.

        Args:
            estimator: Only samples measured with this estimator (records that name none are the
                legacy ``median``); None: any.
        """
        where, args = self._where(platform_key, context, hardware)
        if estimator is not None:
            where += (" AND " if where else " WHERE ") + \
                f"COALESCE(json_extract(record, '$.latency.estimator'), '{LEGACY_ESTIMATOR}') = ?"
            args.append(estimator)
        with self._lock:
            return {r[0] for r in self._conn.execute(f"SELECT DISTINCT layer_key FROM measurements{where}", args)}

    def count(self, platform_key: str | None = None, context: str | None = None, distinct: bool = False,
              hardware: str | None = None) -> int:
        """Rows (or distinct configurations) stored for a platform/context/hardware (None: any)."""
        where, args = self._where(platform_key, context, hardware)
        what = "COUNT(DISTINCT layer_key)" if distinct else "COUNT(*)"
        with self._lock:
            return int(self._conn.execute(f"SELECT {what} FROM measurements{where}", args).fetchone()[0])

    def measurements(self, platform_key: str | None = None, context: str | None = None,
                     hardware: str | None = None, distinct: bool = False) -> list[Measurement]:
        """Stored measurements in storage order; ``distinct`` keeps the first of each configuration."""
        where, args = self._where(platform_key, context, hardware)
        with self._lock:
            rows = self._conn.execute(f"SELECT layer_key, context, record FROM measurements{where} ORDER BY id",
                                      args).fetchall()
        out, seen = [], set()
        for key, ctx, rec in rows:
            if distinct:
                if (key, ctx) in seen:
                    continue
                seen.add((key, ctx))
            out.append(Measurement.from_dict(json.loads(rec)))
        return out

    def platforms(self) -> list[dict]:
        """Platform keys in the store with hardware, runtime version and sample counts."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT platform_key, hardware, runtime_version, context, COUNT(*), COUNT(DISTINCT layer_key) "
                "FROM measurements GROUP BY platform_key, hardware, runtime_version, context").fetchall()
        return [{"key": r[0], "hardware": r[1], "runtime_version": r[2], "context": r[3], "rows": r[4],
                 "distinct": r[5]} for r in rows]

    # ----- export --------------------------------------------------------------------------
    def _flat_rows(self, platform_key: str | None) -> list[dict]:
        where, args = self._where(platform_key, None, None)
        with self._lock:
            rows = self._conn.execute(f"SELECT id, stored_at, run_id, record FROM measurements{where} ORDER BY id",
                                      args).fetchall()
        out = []
        for rid, stored, run_id, rec in rows:
            d = json.loads(rec)
            layer, lat, plat = d["layer"], d["latency"], d["platform"]
            out.append({"id": rid, "platform_key": plat["key"], "hardware": plat["hardware"],
                        "runtime_version": plat["runtime_version"], "context": d.get("context", ""),
                        **{k: layer[k] for k in ("op", "cin", "cout", "h", "w", "groups", "expansion", "bn", "act",
                                                 "bias", "residual")},
                        **{k: "x".join(map(str, layer[k])) for k in ("kernel", "stride", "padding")},
                        "value_ms": latency_ms(lat), "estimator": lat.get("estimator", LEGACY_ESTIMATOR),
                        "low_ms": lat.get("low_ms"), "high_ms": lat.get("high_ms"),
                        "runs": lat.get("runs"), "load": d.get("load"), "measured_at": d["when"],
                        "stored_at": stored, "run_id": run_id})
        return out

    def export_csv(self, path: str | Path, platform_key: str | None = None) -> int:
        """Write the measurements (one flat row each, :data:`CSV_COLUMNS`) to a CSV file; return the row count."""
        rows = self._flat_rows(platform_key)
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        return len(rows)

    def export_parquet(self, path: str | Path, platform_key: str | None = None) -> int:
        """Write the measurements to a Parquet file (needs ``pyarrow``, or ``pandas`` with a Parquet engine).

        Raises:
            CompactNetError: Neither pyarrow nor pandas is installed.
        """
        rows = self._flat_rows(platform_key)
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            try:
                import pandas as pd
            except ImportError:
                raise CompactNetError("export_parquet needs pyarrow (pip install pyarrow) or pandas with a Parquet "
                                      "engine; export_csv works without them") from None
            pd.DataFrame(rows, columns=list(CSV_COLUMNS)).to_parquet(path)
            return len(rows)
        table = pa.Table.from_pylist(rows) if rows else pa.table({c: [] for c in CSV_COLUMNS})
        pq.write_table(table, str(path))
        return len(rows)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "SampleStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
