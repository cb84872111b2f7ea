"""Static HTML catalogue of a zoo index: one table per platform and an accuracy-vs-latency plot.

The page (``index.html`` beside ``index.json``) is self-contained: the plot is a base64 PNG drawn
on a :class:`matplotlib.figure.Figure` (its own Agg canvas, the global backend untouched), links
point at the files relative to the page, so any static file server (or
:func:`compactnet.zoo.serve.serve`) can host the folder.
"""

from __future__ import annotations

import base64
import html
import io
import os
from datetime import datetime, timezone
from pathlib import Path

from compactnet.zoo.index import ZooIndex
from compactnet.zoo.listing import format_latency, format_size, format_speedup

__all__ = ["render_catalogue", "write_catalogue", "plot_png"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:80em;color:#222}
table{border-collapse:collapse;margin-bottom:2em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}code{font-size:90%}
.note{color:#666;font-size:90%}
"""


def plot_png(index: ZooIndex) -> bytes | None:
    """Accuracy vs measured latency, one series per platform and hardware, as PNG bytes (None if nothing to plot)."""
    points: dict[str, list[tuple[float, float, str]]] = {}
    for e in index:
        if e.metrics.latency is not None and e.metrics.top1 is not None:
            points.setdefault(f"{e.platform} ({e.hardware})", []).append((e.metrics.latency_ms, e.metrics.top1, e.tag))
    if not points:
        return None
    from matplotlib.figure import Figure  # no pyplot, no global backend switch: the caller's backend is untouched

    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    ax = fig.add_subplot()
    for (platform, pts), marker in zip(sorted(points.items()), "osD^v<>p*h"):
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, linestyle="-", label=platform)
        for x, y, tag in pts:
            ax.annotate(tag, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("measured latency, ms (batch 1)")
    ax.set_ylabel("test top-1, %")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def render_catalogue(index: ZooIndex, title: str = "CompactNet model zoo") -> str:
    """The catalogue page as an HTML string."""
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{esc(title)}</h1>",
             f"<p class='note'>{len(index)} entries; generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}. "
             "Latency: the protocol's estimator (min: minimum over timed calls, median over sessions; entries "
             "labelled median predate that rule), batch 1, one thread, measured interleaved with the untrimmed "
             "baseline; speedup with its 95% bootstrap interval. Pull a model with "
             "<code>compactnet zoo pull NAME --index URL-of-index.json</code>.</p>"]
    png = plot_png(index)
    if png is not None:
        parts.append("<h2>Accuracy vs latency</h2><img alt='test top-1 vs measured latency' "
                     f"src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>")
    for platform in sorted(index.platforms):
        entries = sorted(index.filter(platform=platform),
                         key=lambda e: (e.metrics.latency_ms if e.metrics.latency_ms is not None else float("inf")))
        parts.append(f"<h2>{esc(platform)}</h2><table><tr><th>name</th><th>hardware</th><th>test top-1 %</th>"
                     "<th>measured latency</th><th>speedup (95% CI)</th><th>size</th><th>files</th></tr>")
        for e in entries:
            top1 = f"{e.metrics.top1:.2f}" if e.metrics.top1 is not None else "-"
            links = (f"<a href='{esc(e.onnx.path, quote=True)}'>onnx</a> "
                     f"<a href='{esc(e.weights.path, quote=True)}'>safetensors</a>")
            parts.append(f"<tr><td><code>{esc(e.name)}</code></td><td>{esc(e.hardware)}</td>"
                         f"<td class='n'>{top1}</td><td class='n'>{esc(format_latency(e))}</td>"
                         f"<td class='n'>{esc(format_speedup(e))}</td><td class='n'>{format_size(e.size_bytes)}</td>"
                         f"<td>{links}</td></tr>")
        parts.append("</table>")
    if not len(index):
        parts.append("<p>No entries yet.</p>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_catalogue(index: ZooIndex, path: str | os.PathLike, title: str = "CompactNet model zoo") -> Path:
    """Write the catalogue page atomically; ``path`` is a file or a folder (then ``index.html`` in it)."""
    p = Path(path)
    if p.is_dir() or not p.suffix:
        p = p / "index.html"
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(render_catalogue(index, title), encoding="utf-8")
    os.replace(tmp, p)
    return p
