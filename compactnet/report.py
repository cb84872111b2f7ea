"""``compactnet report RESULT_DIR``: one self-contained HTML page of a search or a profiling run.

The kind of run is read from the folder's contents:

* a **search** output folder (``compactnet optimize``): ``trajectory.json`` and/or ``report.json``.
  The page shows predicted speedup vs validation top-1 per iteration (speedups, not milliseconds:
  the predictor is recalibrated mid-search), measured speedups with their interval, channels per
  group beside the original (the paper's Figure 4), predicted vs measured speedup with the 95%
  interval, the time per phase and the iteration table;
* a **profiling** run: a sample store (the profilers' SQLite file, given directly or found in the
  folder). The page shows samples per platform, latency distributions per layer kind, latency vs
  MACs, the machine load recorded with the samples, and, when JSON files beside the store hold
  them, noise floors (:func:`compactnet.profilers.noise_floor`), Figure-7 checks
  (:meth:`compactnet.profilers.Figure7Report.to_dict`) and profiling-run summaries
  (:meth:`compactnet.profilers.ProfileReport.to_dict`).

Plots are PNG images embedded as base64 ``data:`` URIs: the page needs no other file and no
network. Matplotlib is used through its object API (no ``pyplot`` state, no backend switch), so
the report can be written from inside a notebook.

Example::

    from compactnet.report import write_report
    write_report("runs/optimize")            # -> runs/optimize/report.html
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from compactnet.errors import CompactNetError, DataError, bad_value

log = logging.getLogger(__name__)

__all__ = ["write_report", "render_report", "detect_kind", "find_sample_store", "search_html", "profile_html",
           "trajectory_series", "KINDS"]

#: Kinds of run a report can be made of.
KINDS = ("search", "profile")
SQLITE_MAGIC = b"SQLite format 3\x00"
STORE_SUFFIXES = (".sqlite", ".sqlite3", ".db")
#: A sample taken under a load above this (cores busy beyond our process) counts as flagged.
BUSY_LOAD = 0.5


# ----- detection -------------------------------------------------------------------------------------
def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def _is_sample_store(path: Path) -> bool:
    """A SQLite file with the sample store's ``measurements`` table (checked read-only)."""
    if not _is_sqlite(path):
        return False
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        try:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return False
    return "measurements" in names


def find_sample_store(path: str | Path) -> Path | None:
    """The sample store at ``path`` (a file) or directly inside it (a folder; the first by name).

    Returns:
        The store's path, or None when there is none.
    """
    p = Path(path)
    if p.is_file():
        return p if _is_sample_store(p) else None
    if not p.is_dir():
        return None
    stores = [f for f in sorted(p.iterdir()) if f.is_file() and f.suffix.lower() in STORE_SUFFIXES
              and _is_sample_store(f)]
    if len(stores) > 1:
        log.warning("%s holds %d sample stores; reporting %s (pass the file to choose)", p, len(stores), stores[0].name)
    return stores[0] if stores else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not readable JSON ({exc})") from exc


def detect_kind(path: str | Path) -> str:
    """``search`` or ``profile``, from what ``path`` holds.

    Raises:
        CompactNetError: ``path`` does not exist, or holds neither a search output nor a sample store.
    """
    p = Path(path)
    if not p.exists():
        raise bad_value("RESULT_DIR", "an existing search output folder, a sample store file or a folder holding one",
                        str(path))
    if p.is_dir() and ((p / "trajectory.json").is_file() or (p / "report.json").is_file()):
        return "search"
    if find_sample_store(p) is not None:
        return "profile"
    found = sorted(f.name for f in p.iterdir())[:12] if p.is_dir() else [p.name]
    raise CompactNetError(
        f"{p} is neither a search output (a folder with trajectory.json or report.json, as `compactnet optimize` "
        f"writes it) nor a profiling run (a sample store: an SQLite file with a 'measurements' table, given directly "
        f"or inside the folder); found: {', '.join(found) or 'an empty folder'}")


