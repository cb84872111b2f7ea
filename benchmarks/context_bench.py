"""Predictor accuracy on networks it has never seen: per family, leave-one-family-out, intervals, speed.

Two steps, both resumable:

``measure`` (quiet machine; minutes per runtime) profiles ``--samples`` layers with the ``space``
prior into ``--store`` (context ``isolated``), then measures two disjoint sets of whole networks
drawn from the latency families (MobileNetV2 at 32-224 px, MobileNetV1 at 32-160 px, ResNet-20/32,
VGG): the calibration set (``OUT/calibration``, :data:`~compactnet.predictors.families.CALIBRATION_SEED`)
and the test set (``OUT/test``, :data:`~compactnet.predictors.families.TEST_SEED`, never drawn
again), each network timed by the protocol in chunks with the untrimmed MobileNetV2 as reference.

``evaluate`` fits, per runtime, the isolated layer predictor on the store and calibrates it on the
calibration set three ways (none, one factor per layer kind, the in-context correction), then
reports on the test set: share within +-10% and +-5%, RMSPE and median error per family; the
coverage of the stated 90% intervals; Kendall tau on the ranking sets of ``--ranking`` (a measured
test-set folder with candidate sets, e.g. results/machine-c/testset); leave-one-family-out (the
architecture's calibration networks *and* the layer samples drawn from its networks left out,
tested on its test networks); layer predictions per second.

``--predictor DIR`` also tests a saved predictor as it is, e.g. the one ``compactnet optimize``
fitted on a fresh machine (its calibration networks are drawn with the calibration seed: disjoint
from the test set).

Usage::

    python benchmarks/context_bench.py measure --store results/machine-c/space.sqlite --out results/machine-c/families
    python benchmarks/context_bench.py evaluate --store results/machine-c/space.sqlite --out results/machine-c/families \\
        --ranking results/machine-c/testset --json results/machine-c/context.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

PLATFORMS = ("ort-cpu-fp32-t1", "openvino-cpu-fp32-t1", "ncnn-cpu-fp32-t1")
log = logging.getLogger("context_bench")


# ----- measuring ------------------------------------------------------------------------------------
def chosen_families(names: str | None) -> tuple:
    """The families named in a comma-separated list (``mobilenetv2@32,vgg16@32``; None: all)."""
    from compactnet.predictors.families import FAMILIES

    if not names:
        return FAMILIES
    by_name = {f.name: f for f in FAMILIES}
    unknown = [n for n in names.split(",") if n.strip() not in by_name]
    if unknown:
        raise SystemExit(f"--families: unknown {', '.join(unknown)}; choose among {', '.join(by_name)}")
    return tuple(by_name[n.strip()] for n in names.split(","))


def sets(out: Path, n_cal: int, n_test: int, families: Sequence[Any]) -> tuple[Any, Any]:
    """The calibration and test sets (generated once, then read back)."""
    from compactnet.predictors.calibration import calibration_set
    from compactnet.predictors.families import TEST_SEED, draw_networks
    from compactnet.predictors.testset import TestSet

    cal_p, test_p = out / "calibration" / "testset.json", out / "test" / "testset.json"
    cal = TestSet.load(cal_p) if cal_p.is_file() else calibration_set(n_cal, families=families)
    cal.save(cal_p)
    test = TestSet.load(test_p) if test_p.is_file() else TestSet(TEST_SEED, draw_networks(
        n_test, TEST_SEED, families=families, exclude=cal.networks))
    test.save(test_p)
    return cal, test


def measure(args: argparse.Namespace) -> None:
    from compactnet.predictors.calibration import measure_calibration
    from compactnet.profilers.base import Protocol
    from compactnet.profilers.run import profile

    cal, test = sets(args.out, args.calibration, args.test, chosen_families(args.families))
    for key in args.platforms:
        t = time.time()
        rep = profile(key, "space", samples=args.samples, store=args.store, context="isolated",
                      protocol=Protocol(busy=args.busy, context="isolated"))
        log.info("%s: %d layers measured, %d stored before (%.0f s)", key, rep.measured, rep.skipped, time.time() - t)
        for name, ts in (("calibration", cal), ("test", test)):
            t = time.time()
            measure_calibration(ts, key, args.out / name / "results.json", busy=args.busy)
            log.info("%s: %s set measured (%.0f s)", key, name, time.time() - t)


# ----- evaluating -----------------------------------------------------------------------------------
def family(n: Any) -> str:
    return f"{n.model}@{n.hw}"


def _stats(err: np.ndarray) -> dict:
    a = np.abs(err)
    return {"n": int(len(err)), "within10": float(np.mean(a <= 0.10)) if len(a) else None,
            "within5": float(np.mean(a <= 0.05)) if len(a) else None,
            "rmspe": float(np.sqrt(np.mean(err ** 2))) if len(a) else None,
            "median": float(np.median(err)) if len(a) else None}


def _by_family(nets: Sequence[Any], err: np.ndarray) -> dict:
    fams = sorted({family(n) for n in nets})
    return {f: _stats(err[[family(n) == f for n in nets]]) for f in fams}


def layer_predictor(store: Path, key: str, drop: set[str] = frozenset(), estimator: str | None = None) -> Any:
    """The isolated layer predictor of ``key`` fitted on the store (GBDT, or an estimator by short name)."""
    from compactnet.predictors.estimators import make_estimator
    from compactnet.predictors.network import LatencyPredictor, load_samples
    from compactnet.profilers.store import SampleStore, layer_key

    with SampleStore(store) as s:
        ms = load_samples(s, key, context="isolated")
    if drop:
        ms = [m for m in ms if layer_key(m.layer) not in drop]
    return LatencyPredictor(estimator=make_estimator(estimator) if estimator else None).fit(ms)


def family_layer_keys(samples: int, architecture: str) -> set[str]:
    """Keys of the ``space`` prior's first candidates that came from networks of ``architecture`` only."""
    from compactnet.predictors.families import architecture_of
    from compactnet.profilers.space import LayerSpaceStrategy
    from compactnet.profilers.store import layer_key

    prior = LayerSpaceStrategy(seed=0)  # the measure step's prior
    mine, others = set(), set()
    for batch in range(1 + samples // 400):  # the prior's batches (15 networks each) cover its candidates
        for n in prior.family_networks(batch):
            keys = {layer_key(l) for l in n.spec().layers}
            (mine if architecture_of(n.model) == architecture else others).update(keys)
    return mine - others


def evaluate_platform(args: argparse.Namespace, key: str, cal: Any, test: Any) -> dict:
    import copy

    from compactnet.predictors.calibration import measured
    from compactnet.predictors.families import ARCHITECTURES, architecture_of
    from compactnet.predictors.metrics import kendall_tau

    cal_nets, cal_specs, cal_ms = measured(cal, args.out / "calibration" / "results.json", key)
    test_nets, test_specs, test_ms = measured(test, args.out / "test" / "results.json", key)
    t = time.time()
    base = layer_predictor(args.store, key)
    fit_s = time.time() - t
    out: dict = {"platform": key, "layer_samples": int(sum(base.n_samples_.values())),
                 "calibration_networks": len(cal_specs), "test_networks": len(test_specs), "methods": {}}
    t = time.time()
    preds = {"isolated sum": base,
             "one factor per kind": copy.deepcopy(base).calibrate(cal_specs, cal_ms, mode="kinds"),
             "in-context (GBDT)": copy.deepcopy(base).calibrate(cal_specs, cal_ms, mode="context"),
             # the paper's lookup table (interpolated over channels per layer position), given the same
             # calibration networks through the strongest calibration it can take
             "lookup table, one factor per kind": layer_predictor(args.store, key, estimator="lookup").calibrate(
                 cal_specs, cal_ms, mode="kinds")}
    out["fit_s"] = fit_s + time.time() - t
    for folder in args.predictor or []:
        from compactnet.predictors.persist import load_portable

        saved = load_portable(folder)
        if saved.platform_.key == key:
            preds[f"saved: {folder.name}"] = saved
    out["networks"] = [{"id": n.id, "family": family(n), "measured_ms": float(y)} for n, y in zip(test_nets, test_ms)]
    for name, p in preds.items():
        pred_ms = p.predict_many(test_specs)
        for rec, v in zip(out["networks"], pred_ms):
            rec.setdefault("predicted_ms", {})[name] = float(v)
        err = pred_ms / test_ms - 1
        row = {"all": _stats(err), "families": _by_family(test_nets, err)}
        if getattr(p, "context_", None) is not None:
            lat = [p.predict(s) for s in test_specs]
            row["coverage90"] = float(np.mean([l.low_ms <= y <= l.high_ms for l, y in zip(lat, test_ms)]))
            row["interval_pct"] = p.context_.describe()["interval_pct"]
            row["layer_samples"] = int(sum(p.n_samples_.values()))
            row["calibration_networks"] = p.context_.n_networks_
        if args.ranking:
            row["kendall_tau"] = ranking_tau(args.ranking, key, p, kendall_tau)
        out["methods"][name] = row
    best = preds["in-context (GBDT)"]
    out["layers_per_s"] = layer_speed(best)
    out["leave_one_family_out"] = {}
    for arch in ARCHITECTURES:
        keep = [i for i, n in enumerate(cal_nets) if architecture_of(n.model) != arch]
        held = [i for i, n in enumerate(test_nets) if architecture_of(n.model) == arch]
        if not held:
            continue
        p = layer_predictor(args.store, key, drop=family_layer_keys(out["layer_samples"], arch))
        p.calibrate([cal_specs[i] for i in keep], cal_ms[keep], mode="context")
        err = p.predict_many([test_specs[i] for i in held]) / test_ms[held] - 1
        out["leave_one_family_out"][arch] = _stats(err)
    return out


def ranking_tau(folder: Path, key: str, pred: Any, kendall_tau: Any) -> float | None:
    """Median Kendall tau over the measured ranking sets of a test-set folder."""
    from compactnet.predictors.testset import TestSet, load_results

    if not (folder / "testset.json").is_file():
        return None
    ts = TestSet.load(folder / "testset.json")
    try:
        res = load_results(folder / "results.json", key, normalized=True)
    except Exception:  # noqa: BLE001 -- a folder without this platform has no ranking figure
        return None
    taus = []
    for c in ts.candidate_sets:
        ids = [m for m in c.candidates if m.id in res]
        if len(ids) >= 3:
            taus.append(kendall_tau([res[m.id] for m in ids], pred.predict_many([m.spec() for m in ids])))
    return float(np.median(taus)) if taus else None


def layer_speed(pred: Any, configs: int = 5000) -> float:
    """Layer predictions per second of ``predict_configs`` on the Table-1 MobileNetV2 (best of 3)."""
    from compactnet.extract import spec_for

    base = spec_for("mobilenetv2")
    groups = base.trimmable_groups
    widths = np.array([w for g, w in base.groups if g in groups])
    W = np.maximum(1, widths[None, :] * np.random.default_rng(0).uniform(0.25, 1, (configs, len(groups)))).astype(int)
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        pred.predict_configs(base, W, groups=groups)
        best = min(best, time.perf_counter() - t)
    return configs * len(base.layers) / best


def render(results: list[dict]) -> str:
    lines = []
    for r in results:
        lines.append(f"## {r['platform']}: {r['layer_samples']} layer samples, {r['calibration_networks']} calibration "
                     f"networks, {r['test_networks']} test networks; fit {r['fit_s']:.1f} s; "
                     f"{r['layers_per_s']:,.0f} layer predictions/s")
        lines.append("")
        lines.append("| predictor | within ±10% | within ±5% | RMSPE | median error | 90% interval covers | Kendall τ |")
        lines.append("|---|---|---|---|---|---|---|")
        for name, m in r["methods"].items():
            a = m["all"]
            cov = f"{100 * m['coverage90']:.0f}% (±{m['interval_pct']:.0f}%)" if "coverage90" in m else "-"
            tau = f"{m['kendall_tau']:.2f}" if m.get("kendall_tau") is not None else "-"
            lines.append(f"| {name} | {100 * a['within10']:.1f}% | {100 * a['within5']:.1f}% | {100 * a['rmspe']:.1f}% | "
                         f"{100 * a['median']:+.1f}% | {cov} | {tau} |")
        lines.append("")
        fams = list(r["methods"]["in-context (GBDT)"]["families"])
        lines.append("| family | n | " + " | ".join(f"{k}: ±10% / median" for k in r["methods"]) + " |")
        lines.append("|---|---|" + "---|" * len(r["methods"]))
        for f in fams:
            cells = [f"{100 * m['families'][f]['within10']:.0f}% / {100 * m['families'][f]['median']:+.0f}%"
                     for m in r["methods"].values()]
            lines.append(f"| {f} | {r['methods']['in-context (GBDT)']['families'][f]['n']} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("Leave one family out (in-context; the family's calibration networks and prior layers left out): "
                     + ", ".join(f"{a} {100 * s['within10']:.0f}% within ±10% (median {100 * s['median']:+.0f}%, n={s['n']})"
                                 for a, s in r["leave_one_family_out"].items()))
        lines.append("")
    return "\n".join(lines)


def figure(results: list[dict], path: Path, methods: Sequence[str] = ("in-context (GBDT)",
                                                                     "lookup table, one factor per kind")) -> Path:
    """Predicted vs measured latency of the test networks, one panel per runtime, with the +-10% band."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 4.2), squeeze=False)
    for ax, r in zip(axes[0], results):
        y = np.array([n["measured_ms"] for n in r["networks"]])
        lo, hi = y.min() * 0.8, y.max() * 1.25
        grid = np.geomspace(lo, hi, 50)
        ax.fill_between(grid, grid * 0.9, grid * 1.1, color="0.85", label="±10%")
        ax.plot(grid, grid, color="0.5", lw=0.8)
        for m, c in zip(methods, ("tab:blue", "tab:orange")):
            p = np.array([n["predicted_ms"][m] for n in r["networks"]])
            share = np.mean(np.abs(p / y - 1) <= 0.1)
            ax.scatter(y, p, s=9, alpha=0.7, color=c, label=f"{m}: {100 * share:.0f}% within ±10%")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # plain millisecond labels, no crowded minor ones
            axis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_title(r["platform"], fontsize=10)
        ax.set_xlabel("measured latency (ms, protocol)")
        ax.set_ylabel("predicted latency (ms)")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{len(results[0]['networks'])} held-out networks of 15 families", fontsize=10)
    return save_figure(fig, path)


def save_figure(fig: Any, path: Path) -> Path:
    """Lay out, write (PNG, 90 dpi, parent folders made) and close a pyplot figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_outputs(results: list[dict], text: str, json_path: Path | None) -> None:
    """Print the Markdown ``text``; with ``json_path``, also write the results there and the text beside it."""
    print(text)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=1))
        json_path.with_suffix(".txt").write_text(text + "\n")


