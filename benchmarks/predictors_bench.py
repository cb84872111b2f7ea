"""Predictors benchmark: GBDT vs the lookup table and baselines, samples needed, transfer, speed.

Real data (the lead runs this on a quiet machine, after profiling and measuring the test set)::

    python benchmarks/predictors_bench.py --store samples.sqlite --dense-store dense.sqlite \
        --platforms ort-cpu-fp32-t1,openvino-cpu-fp32-t1,ncnn-cpu-fp32-t1 \
        --testset testset.json --results testset_results.json

Synthetic smoke run (seconds, no runtime)::

    python benchmarks/predictors_bench.py --synthetic

Prints per platform and predictor:

- per-layer RMSPE on held-out *configurations* (the split is by distinct layer configuration, so a
  configuration stored twice never sits on both sides);
- whole-network RMSPE and the share within ±5% / ±10% on the test networks only, and Kendall tau
  and pairwise accuracy on the ranking candidate sets only;
- the error vs training samples curve, with the dense baseline (``--dense-store``: every
  estimator, the paper's lookup table included, fitted on the dense table's samples and
  predicting at their granularity, MobileNetV2 units) as a labelled ``dense (step N)`` row; its
  network error is also given on the MobileNetV2 test networks alone (``mbv2``), the only ones
  the paper's table covers;
- with ``--devset`` (a development set: whole networks drawn like the test set with another seed,
  measured by ``measure_testset.py --seed``), every predictor again after calibrating it on those
  networks (``+cal`` rows; ``--calibration`` picks the mode): the samples a platform costs are then
  its layer samples plus those networks, and both counts are printed; with ``--repeat`` (a second
  measurement of the development set) the protocol's own repeatability, the floor under any
  predictor's error;
- the held-out-platform transfer experiment, per layer and per whole test network;
- prediction speed: distinct random MobileNetV2 configurations through ``predict_configs``
  (the search's inner loop), with the number of distinct layer rows that took, and the latency of
  one whole-network query.

Samples are read from one measuring context (``--context``, default ``rotation``): samples timed in
rotation, isolated or after a cache flush differ by up to ±40% and are never mixed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from compactnet.errors import ConfigError, DataError
from compactnet.predictors.estimators import GBDTLatencyRegressor, make_estimator
from compactnet.predictors.metrics import network_summary, rmspe
from compactnet.predictors.network import (CALIBRATION_MODES, LatencyPredictor, channels_raw, load_samples,
                                           network_layers, unique_rows)
from compactnet.predictors.transfer import holdout_experiment

log = logging.getLogger("predictors_bench")
BASELINES = ("gbdt", "lookup", "forest", "flops", "constant")
CURVE = ("gbdt", "lookup", "forest", "flops")
DEFAULT_PLATFORMS = "ort-cpu-fp32-t1,openvino-cpu-fp32-t1,ncnn-cpu-fp32-t1"
NET_KEYS = ("rmspe", "within5", "within10", "kendall_tau", "pairwise", "mbv2_rmspe", "n", "n_sets")


@dataclass
class TestNetworks:
    """Whole networks with their measured latency per platform.

    Attributes:
        specs: The test networks first, then the ranking candidates.
        truth: Measured latency (ms) per platform key, one per spec.
        n_networks: How many of ``specs`` are test networks (the rest are candidates).
        candidate_sets: Index lists into ``specs``, one per ranking set.
        ids: The networks' ids in the measured set (one per spec; empty for synthetic data).
    """

    __test__ = False
    specs: list = field(default_factory=list)
    truth: dict = field(default_factory=dict)
    n_networks: int = 0
    candidate_sets: list = field(default_factory=list)
    ids: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.specs)

    @property
    def mbv2(self) -> list[int]:
        """Indices of the MobileNetV2 test networks (what the paper's table can answer)."""
        return [i for i in range(self.n_networks) if self.specs[i].architecture == "mobilenetv2"]


# ----- pieces -----------------------------------------------------------------------------------------
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


def split_by_config(ms: Sequence[Any], test_fraction: float, rng: np.random.Generator,
                    min_test: int = 5) -> tuple[list, list]:
    """``(train, test)`` split by distinct layer configuration (``layer_key``), not by row: every
    repeat of a configuration lands on the same side."""
    from compactnet.profilers.store import layer_key

    keys = sorted({layer_key(m.layer) for m in ms})
    order = rng.permutation(len(keys))
    n_test = min(len(keys) - 1, max(min_test, int(round(test_fraction * len(keys)))))
    test_keys = {keys[i] for i in order[:n_test]}
    train = [m for m in ms if layer_key(m.layer) not in test_keys]
    test = [m for m in ms if layer_key(m.layer) in test_keys]
    return train, test


def infer_dense_step(ms: Sequence[Any]) -> int | None:
    """The channel step of dense-table samples (grid ``{step, 2 step, ...} + {original}`` per unit).

    Samples are named ``unit@CINxCOUT`` by the dense strategy; per unit every output width below
    the unit's largest is a multiple of the step, and the smallest of them is the step itself.
    """
    by_unit: dict[str, set[int]] = {}
    for m in ms:
        name = m.layer.name
        if "@" in name:
            by_unit.setdefault(name.split("@")[0], set()).add(int(m.layer.cout))
    below = [c for cs in by_unit.values() for c in cs if c < max(cs)]
    return min(below) if below else None


def net_figures(pred: LatencyPredictor, data: TestNetworks, key: str) -> dict:
    """Whole-network figures of one predictor: errors on the test networks, ranking on the candidates."""
    truth = data.truth.get(key)
    if truth is None or not len(data.specs):
        return {}
    p = pred.predict_many(data.specs)
    out = network_summary(truth, p, range(data.n_networks), data.candidate_sets)
    mb = data.mbv2
    out["mbv2_rmspe"] = rmspe(truth[mb], p[mb]) if mb else math.nan
    return {k: out[k] for k in NET_KEYS}


def prediction_speed(pred: LatencyPredictor, n_configs: int = 2000, seed: int = 0, repeats: int = 20) -> dict:
    """Time ``predict_configs`` on ``n_configs`` distinct random MobileNetV2 configurations.

    Every trimmable group gets a width uniform in [0.25, 1] of its original (no two configurations
    alike), so the batch's de-duplication of identical layer rows only merges what a real search
    iteration would merge too; the number of distinct layer rows is reported with the rate.
    """
    from compactnet.extract import spec_for

    base = spec_for("mobilenetv2")
    groups = base.trimmable_groups
    widths = base.group_widths
    rng = np.random.default_rng(seed)
    full = np.array([widths[g] for g in groups], dtype=np.float64)
    W = np.maximum(1, np.round(full * rng.uniform(0.25, 1.0, (n_configs, len(groups))))).astype(np.int64)
    W = np.unique(W, axis=0)  # distinct configurations only
    at = network_layers(base, pred.estimators_)
    names = [g for g, _ in at.groups]
    Wall = np.tile(np.array([w for _, w in at.groups], dtype=np.float64), (len(W), 1))
    for j, g in enumerate(groups):
        Wall[:, names.index(g)] = W[:, j]
    raw = channels_raw(at, Wall, names).reshape(len(W) * len(at.layers), -1)
    distinct = len(unique_rows(raw)[0])
    pred.predict_configs(base, W[:2])  # warm caches (imports, the unit conversion)
    t0 = time.perf_counter()
    pred.predict_configs(base, W)
    dt = time.perf_counter() - t0
    one = base.with_channels(dict(zip(groups, map(int, W[0]))))
    t1 = time.perf_counter()
    for _ in range(repeats):
        pred.predict(one)
    return {"configs": int(len(W)), "layer_rows": int(len(raw)), "distinct_layer_rows": int(distinct),
            "granularity": pred.granularity, "seconds": dt, "configs_per_s": len(W) / dt,
            "distinct_rows_per_s": distinct / dt, "one_query_ms": (time.perf_counter() - t1) / repeats * 1e3}


def anchor_effect(ms: Sequence[Any], folds: int = 4, seed: int = 0, fast: bool = False) -> dict | None:
    """How much of the samples' scatter is the machine's speed drift the anchor layers record.

    Fits the GBDT on the samples *as measured* in ``folds`` folds and regresses each held-out
    sample's log residual on its batch's log anchor figure (centred): ``beta`` near 1 and a
    residual spread that shrinks after subtracting it mean the drift is common to the layers and the
    anchors, so normalising by the anchors removes noise no predictor could learn.

    Returns:
        ``{"n", "anchor_log_sd", "beta", "corr", "resid_sd", "resid_sd_normalized"}``, or None
        when fewer than 20 samples carry an anchor figure.
    """
    from sklearn.model_selection import KFold

    ms = [m for m in ms if math.isfinite(m.anchor_ms) and m.anchor_ms > 0]
    if len(ms) < 20:
        return None
    a = np.log([m.anchor_ms for m in ms])
    a -= np.median(a)
    y = np.log([m.latency.value_ms for m in ms])
    res = np.zeros(len(ms))
    for tr, te in KFold(folds, shuffle=True, random_state=seed).split(ms):
        pred = LatencyPredictor(estimator=_estimator("gbdt", fast), min_samples_per_kind=2).fit([ms[i] for i in tr])
        res[te] = y[te] - np.log(pred.predict_layer_ms([ms[i].layer for i in te]))
    return {"n": len(ms), "anchor_log_sd": float(a.std()), "beta": float(np.polyfit(a, res, 1)[0]),
            "corr": float(np.corrcoef(a, res)[0, 1]), "resid_sd": float(res.std()),
            "resid_sd_normalized": float((res - a).std())}


def calibrated(pred: LatencyPredictor, dev: TestNetworks | None, key: str, mode: str) -> LatencyPredictor | None:
    """A copy of ``pred`` calibrated on the development networks' measurements (None without them)."""
    import copy

    if dev is None or key not in dev.truth or not len(dev):
        return None
    return copy.deepcopy(pred).calibrate(dev.specs, dev.truth[key], mode=mode)


def evaluate_platform(key: str, train: Sequence[Any], layer_test: Sequence[Any], data: TestNetworks,
                      sizes: Sequence[int], fast: bool, seed: int = 0, dense: Sequence[Any] = (),
                      dense_label: str = "dense", speed_configs: int = 2000, dev: TestNetworks | None = None,
                      calibration: str = "auto") -> dict:
    """All single-platform figures for one platform (``+cal``: calibrated on ``dev``, when given)."""
    rng = np.random.default_rng(seed)
    n_dev = len(dev.truth.get(key, ())) if dev is not None else 0
    out: dict = {"platform": key, "samples": len(train), "layer_test": len(layer_test), "predictors": {},
                 "curve": [], "speed": {}, "dev_networks": n_dev}
    y_layer = np.array([m.latency.value_ms for m in layer_test])
    test_layers = [m.layer for m in layer_test]
    for name in BASELINES:
        t0 = time.perf_counter()
        pred = LatencyPredictor(estimator=_estimator(name, fast), min_samples_per_kind=2).fit(train)
        rec = {"fit_s": time.perf_counter() - t0, "layer_rmspe": rmspe(y_layer, pred.predict_layer_ms(test_layers)),
               "overhead_ms": pred.overhead_ms_}
        rec.update(net_figures(pred, data, key))
        out["predictors"][name] = rec
        cal = calibrated(pred, dev, key, calibration)
        if cal is not None:
            out["predictors"][name + "+cal"] = {"fit_s": math.nan, "layer_rmspe": math.nan,
                                                "calibration": cal.calibration_, **net_figures(cal, data, key)}
        if name == "gbdt":
            out["speed"] = prediction_speed(cal or pred, speed_configs, seed)
    for n in sizes:
        sub = _subsample(train, n, rng)
        for name in CURVE:
            pred = LatencyPredictor(estimator=_estimator(name, fast), min_samples_per_kind=2).fit(sub)
            row = {"label": f"n={len(sub)}", "samples": len(sub), "predictor": name,
                   "layer_rmspe": rmspe(y_layer, pred.predict_layer_ms(test_layers))}
            row.update(net_figures(pred, data, key))
            cal = calibrated(pred, dev, key, calibration)
            if cal is not None:
                row["cal"] = net_figures(cal, data, key)
            out["curve"].append(row)
    if dense:
        for name in CURVE:  # the paper's baseline: every estimator on the dense table's samples
            pred = LatencyPredictor(estimator=_estimator(name, fast), min_samples_per_kind=2).fit(dense)
            row = {"label": dense_label, "samples": len(dense), "predictor": name, "granularity": pred.granularity,
                   "layer_rmspe": math.nan}  # the table's units are not the held-out layers: no layer figure
            row.update(net_figures(pred, data, key))
            try:
                cal = calibrated(pred, dev, key, calibration)
            except ConfigError as exc:  # the table's units cannot express every development network
                log.warning("%s: the dense baseline is not calibrated (%s)", name, exc)
                cal = None
            if cal is not None:
                row["cal"] = net_figures(cal, data, key)
            out["curve"].append(row)
    return out


def add_shipped(results: list[dict], folder: str, data: TestNetworks) -> None:
    """Score each platform's saved predictor (fitted on all samples, calibrated) on the test networks.

    Its layer figure is n/a: it was fitted on every stored sample, the held-out layer rows included.
    """
    from compactnet.predictors.persist import load_portable

    for r in results:
        path = Path(folder) / r["platform"]
        if not path.exists():
            log.warning("no saved predictor for %s in %s", r["platform"], folder)
            continue
        pred = load_portable(path)
        rec = {"fit_s": math.nan, "layer_rmspe": math.nan, "overhead_ms": pred.overhead_ms_,
               "calibration": pred.calibration_}
        rec.update(net_figures(pred, data, r["platform"]))
        r["predictors"]["shipped"] = rec


def _pct(v: Any, width: int, digits: int = 1) -> str:
    v = np.nan if v is None else float(v)
    return f"{'n/a':>{width}s}" if math.isnan(v) else f"{100 * v:{width - 1}.{digits}f}%"


def _num(v: Any, width: int) -> str:
    v = np.nan if v is None else float(v)
    return f"{'n/a':>{width}s}" if math.isnan(v) else f"{v:{width}.2f}"


SYNTHETIC_NOTE = ("synthetic data: a block unit's cost here is not the sum of its layers' costs and the dense grid "
                  "skips the unaligned widths the cost model punishes, so the dense rows only exercise the code path")


def print_report(results: list[dict], transfer: list[dict], note: str = "") -> None:
    """Human-readable tables."""
    if note:
        print(f"note: {note}")
    for r in results:
        dev = (f" + {r['dev_networks']} development networks measured whole (+cal rows)"
               if r.get("dev_networks") else "")
        print(f"\n== {r['platform']}  ({r['samples']} training samples{dev}, {r['layer_test']} held-out layer rows "
              "of distinct configurations)")
        if r.get("anchors"):
            a = r["anchors"]
            print(f"anchors: batch speed log-sd {a['anchor_log_sd']:.2f} over {a['n']} samples; layer log residuals "
                  f"(4-fold, as measured) follow it with slope {a['beta']:.2f} (corr {a['corr']:.2f}); their spread "
                  f"{a['resid_sd']:.2f} -> {a['resid_sd_normalized']:.2f} once normalised")
        if r.get("repeatability"):
            q = r["repeatability"]
            how = " (each as its ratio to its chunk's reference)" if q.get("normalized") else ""
            print(f"protocol repeatability: {q['n']} development networks measured twice{how} differ by RMSPE "
                  f"{_pct(q['rmspe'], 6)}, {_pct(q['within5'], 4, 0)} within ±5%, {_pct(q['within10'], 4, 0)} "
                  "within ±10% (the floor under any predictor's error)")
        n_nets = next((v.get("n") for v in r["predictors"].values() if "n" in v), 0)
        n_sets = next((v.get("n_sets") for v in r["predictors"].values() if "n_sets" in v), 0)
        if n_nets:
            print(f"network errors on {n_nets} test networks; ranking on {n_sets} candidate sets")
        print(f"{'predictor':10s} {'layer RMSPE':>11s} {'net RMSPE':>9s} {'±5%':>6s} {'±10%':>6s} {'tau':>6s} "
              f"{'pairs':>6s} {'fit s':>6s}")
        for name, v in r["predictors"].items():
            print(f"{name:10s} {_pct(v['layer_rmspe'], 11)} {_pct(v.get('rmspe'), 9)} {_pct(v.get('within5'), 6, 0)} "
                  f"{_pct(v.get('within10'), 6, 0)} {_num(v.get('kendall_tau'), 6)} {_num(v.get('pairwise'), 6)} "
                  f"{_num(v['fit_s'], 6)}")
        if r["curve"]:
            print("error vs samples (all kinds together; mbv2: MobileNetV2 test networks only):")
            for c in r["curve"]:
                cal = c.get("cal")
                cal_txt = (f"  | +cal net {_pct(cal.get('rmspe'), 7)}  ±5% {_pct(cal.get('within5'), 5, 0)}  "
                           f"±10% {_pct(cal.get('within10'), 5, 0)}  tau {_num(cal.get('kendall_tau'), 5)}"
                           if cal else "")
                print(f"  {c['label']:16s} {c['predictor']:8s} layer {_pct(c['layer_rmspe'], 7)}  "
                      f"net {_pct(c.get('rmspe'), 7)}  mbv2 {_pct(c.get('mbv2_rmspe'), 7)}  "
                      f"±10% {_pct(c.get('within10'), 5, 0)}  tau {_num(c.get('kendall_tau'), 5)}{cal_txt}")
        if r["speed"]:
            s = r["speed"]
            print(f"speed: {s['configs']:,} distinct random MobileNetV2 configurations "
                  f"({s['layer_rows']:,} layer rows, "
                  f"{s['distinct_layer_rows']:,} distinct, {s['granularity']}) in {s['seconds'] * 1e3:.1f} ms: "
                  f"{s['configs_per_s']:,.0f} configurations/s, {s['distinct_rows_per_s']:,.0f} distinct layer "
                  f"predictions/s; one whole-network query {s['one_query_ms']:.2f} ms")
    if transfer:
        print("\n== held-out platform: error vs samples per kind (layers; whole test networks)")
        for t in transfer:
            cal = f" (+cal on {t['calibration_networks']} nets)" if t.get("calibration_networks") else ""
            net = (f"  | nets{cal} RMSPE {_pct(t['net_rmspe'], 7)}  ±10% {_pct(t['net_within10'], 5, 0)}  "
                   f"±5% {_pct(t['net_within5'], 5, 0)}") if "net_rmspe" in t else ""
            print(f"  {t['target']:22s} n={t['samples_per_kind']:3d} {t['method']:12s} RMSPE {_pct(t['rmspe'], 7)}  "
                  f"±10% {_pct(t['within10'], 5, 0)}  ±5% {_pct(t['within5'], 5, 0)}{net}")


# ----- data sources ---------------------------------------------------------------------------------
def synthetic_data(seed: int, n_train: int, n_nets: int, dense_step: int = 32
                   ) -> tuple[dict, dict, TestNetworks, dict, str]:
    """Synthetic platforms, sparse samples, test networks with 'measured' truth, dense-table samples."""
    from compactnet.predictors.synthetic import measure_synthetic, synthetic_platforms
    from compactnet.predictors.testset import generate_testset
    from compactnet.profilers.sampling import make_strategy

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
    data = TestNetworks([n.spec() for n in ts.networks], n_networks=len(ts.networks))
    for c in ts.candidate_sets:
        start = len(data.specs)
        data.specs += [m.spec() for m in c.candidates]
        data.candidate_sets.append(list(range(start, len(data.specs))))
    dense_layers = list(make_strategy("dense", step=dense_step).stream())
    samples, dense = {}, {}
    for i, (key, (p, costs)) in enumerate(plats.items()):
        samples[key] = measure_synthetic(layers, p, costs, noise=0.03, seed=seed + i)
        dense[key] = measure_synthetic(dense_layers, p, costs, noise=0.03, seed=seed + 10 + i)
        data.truth[key] = synthetic_truth(data.specs, costs, rng)
    return plats, samples, data, dense, f"dense (step {dense_step})"


def synthetic_truth(specs: Sequence[Any], costs: Any, rng: np.random.Generator) -> np.ndarray:
    """'Measured' latency of whole synthetic networks: their layers' sum, 5% slower (cache), 2% noise."""
    from compactnet.predictors.synthetic import true_latency_ms

    return np.array([true_latency_ms(n.layers, costs).sum() * 1.05 for n in specs]) * \
        np.exp(rng.normal(0, 0.02, len(specs)))


def synthetic_devset(seed: int, plats: dict, n_nets: int) -> TestNetworks:
    """Synthetic development networks (another seed than the test networks), truth as :func:`synthetic_data`."""
    from compactnet.predictors.testset import generate_testset

    ts = generate_testset(seed=seed + 3, n_mobilenetv2=n_nets, n_resnet20=max(2, n_nets // 6),
                          n_vgg=max(2, n_nets // 6), n_candidate_sets=0)
    dev = TestNetworks([n.spec() for n in ts.networks], n_networks=len(ts.networks))
    rng = np.random.default_rng(seed + 4)
    for key, (_, costs) in plats.items():
        dev.truth[key] = synthetic_truth(dev.specs, costs, rng)
    return dev


def _store_samples(path: str, keys: Sequence[str], context: str | None, anchored: bool = True) -> dict:
    """Samples per platform key (as :func:`load_samples` gives them; missing platforms skipped with a warning)."""
    from compactnet.profilers.store import SampleStore

    out = {}
    with SampleStore(path) as store:
        for k in keys:
            try:
                out[k] = load_samples(store, k, context=context, anchored=anchored)
            except DataError as exc:
                if "several measuring contexts" in str(exc):
                    raise
                log.warning("%s", exc)
    return out


def real_data(args: argparse.Namespace) -> tuple[dict, TestNetworks, dict, str, dict]:
    """Samples (and dense samples) from the stores, test networks and their measured latency, and
    the anchor check of each platform's samples (:func:`anchor_effect`)."""
    from compactnet.profilers.anchors import anchor_normalized

    keys = [k for k in args.platforms.split(",") if k]
    context = None if args.context in ("", "any") else args.context
    raw = _store_samples(args.store, keys, context, anchored=False)
    samples = raw if args.no_anchors else {k: anchor_normalized(v) for k, v in raw.items()}
    anchors = {k: anchor_effect(v) for k, v in raw.items()}
    dense, label = {}, ""
    if args.dense_store:
        dense = _store_samples(args.dense_store, keys, context)
        steps = {infer_dense_step(v) for v in dense.values()} - {None}
        step = args.dense_step or (steps.pop() if len(steps) == 1 else None)
        label = f"dense (step {step})" if step else "dense"
    data = TestNetworks()
    if args.testset and args.results:
        data = load_networks(args.testset, args.results, keys, args.truth == "normalized")
    return samples, data, dense, label, anchors


def load_networks(testset: str | Path, results: str | Path, keys: Sequence[str], normalized: bool = False,
                  reference_ms: dict | None = None) -> TestNetworks:
    """A measured set's networks (measured on every platform of ``keys`` the file has) and their truth.

    Args:
        reference_ms: With ``normalized``: the reference's figure per platform to scale the ratios by
            (another set's, to put both sets on one scale; default this file's median).
    """
    from compactnet.errors import ConfigError
    from compactnet.predictors.testset import TestSet, load_results

    ts = TestSet.load(testset)
    res = {}
    for k in keys:
        try:
            res[k] = load_results(results, k, normalized=normalized, reference_ms=(reference_ms or {}).get(k))
        except ConfigError:
            log.warning("%s has no measurements on %s; that platform is left out of it", results, k)
    keys = list(res)
    data = TestNetworks()
    ids = [n.id for n in ts.networks if all(n.id in res[k] for k in keys)]
    data.n_networks = len(ids)
    by_id = {n.id: n for n in ts.networks}
    for c in ts.candidate_sets:
        for m in c.candidates:
            by_id[m.id] = m
    for c in ts.candidate_sets:
        got = [m.id for m in c.candidates if all(m.id in res[k] for k in keys)]
        if len(got) >= 2:
            data.candidate_sets.append(list(range(len(ids), len(ids) + len(got))))
            ids += got
    data.specs = [by_id[i].spec() for i in ids]
    data.truth = {k: np.array([res[k][i] for i in ids]) for k in keys}
    data.ids = list(ids)
    return data


def repeatability(dev_dir: Path, results: str, repeat: str, keys: Sequence[str], normalized: bool = False
                  ) -> dict[str, dict]:
    """How far two protocol measurements of the same development networks disagree, per platform.

    Networks are paired by id (only those both passes measured); ``normalized`` compares each
    network's ratio to its chunk's reference (times one common reference figure) instead of its ms.
    """
    out = {}
    for k in keys:
        ref = {}
        if normalized:
            from compactnet.predictors.testset import reference_median

            ref = {k: reference_median(dev_dir / results, k)}
        first = load_networks(dev_dir / "testset.json", dev_dir / results, [k], normalized, ref)
        second = load_networks(dev_dir / "testset.json", dev_dir / repeat, [k], normalized, ref)
        if k not in first.truth or k not in second.truth:
            continue
        a = dict(zip(first.ids, first.truth[k]))
        b = dict(zip(second.ids, second.truth[k]))
        both = [i for i in a if i in b]
        if not both:
            log.warning("%s: the two passes share no network; no repeatability figure", k)
            continue
        rel = np.array([b[i] / a[i] - 1 for i in both])
        out[k] = {"n": len(both), "rmspe": float(np.sqrt(np.mean(rel ** 2))),
                  "within5": float(np.mean(np.abs(rel) <= 0.05)), "within10": float(np.mean(np.abs(rel) <= 0.10)),
                  "worst": float(np.max(np.abs(rel))), "normalized": bool(normalized)}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synthetic", action="store_true", help="tiny synthetic run (no store, no runtime)")
    ap.add_argument("--store", help="sample store (SQLite) of the sparse samples")
    ap.add_argument("--dense-store", help="sample store of the dense baseline (profilers_bench.py --dense-store)")
    ap.add_argument("--dense-step", type=int, default=None,
                    help="channel step of the dense samples, for the label (default: read from the samples)")
    ap.add_argument("--platforms", default=DEFAULT_PLATFORMS)
    ap.add_argument("--context", default="rotation",
                    help="measuring context of the samples (default rotation; 'any': the one context stored, "
                         "refused when there are several)")
    ap.add_argument("--testset", help="test set JSON (predictors.testset)")
    ap.add_argument("--results", help="measured test-set latencies JSON (measure_testset)")
    ap.add_argument("--truth", choices=("measured", "normalized"), default="measured",
                    help="test-network truth: each network's own figure, or its ratio to the reference timed in "
                         "its chunk times the reference's median (takes out drift between chunks)")
    ap.add_argument("--devset", type=Path,
                    help="development set folder (measure_testset.py --seed ...: testset.json, results.json): every "
                         "predictor is also scored calibrated on it")
    ap.add_argument("--calibration", default="auto", choices=CALIBRATION_MODES,
                    help="calibration mode of the +cal rows")
    ap.add_argument("--repeat", default=None,
                    help="file name (inside --devset) of a second measurement of the development set: prints the "
                         "protocol's repeatability")
    ap.add_argument("--no-anchors", action="store_true",
                    help="use the samples as measured, not normalised by their batch's anchor layers")
    ap.add_argument("--sizes", default="50,100,300,1000,1500", help="training sizes of the error curve")
    ap.add_argument("--transfer-sizes", default="10,25,50")
    ap.add_argument("--speed-configs", type=int, default=2000, help="distinct configurations timed for speed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    ap.add_argument("--shipped", help="folder of saved portable predictors (one sub-folder per platform key, as "
                                      "`compactnet fit --out` writes them): each is also scored, calibration included")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    tsizes = [int(s) for s in args.transfer_sizes.split(",") if s]
    fast = args.synthetic
    if args.synthetic:
        plats, samples, data, dense, dense_label = synthetic_data(args.seed, n_train=400, n_nets=24)
        anchors = {}
        sizes = [s for s in sizes if s <= 300] or [50]
        tsizes = tsizes[:2]
        args.speed_configs = min(args.speed_configs, 500)
    else:
        if not args.store:
            ap.error("--store is required without --synthetic")
        samples, data, dense, dense_label, anchors = real_data(args)
    dev = None
    if args.devset and not args.synthetic:
        keys = [k for k in args.platforms.split(",") if k]
        ref = None
        if args.truth == "normalized" and args.results:  # the development set on the test set's scale
            from compactnet.predictors.testset import reference_median

            ref = {k: reference_median(args.results, k) for k in keys}
        dev = load_networks(args.devset / "testset.json", args.devset / "results.json", keys,
                            normalized=args.truth == "normalized", reference_ms=ref)
    elif args.synthetic:
        dev = synthetic_devset(args.seed, plats, n_nets=24)
    repeat = repeatability(args.devset, "results.json", args.repeat, list(dev.truth),
                           normalized=args.truth == "normalized") if (
        args.devset and args.repeat and dev is not None) else {}
    results = []
    rng = np.random.default_rng(args.seed)
    for key, ms in samples.items():
        if len(ms) < 10:
            log.warning("%s: only %d samples; skipped", key, len(ms))
            continue
        train, test = split_by_config(ms, 0.2, rng)
        results.append(evaluate_platform(key, train, test, data, [s for s in sizes if s < len(train)] + [len(train)],
                                         fast, args.seed, dense=dense.get(key, ()), dense_label=dense_label,
                                         speed_configs=args.speed_configs, dev=dev, calibration=args.calibration))
        results[-1]["repeatability"] = repeat.get(key)
        results[-1]["anchors"] = anchors.get(key)
    if args.shipped:
        add_shipped(results, args.shipped, data)
    transfer = []
    usable = {k: v for k, v in samples.items() if len(v) >= 30}
    if len(usable) >= 2:
        est = GBDTLatencyRegressor(n_estimators=80, interval="none") if fast else None
        for target in list(usable)[: (1 if fast else len(usable))]:
            truth = data.truth.get(target)
            nets = {} if truth is None or not data.n_networks else {
                "networks": data.specs[:data.n_networks], "network_truth": truth[:data.n_networks]}
            if nets and dev is not None and target in dev.truth:
                nets.update(calibration=(dev.specs, dev.truth[target]), calibration_mode=args.calibration)
            transfer += holdout_experiment(usable, target, sizes=tsizes, repeats=2 if fast else 5, seed=args.seed,
                                           estimator=est, **nets)
    if args.json:
        json.dump({"platforms": results, "transfer": transfer, "synthetic": bool(args.synthetic)}, sys.stdout,
                  indent=1, default=float)
        print()
    else:
        print_report(results, transfer, SYNTHETIC_NOTE if args.synthetic else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
