"""Does the measurement protocol repeat? Many networks measured twice, both estimators from one run.

Issue 14's benchmark. A set of networks (trimmed MobileNetV2, ResNet-20 and narrow-VGG at several
input sizes) is measured by the protocol (:func:`compactnet.measure.compare`, rounds spread over the
runtime's window) in chunks, each chunk with a fixed reference (the untrimmed MobileNetV2 at 32 px).
The whole set is measured a second time after ``--gap`` seconds, same chunks, new round orders. Each
pass keeps the raw calls, so both estimators come from the same timings:

* ``min``: the minimum over a network's timed calls (the rule);
* ``median``: the median of its round medians (the rule before).

Printed per runtime and estimator: the median |difference| between the passes and the share of
networks within ±1% / ±3%, in milliseconds and as ratios to the chunk's reference, and the coverage
of the stated 95% speedup intervals: the share of (network, pass) intervals of the speedup over the
reference that contain the pooled speedup (the estimator over both passes' calls).

``--pairs K --repeats N`` measures instead K pairs (reference vs a network) N times each, one
comparison at a time, and prints the coverage of their intervals around the pooled ratio: the
coverage check of the protocol's bootstrap interval on repeated measurements of the same pair.

``--layers A.sqlite B.sqlite`` compares instead two sample stores holding the same layer
configurations profiled twice: how far each layer's figure moved, raw and after the anchor layers'
normalisation (:func:`compactnet.profilers.anchors.anchor_normalized`), and how many samples stayed
unsettled (:func:`compactnet.profilers.base.round_spread` above the protocol's ``max_spread``).

``--sets DIR`` summarises instead a set measured twice by ``benchmarks/measure_testset.py``
(``results.json`` and ``results-repeat.json``, e.g. the predictors' development set): the same
repeatability figures for the protocol's default estimator, and the reference network's spread
across the chunks of each pass.

Resumable: the results file is rewritten after every chunk, and finished chunks are skipped.

Usage::

    python benchmarks/repeatability_bench.py --out results/machine-c/repeatability.json.gz \\
        --platforms ort-cpu-fp32-t1 openvino-cpu-fp32-t1 ncnn-cpu-fp32-t1
    python benchmarks/repeatability_bench.py --out results/machine-c/coverage.json.gz --pairs 4 --repeats 15
    python benchmarks/repeatability_bench.py --quick     # synthetic runtime, a few seconds
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

log = logging.getLogger("repeatability")
ESTIMATORS = ("min", "median")
#: (family, input size, share of the set): several families and input sizes (issue 14).
MIX = (("mobilenetv2", 32, 0.3), ("mobilenetv2", 64, 0.15), ("mobilenetv2", 96, 0.05), ("resnet20", 32, 0.2),
       ("resnet20", 48, 0.1), ("vgg16", 32, 0.2))
REFERENCE = "reference"


def load_results(path: Path) -> dict:
    """A results file, plain JSON or gzip-compressed (``.json.gz``: the raw calls take megabytes)."""
    raw = path.read_bytes()
    return json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)


def save_results(path: Path, results: dict) -> None:
    """Write a results file atomically (gzip-compressed when the name ends in ``.gz``)."""
    data = json.dumps(results).encode()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    tmp.replace(path)


def text_path(path: Path) -> Path:
    """The text report beside a results file: ``x.json`` or ``x.json.gz`` -> ``x.txt``."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    return path.with_name(name[:-5] + ".txt" if name.endswith(".json") else name + ".txt")


def draw_networks(n: int, seed: int = 14) -> list[dict]:
    """``n`` networks ``{"id", "model", "channels", "hw"}`` drawn from :data:`MIX` (widths as the test set's)."""
    from compactnet.predictors.testset import _DRAW

    rng = np.random.default_rng(seed)
    out = []
    counts = [max(1, round(share * n)) for _, _, share in MIX]
    counts[0] += n - sum(counts)
    for (model, hw, _), k in zip(MIX, counts):
        for i in range(k):
            out.append({"id": f"{model}-{hw}px-{i:03d}", "model": model, "channels": _DRAW[model](rng), "hw": hw})
    order = rng.permutation(len(out))  # chunks mix families and sizes
    return [out[i] for i in order]


