"""Generate the predictors' fixed test set and measure it for real on local runtimes (resumable).

The test set has its own seed and is de-duplicated against the sample store (issue 4): trimmed
Table-1 MobileNetV2 configurations (each stage's width ratio uniform in [0.25, 1]), ResNet-20 and
narrow-VGG width variants, plus ranking sets of close candidates. Every network is exported and
timed by the measurement protocol, in chunks of ``--chunk`` networks timed interleaved with a fixed
reference (the untrimmed MobileNetV2), so each network's latency comes with its ratio to a
reference timed minutes -- not hours -- from it, and drift between chunks shows in the reference's
figures. A busy machine is refused; a killed run resumes at the next chunk.

Usage::

    python benchmarks/measure_testset.py --store results/samples.sqlite --out results/testset \\
        --platforms ort-cpu-fp32-t1 openvino-cpu-fp32-t1 ncnn-cpu-fp32-t1
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from compactnet.predictors.testset import (TESTSET_SEED, TestSet, generate_testset, measure_testset,
                                               reference_figures)
    from compactnet.profilers.store import SampleStore

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, required=True, help="sample store to de-duplicate against")
    ap.add_argument("--out", type=Path, required=True, help="folder for testset.json and results.json")
    ap.add_argument("--platforms", nargs="*", default=["ort-cpu-fp32-t1", "openvino-cpu-fp32-t1",
                                                         "ncnn-cpu-fp32-t1"],
                    help="runtimes to measure on (none: only generate the set)")
    ap.add_argument("--mobilenetv2", type=int, default=200)
    ap.add_argument("--resnet20", type=int, default=30)
    ap.add_argument("--vgg", type=int, default=30)
    ap.add_argument("--candidate-sets", type=int, default=20)
    ap.add_argument("--seed", type=int, default=None,
                    help="generation seed (default: the test set's own); another seed draws a development set")
    ap.add_argument("--exclude", type=Path, nargs="*", default=[],
                    help="test-set JSON files whose networks must not be drawn again")
    ap.add_argument("--results", default="results.json", help="results file name inside --out")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--busy", default="refuse", choices=("refuse", "flag", "ignore"))
    ap.add_argument("--chunk", type=int, default=8, help="networks timed together with the reference")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    ts_path = args.out / "testset.json"
    seed = TESTSET_SEED if args.seed is None else args.seed
    if ts_path.exists():
        ts = TestSet.load(ts_path)
        if args.seed is not None and ts.seed != seed:
            ap.error(f"{ts_path} was generated with seed {ts.seed}, not --seed {seed}; use another --out")
        if args.exclude:
            logging.warning("%s exists: --exclude only applies when a set is generated (kept as it is)", ts_path)
    else:
        excluded = [TestSet.load(p) for p in args.exclude]
        with SampleStore(args.store) as store:
            ts = generate_testset(seed=seed, n_mobilenetv2=args.mobilenetv2, n_resnet20=args.resnet20,
                                  n_vgg=args.vgg, n_candidate_sets=args.candidate_sets, store=store,
                                  exclude=excluded)
        ts.save(ts_path)
    results = args.out / args.results
    for key in args.platforms:
        res = measure_testset(ts, key, results, chunk=args.chunk, rounds=args.rounds,
                              runs=args.runs, busy=args.busy)
        refs = reference_figures(results, key)
        drift = f"; reference {min(refs):.4f}-{max(refs):.4f} ms over {len(refs)} chunks" if refs else ""
        print(f"{key}: {len(res)} networks measured -> {results}{drift}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
