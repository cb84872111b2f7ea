"""Compression methods benchmark: low-rank (accnn), retraining-free weight sharing, post-training int8.

Real run (the lead, on a quiet machine; nothing else CPU-heavy running)::

    python benchmarks/methods_bench.py --model resnet20 --weights path/to/resnet20.cifar10.safetensors \\
        --platform ort-cpu-fp32-t1 --predictor predictors/ort-cpu-fp32-t1 --out runs/methods-resnet20
    python benchmarks/methods_bench.py --model mobilenetv2 \\
        --weights compactnet/assets/mobilenetv2.cifar10.safetensors --out runs/methods-mobilenetv2

Synthetic smoke run (tiny ResNet, synthetic images, synthetic platform; about a minute)::

    python benchmarks/methods_bench.py --quick --out /tmp/methods-quick

Reports (``report.json`` and ``report.md`` in ``--out``):

* **low-rank**, per requested speedup: ranks chosen by FLOPs (PCA energy x MACs, accnn) and by the
  latency predictor; theoretical (MACs) speedup, predicted speedup, measured speedup with its 95%
  interval (the three models timed together by the protocol), test top-1 before and after fine-tuning;
* **weight sharing**: compression ratio from file bytes, bits per weight per layer, exploration
  wall time and evaluations, test top-1; int8 (same model) top-1 and size for comparison;
* **int8**: test top-1 of the fp32 and QDQ int8 ONNX graphs (onnxruntime), measured speedup vs fp32.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger("methods_bench")


# ----- set-up ------------------------------------------------------------------------------------------
def synthetic_data(n_train: int = 600, n_val: int = 200, n_test: int = 200) -> Any:
    """Class-separable random images, CIFAR-shaped (:func:`compactnet.data.synthetic_cifar10`)."""
    from compactnet.data import synthetic_cifar10

    return synthetic_cifar10(n_train, n_val, n_test)


def load_predictor(arg: str | None, platform: Any) -> Any:
    """A latency model: a saved predictor (portable folder or joblib file), or ``flops``."""
    from compactnet.search.latency import MacsLatencyModel

    if arg is None or arg.lower() in ("flops", "macs"):
        return MacsLatencyModel()
    from compactnet.predictors import persist

    p = Path(arg)
    return persist.load_portable(p, platform) if p.is_dir() else persist.load(p, platform)


def comparison_row(comp: Any, i: int) -> dict:
    r, lo, hi = comp.speedups[i]
    lat = comp.latencies[i]
    return {"name": comp.names[i], "value_ms": lat.value_ms, "speedup": r, "low": lo, "high": hi,
            "protocol_ok": comp.protocol_ok}


# ----- low-rank ------------------------------------------------------------------------------------------
def bench_lowrank(model: Any, data: Any, args: Any, predictor: Any, runner: Any, compare: Any) -> list[dict]:
    from compactnet.export import export_onnx
    from compactnet.extract import network_spec_from_torch
    from compactnet.search.methods import lowrank as lr
    from compactnet.train import evaluate, get_recipe, train

    pointwise = args.pointwise if args.pointwise is not None else args.model == "mobilenetv2"
    infos = lr.layer_infos(model, include_pointwise=pointwise)
    spec = network_spec_from_torch(model)
    base_pred = float(np.asarray(predictor.predict_many([spec]))[0])
    top1 = evaluate(model, data.test)
    rows = []
    for target in args.speedups:
        t0 = time.perf_counter()
        flops_ranks = lr.select_ranks(model, target, infos=infos)
        sel = lr.select_ranks_latency(model, predictor, target, infos=infos)
        choice_s = time.perf_counter() - t0
        row: dict[str, Any] = {"requested": target, "choice_s": choice_s, "original_test_top1": top1}
        models = {}
        for label, ranks in (("flops", flops_ranks), ("predictor", sel.ranks)):
            small = lr.decompose(model, ranks)
            models[label] = small
            pred = float(np.asarray(predictor.predict_many([lr.decomposed_spec(spec, infos, ranks)]))[0])
            row[label] = {"ranks": ranks, "theoretical_speedup": lr.theoretical_speedup(model, small),
                          "predicted_speedup": base_pred / pred, "test_top1": evaluate(small, data.test)}
        if runner is not None:
            files = [export_onnx(m).onnx_bytes for m in (model, models["flops"], models["predictor"])]
            comp = compare(files, runner, names=["original", "lowrank-flops", "lowrank-predictor"],
                           rounds=args.rounds, busy=args.busy)
            for k, label in ((1, "flops"), (2, "predictor")):
                row[label]["measured"] = comparison_row(comp, k)
            row["comparison"] = comp.to_dict()
        if args.finetune_epochs > 0:
            recipe = get_recipe("finetune", epochs=args.finetune_epochs, batch_size=args.batch_size)
            for label, small in models.items():
                t1 = time.perf_counter()
                train(small, data.train, data.val, recipe, seed=args.seed, teacher=model if args.distill else None,
                      progress=not args.quiet, max_steps=args.max_steps)
                row[label]["test_top1_finetuned"] = evaluate(small, data.test)
                row[label]["finetune_s"] = time.perf_counter() - t1
        if args.out:
            lr.save_rank_config(Path(args.out) / f"ranks-flops-{target:g}x.json", flops_ranks, args.model,
                                requested_speedup=target, chosen_by="flops")
            lr.save_rank_config(Path(args.out) / f"ranks-predictor-{target:g}x.json", sel.ranks, args.model,
                                requested_speedup=target, chosen_by="predictor")
        rows.append(row)
        log.info("low-rank %.2fx: %s", target, json.dumps({k: row[k] for k in ("flops", "predictor")}, default=str)[:400])
    return rows


# ----- weight sharing ---------------------------------------------------------------------------------------
def int8_payload_bytes(model: Any) -> int:
    """Bytes of int8 weights + a float32 scale per output channel + every other tensor in fp32."""
    from compactnet.search.methods.weight_sharing import shared_parameters

    shared = shared_parameters(model)
    total = sum(p.numel() + 4 * p.shape[0] for p in shared.values())
    names = set(shared)
    return int(total + sum(v.numel() * v.element_size() for k, v in model.state_dict().items() if k not in names))


def bench_weight_sharing(model: Any, data: Any, args: Any, int8_rep: dict | None) -> dict:
    from compactnet.search.methods.weight_sharing import share_weights

    out = Path(args.out or ".") / "weight_sharing"
    rep = share_weights(copy.deepcopy(model), data, out, dataset_scale=args.dataset_scale, tolerance=args.tolerance,
                        seed=args.seed, model_name=args.model if not args.quick else None,
                        max_seconds=args.ws_max_seconds, max_evals=args.ws_max_evals, progress=not args.quiet)
    rep["int8_comparison"] = None
    if int8_rep is not None:
        fp32 = rep["fp32_safetensors_bytes"]
        rep["int8_comparison"] = {
            "test_top1_int8": int8_rep["test_top1_int8"], "test_top1_fp32_onnx": int8_rep["test_top1_fp32"],
            "int8_onnx_bytes": int8_rep["int8_onnx_bytes"], "ratio_vs_int8_onnx": fp32 / int8_rep["int8_onnx_bytes"],
            "int8_payload_bytes": int8_payload_bytes(model), "ratio_int8_payload": fp32 / int8_payload_bytes(model)}
    return rep


# ----- report -------------------------------------------------------------------------------------------------
def markdown(report: dict) -> str:
    lines = [f"# Compression methods: {report['model']} ({report['setting']})", "",
             f"Platform: {report['platform']} · data: {report['data']} · test hash {report['test_hash']}", ""]
    if report.get("lowrank"):
        lines += ["## Low-rank (accnn)", "",
                  "| requested | chosen by | theoretical | predicted | measured [95% CI] | top-1 | fine-tuned |",
                  "|---|---|---|---|---|---|---|"]
        for row in report["lowrank"]:
            for label in ("flops", "predictor"):
                r = row[label]
                m = r.get("measured")
                ms = f"{m['speedup']:.2f}x [{m['low']:.2f}, {m['high']:.2f}]" if m else "-"
                ft = f"{r['test_top1_finetuned']:.2f}" if "test_top1_finetuned" in r else "-"
                lines.append(f"| {row['requested']:g}x | {label} | {r['theoretical_speedup']:.2f}x | "
                             f"{r['predicted_speedup']:.2f}x | {ms} | {r['test_top1']:.2f} | {ft} |")
        lines += ["", f"Original test top-1: {report['lowrank'][0]['original_test_top1']:.2f}%", ""]
    ws = report.get("weight_sharing")
    if ws:
        e = ws["exploration"]
        lines += ["## Weight sharing (retraining-free)", "",
                  f"Compression {ws['compression_ratio']:.2f}x ({ws['fp32_safetensors_bytes']} -> {ws['artefact_bytes']} "
                  f"bytes), mean index bits {ws['mean_index_bits']:.2f}, exploration {e['wall_s']:.0f} s "
                  f"({e['evaluations']} evaluations, dataset scale {ws['dataset_scale']}), test top-1 "
                  f"{ws['test_top1_original']:.2f} -> {ws['test_top1_shared']:.2f}", ""]
        c = ws.get("int8_comparison")
        if c:
            lines += [f"int8 (QDQ, same model): test top-1 {c['test_top1_int8']:.2f}, "
                      f"{c['ratio_int8_payload']:.2f}x by payload, {c['ratio_vs_int8_onnx']:.2f}x by ONNX file", ""]
        lines += ["| layer | weights | k | bits/weight |", "|---|---|---|---|"]
        lines += [f"| {l['layer']} | {l['weights']} | {l['k']} | {l['bits_per_weight']:.2f} |" for l in ws["layers"]]
        lines.append("")
    q = report.get("int8")
    if q:
        m = q.get("measured")
        ms = f"{m['speedup']:.2f}x [{m['low']:.2f}, {m['high']:.2f}]" if m else "-"
        lines += ["## Post-training int8", "", f"Test top-1 fp32 {q['test_top1_fp32']:.2f} -> int8 {q['test_top1_int8']:.2f}; "
                  f"measured speedup {ms}; {q['calibration_images']} calibration images", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--weights", help="trained safetensors (required unless --quick)")
    ap.add_argument("--channels", help="channel configuration JSON of the weights")
    ap.add_argument("--data", help="CIFAR-10 path (default $COMPACTNET_DATA / the development copy)")
    ap.add_argument("--platform", default="ort-cpu-fp32-t1")
    ap.add_argument("--predictor", help="saved latency predictor of the platform, or 'flops'")
    ap.add_argument("--methods", default="lowrank,sharing,int8")
    ap.add_argument("--speedups", default="2.0,3.0", help="low-rank requested speedups")
    ap.add_argument("--pointwise", action=argparse.BooleanOptionalAction, default=None,
                    help="low-rank also decomposes 1x1 convs (default: on for mobilenetv2)")
    ap.add_argument("--finetune-epochs", type=int, default=3)
    ap.add_argument("--max-steps", type=int, default=None, help="steps per fine-tune epoch")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--distill", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--dataset-scale", type=float, default=0.5)
    ap.add_argument("--tolerance", type=float, default=0.99)
    ap.add_argument("--ws-max-seconds", type=float, default=1800.0)
    ap.add_argument("--ws-max-evals", type=int, default=None)
    ap.add_argument("--calibration", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--busy", default="refuse", choices=("refuse", "flag", "ignore"))
    ap.add_argument("--no-measure", action="store_true", help="skip latency measurements")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/methods-bench")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for training/evaluation")
    ap.add_argument("--quick", action="store_true", help="tiny synthetic smoke run (no real data or runtime timing)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from compactnet.measure import compare as protocol_compare
    from compactnet.models import create_model, load_weights
    from compactnet.search.methods.int8 import int8_report
    from compactnet.train import setup_threads

    setup_threads(args.threads or (1 if args.quick else None))
    args.speedups = [float(s) for s in args.speedups.split(",") if s]
    methods = {m.strip() for m in args.methods.split(",") if m.strip()}
    compare = protocol_compare
    if args.quick:
        from compactnet.runtimes import SyntheticRunner
        from compactnet.search.latency import MacsLatencyModel

        torch.manual_seed(0)
        args.model = "resnet20"
        channels: Any = {"stages": [8, 16, 16]}
        model = create_model("resnet20", channels)
        data = synthetic_data(400, 200, 200)
        from compactnet.train import Recipe, train

        train(model, data.train, None, Recipe("quick", "sgd", lr=0.05, epochs=2, batch_size=32, warmup_epochs=0.0,
                                              augment=False, label_smoothing=0.0), progress=False)
        runner = None if args.no_measure else SyntheticRunner("synthetic-cpu-fp32-t1")
        compare = functools.partial(protocol_compare, check_window=0, runs=5, warmup=2)
        predictor = MacsLatencyModel(ms_per_mmac=0.01, align=4, penalty=1.0)  # punishes unaligned ranks
        args.finetune_epochs, args.max_steps, args.batch_size = min(args.finetune_epochs, 1), 3, 32
        args.dataset_scale, args.ws_max_evals, args.calibration = 1.0, args.ws_max_evals or 30, 32
        setting = "quick synthetic"
    else:
        if not args.weights:
            ap.error("--weights is required (or --quick)")
        from compactnet.data import load_cifar10
        from compactnet.runtimes import get_runner

        channels = args.channels
        model = load_weights(create_model(args.model, channels), args.weights)
        data = load_cifar10(args.data)
        runner = None if args.no_measure else get_runner(args.platform)
        predictor = load_predictor(args.predictor, args.platform)
        setting = f"weights {args.weights}"
    model.eval()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from compactnet.data import split_hash

    report: dict[str, Any] = {"model": args.model, "setting": setting, "platform": getattr(runner, "platform", None)
                              and runner.platform.describe() or args.platform, "data": data.copy,
                              "test_hash": split_hash(data.test), "command": " ".join(sys.argv), "args": vars(args)}
    t0 = time.perf_counter()
    int8_rep = None
    if "int8" in methods or "sharing" in methods:
        int8_rep = int8_report(model, data, runner if "int8" in methods else None, args.calibration, args.seed,
                               compare=compare, rounds=args.rounds, busy=args.busy)
        models = int8_rep.pop("_models")
        (out / "int8.onnx").write_bytes(models.int8)
        if "int8" in methods:
            report["int8"] = int8_rep
    if "lowrank" in methods:
        report["lowrank"] = bench_lowrank(model, data, args, predictor, runner, compare)
    if "sharing" in methods:
        report["weight_sharing"] = bench_weight_sharing(model, data, args, int8_rep)
    report["wall_s"] = time.perf_counter() - t0
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    md = markdown(report)
    (out / "report.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