def reference_net() -> dict:
    from compactnet.models.mobilenetv2 import DEFAULT_WIDTHS

    return {"id": REFERENCE, "model": "mobilenetv2", "channels": {"widths": list(DEFAULT_WIDTHS)}, "hw": 32}


def onnx_of(net: dict) -> bytes:
    """The protocol's export of a network at its input size."""
    from compactnet.export import export_onnx
    from compactnet.models import create_model

    return export_onnx(create_model(net["model"], net["channels"]), input_shape=(1, 3, net["hw"], net["hw"])).onnx_bytes


def spec_of(net: dict) -> Any:
    """The network's spec at 32 px (for the synthetic runtime, which only checks the script)."""
    from compactnet.extract import spec_for

    return spec_for(net["model"], net["channels"])


def instance_figures(times_model: np.ndarray, est: str) -> list[float]:
    """Each instance's figure (ms) by an estimator: ``(instances, rounds, runs)`` seconds in."""
    from compactnet.measure import summarise

    return [summarise(t, est).value_ms for t in np.asarray(times_model)]


def chunk_record(times: np.ndarray, ids: Sequence[str], when: str, load: float, seed: int) -> dict:
    """Both estimators' figures and speedup intervals of one chunk's raw timings (first = reference).

    Args:
        times: Seconds, ``(models, instances, rounds, runs)`` (``Comparison.times``).
    """
    from compactnet.measure import bootstrap_ratio, summarise

    rec: dict[str, Any] = {"when": when, "load": load, "ids": list(ids), "nets": {}}
    for est in ESTIMATORS:
        for i, nid in enumerate(ids):
            lat = summarise(times[i], est)
            r, lo, hi = bootstrap_ratio(times[0], times[i], seed=seed, estimator=est)
            rec["nets"].setdefault(nid, {})[est] = {"ms": lat.value_ms, "speedup": r, "low": lo, "high": hi,
                                                    "instances": instance_figures(times[i], est)}
    # every call (microseconds, 0.01 resolution): other order statistics can be checked afterwards
    rec["times_us"] = {nid: np.round(times[i] * 1e6, 2).tolist() for i, nid in enumerate(ids)}
    return rec


class Bench:
    """Measures the set's chunks on one platform, two passes, saving after every chunk."""

    def __init__(self, args: argparse.Namespace, results: dict, save: Callable[[], None]):
        self.args, self.results, self.save = args, results, save

    def model_of(self, net: dict) -> Any:
        return spec_of(net) if self.args.platform_is_synthetic else onnx_of(net)

    def run_pass(self, key: str, pass_name: str, nets: list[dict]) -> None:
        from compactnet.measure import compare

        done = self.results.setdefault(key, {}).setdefault(pass_name, [])
        chunks = [nets[i:i + self.args.chunk] for i in range(0, len(nets), self.args.chunk)]
        ref = reference_net()
        seed = {"pass1": 0, "pass2": 1000}[pass_name]
        for c, chunk in enumerate(chunks):
            if c < len(done):
                continue
            ids = [REFERENCE] + [n["id"] for n in chunk]
            models = [self.model_of(ref)] + [self.model_of(n) for n in chunk]
            cmp = compare(models, key, names=ids, rounds=self.args.rounds, runs=self.args.runs, busy=self.args.busy,
                          seed=seed + c, window_s=self.args.window, instances=self.args.instances, keep_times=True)
            done.append(chunk_record(cmp.times, ids, cmp.when, cmp.load, seed + c))
            log.info("%s %s chunk %d/%d (load %.2f)", key, pass_name, c + 1, len(chunks), cmp.load)
            self.save()


def _pooled(*instance_lists: list[float]) -> float:
    """A model's figure over several measurements: the median of all their instances' figures."""
    return float(np.median(sum(instance_lists, [])))