def evaluate(args: argparse.Namespace) -> None:
    from compactnet.predictors.testset import TestSet

    cal = TestSet.load(args.out / "calibration" / "testset.json")
    test = TestSet.load(args.out / "test" / "testset.json")
    results = [evaluate_platform(args, k, cal, test) for k in args.platforms]
    write_outputs(results, render(results), args.json)
    if args.figure:
        figure(results, args.figure)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="step", required=True)
    for name in ("measure", "evaluate"):
        p = sub.add_parser(name)
        p.add_argument("--store", type=Path, required=True, help="layer sample store (context isolated)")
        p.add_argument("--out", type=Path, required=True, help="folder of the calibration and test sets")
        p.add_argument("--platforms", nargs="+", default=list(PLATFORMS))
    m = sub.choices["measure"]
    m.add_argument("--samples", type=int, default=1200, help="layer samples of the space prior per runtime")
    m.add_argument("--calibration", type=int, default=80, help="calibration networks (drawn once)")
    m.add_argument("--test", type=int, default=200, help="test networks (drawn once)")
    m.add_argument("--busy", default="refuse", choices=("refuse", "flag", "ignore"))
    m.add_argument("--families", default=None, help="comma-separated families to draw from (default: all), "
                   "e.g. mobilenetv2@32,resnet20@32")
    e = sub.choices["evaluate"]
    e.add_argument("--ranking", type=Path, default=None, help="measured test-set folder with ranking sets")
    e.add_argument("--json", type=Path, default=None, help="write the results here (and a .txt beside it)")
    e.add_argument("--figure", type=Path, default=None, help="write the predicted-vs-measured figure here (PNG)")
    e.add_argument("--predictor", type=Path, nargs="*", default=[],
                   help="saved portable predictors to test as they are (e.g. the one the first command fitted)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    measure(args) if args.step == "measure" else evaluate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