# ----- small helpers ---------------------------------------------------------------------------------
def _figure(width: float = 7.0, height: float = 4.0):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def _png(fig: Any) -> str:
    """The figure as a base64 PNG string (no pyplot state is touched)."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64: str, alt: str) -> str:
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}"><figcaption>' \
           f'{html.escape(alt)}</figcaption></figure>'


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _fmt(v: Any, spec: str = ".3f", unit: str = "") -> str:
    f = _num(v)
    if f is None:
        return "–" if v is None or isinstance(v, (int, float)) else html.escape(str(v))
    return format(f, spec) + unit


def _get(d: Any, dotted: str, default: Any = None) -> Any:
    cur = d
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return default
        cur = cur[part]
    return cur if cur is not None else default


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _section(title: str, *parts: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{''.join(p for p in parts if p)}</section>"


def _safe_plot(what: str, fn: Callable[[], str]) -> str:
    """Run one plot; a plot that cannot be drawn from the data becomes a note, not a failed report."""
    try:
        return fn()
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError) as exc:
        log.warning("report: cannot draw %s (%s: %s)", what, type(exc).__name__, exc)
        return f'<p class="note">Cannot draw {html.escape(what)} from these files ({html.escape(type(exc).__name__)}: ' \
               f'{html.escape(str(exc))}).</p>'


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#666}
.meta{color:#555;font-size:.92em}.note{color:#8a5300;background:#fff7e6;padding:.4em .7em;border-left:3px solid #f0a020}
.ok{color:#1a7f37;font-weight:600}.bad{color:#b42318;font-weight:600}code{background:#f4f4f4;padding:0 .25em}
"""


def _page(title: str, subtitle: str, body: str) -> str:
    from compactnet.spec import hardware_id

    made = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1><p class=\"meta\">{subtitle}</p>{body}"
            f"<hr><p class=\"meta\">Written by <code>compactnet report</code> at {made} on {html.escape(hardware_id())}. "
            "Self-contained: plots are embedded PNG images.</p></body></html>\n")


# ----- search report ---------------------------------------------------------------------------------
def trajectory_series(traj: Sequence[Mapping[str, Any]], report: Mapping[str, Any]) -> dict:
    """What the trajectory plot draws: predicted speedup per iteration (1.0 at iteration 0) and measurements.

    Speedups, not milliseconds: a recalibrated predictor changes its scale mid-search (and the
    device's milliseconds are another scale again); a ratio over the original keeps its meaning.
    Measurements flagged as taken on a busy machine are left out.

    Returns:
        ``{"x", "y", "labels"}`` (predicted speedup, validation top-1 on the scoring subset, iteration)
        and ``"measured"``: ``[{"speedup", "low", "high", "val_top1", "iteration"}]``.
    """
    kept = [r for r in traj if _num(r.get("predicted_speedup")) is not None and _num(r.get("val_top1")) is not None]
    xs = [float(r["predicted_speedup"]) for r in kept]
    ys = [float(r["val_top1"]) for r in kept]
    labels = [str(r.get("iteration", i + 1)) for i, r in enumerate(kept)]
    v0 = _num(_get(report, "original.val_subset_top1"))
    if v0 is not None:
        xs, ys, labels = [1.0] + xs, [v0] + ys, ["0"] + labels
    by_iter = {r.get("iteration"): float(r["val_top1"]) for r in kept}
    measured = []
    for m in report.get("measurements") or []:
        x = _num(m.get("speedup"))
        if x is None or m.get("busy"):
            continue
        measured.append({"speedup": x, "low": _num(m.get("low")) or x, "high": _num(m.get("high")) or x,
                         "val_top1": by_iter.get(m.get("iteration"), ys[-1] if ys else 0.0),
                         "iteration": m.get("iteration")})
    return {"x": xs, "y": ys, "labels": labels, "measured": measured}