def _covers(x: dict, pooled: float, drift: float) -> bool:
    """Whether a recorded bootstrap interval, widened by ``drift`` (:func:`compactnet.measure.widen`),
    contains the pooled speedup."""
    from compactnet.measure import widen

    _, lo, hi = widen(x["speedup"], x["low"], x["high"], drift)
    return lo <= pooled <= hi


def estimate_drift(res: dict, est: str) -> float:
    """Between-pass relative sd of the speedups over the reference not explained by their bootstrap
    intervals: ``sqrt(sd_total^2 - sd_boot^2)`` on the log scale (robust: MAD and medians)."""
    p1 = {n: ch["nets"][n][est] for ch in res.get("pass1", []) for n in ch["ids"] if n != REFERENCE}
    p2 = {n: ch["nets"][n][est] for ch in res.get("pass2", []) for n in ch["ids"] if n != REFERENCE}
    ids = [n for n in p1 if n in p2]
    if len(ids) < 3:
        return math.nan
    dl = np.array([math.log(p2[n]["speedup"] / p1[n]["speedup"]) for n in ids])
    sd_total = 1.4826 * np.median(np.abs(dl - np.median(dl))) / math.sqrt(2)
    sd_boot = np.median([(math.log(x["high"]) - math.log(x["low"])) / (2 * 1.96) for p in (p1, p2)
                         for n, x in p.items() if n in ids and x["low"] > 0])
    return float(math.sqrt(max(0.0, sd_total ** 2 - sd_boot ** 2)))


def summarise_platform(res: dict, key: str = "") -> dict:
    """Both estimators' repeatability and interval coverage on one platform's two passes."""
    from compactnet.measure import default_drift

    p1 = {nid: (ch, i) for ch in res.get("pass1", []) for i, nid in enumerate(ch["ids"])}
    p2 = {nid: (ch, i) for ch in res.get("pass2", []) for i, nid in enumerate(ch["ids"])}
    ids = [nid for nid in p1 if nid in p2 and nid != REFERENCE]
    out: dict[str, Any] = {"networks": len(ids)}
    for est in ESTIMATORS:
        d_ms, d_ratio, cover, cover_drift = [], [], [], []
        drift = default_drift(key, est) if key else 0.0
        for nid in ids:
            (c1, _), (c2, _) = p1[nid], p2[nid]
            a, b = c1["nets"][nid][est], c2["nets"][nid][est]
            d_ms.append(b["ms"] / a["ms"] - 1)
            d_ratio.append(a["speedup"] / b["speedup"] - 1)  # speedup = ref / net, so the net's ratio is 1/speedup
            pooled = (_pooled(c1["nets"][REFERENCE][est]["instances"], c2["nets"][REFERENCE][est]["instances"])
                      / _pooled(a["instances"], b["instances"]))
            cover += [a["low"] <= pooled <= a["high"], b["low"] <= pooled <= b["high"]]
            cover_drift += [_covers(a, pooled, drift), _covers(b, pooled, drift)]
        out[est] = _stats(d_ms, "ms") | _stats(d_ratio, "ratio") | {
            "coverage": float(np.mean(cover)) if cover else math.nan, "drift_sd": drift,
            "coverage_with_drift": float(np.mean(cover_drift)) if cover_drift else math.nan,
            "drift_estimate": estimate_drift(res, est),
            "ci_halfwidth": float(np.median([(c1["nets"][n][est]["high"] - c1["nets"][n][est]["low"])
                                             / (2 * c1["nets"][n][est]["speedup"]) for n in ids
                                             for c1 in (p1[n][0],)])) if ids else math.nan}
    return out


def _stats(diffs: list[float], what: str) -> dict:
    a = np.abs(np.asarray(diffs, dtype=float))
    if not a.size:
        return {}
    return {f"{what}_median_absdiff": float(np.median(a)), f"{what}_within_1pct": float(np.mean(a <= 0.01)),
            f"{what}_within_3pct": float(np.mean(a <= 0.03)), f"{what}_worst": float(a.max())}


