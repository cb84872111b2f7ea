"""Predictors benchmark: GBDT vs the lookup table and baselines, samples needed, transfer, speed.

Real data (the lead runs this on a quiet machine, after profiling and measuring the test set)::

    python benchmarks/predictors_bench.py --store samples.sqlite \
        --platforms ort-cpu-fp32-t1,openvino-cpu-fp32-t1,torch-cpu-fp32-t1 \
        --testset testset.json --results testset_results.json

Synthetic smoke run (seconds, no runtime)::

    python benchmarks/predictors_bench.py --synthetic

Prints per platform and predictor: per-layer RMSPE on held-out samples; whole-network RMSPE and
the share within ±5% / ±10% on the test set; Kendall tau on the candidate sets; the error vs
training samples curve; the held-out-platform transfer experiment; layer predictions per second
and the latency of one whole-network query.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any, Sequence

import numpy as np

from compactnet.predictors.estimators import GBDTLatencyRegressor, make_estimator
from compactnet.predictors.metrics import rmspe, summarize
from compactnet.predictors.network import LatencyPredictor
from compactnet.predictors.transfer import holdout_experiment

log = logging.getLogger("predictors_bench")
BASELINES = ("gbdt", "lookup", "forest", "flops", "constant")


def network_layers(spec: Any, kinds: set[str]) -> Any:
    """The network in the layer granularity the predictor was trained on (units when the store
    holds MobileNetV2 ``block`` samples, layers otherwise)."""
    if "block" in kinds and "dwconv" not in kinds and spec.architecture == "mobilenetv2":
        from compactnet.extract import mobilenetv2_units
        from compactnet.spec import NetworkSpec

        units = mobilenetv2_units(spec, include_last=True, include_head=True)
        return NetworkSpec(spec.architecture, spec.input_shape, units, spec.groups, spec.fixed)
    return spec


def _estimator(name: str, fast: bool) -> Any:
    if name == "gbdt" and fast:
        return GBDTLatencyRegressor(n_estimators=80, n_bootstrap=3)
    if name == "forest" and fast:
        return make_estimator("forest", n_estimators=50)
    return make_estimator(name)


def _subsample(ms: Sequence[Any], n: int, rng: np.random.Generator) -> list:
    if n >= len(ms):
        return list(ms)
    return [ms[i] for i in rng.choice(len(ms), n, replace=False)]


def evaluate_platform(key: str, train: Sequence[Any], layer_test: Sequence[Any], nets: Sequence[Any],
                      truth: np.ndarray, cand_sets: Sequence[Sequence[int]], sizes: Sequence[int],
                      fast: bool, seed: int = 0) -> dict:
    """All single-platform figures for one platform."""
    rng = np.random.default_rng(seed)
    out: dict = {"platform": key, "samples": len(train), "predictors": {}, "curve": [], "speed": {}}
    y_layer = np.array([m.latency.median_ms for m in layer_test])
    for name in BASELINES:
        t0 = time.perf_counter()
        pred = LatencyPredictor(estimator=_estimator(name, fast), min_samples_per_kind=2).fit(train)
        fit_s = time.perf_counter() - t0
        rec = {"fit_s": fit_s, "layer_rmspe": rmspe(y_layer, pred.predict_layer_ms([m.layer for m in layer_test]))}
        if len(nets):
            kinds = set(pred.estimators_)
            p = pred.predict_many([network_layers(n, kinds) for n in nets])
            rec.update(summarize(truth, p, cand_sets))
        out["predictors"][name] = rec
        if name == "gbdt" and len(nets):
            specs = [network_layers(n, set(pred.estimators_)) for n in nets]
            big = specs * max(1, 2000 // len(specs))
            n_layers = sum(len(s.layers) for s in big)
            t0 = time.perf_counter()
            pred.predict_many(big)
            dt = time.perf_counter() - t0
            t1 = time.perf_counter()
            for _ in range(20):
                pred.predict(specs[0])
            out["speed"] = {"layers_per_s": n_layers / dt, "networks_per_s": len(big) / dt,
                            "one_query_ms": (time.perf_counter() - t1) / 20 * 1e3}
    for n in sizes:
        sub = _subsample(train, n, rng)
        for name in ("gbdt", "lookup", "forest", "flops"):
            pred = LatencyPredictor(estimator=_estimator(name, fast), min_samples_per_kind=2).fit(sub)
            row = {"samples": len(sub), "predictor": name,
                   "layer_rmspe": rmspe(y_layer, pred.predict_layer_ms([m.layer for m in layer_test]))}
            if len(nets):
                s = summarize(truth, pred.predict_many([network_layers(x, set(pred.estimators_)) for x in nets]),
                              cand_sets)
                row.update(net_rmspe=s["rmspe"], within10=s["within10"], within5=s["within5"],
                           kendall_tau=s["kendall_tau"])
            out["curve"].append(row)
    return out


def print_report(results: list[dict], transfer: list[dict]) -> None:
    """Human-readable tables."""
    for r in results:
        print(f"\n== {r['platform']}  ({r['samples']} training samples)")
        print(f"{'predictor':10s} {'layer RMSPE':>11s} {'net RMSPE':>9s} {'±5%':>6s} {'±10%':>6s} {'tau':>6s} "
              f"{'pairs':>6s} {'fit s':>6s}")
        for name, v in r["predictors"].items():
            print(f"{name:10s} {100 * v['layer_rmspe']:10.1f}% {100 * v.get('rmspe', np.nan):8.1f}% "
                  f"{100 * v.get('within5', np.nan):5.0f}% {100 * v.get('within10', np.nan):5.0f}% "
                  f"{v.get('kendall_tau', np.nan):6.2f} {v.get('pairwise', np.nan):6.2f} {v['fit_s']:6.1f}")
        if r["curve"]:
            print("error vs samples (all kinds together):")
            for c in r["curve"]:
                print(f"  n={c['samples']:5d} {c['predictor']:8s} layer {100 * c['layer_rmspe']:6.1f}%  "
                      f"net {100 * c.get('net_rmspe', np.nan):6.1f}%  ±10% {100 * c.get('within10', np.nan):4.0f}%  "
                      f"tau {c.get('kendall_tau', np.nan):5.2f}")
        if r["speed"]:
            s = r["speed"]
            print(f"speed: {s['layers_per_s']:,.0f} layer predictions/s in a batch "
                  f"({s['networks_per_s']:,.0f} networks/s); one whole-network query {s['one_query_ms']:.2f} ms")
    if transfer:
        print("\n== held-out platform: per-layer error vs samples per kind")
        for t in transfer:
            print(f"  {t['target']:22s} n={t['samples_per_kind']:3d} {t['method']:12s} RMSPE {100 * t['rmspe']:6.1f}%  "
                  f"±10% {100 * t['within10']:4.0f}%  ±5% {100 * t['within5']:4.0f}%")


# ----- data sources ---------------------------------------------------------------------------------
def synthetic_data(seed: int, n_train: int, n_nets: int) -> tuple[dict, dict, list, dict, list]:
    """Synthetic platforms, samples, test networks with 'measured' truth, candidate sets."""
    from compactnet.extract import spec_for
    from compactnet.predictors.synthetic import measure_synthetic, synthetic_platforms, true_latency_ms
    from compactnet.predictors.testset import generate_testset

    plats = synthetic_platforms()
    rng = np.random.default_rng(seed)
    sample_ts = generate_testset(seed=seed + 1, n_mobilenetv2=max(4, n_train // 40), n_resnet20=2, n_vgg=2,
                                 n_candidate_sets=0)
    pool = []
    for n in sample_ts.networks:
        pool += list(n.spec().layers)
    uniq = {l.key(): l for l in pool}
    layers = list(uniq.values())
    rng.shuffle(layers)
    ts = generate_testset(seed=seed + 2, n_mobilenetv2=n_nets, n_resnet20=max(2, n_nets // 6),
                          n_vgg=max(2, n_nets // 6), n_candidate_sets=3)
    nets = [n.spec() for n in ts.networks]
    cand = []
    for c in ts.candidate_sets:
        start = len(nets)
        nets += [m.spec() for m in c.candidates]
        cand.append(list(range(start, len(nets))))
    samples, truth = {}, {}
    for i, (key, (p, costs)) in enumerate(plats.items()):
        samples[key] = measure_synthetic(layers, p, costs, noise=0.03, seed=seed + i)
        # a whole network: its layers' sum, 5% slower (cache), with 2% noise
        truth[key] = np.array([true_latency_ms(n.layers, costs).sum() * 1.05 for n in nets]) * \
            np.exp(rng.normal(0, 0.02, len(nets)))
    return plats, samples, nets, truth, cand


def real_data(args: argparse.Namespace) -> tuple[dict, list, dict, list]:
    """Samples from the store, test networks and their measured latency."""
    from compactnet.predictors.testset import TestSet, load_results
    from compactnet.profilers.store import SampleStore

    keys = args.platforms.split(",")
    with SampleStore(args.store) as store:
        samples = {k: store.measurements(k, context=args.context) for k in keys}
    nets, truth, cand = [], {}, []
    if args.testset and args.results:
        ts = TestSet.load(args.testset)
        res = {k: load_results(args.results, k) for k in keys}
        ids = [n.id for n in ts.networks if all(n.id in res[k] for k in keys)]
        by_id = {n.id: n for n in ts.networks}
        for c in ts.candidate_sets:
            for m in c.candidates:
                by_id[m.id] = m
        for c in ts.candidate_sets:
            got = [m.id for m in c.candidates if all(m.id in res[k] for k in keys)]
            if len(got) >= 2:
                cand.append(list(range(len(ids), len(ids) + len(got))))
                ids += got
        nets = [by_id[i].spec() for i in ids]
        truth = {k: np.array([res[k][i] for i in ids]) for k in keys}
    return samples, nets, truth, cand


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synthetic", action="store_true", help="tiny synthetic run (no store, no runtime)")
    ap.add_argument("--store", help="sample store (SQLite)")
    ap.add_argument("--platforms", default="ort-cpu-fp32-t1,openvino-cpu-fp32-t1,torch-cpu-fp32-t1")
    ap.add_argument("--context", default=None, help="only samples of this measuring context")
    ap.add_argument("--testset", help="test set JSON (predictors.testset)")
    ap.add_argument("--results", help="measured test-set latencies JSON (measure_testset)")
    ap.add_argument("--sizes", default="50,100,300,1000,1500", help="training sizes of the error curve")
    ap.add_argument("--transfer-sizes", default="10,25,50")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    tsizes = [int(s) for s in args.transfer_sizes.split(",") if s]
    fast = args.synthetic
    if args.synthetic:
        _, samples, nets, truth, cand = synthetic_data(args.seed, n_train=400, n_nets=24)
        sizes = [s for s in sizes if s <= 300] or [50]
        tsizes = tsizes[:2]
    else:
        if not args.store:
            ap.error("--store is required without --synthetic")
        samples, nets, truth, cand = real_data(args)
    results = []
    rng = np.random.default_rng(args.seed)
    for key, ms in samples.items():
        if len(ms) < 10:
            log.warning("%s: only %d samples; skipped", key, len(ms))
            continue
        order = rng.permutation(len(ms))
        n_test = max(5, len(ms) // 5)
        test = [ms[i] for i in order[:n_test]]
        train = [ms[i] for i in order[n_test:]]
        results.append(evaluate_platform(key, train, test, nets, truth.get(key, np.zeros(0)), cand,
                                         [s for s in sizes if s < len(train)] + [len(train)], fast, args.seed))
    transfer = []
    usable = {k: v for k, v in samples.items() if len(v) >= 30}
    if len(usable) >= 2:
        est = GBDTLatencyRegressor(n_estimators=80, interval="none") if fast else None
        for target in list(usable)[: (1 if fast else len(usable))]:
            transfer += holdout_experiment(usable, target, sizes=tsizes, repeats=2 if fast else 5, seed=args.seed,
                                           estimator=est)
    if args.json:
        json.dump({"platforms": results, "transfer": transfer}, sys.stdout, indent=1, default=float)
        print()
    else:
        print_report(results, transfer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
