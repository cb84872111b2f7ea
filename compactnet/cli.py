"""The ``compactnet`` command line.

One spelling everywhere (DESIGN): ``compactnet train | evaluate | export | spec | platforms |
profile | agent | fit | predict | optimize | zoo {list,info,pull,best,publish,serve} | report``.
Each command imports its stage only when it runs. Errors caused by input or environment print one
line and exit with status 2, never a traceback.
"""

from __future__ import annotations

import json
import logging
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


def _set_estimator(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Set the process's estimator for this command (None: back to $COMPACTNET_ESTIMATOR or the rule)."""
    from compactnet.measure import set_default_estimator

    set_default_estimator(value)


ESTIMATOR_OPT = click.option(
    "--estimator", "timing_estimator", type=click.Choice(["min", "median"]), default=None, expose_value=False,
    callback=_set_estimator, is_eager=True,
    help="How a latency is reduced from timed calls: min (default, the protocol's rule: repeats on a shared "
         "machine) or median (median of round medians: the old rule, for a dedicated device). Also "
         "$COMPACTNET_ESTIMATOR.")


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


class LazyGroup(click.Group):
    """A click group whose listed subcommands are imported only when invoked (click's documented pattern)."""

    def __init__(self, *args: Any, lazy_subcommands: dict[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = lazy_subcommands or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy_subcommands])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_subcommands:
            import importlib

            module, attr = self.lazy_subcommands[cmd_name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             lazy_subcommands={"lowrank": "compactnet.search.methods.cli:lowrank",
                               "share": "compactnet.search.methods.cli:share",
                               "quantize": "compactnet.search.methods.cli:quantize"})
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
@click.option("--rounds", type=int, default=10, show_default=True)
@click.option("--busy", type=click.Choice(["refuse", "flag", "ignore"]), default="flag", show_default=True,
              help="What to do when another process loads the machine while timing.")
@ESTIMATOR_OPT
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
        per_round = "round minima" if lat.estimator == "min" else "round medians"
        text += (f"\nlatency on {comp.platform.describe()}: {lat.value_ms:.3f} ms ({lat.estimator} estimator; "
                 f"{comp.instances} session(s) x {len(lat.rounds)} rounds over {comp.window_s:g} s, IQR of "
                 f"{per_round} {lat.low_ms:.3f}-{lat.high_ms:.3f} ms; "
                 + (f"{lat.typical()}; " if lat.typical() else "")
                 + f"load {comp.load:.2f}{', BUSY: figure flagged' if comp.busy else ''})")
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
    """A NetworkSpec as a text table.

    Channel groups are shown as ``g0, g1, ...`` in the order of ``ns.groups`` rather than by their
    names, which come from layer names and differ between a torch model and its ONNX export: the
    table of a model and of its exported file are then identical.
    """
    label = {name: f"g{i}" for i, (name, _) in enumerate(ns.groups)}
    rows = [f"{'#':>3} {'op':7} {'cin':>5} {'cout':>5} {'in HxW':>7} {'k':>3} {'s':>2} {'groups':>6} "
            f"{'bn':>3} {'act':6} {'MMACs':>8} {'params':>8}  channel groups (in->out)"]
    for i, l in enumerate(ns.layers):
        rows.append(f"{i:>3} {l.op:7} {l.cin:>5} {l.cout:>5} {f'{l.h}x{l.w}':>7} {l.kernel[0]:>3} "
                    f"{l.stride[0]:>2} {l.groups:>6} {'y' if l.bn else '-':>3} {str(l.act or '-'):6} "
                    f"{l.macs / 1e6:>8.3f} {l.params:>8}  "
                    f"{label.get(l.in_group, l.in_group or '-')}->{label.get(l.out_group, l.out_group or '-')}")
    rows.append(f"{ns.architecture}: {len(ns.layers)} layers, {ns.macs / 1e6:.2f} MMACs, {ns.params} params, "
                f"{len(ns.trimmable_groups)} trimmable channel groups")
    return "\n".join(rows)


# ----- profilers ------------------------------------------------------------------------------
def _default_store() -> str:
    from compactnet.profilers.run import default_store_path

    return str(default_store_path())


STORE_OPT = click.option("--store", type=click.Path(dir_okay=False), default=None,
                         help="SQLite sample store (default: $COMPACTNET_HOME/samples.sqlite).")


@cli.command()
@click.option("--noise/--no-noise", default=True, show_default=True,
              help="Measure each platform's noise floor (one configuration measured --repeats times).")
@click.option("--repeats", type=int, default=20, show_default=True)
@ESTIMATOR_OPT
@JSON_OPT
def platforms(noise, repeats, as_json):
    """List what this machine can profile, with hardware, runtime version and noise floor."""
    from compactnet.profilers.run import platform_table

    rows = platform_table(noise=noise, repeats=repeats)
    lines = [f"{'platform':22} {'runtime':10} {'noise floor':>12}  hardware / note"]
    for r in rows:
        nf = r.get("noise_floor")
        nf_text = f"{100 * nf:.1f}%" if isinstance(nf, (int, float)) else "-"
        lines.append(f"{r['key']:22} {str(r.get('runtime_version', '')):10} {nf_text:>12}  "
                     f"{r.get('hardware', '')}{'  (' + r['note'] + ')' if r.get('note') else ''}")
    emit(rows, as_json, "\n".join(lines))


@cli.command()
@PLATFORM_OPT
@click.option("--strategy", type=click.Choice(["dense", "random", "sobol", "prior", "adaptive", "space"]), default="space",
              show_default=True, help="Which configurations to measure: space (common CNN layers at 1-224 px, "
              "what a predictor for any network needs), sobol/random/prior/adaptive (the --model's layers and "
              "trims), dense (the paper's table over the Table-1 MobileNetV2's units).")
@click.option("--samples", type=int, default=None, help="Sample budget (configurations).")
@click.option("--seconds", type=float, default=None, help="Time budget in seconds.")
@STORE_OPT
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--context", type=click.Choice(["rotation", "isolated", "flush"]), default="rotation",
              show_default=True, help="Cache state layers are timed in (DESIGN: rotation).")