def coverage_pairs(args: argparse.Namespace, key: str, results: dict, save: Callable[[], None]) -> None:
    """``--pairs``/``--repeats``: each pair measured ``repeats`` times, one comparison at a time."""
    from compactnet.measure import compare

    nets = draw_networks(max(args.pairs, 6), seed=args.seed + 1)[:args.pairs]
    bench = Bench(args, results, save)
    done = results.setdefault(key, {}).setdefault("pairs", [])
    ref = reference_net()
    models = {n["id"]: bench.model_of(n) for n in [ref] + nets}
    for r in range(args.repeats):
        for p, net in enumerate(nets):
            if any(d["repeat"] == r and d["pair"] == net["id"] for d in done):
                continue
            cmp = compare([models[REFERENCE], models[net["id"]]], key, names=[REFERENCE, net["id"]],
                          rounds=args.rounds, runs=args.runs, busy=args.busy, seed=r * 100 + p,
                          window_s=args.window, instances=args.instances, keep_times=True)
            rec = chunk_record(cmp.times, [REFERENCE, net["id"]], cmp.when, cmp.load, r * 100 + p)
            done.append({"repeat": r, "pair": net["id"], **rec})
            save()
        log.info("%s repeat %d/%d", key, r + 1, args.repeats)


def summarise_pairs(res: dict, key: str = "") -> dict:
    """Coverage of the stated intervals around each pair's pooled ratio, per estimator: the bootstrap's
    alone and widened by the protocol's drift term for the platform (:data:`compactnet.measure.DRIFT_SD`)."""
    from compactnet.measure import default_drift

    out: dict[str, Any] = {}
    recs = res.get("pairs", [])
    pairs = sorted({d["pair"] for d in recs})
    for est in ESTIMATORS:
        cover, cover_drift, widths, spread = [], [], [], []
        drift = default_drift(key, est) if key else 0.0
        for p in pairs:
            rs = [d for d in recs if d["pair"] == p]
            pooled = (_pooled(*(d["nets"][REFERENCE][est]["instances"] for d in rs))
                      / _pooled(*(d["nets"][p][est]["instances"] for d in rs)))
            for d in rs:
                s = d["nets"][p][est]
                cover.append(s["low"] <= pooled <= s["high"])
                cover_drift.append(_covers(s, pooled, drift))
                widths.append((s["high"] - s["low"]) / (2 * s["speedup"]))
            sp = np.asarray([d["nets"][p][est]["speedup"] for d in rs])
            spread.append(float(sp.std(ddof=1) / sp.mean()) if sp.size > 1 else math.nan)
        out[est] = {"pairs": len(pairs), "comparisons": len(cover),
                    "coverage": float(np.mean(cover)) if cover else math.nan,
                    "drift_sd": drift, "coverage_with_drift": float(np.mean(cover_drift)) if cover_drift else math.nan,
                    "median_ci_halfwidth": float(np.median(widths)) if widths else math.nan,
                    "speedup_cv": float(np.nanmedian(spread)) if spread else math.nan}
    return out


def compare_stores(a: Path, b: Path, platforms: Sequence[str] | None = None, context: str | None = None) -> str:
    """Layer repeatability between two stores of the same configurations (raw and anchor-normalised)."""
    from compactnet.profilers.anchors import anchor_normalized
    from compactnet.profilers.base import Protocol, round_spread
    from compactnet.profilers.store import SampleStore, layer_key

    max_spread = Protocol(estimator="min").max_spread
    lines = []
    with SampleStore(a) as sa, SampleStore(b) as sb:
        keys = platforms or sorted({p["key"] for p in sa.platforms()})
        for key in keys:
            ma, mb = sa.measurements(key, context), sb.measurements(key, context)
            if not ma or not mb:
                continue
            out = [f"{key}: {len(ma)} / {len(mb)} samples ({ma[0].latency.estimator} estimator)"]
            for label, xa, xb in (("raw", ma, mb), ("anchor-normalised", anchor_normalized(ma), anchor_normalized(mb))):
                first = {layer_key(m.layer): m.latency.value_ms for m in xa}
                d = np.array([m.latency.value_ms / first[layer_key(m.layer)] - 1 for m in xb
                              if layer_key(m.layer) in first])
                if d.size:
                    out.append(f"  {label:18s} {d.size} layers: median |diff| {np.median(np.abs(d)):.2%}, within 3% "
                               f"{np.mean(np.abs(d) <= 0.03):.0%}, within 10% {np.mean(np.abs(d) <= 0.10):.0%}")
            unsettled = [round_spread(m.latency, m.overhead_ms) > max_spread for m in ma + mb]
            out.append(f"  unsettled (minima of even and odd rounds > {max_spread:.0%} apart, of the call): "
                       f"{sum(unsettled)} of {len(unsettled)} ({np.mean(unsettled):.1%})")
            lines += out
    return "\n".join(lines)


