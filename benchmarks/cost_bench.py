"""Whole-network error vs profiling cost: the GBDT predictor, the lookup table and the FLOPs proxy.

For every runtime, the layer samples of ``--store`` (the ``space`` prior, context ``isolated``, as
``context_bench.py measure`` profiled them) are subsampled to each of ``--sizes`` (``--seeds`` seeded
draws below the full set), and three predictors are fitted from the same samples and the same
calibration networks:

- the GBDT predictor with its in-context correction (what ``compactnet optimize`` fits);
- the paper's lookup table (interpolated over channels per layer position) with one calibration
  factor per layer kind, the strongest calibration it can take;
- the FLOPs proxy: latency = a + b x MACs fitted on the calibration networks (it needs no layer
  samples: one line across the plot).

Each is tested on the held-out test networks (truth by the protocol). The figure marks what the
dense alternatives cost: the CompactNet paper's dense table for MobileNetV2 (160,992 entries,
PAPER-NOTES) and nn-Meter's ~57,000 kernel samples per device.

No timing happens here: it reads measured figures only, so it can run beside other work.

Usage::

    python benchmarks/cost_bench.py --store results/machine-c/space.sqlite --out results/machine-c/families \\
        --json results/machine-c/cost.json --figure results/machine-c/figures/error-vs-cost.png
    python benchmarks/cost_bench.py --store ... --out ... --from-json results/machine-c/cost.json --figure F.png
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import context_bench as cb  # noqa: E402  (the same sets, store reader and statistics)

log = logging.getLogger("cost_bench")

#: Entries of the CompactNet paper's dense per-layer table for MobileNetV2 (PAPER-NOTES).
DENSE_TABLE = 160_992
#: nn-Meter's kernel samples per device.
NN_METER = 57_000
METHODS = ("in-context (GBDT)", "lookup table, one factor per kind", "FLOPs proxy")


def _fit(samples: Sequence[Any], estimator: str | None) -> Any:
    from compactnet.predictors.estimators import make_estimator
    from compactnet.predictors.network import LatencyPredictor

    return LatencyPredictor(estimator=make_estimator(estimator) if estimator else None).fit(list(samples))


def flops_proxy(cal_specs: Sequence[Any], cal_ms: np.ndarray) -> Any:
    """``a + b * MACs`` by least squares on the calibration networks; returns ``predict(specs) -> ms``."""
    macs = np.array([s.macs for s in cal_specs], dtype=float)
    b, a = np.polyfit(macs, np.asarray(cal_ms, dtype=float), 1)
    return lambda specs: a + b * np.array([s.macs for s in specs], dtype=float)


def _errors(predicted: np.ndarray, measured: np.ndarray) -> dict:
    err = np.asarray(predicted, dtype=float) / measured - 1
    a = np.abs(err)
    return {"within10": float(np.mean(a <= 0.10)), "median_abs": float(np.median(a)),
            "rmspe": float(np.sqrt(np.mean(err ** 2)))}


def evaluate_platform(args: argparse.Namespace, key: str, cal: Any, test: Any) -> dict:
    """Errors of every method at every sample count (mean and range over the seeds)."""
    from compactnet.predictors.calibration import measured
    from compactnet.predictors.network import load_samples
    from compactnet.profilers.store import SampleStore

    _, cal_specs, cal_ms = measured(cal, args.out / "calibration" / "results.json", key)
    _, test_specs, test_ms = measured(test, args.out / "test" / "results.json", key)
    with SampleStore(args.store) as s:
        samples = load_samples(s, key, context="isolated")
    if not samples:
        raise SystemExit(f"{args.store} has no isolated samples of {key}: run context_bench.py measure first")
    flops = _errors(flops_proxy(cal_specs, cal_ms)(test_specs), test_ms)
    rows = []
    for n in sorted({min(int(n), len(samples)) for n in args.sizes}):
        seeds = range(args.seeds) if n < len(samples) else range(1)
        per = {m: [] for m in METHODS[:2]}
        t0 = time.time()
        for seed in seeds:
            pick = np.random.default_rng(seed).choice(len(samples), size=n, replace=False)
            sub = [samples[i] for i in np.sort(pick)]
            gbdt = copy.deepcopy(_fit(sub, None)).calibrate(cal_specs, cal_ms, mode="context")
            lut = _fit(sub, "lookup").calibrate(cal_specs, cal_ms, mode="kinds")
            per[METHODS[0]].append(_errors(gbdt.predict_many(test_specs), test_ms))
            per[METHODS[1]].append(_errors(lut.predict_many(test_specs), test_ms))
        row = {"samples": n, "seeds": len(seeds), "fit_s": (time.time() - t0) / len(seeds)}
        for m, errs in per.items():
            row[m] = {k: {"mean": float(np.mean([e[k] for e in errs])), "min": float(np.min([e[k] for e in errs])),
                          "max": float(np.max([e[k] for e in errs]))} for k in errs[0]}
        rows.append(row)
        log.info("%s: %d samples: GBDT %.0f%% within 10%%, lookup table %.0f%%", key, n,
                 100 * row[METHODS[0]]["within10"]["mean"], 100 * row[METHODS[1]]["within10"]["mean"])
    return {"platform": key, "available_samples": len(samples), "calibration_networks": len(cal_specs),
            "test_networks": len(test_specs), "flops_proxy": flops, "sizes": rows}


def render(results: list[dict]) -> str:
    """Markdown tables: share within +-10% and median |error| per sample count."""
    lines = []
    for r in results:
        lines += [f"### {r['platform']} ({r['test_networks']} test networks, {r['calibration_networks']} calibration "
                  "networks; mean over seeds)", "",
                  "| layer samples | GBDT in-context: within ±10% | median abs. error | lookup table: within ±10% "
                  "| median abs. error | fit s |", "|---|---|---|---|---|---|"]
        for row in r["sizes"]:
            g, t = row[METHODS[0]], row[METHODS[1]]
            lines.append(f"| {row['samples']} | {100 * g['within10']['mean']:.1f}% | {100 * g['median_abs']['mean']:.1f}% "
                         f"| {100 * t['within10']['mean']:.1f}% | {100 * t['median_abs']['mean']:.1f}% "
                         f"| {row['fit_s']:.1f} |")
        f = r["flops_proxy"]
        lines += ["", f"FLOPs proxy (no layer samples): {100 * f['within10']:.1f}% within ±10%, median abs. error "
                  f"{100 * f['median_abs']:.1f}%.", ""]
    return "\n".join(lines)


def figure(results: list[dict], path: Path) -> Path:
    """Median |error| vs layer samples, one panel per runtime, with the dense alternatives' cost marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.9), squeeze=False, sharey=True)
    for ax, r in zip(axes[0], results):
        n = np.array([row["samples"] for row in r["sizes"]])
        for m, c in zip(METHODS[:2], ("tab:blue", "tab:orange")):
            mid = np.array([100 * row[m]["median_abs"]["mean"] for row in r["sizes"]])
            lo = np.array([100 * row[m]["median_abs"]["min"] for row in r["sizes"]])
            hi = np.array([100 * row[m]["median_abs"]["max"] for row in r["sizes"]])
            ax.plot(n, mid, marker="o", color=c, label=m)
            ax.fill_between(n, lo, hi, color=c, alpha=0.2)
        ax.axhline(100 * r["flops_proxy"]["median_abs"], color="tab:gray", ls="--", label="FLOPs proxy (no samples)")
        marks = ((NN_METER, "nn-Meter:\n~57k kernels", 0.97), (DENSE_TABLE, "dense table\n(MobileNetV2):\n160,992", 0.72))
        for x, label, y in marks:
            ax.axvline(x, color="0.4", ls=":", lw=1)
            ax.text(x / 1.1, y, label, transform=ax.get_xaxis_transform(), fontsize=7, ha="right", va="top")
        ax.set_xscale("log")
        ax.set_xlim(n.min() * 0.7, DENSE_TABLE * 1.5)
        ax.set_ylim(bottom=0)
        ax.set_title(r["platform"], fontsize=10)
        ax.set_xlabel("layer samples profiled")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("median |error| on held-out networks (%)")
    axes[0][0].legend(fontsize=7, loc="upper right", bbox_to_anchor=(1.0, 0.8))
    return cb.save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, required=True, help="layer sample store (context isolated)")
    ap.add_argument("--out", type=Path, required=True, help="folder of the measured calibration and test sets")
    ap.add_argument("--platforms", nargs="+", default=list(cb.PLATFORMS))
    ap.add_argument("--sizes", type=int, nargs="+", default=[75, 150, 300, 600, 1200])
    ap.add_argument("--seeds", type=int, default=3, help="seeded subsamples per size below the full store")
    ap.add_argument("--json", type=Path, default=None, help="write the results here (and a .txt beside it)")
    ap.add_argument("--figure", type=Path, default=None, help="write the figure here (PNG)")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="redraw the table and figure from an earlier --json output instead of fitting again")
    args = ap.parse_args(argv)
    if any(n < 1 for n in args.sizes) or args.seeds < 1:
        ap.error(f"--sizes and --seeds must be positive (got sizes {args.sizes}, seeds {args.seeds})")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.from_json:
        results = [r for r in json.loads(args.from_json.read_text()) if r["platform"] in args.platforms]
    else:
        from compactnet.predictors.testset import TestSet

        cal = TestSet.load(args.out / "calibration" / "testset.json")
        test = TestSet.load(args.out / "test" / "testset.json")
        results = [evaluate_platform(args, k, cal, test) for k in args.platforms]
    cb.write_outputs(results, render(results), args.json)
    if args.figure:
        figure(results, args.figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
