"""Search outputs: the trajectory plot (the paper's Figure 4) and report.json / report.md."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from compactnet.search._io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


def plot_trajectory(trajectory: Sequence[Mapping[str, Any]], original: Mapping[str, int],
                    final: Mapping[str, int], path: str | Path, l0_ms: float | None = None,
                    original_val: float | None = None,
                    measurements: Sequence[Mapping[str, Any]] = ()) -> Path:
    """Two panels (the paper's Figure 4): speedup vs validation top-1 per iteration; channels per group.

    Args:
        trajectory: The search's per-iteration records.
        original: Width per search group before the search.
        final: Width per search group after it.
        path: PNG to write.
        l0_ms: Predicted latency of the original network (unused; kept for callers).
        original_val: The original's validation top-1 on the scoring subset (plotted as iteration 0).
        measurements: Protocol measurements (``speedup``, ``low``, ``high``) drawn beside the predictions.
    """
    # a Figure with its own canvas: no pyplot state, and the caller's (notebook's) backend is left alone
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5))
    ax1, ax2 = fig.subplots(1, 2)
    # speedups, not milliseconds: a recalibrated predictor changes its scale mid-search, a ratio it keeps
    xs = [r["predicted_speedup"] for r in trajectory]
    ys = [r["val_top1"] for r in trajectory]
    labels = [str(r["iteration"]) for r in trajectory]
    if original_val is not None:
        xs, ys, labels = [1.0] + xs, [original_val] + ys, ["0"] + labels
    ax1.plot(xs, ys, "o-", color="tab:blue", label="predicted speedup")
    for lab, x, y in zip(labels, xs, ys):
        ax1.annotate(lab, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    meas = [m for m in measurements if m.get("speedup")]
    if meas:
        by_iter = {r["iteration"]: r["val_top1"] for r in trajectory}
        mx = [m["speedup"] for m in meas]
        my = [by_iter.get(m["iteration"], ys[-1] if ys else 0) for m in meas]
        err = [[m["speedup"] - m["low"] for m in meas], [m["high"] - m["speedup"] for m in meas]]
        ax1.errorbar(mx, my, xerr=err, fmt="s", color="tab:red", label="measured speedup (95% interval)")
    ax1.set_xlabel("speedup over the original (x)")
    ax1.set_ylabel("validation top-1 (%), scoring subset")
    ax1.set_title("trimming trajectory")
    ax1.legend(fontsize=8)
    names = list(original)
    x = range(len(names))
    ax2.bar([i - 0.2 for i in x], [original[n] for n in names], width=0.4, label="original", color="0.7")
    ax2.bar([i + 0.2 for i in x], [final.get(n, original[n]) for n in names], width=0.4, label="trimmed",
            color="tab:green")
    ax2.set_xticks(list(x))
    ax2.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax2.set_ylabel("channels")
    ax2.set_title("channels per group")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(p)
    return p


def _fmt(v: Any, spec: str = ".3f") -> str:
    if v is None:
        return "-"
    try:
        return format(float(v), spec)
    except (TypeError, ValueError):
        return str(v)


def _estimator(meas: Mapping[str, Any]) -> str:
    """The estimator of a report's final measurement (``median`` for reports before the minimum rule)."""
    detail = meas.get("detail") if isinstance(meas.get("detail"), Mapping) else {}
    return str(detail.get("estimator") or ("median" if meas else "-"))


def _typical_row(meas: Mapping[str, Any]) -> list[str]:
    """The table row with the median / 90th percentile of all timed calls (typical under load), if recorded."""
    detail = meas.get("detail") if isinstance(meas.get("detail"), Mapping) else {}
    lats = detail.get("latencies") or []
    if len(lats) < 2 or not all(isinstance(l, Mapping) and l.get("p50_ms") is not None for l in lats[:2]):
        return []
    cells = [f"{_fmt(l['p50_ms'])} / {_fmt(l.get('p90_ms'))}" for l in lats[:2]]
    return [f"| typical under load (ms, p50 / p90) | {cells[0]} | {cells[1]} |"]


def _comparison_lines(meas: Mapping[str, Any]) -> list[str]:
    """The final decision's repeated comparisons (drift guard), one line each."""
    comps = meas.get("comparisons") if isinstance(meas, Mapping) else None
    if not comps:
        return []
    lines = ["", f"Final decision: {meas.get('rule', 'worst lower bound')} (target reached only if the worst lower "
             "bound meets it):"]
    for c in comps:
        if "refused" in c:
            lines.append(f"- comparison {c.get('repeat')}: refused ({c['refused']})")
        else:
            lines.append(f"- comparison {c.get('repeat')}: {_fmt(c.get('speedup'), '.2f')}x "
                         f"[{_fmt(c.get('low'), '.2f')}, {_fmt(c.get('high'), '.2f')}], original "
                         f"{_fmt(c.get('original_ms'))} ms, trimmed {_fmt(c.get('trimmed_ms'))} ms"
                         + (" (busy machine)" if c.get("busy") else ""))
    return lines


def _snapshot_lines(snaps: Any) -> list[str]:
    """One line per snapshot (retrained ones with their figures and folder)."""
    if not snaps:
        return []
    lines = ["", "Snapshots (measured when the lower bound crossed the threshold):"]
    for d in snaps:
        m = d.get("measured") or {}
        text = (f"- {d.get('tag')}: iteration {d.get('iteration')}, measured {_fmt(m.get('speedup'), '.2f')}x "
                f"[{_fmt(m.get('low'), '.2f')}, {_fmt(m.get('high'), '.2f')}]")
        if d.get("retrained"):
            text += (f"; retrained: val top-1 {_fmt(d.get('val_top1_pre_retrain'), '.2f')} -> "
                     f"{_fmt(d.get('val_top1_retrained'), '.2f')}%, test top-1 {_fmt(d.get('test_top1'), '.2f')}%, "
                     f"publishable folder {d.get('path')}")
        else:
            text += "; not retrained"
        lines.append(text)
    return lines


def _stop_text(r: Mapping[str, Any]) -> str:
    """Why the search stopped, in words (also when the loop reached the target and the final decision did not)."""
    if r.get("stop_reason"):
        return str(r["stop_reason"])
    loop = [m for m in (r.get("measurements") or []) if isinstance(m, Mapping)]
    last = loop[-1] if loop else None
    if last is None:
        return "schedule done (never measured)"
    seen = (f"{_fmt(last.get('speedup'), '.2f')}x [{_fmt(last.get('low'), '.2f')}, {_fmt(last.get('high'), '.2f')}] "
            f"after iteration {last.get('iteration')}")
    if not last.get("reached"):
        return f"schedule done; the loop's last measurement was {seen}"
    final = r.get("measured") or {}
    if final and not final.get("reached"):
        return (f"the loop's measurement reached the target ({seen}); the final decision's repeated comparisons "
                "of the retrained network did not (same architecture: the difference is timing noise)")
    return f"target reached ({seen})"


def write_report(report: Mapping[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.json`` and a short ``report.md``."""
    out = Path(out_dir)
    jpath = atomic_write_json(out / "report.json", dict(report))
    r = report
    pred, meas = r.get("predicted", {}), r.get("measured") or {}
    lines = [
        f"# CompactNet search: {r.get('model')} on {r.get('platform', {}).get('key', '?')}",
        "",
        f"Platform: {r.get('platform', {}).get('describe', '')}  ",
        f"Target: {_fmt(r.get('target_speedup'), '.2f')}x, mode {r.get('mode')}, preset {r.get('preset', {}).get('name')}, "
        f"importance {r.get('importance')}, stopped: {_stop_text(r)}",
        "",
        "| | original | trimmed |",
        "|---|---|---|",
        f"| predicted latency (ms) | {_fmt(pred.get('original_ms'))} | {_fmt(pred.get('trimmed_ms'))} |",
        f"| measured latency (ms, {_estimator(meas)}) | {_fmt(meas.get('original_ms'))} | "
        f"{_fmt(meas.get('trimmed_ms'))} |",
        *_typical_row(meas),
        f"| validation top-1 (%) | {_fmt(r.get('original', {}).get('val_top1'), '.2f')} | "
        f"{_fmt(r.get('trimmed', {}).get('val_top1'), '.2f')} |",
        f"| test top-1 (%) | {_fmt(r.get('original', {}).get('test_top1'), '.2f')} | "
        f"{_fmt(r.get('trimmed', {}).get('test_top1'), '.2f')} |",
        f"| parameters | {r.get('original', {}).get('params', '-')} | {r.get('trimmed', {}).get('params', '-')} |",
        f"| FLOPs | {r.get('original', {}).get('flops', '-')} | {r.get('trimmed', {}).get('flops', '-')} |",
        "",
        f"Predicted speedup: {_fmt(pred.get('speedup'), '.2f')}x. "
        + (f"Measured speedup: {_fmt(meas.get('speedup'), '.2f')}x, 95% interval [{_fmt(meas.get('low'), '.2f')}, "
           f"{_fmt(meas.get('high'), '.2f')}], target {'reached' if meas.get('reached') else 'not reached'}."
           + (" FLAGGED: taken while other processes loaded the machine; do not publish it." if meas.get("busy") else "")
           if meas else "Not measured."),
        *_comparison_lines(meas),
        *_snapshot_lines(r.get("snapshots")),
        "",
        "Channels per group (original -> trimmed): "
        + ", ".join(f"{k} {v} -> {r.get('channels', {}).get('trimmed', {}).get(k, v)}"
                    for k, v in r.get("channels", {}).get("original", {}).items()),
        "",
        "Time per phase (s): " + ", ".join(f"{k} {_fmt(v, '.1f')}" for k, v in r.get("timings", {}).items()),
        "",
        f"Candidate scoring: {_fmt(r.get('candidate_seconds_mean'), '.1f')} s per candidate on average.",
        "",
    ]
    mpath = atomic_write_text(out / "report.md", "\n".join(lines))
    return jpath, mpath


__all__ = ["plot_trajectory", "write_report"]