def _sessions(res: dict) -> Any:
    """Sessions per model, read off the stored timings (``(sessions, rounds, calls)`` per network)."""
    for part in ("pass1", "pairs"):
        for ch in res.get(part, []):
            return len(ch["times_us"][REFERENCE])
    return res.get("_instances", "?")


def compare_sets(folder: Path, first: str = "results.json", second: str = "results-repeat.json") -> str:
    """Repeatability of a measured set between its two results files, per platform."""
    from compactnet.spec import latency_ms

    a, b = (json.loads((folder / n).read_text()) for n in (first, second))
    lines = []
    for key in [k for k in a if not k.startswith("_") and k in b]:
        ids = [n for n in a[key] if n in b[key]]
        est = {a[key][n].get("estimator", "median") for n in ids}
        d_ms = np.array([latency_ms(b[key][n]) / latency_ms(a[key][n]) - 1 for n in ids])
        d_r = np.array([b[key][n]["ratio"] / a[key][n]["ratio"] - 1 for n in ids if a[key][n].get("ratio")
                        and b[key][n].get("ratio")])
        refs = [[latency_ms(c["reference"]) for c in r.get("_chunks", {}).get(key, [])] for r in (a, b)]
        lines.append(f"{key}: {len(ids)} networks measured twice ({', '.join(sorted(est))} estimator)")
        lines.append(f"  ms: median |diff| {np.median(np.abs(d_ms)):.2%}, "
                     f"within 3% {np.mean(np.abs(d_ms) <= 0.03):.0%}, "
                     f"worst {np.abs(d_ms).max():.1%}; ratio to the chunk's reference: median |diff| "
                     f"{np.median(np.abs(d_r)):.2%}, within 3% {np.mean(np.abs(d_r) <= 0.03):.0%}")
        for name, r in zip(("first", "second"), refs):
            if r:
                lines.append(f"  reference over the {name} pass's {len(r)} chunks: {min(r):.3f}-{max(r):.3f} ms")
    return "\n".join(lines)


