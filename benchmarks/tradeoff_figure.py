"""Test top-1 vs measured speedup across the Table-5 cells, one panel per runtime, and the README table.

Reads the ``report.json`` of every ``baselines_bench.py`` cell given (one runtime and target each:
the search, random filter selection in the same loop, and any of uniform width scaling, the
FLOPs-driven loop and the control, all measured in one interleaved protocol run beside the
unpruned original) and draws, per runtime, each variant's test top-1 against its measured speedup
with the 95% interval as a horizontal bar; the unpruned baseline and the control are marked. It
prints the Table-5 grid as Markdown (``--markdown`` writes it to a file too).

No timing happens here.

Usage::

    python benchmarks/tradeoff_figure.py results/table5/c-* \\
        --figure results/machine-c/figures/accuracy-vs-speedup.png --markdown results/table5/table5.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: Variant -> (label, colour, marker); the order is the legend's.
STYLE = {
    "search": ("CompactNet search", "tab:blue", "o"),
    "random": ("random filters, same loop", "tab:orange", "s"),
    "uniform": ("uniform width scaling", "tab:green", "^"),
    "flops": ("loop driven by FLOPs", "tab:purple", "D"),
    "control": ("control (unpruned, same training)", "tab:red", "*"),
}


def load_cells(folders: list[Path]) -> list[dict]:
    """The cells' reports (folders without a finished ``report.json`` are skipped with a note)."""
    cells = []
    for f in folders:
        p = Path(f) / "report.json"
        if not p.is_file():
            print(f"note: {f} has no report.json (cell not finished): skipped", file=sys.stderr)
            continue
        rep = json.loads(p.read_text())
        rep["folder"] = str(f)
        rep["key"] = rep["settings"]["platform"]
        cells.append(rep)
    if not cells:
        raise SystemExit("no finished cell among the folders given (each needs the report.json of baselines_bench.py)")
    return sorted(cells, key=lambda c: (c["key"], c["target_speedup"]))


def _rows(cell: dict) -> dict:
    return {r["variant"]: r for r in cell["rows"]}


def markdown(cells: list[dict]) -> str:
    """The Table-5 grid: one line per cell and variant."""
    lines = ["| runtime | target | variant | measured speedup [95% CI] | test top-1 | Δ baseline | Δ control "
             "| predicted speedup | wall time (min) |", "|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        rows = _rows(c)
        for v in ("search", "random", "uniform", "flops", "control"):
            r = rows.get(v)
            if r is None:
                continue
            x = (f"{r['measured_speedup']:.2f}x [{r['measured_low']:.2f}, {r['measured_high']:.2f}]"
                 if r.get("measured_speedup") else "-")
            dc = f"{r['delta_vs_control']:+.2f}" if r.get("delta_vs_control") is not None else "-"
            ps = f"{r['predicted_speedup']:.2f}x" if r.get("predicted_speedup") else "-"
            wall = f"{r['wall_s'] / 60:.1f}" if r.get("wall_s") else "-"
            lines.append(f"| {c['key']} | {c['target_speedup']:g}x | {v} | {x} | {r['test_top1']:.2f} | "
                         f"{r['delta_vs_baseline']:+.2f} | {dc} | {ps} | {wall} |")
    return "\n".join(lines)


def figure(cells: list[dict], path: Path) -> Path:
    """Test top-1 vs measured speedup per runtime (targets as dotted verticals)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = {"ort": 0, "openvino": 1, "ncnn": 2}
    keys = sorted(dict.fromkeys(c["key"] for c in cells), key=lambda k: (order.get(k.split("-")[0], 9), k))
    # the y range shows the variants that keep their accuracy; far lower points sit on the bottom
    # edge with their value written beside them (uniform width scaling loses 10+ points)
    tops = sorted(r["test_top1"] for c in cells for r in c["rows"])
    near = [t for t in tops if t >= tops[-1] - 4.0]
    y_lo, y_hi = near[0] - 0.6, near[-1] + 0.4
    fig, axes = plt.subplots(1, len(keys), figsize=(4.4 * len(keys), 4.0), squeeze=False, sharey=True)
    for ax, key in zip(axes[0], keys):
        mine = [c for c in cells if c["key"] == key]
        base = _rows(mine[0])["original"]
        ax.axhline(base["test_top1"], color="0.3", lw=0.8)
        ax.plot([1.0], [base["test_top1"]], marker="P", color="k", ms=9, ls="none", label="unpruned baseline")
        for c in mine:
            ax.axvline(c["target_speedup"], color="0.75", ls=":", lw=1)
        for v, (label, colour, marker) in STYLE.items():
            pts = [_rows(c)[v] for c in mine if v in _rows(c) and _rows(c)[v].get("measured_speedup")]
            if v == "control":  # one training, measured beside every cell: show it once
                pts = pts[:1]
            if not pts:
                continue
            pts = sorted(pts, key=lambda r: r["measured_speedup"])
            x = [r["measured_speedup"] for r in pts]
            y = [max(r["test_top1"], y_lo + 0.15) for r in pts]
            err = [[r["measured_speedup"] - r["measured_low"] for r in pts],
                   [r["measured_high"] - r["measured_speedup"] for r in pts]]
            ax.errorbar(x, y, xerr=err, color=colour, marker=marker, ms=7 if marker != "*" else 11, capsize=2,
                        ls="-" if v in ("search", "random") and len(pts) > 1 else "none", lw=1, label=label)
            for r, yy in zip(pts, y):
                if r["test_top1"] < y_lo + 0.15:
                    ax.annotate(f"{r['test_top1']:.1f}% (off scale)", (r["measured_speedup"], yy), fontsize=7,
                                xytext=(-4, 8), textcoords="offset points", ha="right", color=colour)
        ax.set_ylim(y_lo, y_hi)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("measured speedup (protocol, 95% CI)")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("CIFAR-10 test top-1 (%)")
    # the legend where it hides nothing: the last panel with the most series, lower left
    busiest = max(reversed(list(axes[0])), key=lambda a: len(a.get_legend_handles_labels()[0]))
    busiest.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 0.06))
    fig.suptitle(f"MobileNetV2 on CIFAR-10, {cells[0]['platform'].split('(', 1)[-1].split(',')[0]}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cells", type=Path, nargs="+", help="baselines_bench.py output folders (one per cell)")
    ap.add_argument("--figure", type=Path, default=None, help="write the figure here (PNG)")
    ap.add_argument("--markdown", type=Path, default=None, help="write the Markdown table here too")
    args = ap.parse_args(argv)
    cells = load_cells(args.cells)
    text = markdown(cells)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n")
    if args.figure:
        figure(cells, args.figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