def _trajectory_plot(traj: Sequence[Mapping[str, Any]], report: Mapping[str, Any]) -> str:
    ser = trajectory_series(traj, report)
    fig = _figure(7.5, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(ser["x"], ser["y"], "o-", color="tab:blue", label="after each iteration (predicted speedup)")
    for lab, x, y in zip(ser["labels"], ser["x"], ser["y"]):
        ax.annotate(lab, (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    meas = ser["measured"]
    if meas:  # each measured speedup has its original timed in the same run
        ax.errorbar([m["speedup"] for m in meas], [m["val_top1"] for m in meas],
                    xerr=[[max(0.0, m["speedup"] - m["low"]) for m in meas],
                          [max(0.0, m["high"] - m["speedup"]) for m in meas]],
                    fmt="s", color="tab:red", label="measured speedup by the protocol (95% interval)")
    target = _num(report.get("target_speedup"))
    if target is not None:
        ax.axvline(target, color="0.5", ls=":", lw=1, label=f"target {target:.2f}x")
    ax.set_xlabel("speedup over the original (x)")
    ax.set_ylabel("validation top-1 (%), scoring subset")
    ax.set_title("trimming trajectory (iteration 0 = original, 1.0x)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _img(_png(fig), "Speedup vs validation top-1 after each iteration (predicted; measured in red)")


def _channels_plot(original: Mapping[str, int], trimmed: Mapping[str, int]) -> str:
    names = list(original)
    fig = _figure(max(7.0, 0.38 * len(names) + 2), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    x = list(range(len(names)))
    ax.bar([i - 0.2 for i in x], [original[n] for n in names], width=0.4, color="0.7", label="original")
    ax.bar([i + 0.2 for i in x], [trimmed.get(n, original[n]) for n in names], width=0.4, color="tab:green",
           label="trimmed")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("channels")
    ax.set_title("channels per group (the paper's Figure 4)")
    ax.legend(fontsize=8)
    return _img(_png(fig), "Channels per group, original beside trimmed")


def _speedup_rows(report: Mapping[str, Any], traj: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Predicted and measured speedup at every protocol measurement (and the final one)."""
    pred_by_iter = {r.get("iteration"): _num(r.get("predicted_speedup")) for r in traj}
    p0 = _num(_get(report, "predicted.original_ms"))
    rows = []
    for m in report.get("measurements") or []:
        if _num(m.get("speedup")) is None:
            continue
        pred = pred_by_iter.get(m.get("iteration"))
        if pred is None and p0 and _num(m.get("predicted_ms")):
            pred = p0 / float(m["predicted_ms"])
        rows.append({"label": f"iteration {m.get('iteration', '?')}", "predicted": pred, "measured": float(m["speedup"]),
                     "low": _num(m.get("low")), "high": _num(m.get("high")), "reached": m.get("reached")})
    final = report.get("measured") or {}
    if _num(final.get("speedup")) is not None:
        rows.append({"label": "final (after retrain)", "predicted": _num(_get(report, "predicted.speedup")),
                     "measured": float(final["speedup"]), "low": _num(final.get("low")),
                     "high": _num(final.get("high")), "reached": final.get("reached")})
    return rows


def _speedup_plot(rows: Sequence[Mapping[str, Any]], target: float | None) -> str:
    fig = _figure(7.0, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    x = list(range(len(rows)))
    ax.plot([i - 0.1 for i in x], [r["predicted"] if r["predicted"] is not None else math.nan for r in rows], "o",
            color="tab:blue", label="predicted")
    lo = [r["measured"] - r["low"] if r["low"] is not None else 0.0 for r in rows]
    hi = [r["high"] - r["measured"] if r["high"] is not None else 0.0 for r in rows]
    ax.errorbar([i + 0.1 for i in x], [r["measured"] for r in rows], yerr=[lo, hi], fmt="s", color="tab:red",
                capsize=4, label="measured (95% bootstrap interval)")
    if target:
        ax.axhline(target, color="0.4", ls="--", lw=1, label=f"target {target:.2f}x")
    ax.set_xticks(x)
    ax.set_xticklabels([r["label"] for r in rows], fontsize=8, rotation=20, ha="right")
    ax.set_ylabel("speedup over the original (x)")
    ax.set_title("predicted vs measured speedup")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return _img(_png(fig), "Predicted vs measured speedup; a target is reached when the interval's lower bound is")


def _timings_plot(timings: Mapping[str, Any]) -> str:
    items = [(k[:-2] if k.endswith("_s") else k, float(v)) for k, v in timings.items()
             if k != "total_s" and _num(v) is not None]
    fig = _figure(7.0, 0.35 * len(items) + 1.4)
    ax = fig.add_subplot(1, 1, 1)
    ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="tab:purple")
    ax.set_xlabel("seconds")
    total = _num(timings.get("total_s"))
    ax.set_title("time per phase" + (f" (total {total:.1f} s)" if total is not None else ""))
    ax.grid(alpha=0.3, axis="x")
    return _img(_png(fig), "Time per phase (phases may overlap: iterations include candidates and fine-tuning)")


def search_html(result_dir: str | Path) -> str:
    """The HTML page of a search output folder.

    Raises:
        DataError: ``trajectory.json`` or ``report.json`` is not readable JSON of the expected form.
    """
    root = Path(result_dir)
    report: dict = {}
    if (root / "report.json").is_file():
        report = _read_json(root / "report.json")
        if not isinstance(report, dict):
            raise DataError(f"{root / 'report.json'} must hold a JSON object (the search report)")
    traj: list = []
    if (root / "trajectory.json").is_file():
        traj = _read_json(root / "trajectory.json")
        if not isinstance(traj, list):
            raise DataError(f"{root / 'trajectory.json'} must hold a JSON list (one record per iteration)")
        traj = [r for r in traj if isinstance(r, Mapping)]
    plat = report.get("platform") or {}
    if not isinstance(plat, Mapping):
        plat = {"key": str(plat)}
    plat_text = plat.get("describe") or plat.get("key") or "unknown platform"
    model = report.get("model") or "model"
    target = _num(report.get("target_speedup"))
    title = f"CompactNet search: {model} on {plat.get('key', '?')}"
    subtitle = " · ".join(html.escape(x) for x in (
        f"platform {plat_text}", f"target {target:.2f}x" if target else "",
        f"preset {_get(report, 'preset.name', '?')}", f"mode {report.get('mode', '?')}",
        f"importance {report.get('importance', '?')}", str(root)) if x)
    parts = []
    if not report:
        parts.append('<p class="note">No report.json yet (a running or interrupted search): the page shows the '
                     'trajectory so far.</p>')
    # ----- key figures
    if report:
        pred, meas = report.get("predicted") or {}, report.get("measured") or {}
        reached = meas.get("reached")
        verdict = ("" if not meas else ('<span class="ok">target reached</span>' if reached
                                        else '<span class="bad">target not reached</span>'))
        rows = [
            ("predicted latency (ms)", _fmt(pred.get("original_ms"), ".4f"), _fmt(pred.get("trimmed_ms"), ".4f")),
            ("measured latency (ms)", _fmt(meas.get("original_ms"), ".4f"), _fmt(meas.get("trimmed_ms"), ".4f")),
            ("validation top-1 (%)", _fmt(_get(report, "original.val_top1"), ".2f"),
             _fmt(_get(report, "trimmed.val_top1"), ".2f")),
            ("test top-1 (%)", _fmt(_get(report, "original.test_top1"), ".2f"),
             _fmt(_get(report, "trimmed.test_top1"), ".2f")),
            ("parameters", _fmt(_get(report, "original.params"), ",.0f"), _fmt(_get(report, "trimmed.params"), ",.0f")),
            ("FLOPs", _fmt(_get(report, "original.flops"), ",.0f"), _fmt(_get(report, "trimmed.flops"), ",.0f")),
        ]
        speed = (f"<p>Predicted speedup <b>{_fmt(pred.get('speedup'), '.2f', 'x')}</b>. "
                 + (f"Measured speedup <b>{_fmt(meas.get('speedup'), '.2f', 'x')}</b>, 95% interval "
                    f"[{_fmt(meas.get('low'), '.2f')}, {_fmt(meas.get('high'), '.2f')}] against the target "
                    f"{_fmt(target, '.2f', 'x')}: {verdict}." if meas else
                    "Not measured by the protocol (predicted figures only).")
                 + (f" Stopped: {html.escape(str(report['stop_reason']))}." if report.get("stop_reason") else "")
                 + "</p>")
        cmd = f"<p class=\"meta\">Command: <code>{html.escape(str(report['command']))}</code></p>" \
            if report.get("command") else ""
        data = report.get("data") or {}
        data_line = (f"<p class=\"meta\">Data: {html.escape(str(data.get('copy') or '?'))} copy, test hash "
                     f"<code>{html.escape(str(data.get('test_hash') or '?'))}</code>.</p>") if data else ""
        parts.append(_section("Result", _table(["", "original", "trimmed"], rows), speed, cmd, data_line))
    # ----- trajectory
    if traj:
        parts.append(_section("Latency vs validation accuracy per iteration",
                              _safe_plot("the trajectory", lambda: _trajectory_plot(traj, report))))
    # ----- channels
    original = _get(report, "channels.original") or {}
    trimmed = _get(report, "channels.trimmed") or (traj[-1].get("channels") if traj else {}) or {}
    if not original and traj:
        first = traj[0]
        original = dict(first.get("channels") or {})
        if first.get("group") in original and first.get("width_before") is not None:
            original[first["group"]] = first["width_before"]
        for r in traj[1:]:  # a group's width before its first trim is the original width
            g = r.get("group")
            if g in original and all(q.get("group") != g for q in traj[:traj.index(r)]):
                original[g] = r.get("width_before", original[g])
    if original:
        rows = [(html.escape(g), w, trimmed.get(g, w), f"{100.0 * trimmed.get(g, w) / w:.0f}%" if w else "–")
                for g, w in original.items()]
        parts.append(_section("Channels per group",
                              _safe_plot("the channels", lambda: _channels_plot(original, trimmed)),
                              _table(["group", "original", "trimmed", "kept"], rows)))
    # ----- speedups
    srows = _speedup_rows(report, traj)
    if srows:
        table = _table(["when", "predicted", "measured", "95% interval", "target reached"],
                       [(html.escape(r["label"]), _fmt(r["predicted"], ".2f", "x"), _fmt(r["measured"], ".2f", "x"),
                         f"[{_fmt(r['low'], '.2f')}, {_fmt(r['high'], '.2f')}]",
                         {True: "yes", False: "no"}.get(r["reached"], "–")) for r in srows])
        parts.append(_section("Predicted vs measured speedup",
                              _safe_plot("the speedups", lambda: _speedup_plot(srows, target)), table))
    refused = [m for m in report.get("measurements") or [] if m.get("refused")]
    if refused:
        parts.append('<p class="note">Refused measurements (busy machine): '
                     + "; ".join(html.escape(str(m["refused"])) for m in refused) + "</p>")
    # ----- timings
    timings = report.get("timings") or {}
    if timings:
        parts.append(_section("Time per phase", _safe_plot("the timings", lambda: _timings_plot(timings)),
                              _table(["phase", "seconds"], [(html.escape(k), _fmt(v, ".1f"))
                                                           for k, v in timings.items()])))
    # ----- iteration table
    if traj:
        rows = [(r.get("iteration", i + 1), html.escape(str(r.get("phase", ""))), html.escape(str(r.get("group", ""))),
                 f"{r.get('width_before', '?')} → {r.get('width', '?')}", _fmt(r.get("predicted_ms"), ".4f"),
                 _fmt(r.get("predicted_speedup"), ".2f", "x"), _fmt(r.get("val_top1"), ".2f"),
                 len(r.get("candidates") or []), _fmt(r.get("seconds"), ".1f"))
                for i, r in enumerate(traj)]
        parts.append(_section("Iterations", _table(["#", "phase", "group trimmed", "width", "predicted ms",
                                                    "predicted speedup", "val top-1 %", "candidates", "seconds"], rows)))
    return _page(title, subtitle, "".join(parts))


# ----- profiling report ------------------------------------------------------------------------------
def _side_json(folder: Path) -> dict[str, list[tuple[str, Any]]]:
    """Noise floors, Figure-7 checks and profiling-run summaries found in JSON files of ``folder``."""
    found: dict[str, list[tuple[str, Any]]] = {"noise": [], "figure7": [], "runs": []}
    for f in sorted(folder.glob("*.json")):
        try:
            obj = _read_json(f)
        except DataError as exc:
            log.warning("report: skipping %s (%s)", f.name, exc)
            continue
        items = obj if isinstance(obj, list) else [obj]
        for it in items:
            if not isinstance(it, Mapping):
                continue
            rows = it.get("rows")
            if isinstance(rows, list) and rows and isinstance(rows[0], Mapping) and "summed_ms" in rows[0]:
                found["figure7"].append((f.name, it))
            elif "rel_spread" in it and "medians_ms" in it:
                found["noise"].append((f.name, it))
            elif "noise_floor" in it and "key" in it:  # a platform_table() row
                found["noise"].append((f.name, {"platform": it["key"], "hardware": it.get("hardware"),
                                                "rel_spread": it.get("noise_floor"),
                                                "median_ms": it.get("noise_floor_median_ms"), "medians_ms": [],
                                                "note": it.get("note", "")}))
            elif "strategy" in it and "stopped_by" in it:
                found["runs"].append((f.name, it))
    return found


def _platform_label(key: str, context: str) -> str:
    return f"{key} ({context})" if context else key


def _distribution_plot(by_platform: Mapping[str, Mapping[str, list[float]]]) -> str:
    plats = list(by_platform)
    fig = _figure(max(7.0, 3.6 * len(plats)), 4.0)
    ax0 = None
    for i, p in enumerate(plats):
        ax = fig.add_subplot(1, len(plats), i + 1, sharey=ax0)
        ax0 = ax0 or ax
        kinds = sorted(by_platform[p])
        data = [by_platform[p][k] for k in kinds]
        ax.boxplot(data, showfliers=True)
        ax.set_xticks(range(1, len(kinds) + 1))
        ax.set_xticklabels([f"{k}\n(n={len(v)})" for k, v in zip(kinds, data)], fontsize=8)
        ax.set_yscale("log")
        ax.set_title(p, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        if i == 0:
            ax.set_ylabel("latency (ms, log scale)")
    return _img(_png(fig), "Latency distribution per layer kind and platform")


def _macs_plot(points: Mapping[str, Mapping[str, tuple[list[float], list[float]]]]) -> str:
    plats = list(points)
    fig = _figure(max(7.0, 3.6 * len(plats)), 4.0)
    for i, p in enumerate(plats):
        ax = fig.add_subplot(1, len(plats), i + 1)
        for kind, (macs, ms) in sorted(points[p].items()):
            ax.scatter([max(m, 1.0) for m in macs], ms, s=9, alpha=0.7, label=kind)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("MACs")
        if i == 0:
            ax.set_ylabel("latency (ms)")
        ax.set_title(p, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _img(_png(fig), "Latency vs multiply-accumulates per layer kind (alignment penalties show as scatter)")


def _samples_plot(rows: Sequence[Mapping[str, Any]]) -> str:
    fig = _figure(7.0, 0.45 * len(rows) + 1.4)
    ax = fig.add_subplot(1, 1, 1)
    labels = [_platform_label(r["key"], r["context"]) for r in rows][::-1]
    ax.barh(labels, [r["distinct"] for r in rows][::-1], color="tab:blue", label="distinct configurations")
    ax.barh(labels, [r["rows"] - r["distinct"] for r in rows][::-1], left=[r["distinct"] for r in rows][::-1],
            color="tab:orange", label="repeats")
    ax.set_xlabel("samples")
    ax.set_title("samples per platform")
    ax.legend(fontsize=8)
    return _img(_png(fig), "Samples per platform and measuring context")


def _figure7_plot(name: str, rep: Mapping[str, Any]) -> str:
    rows = rep["rows"]
    n = [int(r["units"]) for r in rows]
    fig = _figure(7.5, 4.0)
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(n, [float(r["measured_ms"]) for r in rows], "o-", label="network measured")
    ax.plot(n, [float(r["summed_ms"]) for r in rows], "s--", label="sum of profiled units")
    ax.set_xlabel("units in the prefix")
    ax.set_ylabel("latency (ms)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax2 = fig.add_subplot(1, 2, 2)
    ax2.bar(n, [100.0 * float(r["error"]) for r in rows], color="tab:gray")
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_xlabel("units in the prefix")
    ax2.set_ylabel("(sum - measured) / measured (%)")
    ax2.grid(alpha=0.3, axis="y")
    key = _get(rep, "platform.key", "?")
    fig.suptitle(f"Figure-7 check, {key}, units in {rep.get('context', '?')}", fontsize=10)
    return _img(_png(fig), f"Figure-7 check from {name}: do the profiled units add up to the network?")


def _noise_plot(items: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    with_values = [(n, it) for n, it in items if it.get("medians_ms")]
    fig = _figure(7.0, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    for i, (_n, it) in enumerate(with_values):
        meds = [float(v) for v in it["medians_ms"]]
        med = float(it.get("median_ms") or sorted(meds)[len(meds) // 2])
        ax.plot([i] * len(meds), [100.0 * (v - med) / med for v in meds], "o", alpha=0.6)
    ax.set_xticks(range(len(with_values)))
    ax.set_xticklabels([str(it.get("platform", n)) for n, it in with_values], fontsize=8)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("repeat median vs median (%)")
    ax.set_title("noise floor: one configuration measured repeatedly")
    ax.grid(alpha=0.3, axis="y")
    return _img(_png(fig), "Noise floor per platform")


def profile_html(path: str | Path) -> str:
    """The HTML page of a profiling run: a sample store file, or a folder holding one (and JSON beside it).

    Raises:
        CompactNetError: No sample store at ``path``.
    """
    from compactnet.profilers.store import SampleStore

    store_path = find_sample_store(path)
    if store_path is None:
        raise CompactNetError(f"{path} holds no sample store (an SQLite file with a 'measurements' table)")
    folder = Path(path) if Path(path).is_dir() else store_path.parent
    with SampleStore(store_path) as store:
        plats = sorted(store.platforms(), key=lambda r: (r["key"], r["context"], r["hardware"]))
        measurements = store.measurements()
    by_platform: dict[str, dict[str, list[float]]] = {}
    macs: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    loads: dict[str, list[float]] = {}
    for m in measurements:
        label = _platform_label(m.platform.key, m.context)
        by_platform.setdefault(label, {}).setdefault(m.layer.op, []).append(float(m.latency.value_ms))
        xs, ys = macs.setdefault(label, {}).setdefault(m.layer.op, ([], []))
        xs.append(float(m.layer.macs))
        ys.append(float(m.latency.value_ms))
        if m.load == m.load:
            loads.setdefault(label, []).append(float(m.load))
    side = _side_json(folder)
    title = f"CompactNet profiling run: {', '.join(sorted({r['key'] for r in plats})) or 'empty store'}"
    subtitle = html.escape(f"sample store {store_path} · {len(measurements)} samples · "
                           f"{len(plats)} platform/context combination(s)")
    parts = []
    if plats:
        rows = []
        for r in plats:
            label = _platform_label(r["key"], r["context"])
            ld = loads.get(label, [])
            busy = sum(1 for v in ld if v > BUSY_LOAD)
            rows.append((html.escape(r["key"]), html.escape(r["context"]), html.escape(r["hardware"]),
                         html.escape(r["runtime_version"]), r["rows"], r["distinct"],
                         _fmt(max(ld), ".2f") if ld else "–",
                         f'<span class="bad">{busy}</span>' if busy else "0"))
        parts.append(_section("Samples per platform",
                              _safe_plot("the sample counts", lambda: _samples_plot(plats)),
                              _table(["platform", "context", "hardware", "runtime", "samples", "distinct",
                                      "max load", f"taken under load > {BUSY_LOAD}"], rows)))
        kinds = sorted({m.layer.op for m in measurements})
        stats = []
        for label, per_kind in by_platform.items():
            for k in kinds:
                v = sorted(per_kind.get(k, []))
                if v:
                    stats.append((html.escape(label), html.escape(k), len(v), _fmt(v[0], ".4f"),
                                  _fmt(v[len(v) // 2], ".4f"), _fmt(v[-1], ".4f")))
        parts.append(_section("Latency per layer kind",
                              _safe_plot("the distributions", lambda: _distribution_plot(by_platform)),
                              _table(["platform", "kind", "samples", "min ms", "median ms", "max ms"], stats),
                              _safe_plot("latency vs MACs", lambda: _macs_plot(macs))))
    else:
        parts.append('<p class="note">The sample store is empty.</p>')
    if side["noise"]:
        rows = [(html.escape(str(it.get("platform", ""))), html.escape(str(it.get("hardware") or "")),
                 _fmt(it.get("median_ms"), ".4f"), _fmt(_num(it.get("rel_spread")) and 100 * it["rel_spread"], ".1f", "%"),
                 len(it.get("medians_ms") or []), html.escape(str(it.get("note", "")))) for _n, it in side["noise"]]
        plot = _safe_plot("the noise floor", lambda: _noise_plot(side["noise"])) \
            if any(it.get("medians_ms") for _n, it in side["noise"]) else ""
        parts.append(_section("Noise floor", plot, _table(["platform", "hardware", "median ms",
                                                            "spread (max-min)/median", "repeats", "note"], rows)))
    for name, rep in side["figure7"]:
        parts.append(_section(f"Figure-7 check ({name})",
                              _safe_plot("the Figure-7 check", lambda rep=rep, name=name: _figure7_plot(name, rep)),
                              f"<p>Mean |error| {_fmt(_num(rep.get('mean_abs_error')) and 100 * rep['mean_abs_error'], '.1f', '%')}, "
                              f"max |error| {_fmt(_num(rep.get('max_abs_error')) and 100 * rep['max_abs_error'], '.1f', '%')}.</p>"))
    if side["runs"]:
        rows = [(html.escape(str(_get(r, "platform.key", "?"))), html.escape(str(r.get("strategy"))),
                 html.escape(str(r.get("context", ""))), r.get("measured", "–"), r.get("skipped", "–"),
                 _fmt(r.get("wall_s"), ".1f"), _fmt(r.get("seconds_per_sample"), ".3f"),
                 html.escape(str(r.get("stopped_by", "")))) for _n, r in side["runs"]]
        parts.append(_section("Profiling runs", _table(["platform", "strategy", "context", "measured", "skipped",
                                                        "wall s", "s/sample", "stopped by"], rows)))
    return _page(title, subtitle, "".join(parts))


# ----- entry points ----------------------------------------------------------------------------------
def render_report(result_dir: str | Path, kind: str | None = None) -> tuple[str, str]:
    """``(kind, html)`` of a search output folder or a profiling run.

    Args:
        result_dir: Search output folder, sample store file, or folder holding a sample store.
        kind: ``search`` or ``profile`` (default: :func:`detect_kind`).
    """
    if kind is None:
        kind = detect_kind(result_dir)
    elif kind not in KINDS:
        raise bad_value("kind", "one of " + ", ".join(KINDS), kind)
    if not Path(result_dir).exists():
        raise bad_value("RESULT_DIR", "an existing folder or file", str(result_dir))
    return kind, (search_html(result_dir) if kind == "search" else profile_html(result_dir))


def write_report(result_dir: str | Path, out_path: str | Path | None = None, kind: str | None = None) -> Path:
    """Write the self-contained HTML report of a search or a profiling run.

    Args:
        result_dir: A ``compactnet optimize`` output folder, a sample store file, or a folder
            holding a sample store (and optionally noise-floor / Figure-7 / run JSON files).
        out_path: HTML file to write (default: ``RESULT_DIR/report.html``; for a store file given
            directly, ``<store stem>.report.html`` beside it).
        kind: Force ``search`` or ``profile`` instead of detecting it.

    Returns:
        The path written.

    Raises:
        CompactNetError: ``result_dir`` is neither kind of run, or its files are unreadable.
    """
    src = Path(result_dir)
    kind, page = render_report(src, kind)
    if out_path is None:
        out = src / "report.html" if src.is_dir() else src.with_name(src.stem + ".report.html")
    else:
        out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    log.info("wrote the %s report of %s to %s", kind, src, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m compactnet.report RESULT_DIR [OUT.html]`` (the same as ``compactnet report``)."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if not 1 <= len(args) <= 2 or args[0] in ("-h", "--help"):
        print("usage: python -m compactnet.report RESULT_DIR [OUT.html]", file=sys.stderr)
        return 2
    try:
        out = write_report(args[0], args[1] if len(args) > 1 else None)
    except CompactNetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
