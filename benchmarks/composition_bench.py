"""How well can a sum of single-layer latencies predict a whole network at all, drift taken out?

For networks of a measured set (``measure_testset.py`` output: each network's latency *ratio* to
the untrimmed MobileNetV2 timed interleaved in its chunk), this profiles every distinct layer of the
network together with every layer of that reference network, in one batch (so both sums see the same
machine speed), and compares the two ratios::

    layer-sum ratio = sum(layers of the network) / sum(layers of the reference)
    measured ratio  = the network's latency / the reference's, timed whole

If layer latencies composed perfectly, ``layer-sum ratio / measured ratio`` would be 1 for every
network; its spread is the floor under the whole-network error of *any* predictor that sums
per-layer predictions from samples profiled in that context (a perfect layer predictor included).

Usage (quiet machine)::

    python benchmarks/composition_bench.py --set results/amd/devset --platforms ort-cpu-fp32-t1 \\
        --networks 8 --context isolated --json results/amd/composition.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np


def compose(set_dir: Path, key: str, n_networks: int, context: str, results: str = "results.json") -> list[dict]:
    """One row per network: layer-sum ratio, measured ratio, their quotient."""
    from compactnet.predictors.testset import TestSet, reference_network
    from compactnet.profilers.base import get_profiler

    ts = TestSet.load(set_dir / "testset.json")
    res = json.loads((set_dir / results).read_text()).get(key, {})
    nets = [n for n in ts.networks if n.id in res and res[n.id].get("ratio")]
    by_model: dict[str, list] = {}
    for n in nets:
        by_model.setdefault(n.model, []).append(n)
    order = [n for group in zip(*by_model.values()) for n in group] if by_model else []  # round-robin models
    order += [n for n in nets if n not in order]
    ref = reference_network().spec()
    prof = get_profiler(key)
    try:
        return _rows(prof, order[:n_networks], ref, res, key, context)
    finally:
        prof.close()


def _rows(prof, nets: list, ref, res: dict, key: str, context: str) -> list[dict]:
    """Profile each network's layers with the reference's in one batch; compare the two ratios."""
    rows = []
    for n in nets:
        spec = n.spec()
        uniq = {l.key(): l for l in list(spec.layers) + list(ref.layers)}
        ms = prof.measure(list(uniq.values()), context=context)
        lat = {m.layer.key(): m.latency.value_ms for m in ms}
        s_net = sum(lat[l.key()] for l in spec.layers)
        s_ref = sum(lat[l.key()] for l in ref.layers)
        measured = float(res[n.id]["ratio"])
        rows.append({"id": n.id, "model": n.model, "layers": len(uniq), "layer_sum_ratio": s_net / s_ref,
                     "measured_ratio": measured, "quotient": s_net / s_ref / measured,
                     "reference_layer_sum_ms": s_ref})
        logging.info("%s %s: layer-sum ratio %.3f, measured %.3f -> %.3f", key, n.id, s_net / s_ref, measured,
                     rows[-1]["quotient"])
    return rows


def summary(rows: list[dict]) -> dict:
    """Spread of the quotients (after one common factor: a calibration can take out any constant)."""
    if not rows:
        return {"n": 0, "median_quotient": float("nan"), "rmspe_after_one_factor": float("nan"), "within5": float("nan"),
                "within10": float("nan"), "reference_layer_sum_ms": [float("nan"), float("nan")]}
    q = np.array([r["quotient"] for r in rows])
    rel = q / np.exp(np.mean(np.log(q))) - 1
    return {"n": len(q), "median_quotient": float(np.median(q)), "rmspe_after_one_factor": float(np.sqrt(np.mean(rel ** 2))),
            "within5": float(np.mean(np.abs(rel) <= 0.05)), "within10": float(np.mean(np.abs(rel) <= 0.10)),
            "reference_layer_sum_ms": [float(min(r["reference_layer_sum_ms"] for r in rows)),
                                       float(max(r["reference_layer_sum_ms"] for r in rows))]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", dest="set_dir", type=Path, required=True, help="a measured set (measure_testset.py)")
    ap.add_argument("--platforms", nargs="+", default=["ort-cpu-fp32-t1"])
    ap.add_argument("--networks", type=int, default=8, help="networks per platform (models taken in turn)")
    ap.add_argument("--context", default="isolated", choices=("rotation", "isolated", "flush"))
    ap.add_argument("--json", type=Path, help="write rows and summaries here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = {}
    for key in args.platforms:
        rows = compose(args.set_dir, key, args.networks, args.context)
        out[key] = {"rows": rows, "summary": summary(rows)}
        s = out[key]["summary"]
        print(f"{key}: {s['n']} networks; layer-sum ratio / measured ratio: median {s['median_quotient']:.3f}; "
              f"after one common factor RMSPE {100 * s['rmspe_after_one_factor']:.1f}%, "
              f"{100 * s['within5']:.0f}% within ±5%, {100 * s['within10']:.0f}% within ±10% "
              f"(reference layer sum {s['reference_layer_sum_ms'][0]:.3f}-{s['reference_layer_sum_ms'][1]:.3f} ms "
              "across batches: the drift the in-batch ratio takes out)")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