@click.option("--step", type=int, default=8, show_default=True, help="Channel step of the dense table.")
@MODEL_OPT
@CHANNELS_OPT
@click.option("--busy", type=click.Choice(["refuse", "flag", "ignore"]), default="refuse", show_default=True)
@click.option("--agent", "agent_url", default=None, help="Profile a remote device through its agent (URL).")
@click.option("--token", envvar="COMPACTNET_AGENT_TOKEN", default=None, help="Agent token ($COMPACTNET_AGENT_TOKEN).")
@ESTIMATOR_OPT
@JSON_OPT
def profile(platform_key, strategy, samples, seconds, store, seed, context, step, model_name, channels, busy,
            agent_url, token, as_json):
    """Measure layer configurations on a platform and append them to the sample store."""
    from compactnet.profilers.base import Protocol, get_profiler
    from compactnet.profilers.run import profile as run_profile

    if samples is None and seconds is None and strategy != "dense":
        raise click.UsageError("give a budget: --samples N or --seconds S")
    protocol = Protocol(busy=busy, context=context)
    if agent_url:
        from compactnet.profilers.agent import RemoteProfiler

        profiler = RemoteProfiler(agent_url, platform_key, token=token, protocol=protocol)
    else:
        profiler = get_profiler(platform_key, protocol)
    network = None
    if strategy != "dense":
        # Sparse strategies sample the layers of the network as the runtime executes them (conv,
        # dwconv, add, ...), so the fitted predictor serves any ONNX file; `dense` is the paper's
        # table over the 18 units of the Table-1 MobileNetV2.
        from compactnet.extract import spec_for

        network = spec_for(model_name, channels)
    model = None
    if strategy == "adaptive":
        from compactnet.predictors.adaptive import PredictorUncertainty

        model = PredictorUncertainty(seed=seed)
    report = run_profile(platform_key, strategy, samples=samples, seconds=seconds, store=store or _default_store(),
                         seed=seed, network=network, context=context, profiler=profiler, protocol=protocol,
                         step=step, model=model)
    d = report.to_dict()
    text = (f"{report.platform.describe()}: measured {report.measured}, already stored {report.skipped}, "
            f"{report.distinct_in_store} distinct samples in {report.store}; {report.wall_s:.1f} s "
            f"({report.seconds_per_sample:.3f} s/sample), stopped by {report.stopped_by}")
    if report.dense:
        text += "\n" + json.dumps(report.dense)
    emit(d, as_json, text)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback requires --token.")
@click.option("--port", type=int, default=8765, show_default=True)
@click.option("--token", envvar="COMPACTNET_AGENT_TOKEN", default=None,
              help="Bearer token required on every request ($COMPACTNET_AGENT_TOKEN).")
@click.option("--max-upload-mb", type=float, default=64.0, show_default=True)
@click.option("--job-timeout", type=float, default=600.0, show_default=True, help="Seconds per job.")
def agent(host, port, token, max_upload_mb, job_timeout):
    """Serve measurement jobs for a remote host (run this on the target device)."""
    from compactnet.profilers.agent import serve_agent

    click.echo(f"agent listening on http://{host}:{port} ({'token required' if token else 'no token: loopback only'})",
               err=True)
    serve_agent(host, port, token=token, max_upload_mb=max_upload_mb, job_timeout_s=job_timeout, block=True)


# ----- predictors ----------------------------------------------------------------------------
#: `compactnet fit --calibration-mode` values (compactnet.predictors.network.CALIBRATION_MODES, kept here so
#: the CLI's help does not import the predictors; a test checks they agree).
CALIBRATION_MODE_CHOICES = ("auto", "scale", "affine", "layers", "kinds", "context")
#: Estimators `compactnet fit` can save in the portable, pickle-free format (the random-forest
#: baseline has none: use it from the Python API, compactnet.predictors).
PORTABLE_ESTIMATORS = ("gbdt", "lookup", "flops", "constant")


def _predictor_dir(platform_key: str) -> Path:
    """``$COMPACTNET_HOME/predictors/KEY``, else ``~/.cache/compactnet/predictors/KEY``."""
    from compactnet.data import home_dir

    return home_dir() / "predictors" / platform_key


