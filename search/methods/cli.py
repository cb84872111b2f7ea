"""Click commands of the compression methods, for the lead to register on ``compactnet``'s group.

Wiring (in ``compactnet/cli.py``)::

    from compactnet.search.methods.cli import lowrank, quantize, share
    for cmd in (lowrank, share, quantize):
        cli.add_command(cmd)

This module imports only click and the root CLI's option helpers at import time; every stage is
imported inside the command that runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from compactnet.cli import (CHANNELS_OPT, DATA_OPT, JSON_OPT, MODEL_OPT, PLATFORM_OPT, WEIGHTS_OPT, command_line,
                            emit, load_model)

OUT_OPT = click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
                       help="Output folder.")
MEASURE_OPT = click.option("--measure/--no-measure", default=False, show_default=True,
                           help="Measure by the protocol (never while training or benchmarks run).")
BUSY_OPT = click.option("--busy", type=click.Choice(["refuse", "flag", "ignore"]), default="refuse", show_default=True)


def _write(out: Path, name: str, report: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    p = out / name
    p.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return p


@click.command()
@MODEL_OPT
@WEIGHTS_OPT
@CHANNELS_OPT
@click.option("--speedup", type=float, default=None, help="Requested speedup (theoretical MACs, or predicted "
              "latency with --predictor).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="JSON {layer: rank} to apply instead of choosing ranks.")
@click.option("--layer", default=None, help="Decompose this one layer (with --rank).")
@click.option("--rank", type=int, default=None, help="Rank of --layer.")
@click.option("--predictor", "predictor_path", default=None,
              help="Saved latency predictor of --platform: choose ranks by predicted latency instead of FLOPs.")
@click.option("--pointwise/--no-pointwise", default=False, show_default=True, help="Also decompose 1x1 convs.")
@click.option("--finetune-epochs", type=int, default=0, show_default=True, help="Fine-tune epochs after decomposing.")
@click.option("--distill/--no-distill", default=True, show_default=True, help="Distil the original into the fine-tune.")
@PLATFORM_OPT
@MEASURE_OPT
@BUSY_OPT
@DATA_OPT
@OUT_OPT
@JSON_OPT
def lowrank(model_name, weights, channels, speedup, config_path, layer, rank, predictor_path, pointwise,
            finetune_epochs, distill, platform_key, measure, busy, data, out_dir, as_json):
    """Low-rank decomposition (accnn): (N,d,d) convs -> (K,d,1)+(N,1,d), linears -> two by SVD."""
    from compactnet.models import save_weights
    from compactnet.search.methods import lowrank as lr

    given = sum(x is not None for x in (speedup, config_path, layer))
    if given != 1 or (layer is not None) != (rank is not None):
        raise click.UsageError("give exactly one of --speedup X, --config FILE or --layer NAME --rank K")
    model = load_model(model_name, channels, weights)
    extra: dict = {}
    if config_path:
        ranks = lr.load_rank_config(config_path)
    elif layer:
        ranks = {layer: rank}
    elif predictor_path:
        from compactnet.cli import load_predictor

        sel = lr.select_ranks_latency(model, load_predictor(platform_key, predictor_path), speedup,
                                      include_pointwise=pointwise)
        ranks, extra = sel.ranks, {"chosen_by": "predictor", "predicted_speedup": sel.predicted_speedup,
                                   "platform": platform_key}
    else:
        ranks, extra = lr.select_ranks(model, speedup, include_pointwise=pointwise), {"chosen_by": "flops"}
    small = lr.decompose(model, ranks)
    out = Path(out_dir)
    ds = None
    if finetune_epochs > 0 or data is not None:
        from compactnet.data import load_cifar10

        ds = load_cifar10(data)
    from compactnet.train import get_recipe

    rep = lr.lowrank_report(model, small, ds, platform_key if measure else None,
                            finetune_recipe=get_recipe("finetune", epochs=finetune_epochs) if finetune_epochs else None,
                            teacher=model if distill else None, busy=busy)
    lr.save_rank_config(out / "ranks.json", ranks, model_name, requested_speedup=speedup, **extra)
    save_weights(small, out / "weights.safetensors", metadata={"model": model_name, "ranks": json.dumps(ranks)})
    rep["command"] = command_line()
    _write(out, "report.json", rep)
    emit(rep, as_json, f"decomposed {len(ranks)} layer(s): theoretical speedup {rep['theoretical_speedup']:.2f}x; "
                       f"ranks in {out / 'ranks.json'}, weights in {out / 'weights.safetensors'}")


@click.command()
@MODEL_OPT
@WEIGHTS_OPT
@CHANNELS_OPT
@click.option("--dataset-scale", type=float, default=0.5, show_default=True,
              help="Fraction of the validation split evaluated during the exploration.")
@click.option("--tolerance", type=float, default=0.99, show_default=True, help="Kept fraction of validation top-1.")
@click.option("--max-size-mb", type=float, default=None, help="Fail unless the artefact fits this size.")
@click.option("--no-local", is_flag=True, help="Skip the local refinement step.")
@click.option("--max-minutes", type=float, default=None, help="Bound on the exploration's wall time.")
@click.option("--seed", type=int, default=0, show_default=True)
@DATA_OPT
@OUT_OPT
@JSON_OPT
def share(model_name, weights, channels, dataset_scale, tolerance, max_size_mb, no_local, max_minutes, seed, data,
          out_dir, as_json):
    """Retraining-free weight sharing (Dupuis et al.): bit-packed indices + codebooks, no retraining."""
    from compactnet.data import load_cifar10
    from compactnet.models import read_channels_file
    from compactnet.search.methods.weight_sharing import share_weights

    model = load_model(model_name, channels, weights)
    ch = read_channels_file(channels) if channels else None
    rep = share_weights(model, load_cifar10(data), out_dir, dataset_scale=dataset_scale, tolerance=tolerance,
                        local=not no_local, seed=seed, model_name=model_name, channels=ch,
                        max_size_bytes=int(max_size_mb * 1e6) if max_size_mb is not None else None,
                        max_seconds=max_minutes * 60 if max_minutes is not None else None)
    rep["command"] = command_line()
    _write(Path(out_dir), "weight_sharing.json", rep)
    emit(rep, as_json, f"{rep['compression_ratio']:.2f}x ({rep['artefact_bytes']} bytes), test top-1 "
                       f"{rep['test_top1_original']:.2f} -> {rep['test_top1_shared']:.2f}; artefact {rep['artefact']}")


@click.command()
@MODEL_OPT
@WEIGHTS_OPT
@CHANNELS_OPT
@click.option("--calibration", type=int, default=256, show_default=True, help="Training images calibrating.")
@click.option("--seed", type=int, default=0, show_default=True)
@PLATFORM_OPT
@MEASURE_OPT
@BUSY_OPT
@DATA_OPT
@OUT_OPT
@JSON_OPT
def quantize(model_name, weights, channels, calibration, seed, platform_key, measure, busy, data, out_dir, as_json):
    """Post-training static int8 (QDQ, onnxruntime), calibrated on training images."""
    from compactnet.data import load_cifar10
    from compactnet.search.methods.int8 import int8_report

    model = load_model(model_name, channels, weights)
    rep = int8_report(model, load_cifar10(data), platform_key if measure else None, calibration, seed, busy=busy)
    models = rep.pop("_models")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.int8.onnx").write_bytes(models.int8)
    if models.int8_b1 is not None:
        (out / "model.int8.b1.onnx").write_bytes(models.int8_b1)
    rep["command"] = command_line()
    _write(out, "report.json", rep)
    emit(rep, as_json, f"int8 test top-1 {rep['test_top1_int8']:.2f} (fp32 {rep['test_top1_fp32']:.2f}); "
                       f"graph in {out / 'model.int8.onnx'}")


__all__ = ["lowrank", "share", "quantize"]