def render(results: dict, args: argparse.Namespace) -> str:
    """The text report."""
    lines = []
    for key, res in results.items():
        if key.startswith("_"):
            continue
        hw = results.get("_platforms", {}).get(key, {})
        lines.append(f"{key} ({hw.get('hardware', '?')}, v{hw.get('runtime_version', '?')}), "
                     f"{_sessions(res)} sessions x {args.rounds} rounds x {args.runs} calls over "
                     f"{res.get('_window_s', '?')} s per comparison")
        if "pairs" in res:
            s = summarise_pairs(res, key)
            for est in ESTIMATORS:
                e = s[est]
                lines.append(f"  {est:6s} coverage of stated 95% speedup intervals: "
                             f"{e['coverage_with_drift']:.1%} with the "
                             f"protocol's drift term ({e['drift_sd']:.1%}), {e['coverage']:.1%} bootstrap alone "
                             f"({e['comparisons']} comparisons of {e['pairs']} pairs); median bootstrap half-width "
                             f"{e['median_ci_halfwidth']:.2%}; speedup CV across repeats {e['speedup_cv']:.2%}")
        if "pass1" in res:
            s = summarise_platform(res, key)
            lines.append(f"  {s['networks']} networks measured twice")
            lines.append("  estimator | ms: median |diff|, within 1%, within 3%, worst | ratio to reference: "
                         "median |diff|, within 1%, within 3%, worst | CI coverage (bootstrap alone) | "
                         "bootstrap half-width | drift estimate")
            for est in ESTIMATORS:
                e = s[est]
                if "ms_median_absdiff" not in e:
                    continue
                lines.append(f"  {est:9s} | {e['ms_median_absdiff']:.2%}, {e['ms_within_1pct']:.0%}, "
                             f"{e['ms_within_3pct']:.0%}, {e['ms_worst']:.1%} | {e['ratio_median_absdiff']:.2%}, "
                             f"{e['ratio_within_1pct']:.0%}, {e['ratio_within_3pct']:.0%}, {e['ratio_worst']:.1%} | "
                             f"{e['coverage_with_drift']:.1%} ({e['coverage']:.1%}) | {e['ci_halfwidth']:.2%} | "
                             f"{e['drift_estimate']:.2%}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("results/repeatability.json.gz"),
                    help="results file, gzip-compressed when it ends in .gz (resumed)")
    ap.add_argument("--platforms", nargs="+", default=["ort-cpu-fp32-t1", "openvino-cpu-fp32-t1", "ncnn-cpu-fp32-t1"])
    ap.add_argument("--networks", type=int, default=120, help="networks in the set (issue 14: >= 100)")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--chunk", type=int, default=12, help="networks per comparison besides the reference")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--window", type=float, default=None, help="seconds per comparison (default: the runtime's)")
    ap.add_argument("--instances", type=int, default=None, help="sessions per model (default: the runtime's)")
    ap.add_argument("--gap", type=float, default=120.0, help="seconds between the passes on one runtime")
    ap.add_argument("--pairs", type=int, default=0, help="coverage mode: pairs measured --repeats times each")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--busy", default="refuse", choices=("refuse", "flag", "ignore"))
    ap.add_argument("--quick", action="store_true", help="synthetic runtime, 12 networks: checks the script")
    ap.add_argument("--layers", type=Path, nargs=2, metavar=("A", "B"), default=None,
                    help="compare two sample stores of the same layer configurations instead")
    ap.add_argument("--context", default=None, help="with --layers: only samples of this context")
    ap.add_argument("--sets", type=Path, default=None, metavar="DIR",
                    help="summarise a set measured twice by measure_testset.py instead")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.sets:
        print(compare_sets(args.sets))
        return 0
    if args.layers:
        text = compare_stores(*args.layers, None if "--platforms" not in (argv or sys.argv) else args.platforms,
                              args.context)
        print(text)
        return 0
    if args.quick:
        args.platforms, args.networks, args.chunk, args.gap = ["synthetic-cpu-fp32-t1"], 12, 4, 0.0
        args.repeats = min(args.repeats, 5)
    from compactnet.measure import default_instances, default_window
    from compactnet.runtimes import get_runner

    results = load_results(args.out) if args.out.is_file() else {}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        save_results(args.out, results)

    nets = draw_networks(args.networks, args.seed)
    for key in args.platforms:
        args.platform_is_synthetic = key.startswith("synthetic")
        plat = get_runner(key).platform
        results.setdefault("_platforms", {})[key] = plat.to_dict()
        window = default_window(plat) if args.window is None else args.window
        results.setdefault(key, {})["_window_s"] = window
        results[key]["_instances"] = default_instances(plat) if args.instances is None else args.instances
        if args.pairs:
            coverage_pairs(args, key, results, save)
            continue
        bench = Bench(args, results, save)
        bench.run_pass(key, "pass1", nets)
        if len(results[key].get("pass2", [])) == 0 and args.gap > 0:
            log.info("%s: pausing %g s before the second pass", key, args.gap)
            time.sleep(args.gap)
        bench.run_pass(key, "pass2", nets)
    save()
    text = render(results, args)
    print(text)
    text_path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