def _calibration_set(model_name: str, n: int, platform_key: str, seed: int, rounds: int, busy: str,
                     extra_models: tuple[str, ...] = ()):
    """Measure ``n`` whole networks by the protocol, all in one interleaved run.

    The untrimmed ``model_name`` and each untrimmed extra model first, then seeded random trims of
    the models in turn until there are ``n``. Networks of several architectures (different layer
    counts) let :meth:`~compactnet.predictors.network.LatencyPredictor.calibrate` fit its per-layer
    term.

    Returns:
        ``(specs, comparison)``: the networks' specs and their :class:`~compactnet.measure.Comparison`.
    """
    import numpy as np
    import torch

    from compactnet.export import export_onnx
    from compactnet.extract import random_config, spec_for
    from compactnet.measure import compare
    from compactnet.models import create_model, get_entry

    entries = [get_entry(m) for m in dict.fromkeys((model_name,) + tuple(extra_models))]
    if n < len(entries):
        raise click.BadParameter(f"at least one network per model ({len(entries)}: "
                                 + ", ".join(e.name for e in entries) + f"); got {n}", param_hint="--calibrate")
    rng = np.random.default_rng(seed)
    nets = [(e, e.config_cls(), e.name) for e in entries]
    for i in range(n - len(entries)):
        e = entries[i % len(entries)]
        nets.append((e, random_config(e.name, rng), f"{e.name}-trim{i // len(entries) + 1}"))
    torch.manual_seed(seed)  # weights do not change latency; random ones need no weights file
    files = [export_onnx(create_model(e.name, cfg), input_shape=e.input_shape, check=False).onnx_bytes
             for e, cfg, _ in nets]
    comparison = compare(files, platform_key, names=[nm for _, _, nm in nets], rounds=rounds, busy=busy, seed=seed)
    return [spec_for(e.name, cfg) for e, cfg, _ in nets], comparison


@cli.command()
@PLATFORM_OPT
@STORE_OPT
@click.option("--estimator", type=click.Choice(PORTABLE_ESTIMATORS), default="gbdt", show_default=True,
              help="Per-kind estimator (all saved pickle-free; the random-forest baseline has no portable "
                   "form and is only in the Python API).")
@click.option("--context", type=click.Choice(["rotation", "isolated", "flush"]), default="rotation",
              show_default=True, help="Use only samples of this measuring context.")
@click.option("--calibrate", "n_calibrate", type=click.IntRange(min=0), default=0, show_default=True,
              help="Calibrate on N whole networks measured now on --platform: the untrimmed --model and N-1 "
                   "seeded random trims of it (refused on a busy machine).")
@MODEL_OPT
@click.option("--calibrate-with", "calibrate_with", default="", show_default=False,
              help="Comma-separated other models in the calibration set (e.g. resnet20,vgg16): networks with "
                   "different layer counts let the calibration fit a per-layer term.")
@click.option("--calibrate-from", "calibrate_from", type=click.Path(file_okay=False, exists=True), default=None,
              help="Calibrate on networks measured earlier instead: a folder benchmarks/measure_testset.py wrote "
                   "(testset.json and results.json) with --platform's measurements, e.g. a development set.")
@click.option("--calibration-mode", "calibration_mode", type=click.Choice(CALIBRATION_MODE_CHOICES), default="auto",
              show_default=True,
              help="scale | affine | layers (one factor, offset, per-layer term) | kinds (one factor per layer "
                   "kind: 4 networks per fitted term, i.e. 4 x (kinds + 2)) | context (a factor per layer learned "
                   "end to end from the networks: 12 or more); auto picks by the number of networks (context "
                   "from 30). "
                   "Used with --calibrate or --calibrate-from.")
@click.option("--anchors/--no-anchors", "anchored", default=True, show_default=True,
              help="Put the samples on one speed scale by the anchor layers timed in their batch (samples "
                   "profiled without anchors are used as measured).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the calibration trims.")
@click.option("--rounds", type=int, default=10, show_default=True,
              help="Protocol rounds of the calibration (timed by $COMPACTNET_ESTIMATOR, min by default).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the portable predictor (default: $COMPACTNET_HOME/predictors/PLATFORM, "
                   "else ~/.cache/compactnet/predictors/PLATFORM).")
