"""How much accuracy does a longer final retrain give back to a trimmed network?

The quick preset's final retrain is 150 distilled steps (a third of an epoch), so its results lose
1.6-2.5 points at 1.8x. This script retrains a search result (``compactnet optimize`` output folder)
for more epochs by the fine-tune recipe, distilled from the unpruned model, picks the epoch on the
validation split and reports test top-1 against the result's and the baseline's. The architecture
does not change, so neither does the latency: nothing is timed.

    python benchmarks/retrain_bench.py results/search/amd/mobilenetv2-ort-cpu-fp32-t1-paper-s1p8x \
        --epochs 5 --out results/retrain-bench/amd-paper-s1p8x

Resumes from ``OUT/checkpoint.pt`` when interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("retrain_bench")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("result", help="a `compactnet optimize` output folder (weights.safetensors, channels.json)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--recipe", default="finetune")
    ap.add_argument("--distill", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--teacher", default="compactnet/assets/mobilenetv2.cifar10.safetensors",
                    help="unpruned weights distilled into the retrain")
    ap.add_argument("--control", action="store_true",
                    help="retrain the unpruned teacher instead, by the same recipe (the control row: what the extra "
                         "training alone gives)")
    ap.add_argument("--data", help="CIFAR-10 path (default $COMPACTNET_DATA)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from compactnet.data import load_cifar10
    from compactnet.models import create_model, load_weights, save_weights
    from compactnet.train import evaluate, get_recipe, setup_threads, train
    from compactnet.zoo.publish import read_result_dir

    src, out = Path(args.result), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res_dir = read_result_dir(src)
    rep, arch = res_dir.report, res_dir.architecture
    setup_threads(args.threads)
    data = load_cifar10(args.data)
    if args.control:
        model = load_weights(create_model(arch), args.teacher)
    else:
        model = load_weights(create_model(arch, res_dir.channels), res_dir.weights)
    teacher = load_weights(create_model(arch), args.teacher).eval() if args.distill else None
    before = evaluate(model, data.test)
    t0 = time.perf_counter()
    res = train(model, data.train, data.val, get_recipe(args.recipe, epochs=args.epochs), out_dir=out,
                seed=args.seed, teacher=teacher)
    after = evaluate(model, data.test)
    save_weights(model, out / "weights.safetensors")
    base = (rep.get("original") or {}).get("test_top1")
    record = {"result": str(src), "control": bool(args.control), "architecture": arch, "recipe": args.recipe,
              "epochs": args.epochs,
              "distill": bool(args.distill), "best_epoch": res.best_epoch, "best_val": res.best_val,
              "test_top1_before": before, "test_top1_after": after, "baseline_test_top1": base,
              "loss_vs_baseline_before": None if base is None else base - before,
              "loss_vs_baseline_after": None if base is None else base - after,
              "history": res.history, "seconds": time.perf_counter() - t0, "test_hash": data.test_hash,
              "data_copy": data.copy}
    (out / "report.json").write_text(json.dumps(record, indent=1))
    what = f"the unpruned {arch} (control for {src})" if args.control else str(src)
    lines = [f"# Longer retrain of {what}", "",
             f"{args.epochs} epochs of `{args.recipe}`{' distilled from the unpruned model' if args.distill else ''}, "
             f"epoch {res.best_epoch} chosen on validation ({res.best_val:.2f}%), {record['seconds'] / 60:.1f} min.", "",
             "| | test top-1 | vs baseline |", "|---|---|---|"]
    if base is not None:
        lines.append(f"| unpruned baseline | {base:.2f} | - |")
    first = "unpruned model before the extra training (control)" if args.control else "search result (its own final retrain)"
    lines.append(f"| {first} | {before:.2f} | "
                 f"{'-' if base is None else f'{before - base:+.2f}'} |")
    lines.append(f"| after this retrain | {after:.2f} | {'-' if base is None else f'{after - base:+.2f}'} |")
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
