"""Profiler benchmark (issue 3's "done when"): per local runtime, noise floor, seconds per sample,
the dense baseline vs a sparse run, and the Figure-7 check. ``--store`` / ``--dense-store`` keep
the sparse and dense samples for ``predictors_bench.py``.

For each platform it prints:

* the noise floor: one configuration (a Table-1 block) measured ``--repeats`` times, relative
  spread (max - min) / median of the medians;
* the dense baseline (the paper's table over the 18 units at 32x32 input) at ``--dense-step``:
  its sample count and measured wall time, and the count and wall time at step 1 -- the count is
  exact (computed), the wall time is EXTRAPOLATED from the seconds per sample at the step;
* a sparse run (``--strategy``, default sobol) of ``--samples`` (default 300) samples: wall time
  and seconds per sample (ONNX build, session compile or ncnn conversion, timing, store);
* the Figure-7 check: latency of the first 1..18 units as prefix networks vs the sum of their
  profiled units, error per prefix, with the Relu overhead subtracted; then a composition
  (effective per-call overhead ``o``; scale ``a`` and per-call ``b``) fitted on raw timings of the
  same prefixes, its in-sample error, and its error on the prefixes of a held-out random trim of
  MobileNetV2 (``--holdout-seed``) -- the number to quote. With ``--store`` the fitted composition
  is also recorded in that store's metadata (``compactnet.profilers.composition.load_composition``).
  ``--figure7-only`` skips everything else (a few minutes for the three runtimes).

Never run it while another CPU-heavy job runs (DESIGN): measurements taken on a busy machine are
refused unless ``--busy flag``. ``--quick`` runs the synthetic platform only with tiny settings,
as a smoke test.

Usage::

    python benchmarks/profilers_bench.py                       # ort, openvino, ncnn (those installed)
    python benchmarks/profilers_bench.py --quick               # synthetic smoke test, seconds
    python benchmarks/profilers_bench.py --platforms ort-cpu-fp32-t1 --json out.json
    python benchmarks/profilers_bench.py --figure7-only --json fig7.json   # Figure 7 only
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_PLATFORMS = ("ort-cpu-fp32-t1", "openvino-cpu-fp32-t1", "ncnn-cpu-fp32-t1")


def _fmt_s(s: float | None) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "n/a"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.2f} s"


def sparse_space(space: str):
    """The sparse run's configuration space: the paper's 18 MobileNetV2 units, or the runtime-level
    layers (conv, dwconv, add, pooling, linear) of all three registry models, which is what a
    predictor serving any ONNX file needs."""
    if space == "units":
        return None
    from compactnet.extract import spec_for
    from compactnet.profilers.sampling import network_space

    return [u for name in ("mobilenetv2", "resnet20", "vgg16") for u in network_space(spec_for(name))]


def bench_platform(key: str, args: argparse.Namespace, workdir: Path) -> dict:
    """Run every part of the benchmark on one platform; return a JSON-ready dict."""
    from compactnet.profilers.base import Protocol, get_profiler, noise_floor
    from compactnet.profilers.run import profile
    from compactnet.profilers.composition import save_composition
    from compactnet.profilers.validate import figure7

    protocol = Protocol(rounds=args.rounds, runs=args.runs, warmup=args.warmup, busy=args.busy,
                        context=args.context)
    prof = get_profiler(key, protocol)
    out: dict = {"platform": prof.platform.to_dict(), "protocol": protocol.to_dict()}
    if args.figure7_only:
        _bench_figure7(prof, args, out, figure7, save_composition)
        return out

    t0 = time.perf_counter()
    nf = noise_floor(prof, repeats=args.repeats)
    out["noise_floor"] = {k: nf[k] for k in ("rel_spread", "rel_iqr", "cv", "median_ms", "repeats")}
    out["noise_floor"]["wall_s"] = time.perf_counter() - t0

    dense_store = args.dense_store or workdir / f"{key}.sqlite"
    dense = profile(key, "dense", step=args.dense_step, store=dense_store, profiler=prof,
                    progress=not args.no_progress, batch_size=args.batch, context=args.context)
    out["dense"] = {**dense.dense, "measured": dense.measured, "already_stored": dense.skipped,
                    "wall_s_at_step": dense.wall_s, "seconds_per_sample": dense.seconds_per_sample,
                    "store": str(dense_store) if args.dense_store else None}

    sparse_store = args.store or workdir / f"{key}-sparse.sqlite"
    sparse = profile(key, args.strategy, samples=args.samples, store=sparse_store, seed=0,
                     network=sparse_space(args.space), profiler=prof, progress=not args.no_progress,
                     batch_size=args.batch, context=args.context)
    out["sparse"] = {"strategy": sparse.strategy, "space": args.space, "samples": sparse.measured,
                     "already_stored": sparse.skipped, "wall_s": sparse.wall_s,
                     "seconds_per_sample": sparse.seconds_per_sample, "store": str(sparse_store),
                     "kept": args.store is not None}

    _bench_figure7(prof, args, out, figure7, save_composition)
    return out


def _bench_figure7(prof, args: argparse.Namespace, out: dict, figure7, save_composition) -> None:
    t0 = time.perf_counter()
    fig = figure7(prof, seed=args.holdout_seed)
    out["figure7"] = fig.to_dict()
    out["figure7"]["wall_s"] = time.perf_counter() - t0
    out["figure7_table"] = fig.table()
    out["figure7_lines"] = fig.summary_lines()
    if args.store is not None and fig.composition is not None:
        from compactnet.profilers.store import SampleStore

        with SampleStore(args.store) as st:
            out["figure7"]["composition_store_key"] = save_composition(st, fig.composition)


def print_report(res: dict) -> None:
    p = res["platform"]
    print(f"\n=== {p['key']}  ({p['hardware']}, runtime {p['runtime_version']}) ===")
    if "dense" not in res:  # --figure7-only
        print(res["figure7_table"])
        print(f"Figure-7 wall time {_fmt_s(res['figure7'].get('wall_s'))}")
        return
    nf = res["noise_floor"]
    print(f"noise floor: {nf['rel_spread']:.1%} relative spread of {nf['repeats']} medians "
          f"(IQR {nf['rel_iqr']:.1%}, CV {nf['cv']:.1%}; probe block {nf['median_ms']:.4f} ms)")
    d = res["dense"]
    print(f"dense baseline at step {d['step']}: {d['count_at_step']} distinct samples ({d['entries_at_step']} table "
          f"entries), measured in {_fmt_s(d['wall_s_at_step'])} ({d['seconds_per_sample']:.3f} s/sample)"
          + (f"; kept in {d['store']}" if d.get("store") else ""))
    print(f"dense baseline at step 1: {d['full_count']} table entries, {d['full_distinct']} distinct samples; "
          f"wall time {_fmt_s(d['full_wall_s'])} [EXTRAPOLATED from step {d['step']}, not measured]")
    s = res["sparse"]
    print(f"sparse ({s['strategy']}, {s['space']}): {s['samples']} samples in {_fmt_s(s['wall_s'])} "
          f"({s['seconds_per_sample']:.3f} s/sample)" + (f"; kept in {s['store']}" if s.get("kept") else ""))
    print(res["figure7_table"])
    print(f"Figure-7 wall time {_fmt_s(res['figure7'].get('wall_s'))}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--platforms", nargs="+", default=None, help="platform keys (default: ort, openvino, ncnn)")
    ap.add_argument("--quick", action="store_true", help="synthetic platform only, tiny settings (smoke test)")
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--strategy", default="sobol", choices=("random", "sobol", "prior"))
    ap.add_argument("--dense-step", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch", type=int, default=16, help="layers per rotation")
    ap.add_argument("--context", default="rotation", choices=("rotation", "isolated", "flush"))
    ap.add_argument("--busy", default="refuse", choices=("refuse", "flag", "ignore"))
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--store", type=Path, default=None,
                    help="keep the sparse run's samples in this store (default: a temporary one)")
    ap.add_argument("--dense-store", type=Path, default=None,
                    help="keep the dense baseline's samples in this store (default: a temporary one); "
                         "predictors_bench.py --dense-store fits every estimator on them")
    ap.add_argument("--space", default="layers", choices=("layers", "units"),
                    help="sparse space: runtime-level layers of the 3 registry models, or the 18 MobileNetV2 units")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--figure7-only", action="store_true",
                    help="only the Figure-7 check (relu-subtracted, fitted in-sample, held-out)")
    ap.add_argument("--holdout-seed", type=int, default=0, help="seed of the Figure-7 held-out MobileNetV2 trim")
    args = ap.parse_args(argv)
    if args.quick:
        args.platforms = args.platforms or ["synthetic-cpu-fp32-t1"]
        args.samples, args.dense_step, args.repeats = min(args.samples, 30), max(args.dense_step, 64), 5
        args.rounds, args.runs, args.warmup = 7, 3, 1
    if args.platforms is None:
        from compactnet.runtimes import available_platforms

        have = {p.key for p in available_platforms()}
        args.platforms = [k for k in DEFAULT_PLATFORMS if k in have]
        missing = [k for k in DEFAULT_PLATFORMS if k not in have]
        if missing:
            print(f"not available here (skipped): {', '.join(missing)}", file=sys.stderr)
    results = []
    with tempfile.TemporaryDirectory(prefix="profilers-bench-") as tmp:
        for key in args.platforms:
            res = bench_platform(key, args, Path(tmp))
            print_report(res)
            results.append(res)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