@JSON_OPT
def fit(platform_key, store, estimator, context, n_calibrate, model_name, calibrate_with, calibrate_from,
        calibration_mode, anchored, seed, rounds, out_dir, as_json):
    """Fit a platform's latency predictor from its profiled samples (saved in a portable, pickle-free format)."""
    from compactnet.models import get_entry
    from compactnet.predictors.network import fit_platform
    from compactnet.predictors.persist import save_portable

    extra = tuple(m.strip() for m in calibrate_with.split(",") if m.strip())
    if calibration_mode != "auto" and not (n_calibrate or calibrate_from):
        raise click.UsageError("--calibration-mode needs --calibrate N or --calibrate-from DIR")
    if n_calibrate and calibrate_from:
        raise click.UsageError("--calibrate N measures networks now and --calibrate-from reads measured ones: "
                               "give one of them")
    if n_calibrate:
        for m in (model_name,) + extra:
            get_entry(m)  # an unknown model fails before the fit
    pred = fit_platform(store or _default_store(), platform_key, context=context, estimator=estimator,
                        anchored=anchored)
    key = pred.platform_.key
    lines = [f"fitted {estimator} predictor for {pred.platform_.describe()} from "
             f"{sum(pred.n_samples_.values())} samples ("
             + ", ".join(f"{k} {v}" for k, v in sorted(pred.n_samples_.items())) + ")"]
    measured = None
    if calibrate_from:
        import numpy as np

        from compactnet.predictors.testset import load_measured

        nets, ms = load_measured(calibrate_from, key)
        specs = [n.spec() for n in nets]
        before = pred.predict_many(specs)
        pred.calibrate(specs, list(ms), mode=calibration_mode)
        after = pred.predict_many(specs)
        cal = pred.calibration_ or {}
        rel = np.abs(after / ms - 1)
        measured = {"from": str(calibrate_from), "networks": [
            {"name": n.id, "measured_ms": float(m), "predicted_before_ms": float(b), "predicted_after_ms": float(a)}
            for n, m, b, a in zip(nets, ms, before, after)]}
        lines.append(f"calibrated on {len(specs)} network(s) measured earlier ({calibrate_from}): {cal.get('mode')} "
                     f"fit, scale {pred.scale_:.3f}, per layer {pred.per_call_ms_:+.4f} ms, offset "
                     f"{pred.offset_:.4f} ms" + "".join(f", {k} x{a:.3f}" for k, a in sorted(pred.kind_scale_.items())))
        lines.append(f"  on those networks: median |error| {100 * np.median(np.abs(before / ms - 1)):.1f}% before, "
                     f"{100 * np.median(rel):.1f}% after ({100 * np.mean(rel <= 0.1):.0f}% within ±10%)")
    if n_calibrate:
        specs, comp = _calibration_set(model_name, n_calibrate, platform_key, seed, rounds, "refuse", extra)
        before = [pred.predict(sp).value_ms for sp in specs]
        pred.calibrate(specs, list(comp.latencies), mode=calibration_mode)
        after = [pred.predict(sp).value_ms for sp in specs]
        measured = {"comparison": comp.to_dict(),
                    "networks": [{"name": nm, "macs": sp.macs, "measured_ms": lat.value_ms, "predicted_before_ms": b,
                                  "predicted_after_ms": a}
                                 for nm, sp, lat, b, a in zip(comp.names, specs, comp.latencies, before, after)]}
        cal = pred.calibration_ or {}
        lines.append(f"calibrated on {len(specs)} whole network(s) measured on {comp.platform.key} "
                     f"(load {comp.load:.2f}{'' if comp.protocol_ok else ', NOT a protocol measurement'}): "
                     f"{cal.get('mode', '?')} fit, scale {pred.scale_:.3f}, per layer {pred.per_call_ms_:+.4f} ms, "
                     f"offset {pred.offset_:.4f} ms"
                     + "".join(f", {k} x{a:.3f}" for k, a in sorted(pred.kind_scale_.items())))
        lines.append(f"  {'network':22} {'MMACs':>7} {'measured ms':>12} {'predicted before':>17} {'after':>8}")
        for row in measured["networks"]:
            lines.append(f"  {row['name']:22} {row['macs'] / 1e6:>7.2f} {row['measured_ms']:>12.4f} "
                         f"{row['predicted_before_ms']:>17.4f} {row['predicted_after_ms']:>8.4f}")
    out = Path(out_dir) if out_dir else _predictor_dir(key)
    save_portable(pred, out)
    lines.append(f"saved -> {out}")
    info = {"platform": key, "hardware": pred.platform_.hardware, "estimator": estimator, "out": str(out),
            "predictor": pred.describe(), "calibration_set": measured}
    emit(info, as_json, "\n".join(lines))


def load_predictor(platform_key: str, predictor_path: str | None):
    """A saved portable predictor: the one given, or the platform's default one.

    The platform is compared with this machine (key, hardware): a predictor profiled on other
    hardware loads with a warning.
    """
    from compactnet.errors import ModelFileError
    from compactnet.predictors.persist import load_portable
    from compactnet.spec import Platform

    plat = Platform.parse(platform_key)  # with this machine's hardware, so a mismatch warns
    path = Path(predictor_path) if predictor_path else _predictor_dir(plat.key)
    if not path.exists():
        raise ModelFileError(f"no predictor at {path}; fit one first (compactnet fit --platform {plat.key}) "
                             "or pass --predictor DIR")
    return load_portable(path, platform=plat)


def _canonical_key(platform_key: str) -> str:
    """The canonical key of a platform argument (parsing errors name the parameter)."""
    from compactnet.spec import Platform

    return Platform.parse(platform_key).key


