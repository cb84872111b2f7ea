"""Plain-text views of zoo entries for ``compactnet zoo list`` and ``zoo info``."""

from __future__ import annotations

from typing import Iterable

from compactnet.zoo.entry import ZooEntry

__all__ = ["format_table", "format_entry", "format_latency", "format_speedup", "format_size"]


def format_latency(entry: ZooEntry) -> str:
    """Measured latency with its spread and estimator, e.g. ``0.612 ms [0.601-0.630] min``; ``-`` if none.

    Entries published before the minimum rule read ``median``: their figure is a median of round
    medians and is not comparable with a ``min`` figure.
    """
    lat = entry.metrics.latency
    if lat is None:
        return "-"
    text = f"{lat.value_ms:.3f} ms"
    if lat.low_ms == lat.low_ms and lat.high_ms == lat.high_ms:  # not NaN
        text += f" [{lat.low_ms:.3f}-{lat.high_ms:.3f}]"
    return text + f" {lat.estimator}"


def format_speedup(entry: ZooEntry) -> str:
    """Measured speedup with its 95% interval, e.g. ``1.83x [1.78-1.88]``; ``-`` if none."""
    m = entry.metrics
    if m.speedup is None:
        return "-"
    text = f"{m.speedup:.2f}x"
    if m.speedup_low is not None and m.speedup_high is not None:
        text += f" [{m.speedup_low:.2f}-{m.speedup_high:.2f}]"
    return text


def format_size(n_bytes: int) -> str:
    """Human-readable size (binary units)."""
    size = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover


def format_table(entries: Iterable[ZooEntry]) -> str:
    """A fixed-width table: name, hardware, top-1, latency, speedup, size."""
    rows = [("NAME", "HARDWARE", "TOP-1 %", "LATENCY (measured)", "SPEEDUP (95% CI)", "SIZE")]
    for e in entries:
        top1 = f"{e.metrics.top1:.2f}" if e.metrics.top1 is not None else "-"
        rows.append((e.name, _short(e.hardware, 28), top1, format_latency(e), format_speedup(e),
                     format_size(e.size_bytes)))
    if len(rows) == 1:
        return "(no entries)"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = {2, 5}
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in rows]
    return "\n".join(lines)


def format_entry(entry: ZooEntry) -> str:
    """A multi-line description of one entry (``zoo info``)."""
    m, inp = entry.metrics, entry.input
    lines = [
        entry.name,
        f"  architecture   {entry.architecture} on {entry.dataset}",
        f"  platform       {entry.platform} ({entry.hardware}"
        + (f", runtime {m.runtime_version}" if m.runtime_version else "") + ")",
        "  test top-1     " + (f"{m.top1:.2f}% ({m.data_copy} copy, test hash {m.test_hash})"
                                if m.top1 is not None else "-"),
        f"  latency        {format_latency(entry)}" + (f", measured {m.measured_at}" if m.measured_at else ""),
        f"  speedup        {format_speedup(entry)}" + (f" vs {m.baseline}" if m.baseline else ""),
    ]
    if m.latency is not None and m.latency.typical():
        lines.append(f"  under load     {m.latency.typical()}")
    if m.predicted_latency is not None:
        lines.append(f"  predicted      {m.predicted_latency.value_ms:.3f} ms")
    lines += [
        f"  input          {inp.name} {list(inp.shape)} {inp.dtype} {inp.layout} {inp.color}, pixels scaled to "
        f"[{inp.value_range[0]:g}, {inp.value_range[1]:g}], mean {list(inp.mean)}, std {list(inp.std)}",
        f"  classes        {', '.join(inp.classes)}",
        f"  onnx           {entry.onnx.path} ({format_size(entry.onnx.size)}, opset {entry.onnx.opset}, "
        f"IR {entry.onnx.ir_version}, sha256 {entry.onnx.sha256[:16]}...)",
        f"  weights        {entry.weights.path} ({format_size(entry.weights.size)}, sha256 "
        f"{entry.weights.sha256[:16]}...)",
        f"  license        {entry.license}",
    ]
    if entry.provenance.command:
        lines.append(f"  made by        {entry.provenance.command}")
    if entry.provenance.publish_command:
        lines.append(f"  published by   {entry.provenance.publish_command}")
    return "\n".join(lines)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."
