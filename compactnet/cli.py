"""The ``compactnet`` command line.

One spelling everywhere (DESIGN): ``compactnet train | evaluate | export | spec | platforms |
profile | agent | fit | predict | optimize | zoo {list,info,pull,best,publish,serve} | report``.
Each command imports its stage only when it runs. Errors caused by input or environment print one
line and exit with status 2, never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from compactnet.errors import CompactNetError

log = logging.getLogger("compactnet")

MODEL_OPT = click.option("--model", "model_name", default="mobilenetv2", show_default=True,
                         help="Model name: mobilenetv2, resnet20 or vgg16.")
CHANNELS_OPT = click.option("--channels", type=click.Path(dir_okay=False), default=None,
                            help="Channel configuration JSON (default: the untrimmed model).")
WEIGHTS_OPT = click.option("--weights", type=click.Path(dir_okay=False), default=None,
                           help="Weights (.safetensors). Default: the bundled CIFAR-10 baseline.")
DATA_OPT = click.option("--data", type=click.Path(), default=None, envvar="COMPACTNET_DATA",
                        help="CIFAR-10: a cifar-10-batches-py folder or cifar10-jpeg.npz ($COMPACTNET_DATA).")
PLATFORM_OPT = click.option("--platform", "platform_key", default="ort-cpu-fp32-t1", show_default=True,
                            help="Platform key {runtime}-{provider}-{precision}-t{threads}.")
JSON_OPT = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")


def command_line() -> str:
    """The command as typed, for provenance records."""
    return "compactnet " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def emit(obj: Any, as_json: bool, text: str | None = None) -> None:
    """Print JSON or text."""
    click.echo(json.dumps(obj, indent=2, default=str) if as_json else (text if text is not None else str(obj)))


def load_model(model_name: str, channels: str | None, weights: str | None, pretrained: bool = True):
    """Build a registered model and fill it with weights (bundled baseline by default)."""
    from compactnet.cards import resolve_weights
    from compactnet.models import create_model, load_weights

    model = create_model(model_name, channels)
    if pretrained:
        load_weights(model, resolve_weights(model_name, weights))
    return model.eval()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.version_option(package_name="compactnet")
def cli(verbose: int) -> None:
    """CompactNet: make a trained CNN fast on one specific device."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("compactnet").setLevel(min(level, logging.INFO))


# ----- foundation ----------------------------------------------------------------------------
@cli.command()
@MODEL_OPT
@CHANNELS_OPT
@DATA_OPT
@click.option("--recipe", default="default", show_default=True,
              help="Training recipe: default, finetune, paper-finetune, paper-retrain.")
@click.option("--epochs", type=int, default=None, help="Override the recipe's epochs.")
@click.option("--batch-size", type=int, default=None, help="Override the recipe's batch size.")
@click.option("--lr", type=float, default=None, help="Override the recipe's learning rate.")
@click.option("--init", "init_weights", type=click.Path(dir_okay=False), default=None,
              help="Start from these weights instead of random initialisation.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Output folder; a checkpoint found there is resumed.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=None, help="Intra-op threads (default: all cores).")
def train(model_name, channels, data, recipe, epochs, batch_size, lr, init_weights, out_dir, seed, threads):
    """Train a model on the 45,000 training images; choose the epoch on the 5,000 validation images."""
    import time

    from compactnet.cards import write_card
    from compactnet.data import load_cifar10
    from compactnet.models import config_of, create_model, load_weights, save_weights
    from compactnet.train import evaluate, get_recipe, setup_threads, train as run_train

    n_threads = setup_threads(threads)
    rec = get_recipe(recipe, epochs=epochs, batch_size=batch_size, lr=lr)
    model = create_model(model_name, channels)
    if init_weights:
        load_weights(model, init_weights)
    ds = load_cifar10(data)
    out = Path(out_dir)
    t0 = time.time()
    result = run_train(model, ds.train, ds.val, rec, out_dir=out, seed=seed)
    test = evaluate(model, ds.test)
    save_weights(model, out / f"{model_name}.safetensors")
    (out / "channels.json").write_text(json.dumps({"model": model_name, **config_of(model).to_dict()}, indent=2))
    card = {
        "model": model_name, "dataset": "cifar10", "channels": config_of(model).to_dict(),
        "recipe": rec.__dict__, "epochs_run": len(result.history), "best_epoch": result.best_epoch,
        "val_top1": result.best_val, "test_top1": test, "train_wall_s": result.wall_s,
        "images_per_s": result.images_per_s, "threads": n_threads, "data_copy": ds.copy,
        "test_hash": ds.test_hash, "split": "45000 train / 5000 val (stratified, seed 0) / 10000 test",
        "history": result.history, "command": command_line(), "session_wall_s": time.time() - t0,
    }
    write_card(out / "card.json", card)
    click.echo(f"best epoch {result.best_epoch}: val top-1 {result.best_val:.2f}%  test top-1 {test:.2f}%  "
               f"({result.images_per_s:.0f} images/s, {result.wall_s / 60:.1f} min) -> {out}")


@cli.command()
@MODEL_OPT
@CHANNELS_OPT
@WEIGHTS_OPT
@DATA_OPT
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True)
@click.option("--latency/--no-latency", default=True, show_default=True,
              help="Also measure latency by the protocol on --platform.")