def auto_fit_predictor(platform_key: str, model_name: str, samples: int = 1200, model_samples: int = 300,
                       n_calibrate: int | None = None, context: str = "isolated", busy: str = "refuse"):
    """Profile this machine once, fit a predictor with its in-context correction, and save it where `fit` would.

    What ``compactnet optimize`` does on a fresh machine with no predictor for the platform (issue
    15's budget: at most 1,500 layer samples and 100 whole networks):

    1. ``samples`` layers of the ``space`` prior (common CNN layers at 32-224 px) and
       ``model_samples`` sobol samples of the model's own layers, timed alone;
    2. the GBDT fit per layer kind;
    3. ``n_calibrate`` whole networks (:func:`compactnet.predictors.calibration.calibration_set`:
       the untrimmed model, trims of it and networks of the latency families) measured by the
       protocol, resumable under ``$COMPACTNET_HOME/calibration/PLATFORM``;
    4. the in-context correction learned from them (``calibrate``; fewer than 30 networks fall
       back to the simpler calibrations).

    Every step resumes where an interrupted run stopped (the samples are in the store, the
    networks' figures in the results file). Logs one line per step with its wall time.
    """
    import time

    from compactnet.data import home_dir
    from compactnet.extract import spec_for
    from compactnet.predictors.calibration import DEFAULT_NETWORKS, calibration_set, measure_calibration, measured
    from compactnet.predictors.network import fit_platform
    from compactnet.predictors.persist import save_portable
    from compactnet.predictors.testset import TestSet
    from compactnet.profilers.base import Protocol
    from compactnet.profilers.run import profile as run_profile
    from compactnet.spec import Platform

    key = Platform.parse(platform_key).key
    n_calibrate = DEFAULT_NETWORKS if n_calibrate is None else n_calibrate
    store = _default_store()
    log.warning("no predictor for %s yet: profiling it once (%d layer samples into %s, %d whole networks), then "
                "fitting; later runs reuse the predictor (--no-auto-fit to refuse instead)", key,
                samples + model_samples, store, n_calibrate)
    t0 = time.time()
    protocol = Protocol(busy=busy, context=context)
    reps = [run_profile(key, "space", samples=samples, store=store, context=context, protocol=protocol)]
    if model_samples:
        reps.append(run_profile(key, "sobol", samples=model_samples, store=store, network=spec_for(model_name),
                                context=context, protocol=protocol))
    t1 = time.time()
    log.info("profiled %s: %d layers measured, %d already stored (%.1f s)", key, sum(r.measured for r in reps),
             sum(r.skipped for r in reps), t1 - t0)
    pred = fit_platform(store, key, context=context)
    folder = home_dir() / "calibration" / key
    ts_path = folder / "testset.json"
    ts = TestSet.load(ts_path) if ts_path.is_file() else calibration_set(n_calibrate, model_name)
    ts.save(ts_path)
    measure_calibration(ts, key, folder / "results.json", busy=busy)
    _, specs, ms = measured(ts, folder / "results.json", key)
    t2 = time.time()
    log.info("measured %d whole networks on %s (%.1f s)", len(specs), key, t2 - t1)
    pred.calibrate(specs, ms)
    out = save_portable(pred, _predictor_dir(key))
    log.info("one-time profiling of %s: %.1f s in all (layers %.1f s, networks %.1f s, fit %.1f s); predictor "
             "saved -> %s", key, time.time() - t0, t1 - t0, t2 - t1, time.time() - t2, out)
    return pred


PREDICTOR_OPT = click.option("--predictor", "predictor_path", type=click.Path(), default=None,
                             help="Portable predictor folder (default: the one `compactnet fit` wrote).")


@cli.command()
@click.argument("onnx_file", required=False, type=click.Path(dir_okay=False))
@PLATFORM_OPT
@MODEL_OPT
@CHANNELS_OPT
@PREDICTOR_OPT
@JSON_OPT
def predict(onnx_file, platform_key, model_name, channels, predictor_path, as_json):
    """Predict the latency of a model (--model/--channels) or any ONNX file, per layer and in total."""
    from compactnet.extract import network_spec_from_onnx, spec_for
    from compactnet.predictors.network import predict_table

    pred = load_predictor(platform_key, predictor_path)
    spec_ = network_spec_from_onnx(onnx_file) if onnx_file else spec_for(model_name, channels)
    rows, total = predict_table(pred, spec_)
    inside = any("in_network_ms" in r for r in rows)
    lines = [f"{'layer':28} {'op':7} {'cin':>5} {'cout':>5} {'HxW':>7} {'alone ms':>8} {'interval':>17}"
             + (f" {'in net ms':>9}" if inside else "") + f" {'share':>6}"]
    for r in rows:
        interval = f"{r['low_ms']:.4f}-{r['high_ms']:.4f}"
        hw = f"{r['h']}x{r['w']}"
        lines.append(f"{str(r['name'])[:28]:28} {r['op']:7} {r['cin']:>5} {r['cout']:>5} {hw:>7} "
                     f"{r['ms']:>8.4f} {interval:>17}" + (f" {r['in_network_ms']:>9.4f}" if inside else "")
                     + f" {100 * r['share']:>5.1f}%" + ("  (fallback)" if r.get("fallback") else ""))
    fallback = sorted({r["op"] for r in rows if r.get("fallback")})
    if fallback:
        lines.append(f"no samples of {', '.join(fallback)} layers on {platform_key}: predicted by the FLOPs-linear "
                     f"fallback fitted on every kind's samples (profile them to do better)")
    lines.append(f"total on {platform_key}: {total.value_ms:.4f} ms predicted "
                 f"(interval {total.low_ms:.4f}-{total.high_ms:.4f} ms"
                 + (", layers in network context" if inside else "") + ")")
    emit({"platform": platform_key, "layers": rows, "total": total.to_dict()}, as_json, "\n".join(lines))


