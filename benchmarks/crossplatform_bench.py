"""The CompactNet paper's Table 7, measured: every zoo model timed on every local runtime.

Each trimmed entry of a zoo index was searched for one platform (runtime + hardware). This script
times all of them, with the untrimmed base model, by the measurement protocol on each runtime of
*this* machine -- one interleaved comparison per runtime -- and tabulates the measured speedup over
the base with its 95% interval. The diagonal (a model on the runtime it was trimmed for) shows how
well a search's result holds; the off-diagonal cells show what a model trimmed for one runtime is
worth on another. When this machine's hardware differs from the entries', every cell is also a
cross-hardware figure, and the table says so.

    python benchmarks/crossplatform_bench.py --index zoo/index.json \
        --platforms ort-cpu-fp32-t1,openvino-cpu-fp32-t1,ncnn-cpu-fp32-t1 --out results/crossplatform

Run it on a quiet machine. Each runtime's comparison is saved as it finishes (``OUT/<platform>.json``)
and skipped on a re-run unless ``--remeasure``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("crossplatform_bench")

DEFAULT_PLATFORMS = "ort-cpu-fp32-t1,openvino-cpu-fp32-t1,ncnn-cpu-fp32-t1"


def select_models(index: Any, root: Path, architecture: str) -> tuple[Path, list[tuple[str, Any, Path]]]:
    """The base ONNX file and ``(name, entry, onnx path)`` of every trimmed entry of ``architecture``.

    Entries whose ONNX files are identical (same SHA-256: one search's snapshots that stopped on the
    same network) are timed once, under the first name; a name published from two hardwares is
    labelled ``name@hardware-slug``.
    """
    from compactnet.zoo.entry import hardware_slug, parse_name

    base, trimmed, seen = None, [], {}
    published = [e.name for e in index]
    for e in index:
        if e.architecture != architecture:
            continue
        path = root / e.onnx.path
        if not path.is_file():
            raise FileNotFoundError(f"{e.name}: {path} is missing (pull the entry or use the repository's zoo/)")
        if parse_name(e.name).tag == "base":
            base = base or path
            continue
        if e.onnx.sha256 in seen:
            log.info("%s has the same ONNX file as %s: timed once", e.name, seen[e.onnx.sha256])
            continue
        # a name published from two hardwares is labelled with its hardware (labels must be distinct)
        label = e.name if published.count(e.name) == 1 else f"{e.name}@{hardware_slug(e.hardware)}"
        seen[e.onnx.sha256] = label
        trimmed.append((label, e, path))
    if base is None:
        raise SystemExit(f"the index has no base entry of {architecture}: nothing to compare against")
    if not trimmed:
        raise SystemExit(f"the index has no trimmed entry of {architecture}")
    return base, trimmed


def measure_platform(key: str, base: Path, trimmed: list[tuple[str, Any, Path]], out: Path, rounds: int,
                     busy: str, remeasure: bool) -> dict:
    """One interleaved protocol comparison of base + trimmed models on ``key`` (cached in ``out``)."""
    from compactnet.measure import compare

    path = out / f"{key}.json"
    if path.exists() and not remeasure:
        log.info("%s: measured before (%s); --remeasure to time again", key, path)
        return json.loads(path.read_text())
    names = ["base"] + [n for n, _, _ in trimmed]
    log.info("%s: timing %d models interleaved, %d rounds", key, len(names), rounds)
    cmp = compare([base] + [p for _, _, p in trimmed], key, names=names, rounds=rounds, busy=busy)
    rec = cmp.to_dict()
    path.write_text(json.dumps(rec, indent=1))
    return rec


def render(index_path: Path, trimmed: list[tuple[str, Any, Path]], results: dict[str, dict]) -> str:
    """The Markdown table: one row per trimmed entry, one column per runtime measured here."""
    from compactnet.spec import latency_ms

    keys = list(results)
    here = {results[k]["platform"].get("hardware", "?") for k in keys}
    lines = [f"# Zoo models on every local runtime (Table 7 of the CompactNet paper, measured)", "",
             f"Index: `{index_path}`. Measured here on: {', '.join(sorted(here))}; runtimes "
             + ", ".join(f"{k} v{results[k]['platform'].get('runtime_version', '?')}" for k in keys) + ".", "",
             "Each column is one interleaved protocol comparison of the untrimmed base and every trimmed "
             "model on that runtime: measured speedup over the base [95% bootstrap interval]. **Bold**: the "
             "runtime the model was trimmed for. `own` is the speedup its card records on the hardware it "
             "was published from.", ""]
    lines.append("| entry | trimmed on (hardware) | own | " + " | ".join(keys) + " |")
    lines.append("|---|---|---|" + "---|" * len(keys))
    for name, e, _ in trimmed:
        m = e.metrics
        own = f"{m.speedup:.2f}x" if m.speedup else "-"
        cells = []
        for k in keys:
            r = results[k]
            i = r["names"].index(name)
            sp = r["speedups"][i]
            s, lo, hi = sp["ratio"], sp["low"], sp["high"]
            cell = f"{s:.2f}x [{lo:.2f}, {hi:.2f}]"
            cells.append(f"**{cell}**" if k == e.platform else cell)
        lines.append(f"| {name} | {e.platform} ({e.hardware}) | {own} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| runtime | base ms (estimator) | rounds x runs | load | when |")
    lines.append("|---|---|---|---|---|")
    for k in keys:
        r = results[k]
        base = r['latencies'][0]
        lines.append(f"| {k} | {latency_ms(base):.3f} ({base.get('estimator', 'median')}) | "
                     f"{r['rounds']} x {r['runs']} | "
                     f"{r['load']:.2f} | {r['when']} |")
    hw = {e.hardware for _, e, _ in trimmed}
    if hw - here:
        lines += ["", f"The entries were trimmed and published on {', '.join(sorted(hw))}; every cell above is "
                  f"also a cross-hardware figure (measured on {', '.join(sorted(here))})."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", default="zoo/index.json", help="local zoo index (files beside it)")
    ap.add_argument("--architecture", default="mobilenetv2")
    ap.add_argument("--platforms", default=DEFAULT_PLATFORMS, help="comma-separated platform keys to time on")
    ap.add_argument("--rounds", type=int, default=15, help="protocol rounds per comparison (>= 7)")
    ap.add_argument("--busy", default="refuse", choices=("refuse", "flag", "ignore"))
    ap.add_argument("--remeasure", action="store_true")
    ap.add_argument("--out", default="results/crossplatform")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from compactnet.zoo.index import load_index

    index_path = Path(args.index)
    index = load_index(index_path)
    base, trimmed = select_models(index, index_path.parent, args.architecture)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for key in [k.strip() for k in args.platforms.split(",") if k.strip()]:
        results[key] = measure_platform(key, base, trimmed, out, args.rounds, args.busy, args.remeasure)
    text = render(index_path, trimmed, results)
    (out / "report.md").write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