@PLATFORM_OPT
@click.option("--rounds", type=int, default=7, show_default=True)
@click.option("--busy", type=click.Choice(["refuse", "flag", "ignore"]), default="flag", show_default=True,
              help="What to do when another process loads the machine while timing.")
@JSON_OPT
def evaluate(model_name, channels, weights, data, split, latency, platform_key, rounds, busy, as_json):
    """Top-1 on CIFAR-10 (test split by default) and latency by the measurement protocol."""
    from compactnet.data import load_cifar10
    from compactnet.train import evaluate as run_eval, setup_threads

    setup_threads()
    model = load_model(model_name, channels, weights)
    ds = load_cifar10(data)
    top1 = run_eval(model, getattr(ds, split))
    out: dict[str, Any] = {"model": model_name, "split": split, "top1": top1, "images": len(getattr(ds, split)),
                           "data_copy": ds.copy, "test_hash": ds.test_hash}
    text = f"{model_name}: top-1 {top1:.2f}% on the {split} split ({out['images']} images, {ds.copy} copy)"
    if latency:
        from compactnet.export import export_onnx
        from compactnet.measure import compare

        exp = export_onnx(model)
        comp = compare([exp.onnx_bytes], platform_key, names=[model_name], rounds=rounds, busy=busy)
        lat = comp.latencies[0]
        out["latency"] = {"platform": comp.platform.to_dict(), **lat.to_dict(), "load": comp.load,
                          "busy": comp.busy}
        text += (f"\nlatency on {comp.platform.describe()}: median {lat.median_ms:.3f} ms "
                 f"(round medians {lat.low_ms:.3f}-{lat.high_ms:.3f} ms, {len(lat.rounds)} rounds, "
                 f"load {comp.load:.2f}{', BUSY: figure flagged' if comp.busy else ''})")
    emit(out, as_json, text)


@cli.command()
@MODEL_OPT
@CHANNELS_OPT
@WEIGHTS_OPT
@click.option("--random-init", is_flag=True, help="Export with random weights (no weights file needed).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True, help="ONNX file to write.")
@click.option("--dynamic-batch", is_flag=True, help="Make the batch dimension dynamic.")
@click.option("--opset", type=int, default=17, show_default=True)
def export(model_name, channels, weights, random_init, out_path, dynamic_batch, opset):
    """Export a model to ONNX and check onnxruntime's outputs against torch's."""
    from compactnet.export import export_onnx

    model = load_model(model_name, channels, weights, pretrained=not random_init)
    res = export_onnx(model, out_path, opset=opset, dynamic_batch=dynamic_batch)
    click.echo(f"wrote {out_path} (opset {opset}, IR {res.ir_version}); onnxruntime vs torch max abs diff "
               f"{res.max_abs_diff:.2e}")


@cli.command()
@click.argument("onnx_file", required=False, type=click.Path(dir_okay=False))
@MODEL_OPT
@CHANNELS_OPT
@JSON_OPT
def spec(onnx_file, model_name, channels, as_json):
    """Print a model's NetworkSpec: from --model/--channels, or from an ONNX file."""
    from compactnet.extract import network_spec_from_onnx, network_spec_from_torch
    from compactnet.models import create_model

    if onnx_file:
        ns = network_spec_from_onnx(onnx_file)
    else:
        ns = network_spec_from_torch(create_model(model_name, channels), architecture=model_name)
    emit(ns.to_dict(), as_json, format_spec(ns))


def format_spec(ns) -> str:
    """A NetworkSpec as a text table."""
    rows = [f"{'#':>3} {'op':7} {'cin':>5} {'cout':>5} {'in HxW':>7} {'k':>3} {'s':>2} {'groups':>6} "
            f"{'bn':>3} {'act':6} {'MMACs':>8} {'params':>8}  groups(in->out)"]
    for i, l in enumerate(ns.layers):
        rows.append(f"{i:>3} {l.op:7} {l.cin:>5} {l.cout:>5} {f'{l.h}x{l.w}':>7} {l.kernel[0]:>3} "
                    f"{l.stride[0]:>2} {l.groups:>6} {'y' if l.bn else '-':>3} {str(l.act or '-'):6} "
                    f"{l.macs / 1e6:>8.3f} {l.params:>8}  {l.in_group}->{l.out_group}")
    rows.append(f"{ns.architecture}: {len(ns.layers)} layers, {ns.macs / 1e6:.2f} MMACs, {ns.params} params, "
                f"{len(ns.trimmable_groups)} trimmable channel groups")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning CompactNet errors into one line and exit status 2."""
    try:
        cli.main(args=argv, standalone_mode=False)
    except CompactNetError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