# ----- search ---------------------------------------------------------------------------------
@cli.command()
@MODEL_OPT
@WEIGHTS_OPT
@CHANNELS_OPT
@PLATFORM_OPT
@click.option("--speedup", type=float, default=None, help="Target speedup over the original (measured).")
@click.option("--latency-ms", type=float, default=None, help="Target latency on the platform instead.")
@PREDICTOR_OPT
@click.option("--flops-proxy", is_flag=True, help="Drive the search by FLOPs instead of a latency predictor.")
@click.option("--preset", type=click.Choice(["default", "quick", "paper"]), default="default", show_default=True,
              help="Search budget: default (the quick search, then 3 distilled retrain epochs: about 6 min on 2 "
                   "cores at 1.5x, the model to ship), quick (150 retrain steps: 2 min, for demos and tests), paper "
                   "(the paper's schedule and 15 retrain epochs: hours).")
@click.option("--mode", type=click.Choice(["paper", "extended"]), default="paper", show_default=True,
              help="paper: the 18 block widths by stage; extended (experimental: every channel group; it has not "
                   "matched paper mode's measured speedup and accuracy at the same target).")
@click.option("--importance", type=click.Choice(["l2", "group-l2", "random", "taylor", "fisher"]), default="l2",
              show_default=True, help="Which filters to keep.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/optimize", show_default=True,
              help="Output folder; a search found there with the same settings is resumed.")
@DATA_OPT
@click.option("--n-jobs", type=click.IntRange(min=-1), default=1, show_default=True,
              help="Candidates scored in parallel (-1: all cores).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--measure/--no-measure", default=True, show_default=True,
              help="Measure original vs trimmed by the protocol and continue until the target holds.")
@click.option("--busy", type=click.Choice(["refuse", "flag", "ignore"]), default="refuse", show_default=True)
@click.option("--iterations", type=int, default=None, help="Override the preset's number of iterations N.")
@click.option("--retrain/--no-retrain", default=True, show_default=True, help="Run the final retrain.")
@click.option("--distill/--no-distill", default=None,
              help="Distil the unpruned model into fine-tuning and retraining (default: the preset's).")
@click.option("--snapshots", default=None,
              help="Comma-separated speedups (e.g. 1.5,1.8,2.0) at which to save a measured snapshot of the trimmed "
                   "network under OUT/snapshots (retrained after the search unless --no-retrain-snapshots).")
@click.option("--retrain-snapshots/--no-retrain-snapshots", default=None,
              help="Retrain each snapshot by the final recipe into a folder `zoo publish` reads "
                   "(default: as --retrain).")
@click.option("--final-repeats", type=click.IntRange(min=1), default=None,
              help="Protocol comparisons of the final decision; reached only if the worst lower bound meets the "
                   "target (default: 3 with --preset paper, 2 with quick).")
@click.option("--methods", default="trim", show_default=True,
              help="Comma-separated methods: trim, lowrank, int8, share. Anything beyond trim runs the composition; "
                   "share (weight sharing) targets size after the latency methods reach the target.")
@click.option("--max-size-mb", type=float, default=None,
              help="Size budget of the weight-sharing artefact (needs share in --methods; default: as small as "
                   "the sharing's 99% accuracy tolerance allows).")
@click.option("--auto-fit/--no-auto-fit", default=True, show_default=True,
              help="With no --predictor and no saved predictor for the platform: profile it once first (1,500 "
                   "layer samples and 100 whole networks, a few minutes on onnxruntime), fit and calibrate.")
@ESTIMATOR_OPT
def optimize(model_name, weights, channels, platform_key, speedup, latency_ms, predictor_path, flops_proxy, preset,
             mode, importance, out_dir, data, n_jobs, seed, measure, busy, iterations, retrain, distill, snapshots,
             retrain_snapshots, final_repeats, methods, auto_fit, max_size_mb):
    """Trim a trained model until a target speedup holds on the platform (the CompactNet loop)."""
    from compactnet.cards import resolve_weights
    from compactnet.search import optimize as run_optimize

    if (speedup is None) == (latency_ms is None):
        raise click.UsageError("give exactly one target: --speedup X or --latency-ms X")
    chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
    unknown = set(chosen) - {"trim", "lowrank", "int8", "share"}
    if unknown or not chosen:
        raise click.BadParameter(f"methods among trim, lowrank, int8, share; got {methods!r}", param_hint="--methods")
    if max_size_mb is not None and "share" not in chosen:
        raise click.UsageError(f"--max-size-mb is the weight-sharing size budget: add share to --methods "
                               f"(got --methods {methods})")
    if max_size_mb is not None and not max_size_mb > 0:
        raise click.BadParameter(f"a size in MB above 0, e.g. 0.5; got {max_size_mb}", param_hint="--max-size-mb")
    if flops_proxy:
        predictor = "flops"
    elif auto_fit and not predictor_path and not _predictor_dir(_canonical_key(platform_key)).exists():
        predictor = auto_fit_predictor(platform_key, model_name, busy=busy)
    else:
        predictor = load_predictor(platform_key, predictor_path)
    if chosen != ("trim",):
        _compose(model_name, weights, channels, platform_key, speedup, predictor, chosen, out_dir, data, seed,
                 measure, busy, max_size_mb)
        return
    overrides = {k: v for k, v in (("iterations", iterations), ("distill", distill)) if v is not None}
    if snapshots:
        try:
            overrides["snapshots"] = tuple(float(t) for t in snapshots.split(",") if t.strip())
        except ValueError:
            raise click.BadParameter(f"comma-separated speedups like 1.5,1.8; got {snapshots!r}",
                                     param_hint="--snapshots") from None
    result = run_optimize(model_name, resolve_weights(model_name, weights), platform_key, speedup=speedup,
                          latency_ms=latency_ms, predictor=predictor, preset=preset, mode=mode,
                          importance=importance, out_dir=out_dir, data=data, n_jobs=n_jobs, seed=seed,
                          measure=measure, channels=channels, retrain=retrain, busy=busy,
                          retrain_snapshots=retrain_snapshots, final_repeats=final_repeats,
                          command=command_line(), **overrides)
    md = Path(result.out_dir) / "report.md"
    click.echo(md.read_text() if md.exists() else json.dumps(result.report, indent=2, default=str))


def _compose(model_name, weights, channels, platform_key, speedup, predictor, methods, out_dir, data, seed,
             measure, busy, max_size_mb=None) -> None:
    """`optimize --methods ...`: trimming, low-rank and int8 composed by predicted gain per accuracy lost.

    With ``share`` in the methods, weight sharing is applied to the result afterwards (size, not latency).
    """
    import copy

    from compactnet.data import load_cifar10
    from compactnet.models import save_weights
    from compactnet.search.methods.compose import compose, measure_composition, share_composition

    if speedup is None:
        raise click.UsageError("--methods beyond trim needs --speedup")
    if predictor == "flops":
        raise click.UsageError("--methods beyond trim needs a latency predictor, not --flops-proxy")
    int8_predictor = None
    if "int8" in methods:
        from compactnet.spec import Platform

        p = Platform.parse(platform_key)
        int8_key = f"{p.runtime}-{p.provider}-int8-t{p.threads}"
        try:
            int8_predictor = load_predictor(int8_key, None)
        except CompactNetError:
            log.warning("no predictor for %s: int8 latency assumed from the fp32 prediction", int8_key)
    original = load_model(model_name, channels, weights)
    ds = load_cifar10(data)
    result = compose(copy.deepcopy(original), ds, predictor, speedup, methods=methods,
                     int8_latency=int8_predictor, teacher=original, seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    if measure:
        comp = measure_composition(original, result, ds, platform_key, busy=busy)
        summary["measured"] = comp.to_dict()
    save_weights(result.model, out / "weights.safetensors")
    if "share" in methods:  # after the latency steps; a budget no per-layer choice meets raises ConfigError
        share_composition(result, ds, out / "weight_sharing", seed=seed, model_name=model_name,
                          max_size_bytes=int(max_size_mb * 1e6) if max_size_mb is not None else None)
        summary = {**result.summary(), **({"measured": summary["measured"]} if "measured" in summary else {})}
    (out / "compose.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    click.echo(f"{result.label}: predicted {summary['predicted_ms']:.4f} ms vs {summary['original_ms']:.4f} ms, "
               f"val top-1 {summary['val_top1']:.2f}% (original {summary['original_val_top1']:.2f}%) -> "
               f"{out / 'compose.json'}")
    if result.sharing is not None:
        sh = result.sharing
        click.echo(f"weight sharing: {sh['artefact_bytes'] / 1e6:.4f} MB vs {sh['fp32_safetensors_bytes'] / 1e6:.4f} MB "
                   f"fp32 safetensors ({sh['compression_ratio']:.2f}x), val top-1 {sh['val_top1_before_sharing']:.2f}% "
                   f"-> {sh['val_top1_after_sharing']:.2f}%; latency unchanged by sharing -> {sh['artefact']}")


# ----- zoo ------------------------------------------------------------------------------------
INDEX_OPT = click.option("--index", "index_url", default=None, envvar="COMPACTNET_ZOO_INDEX",
                         help="Index URL or path (https://, http://, file://; default: the repository's zoo).")


@cli.group()
def zoo():
    """The model zoo: list, info, pull, best, publish, serve."""


@zoo.command("list")
@INDEX_OPT
@click.option("--platform", "platform_key", default=None, help="Only entries for this platform.")
@click.option("--offline", is_flag=True, help="Use only the cached index.")
@JSON_OPT
def zoo_list(index_url, platform_key, offline, as_json):
    """List the zoo's entries."""
    from compactnet.zoo import fetch_index, format_table

    index = fetch_index(index_url, offline=offline)
    entries = index.filter(platform=platform_key) if platform_key else list(index.entries)
    emit([e.to_dict() for e in entries], as_json, format_table(entries))


HARDWARE_PICK_OPT = click.option("--hardware", default=None,
                                 help="Which hardware's entry, when the name is published for several (default: "
                                      "the only one, else this machine's).")


@zoo.command("info")
@click.argument("name")
@INDEX_OPT
@HARDWARE_PICK_OPT
@JSON_OPT
def zoo_info(name, index_url, hardware, as_json):
    """Show one entry: input contract, metrics, files, provenance."""
    from compactnet.zoo import fetch_index, format_entry

    entry = fetch_index(index_url).get(name, hardware)
    emit(entry.to_dict(), as_json, format_entry(entry))


@zoo.command("pull")
@click.argument("name")
@INDEX_OPT
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="Cache folder (default: $COMPACTNET_HOME/zoo or the user cache).")
@click.option("--offline", is_flag=True, help="Use only the cache; never touch the network.")
@HARDWARE_PICK_OPT
@JSON_OPT
def zoo_pull(name, index_url, cache_dir, offline, hardware, as_json):
    """Download an entry's files (verified by SHA-256) into the cache."""
    from compactnet.zoo import pull

    files = pull(name, index_url=index_url, cache_dir=cache_dir, offline=offline, progress=not as_json,
                 hardware=hardware)
    pad = " " * len(name)
    text = f"{name}: ONNX {files.onnx}\n{pad}  weights {files.weights}"
    if files.channels is not None:
        text += (f"\n{pad}  channels {files.channels}\ncheck it: compactnet evaluate --model {files.entry.architecture} "
                 f"--channels {files.channels} --weights {files.weights} --platform {files.entry.platform}")
    emit(files.to_dict(), as_json, text)


@zoo.command("best")
@PLATFORM_OPT
@click.option("--latency-ms", type=float, default=None, help="Latency budget on the platform.")
@click.option("--speedup", type=float, default=None, help="Required speedup over the untrimmed model.")
@INDEX_OPT
@PREDICTOR_OPT
@click.option("--hardware", default=None, help="Hardware to select for (default: this machine's).")
@JSON_OPT
def zoo_best(platform_key, latency_ms, speedup, index_url, predictor_path, hardware, as_json):
    """The most accurate entry meeting a latency or speedup budget on a platform."""
    from compactnet.spec import hardware_id
    from compactnet.zoo import best, fetch_index

    if latency_ms is None and speedup is None:
        raise click.UsageError("give a budget: --latency-ms X or --speedup S")
    predictor = None
    if predictor_path or _predictor_dir(platform_key).exists():
        predictor = load_predictor(platform_key, predictor_path)
    sel = best(fetch_index(index_url), platform_key, latency_ms=latency_ms, speedup=speedup,
               hardware=hardware or hardware_id(), predictor=predictor)
    emit(sel.to_dict(), as_json, sel.message)


@zoo.command("publish")
@click.argument("result_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--index", "index_path", type=click.Path(dir_okay=False), required=True,
              help="index.json of the zoo folder to publish into.")
@click.option("--platform", "platform_key", default=None, help="Platform (default: the search's).")
@DATA_OPT
@click.option("--rounds", type=int, default=10, show_default=True)
@click.option("--replace", is_flag=True,
              help="Replace an entry of the same name (refused when the new model is less accurate, unless --force).")
@click.option("--force", is_flag=True,
              help="Publish under the target's name even when the measured lower bound misses the target, and "
                   "replace (with --replace) even a more accurate entry of the same name.")
@click.option("--measured-name", is_flag=True,
              help="Name the entry after the measured speedup's lower bound (rounded down to 0.1x) instead of "
                   "the search's target: for a result whose target was missed on this platform or hardware.")
@ESTIMATOR_OPT
def zoo_publish(result_dir, index_path, platform_key, data, rounds, replace, force, measured_name):
    """Turn a search output (or a `compactnet train` baseline) folder into a zoo entry, measuring latency and top-1."""
    from compactnet.zoo import publish, publish_model

    root = Path(result_dir)
    if (root / "card.json").is_file() and not (root / "report.json").is_file():
        # A `compactnet train` output folder: publish the trained model as the platform's baseline.
        from compactnet.cards import read_card

        card = read_card(root / "card.json")
        if not card.get("model"):
            raise click.UsageError(f"{root / 'card.json'} names no model; is it a `compactnet train` card?")
        if not platform_key:
            raise click.UsageError("publishing a trained baseline needs --platform KEY")
        entry = publish_model(root / f"{card['model']}.safetensors", card["model"], index_path, platform_key,
                              card.get("channels"), data=data, rounds=rounds, val_top1=card.get("val_top1"),
                              command=card.get("command", ""), publish_command=command_line(),
                              source=str(root), replace_existing=replace, force=force)
    else:
        if measured_name and force:
            raise click.UsageError("--measured-name and --force contradict each other: name the entry after the "
                                   "measurement, or keep the target's name")
        naming = {"tag": None, "target_speedup": None} if measured_name else {}
        entry = publish(result_dir, index_path, platform=platform_key, data=data, rounds=rounds,
                        publish_command=command_line(), replace_existing=replace, force=force, **naming)
    click.echo(f"published {entry.name} into {index_path}")


@zoo.command("serve")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
def zoo_serve(directory, host, port):
    """Serve a zoo folder over HTTP (loopback by default)."""
    from compactnet.zoo import serve

    click.echo(f"serving {directory} on http://{host}:{port}/", err=True)
    serve(directory, host=host, port=port)


# ----- reports --------------------------------------------------------------------------------
@cli.command()
@click.argument("result_dir", type=click.Path(exists=True))
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="HTML file to write (default: RESULT_DIR/report.html).")
def report(result_dir, out_path):
    """Write a self-contained HTML report of a search output folder or a profiling run (sample store)."""
    from compactnet.report import write_report

    click.echo(write_report(result_dir, out_path))


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
