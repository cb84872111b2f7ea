"""``optimize``: the whole search stage for the CLI (``compactnet optimize``).

Loads the model and data, runs :class:`~compactnet.search.loop.ProgressiveSearch`, retrains the
result with a fixed recipe (distilling the unpruned model), evaluates it, exports it and writes the
output folder:

``weights.safetensors``  trimmed weights (no optimiser state)
``channels.json``        channel configuration, ``create_model(name, channels="channels.json")``
``model.onnx``           the trimmed network, exported by the protocol (``original.onnx`` beside it)
``history.json``         pruning history (replayable on the original weights)
``trajectory.json``      per iteration: group, channels, predicted latency, validation top-1, seconds
``trajectory.png``       latency vs validation top-1, and channels per group beside the original
``report.json``/``.md``  predicted and measured latency and speedup (with interval), validation and
                         test top-1, parameters, FLOPs, time per phase, platform and hardware
``checkpoint/``          the search's resumable state; ``retrain/`` the final retrain's checkpoint

Running ``optimize`` again with the same arguments and folder resumes a killed run (the
checkpoint is identified by the user's target as given, ``--speedup`` or ``--latency-ms``, and by
the predictor; a ``--latency-ms`` run keeps the ``T_final`` it derived from its first measurement of
the original). A run whose measurement was refused or flagged on a busy machine stops on the
predicted latency and says so; running it again on a quiet machine measures and continues.

With ``snapshots=(1.5, 1.8, 2.0, 2.5)`` the search also saves the network each time a measured
speedup crosses one of them, under ``snapshots/s1p5x`` etc. (:mod:`compactnet.search.snapshots`).
After the main result is written, each snapshot is retrained by the same recipe and distillation
as the final network (``retrain_snapshots``, default: when ``retrain``), evaluated on validation
and test, and its folder becomes a result folder ``compactnet zoo publish`` accepts (named by the
threshold: ``...s1p5x``); the weights as the search left them stay beside it
(``weights.pre-retrain.safetensors``). A killed run skips finished snapshot retrains and resumes a
started one; ``report.json`` then lists each snapshot with its retrained top-1.

The final decision is taken on ``final_repeats`` protocol comparisons of original vs trimmed after
the retrain (default 3 for the ``paper`` preset, 2 for ``quick``): the target counts as reached
only when the worst lower bound meets it (:mod:`compactnet.search.decision`); ``measured`` is that
worst comparison and ``measured.comparisons`` lists all. A rerun in the same folder measures again.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from compactnet.errors import bad_value
from compactnet.search._io import atomic_write_json
from compactnet.search.groups import channels_json, config_from_model, history_to_json
from compactnet.search.loop import ProgressiveSearch, protocol_measure
from compactnet.search.report import write_report
from compactnet.search.schedule import Preset, get_preset

log = logging.getLogger(__name__)


@dataclass
class SearchResult:
    """What :func:`optimize` produced.

    Attributes:
        out_dir: Output folder.
        model: The trimmed, retrained network.
        model_name: Registry name.
        config: Its channel configuration (registry config object, or None for foreign models).
        report: The ``report.json`` content.
        trajectory: Per-iteration records.
        paths: Output files by role.
    """

    out_dir: Path
    model: nn.Module
    model_name: str
    config: Any
    report: dict
    trajectory: list = field(default_factory=list)
    paths: dict = field(default_factory=dict)

    @property
    def predicted_speedup(self) -> float:
        """Predicted speedup of the trimmed network."""
        return float(self.report["predicted"]["speedup"])

    @property
    def measured_speedup(self) -> tuple[float, float, float] | None:
        """(ratio, low, high) measured by the protocol, or None."""
        m = self.report.get("measured")
        return (m["speedup"], m["low"], m["high"]) if m else None


def _file_hash(path: str | Path | None) -> str | None:
    if path is None:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _saved_t_final(ckpt: Path, signature: dict) -> float | None:
    """``T_final`` of the checkpoint in ``ckpt`` when it holds a search with ``signature``, else None."""
    import json

    from compactnet.search.loop import STATE_FILE

    try:
        saved = json.loads((ckpt / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("signature") != json.loads(json.dumps(signature)):
        return None                          # try_resume explains a mismatch
    t = saved.get("t_final")
    return float(t) if isinstance(t, (int, float)) and t > 1 else None


def _retrain_folder_for(folder: Path, state: Any) -> None:
    """Drop a retrain checkpoint written for another network (the search continued after it)."""
    import json
    import shutil

    from compactnet.search._io import atomic_write_json

    tag = {"iteration": int(state.iteration), "history": len(state.history)}
    marker = folder / "search.json"
    try:
        same = json.loads(marker.read_text()) == tag
    except (OSError, ValueError):
        same = not folder.exists()
    if not same:
        log.info("the search changed the network since %s was written: retraining from the start", folder)
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, tag)


def _load_data(data: Any) -> Any:
    from compactnet.data import load_cifar10

    if data is not None and all(hasattr(data, a) for a in ("train", "val", "test")):
        return data
    return load_cifar10(data)


def _load_predictor(predictor: Any, platform: Any) -> Any:
    if predictor is None:
        raise bad_value("predictor", "a fitted latency predictor (object or saved file) for "
                        f"{platform.key}, or 'flops' for the FLOPs-driven baseline", None)
    if isinstance(predictor, (str, Path)) and str(predictor).lower() not in ("flops", "macs"):
        from compactnet.predictors import persist

        p = Path(predictor)
        if p.is_dir():                      # the portable, pickle-free format
            return persist.load_portable(p, platform)
        if p.is_file():                     # a joblib file the user wrote (unpickled: own files only)
            return persist.load(p, platform)
        raise bad_value("predictor", "a fitted predictor object, a saved predictor (portable folder or joblib "
                        "file) or 'flops'", str(predictor))
    return predictor


def optimize(model_name: str, weights: str | Path | None, platform: Any, speedup: float | None = None,
             latency_ms: float | None = None, predictor: Any = None, preset: str | Preset = "quick",
             mode: str = "paper", importance: str = "l2", out_dir: str | Path = "runs/optimize",
             data: Any = None, n_jobs: int = 1, seed: int = 0, measure: bool = True, channels: Any = None,
             retrain: bool = True, progress: bool = True, busy: str = "refuse",
             on_iteration: Any = None, command: str | None = None, snapshots: Any = (),
             retrain_snapshots: bool | None = None, final_repeats: int | None = None,
             **preset_overrides: Any) -> SearchResult:
    """Trim a trained registry model until a target speedup holds on a platform.

    Args:
        model_name: ``mobilenetv2``, ``resnet20`` or ``vgg16``.
        weights: Trained weights (safetensors), or None for the model's initialisation (tests).
        platform: Platform key (``ort-cpu-fp32-t1``) or :class:`~compactnet.spec.Platform`.
        speedup: Target speedup ``T_final`` over the original (measured by the protocol).
        latency_ms: Target latency instead (``T_final`` = original latency / target; the original's
            measured latency when ``measure``, else its predicted one, which needs a predictor in
            milliseconds: the FLOPs proxy is refused). A resumed run keeps its first ``T_final``.
        predictor: A fitted latency predictor for the platform (any
            :class:`~compactnet.search.latency.LatencyModel`, a ``LatencyPredictor``, a saved
            predictor path, or ``"flops"`` for the FLOPs-driven baseline).
        preset: ``quick`` or ``paper`` (or a :class:`~compactnet.search.schedule.Preset`).
        mode: ``paper`` or ``extended`` channel groups.
        importance: ``l2``, ``group-l2``, ``random`` or ``taylor``.
        out_dir: Output folder (a run found there with the same settings is resumed).
        data: CIFAR-10 path, a loaded :class:`~compactnet.data.Cifar10` (or any object with
            ``train``/``val``/``test`` splits), or None (``$COMPACTNET_DATA`` / the default copy).
        n_jobs: Candidates scored in parallel (joblib; a distributed backend applies, see
            :mod:`compactnet.search.loop`).
        seed: Seed of every random choice.
        measure: Measure original vs trimmed by the protocol and continue when the target is missed.
        channels: Channel configuration of the starting model (None: the registry default).
        retrain: Run the final retrain (the preset's recipe).
        progress: Progress bars.
        busy: Measurement policy on a busy machine (``refuse``, ``flag``, ``ignore``; see
            :func:`compactnet.measure.compare`).
        on_iteration: Callback with each trajectory record.
        command: The command line that ran the search, recorded in the report (default: one
            reconstructed from the arguments).
        snapshots: Measured speedups at which to save the network on the way (e.g.
            ``(1.5, 1.8, 2.0, 2.5)``) under ``out_dir/snapshots/s1p5x`` etc.; needs ``measure``.
            Default: none (the search measures only after its schedule).
        retrain_snapshots: Retrain every snapshot by the final recipe after the main result and make
            its folder publishable (None: the value of ``retrain``).
        final_repeats: Protocol comparisons of the final decision (None: 3 for the ``paper``
            preset, 2 otherwise); reached only when the worst lower bound meets the target.
        **preset_overrides: Preset fields to override (``iterations=``, ``candidate_steps=``, ...).

    Returns:
        The :class:`SearchResult`.

    Raises:
        ConfigError: Bad or missing target, predictor or names.
        DataError, ModelFileError, MeasurementError: As raised by the stages used.
    """
    t0 = time.perf_counter()
    _check_targets(speedup, latency_ms, measure, predictor, snapshots)
    if mode == "extended":
        log.warning("--mode extended is experimental: it has not matched paper mode at the same target (1.8x on "
                    "onnxruntime, machine B: 1.37x measured at 70.00%% vs paper mode's 1.72-1.94x at 72.82%%); "
                    "use --mode paper for results you ship")
    run = _prepare(model_name, weights, platform, predictor, get_preset(preset, **preset_overrides), out_dir, data,
                   measure, channels, busy, seed, progress, final_repeats, t0)
    run.signature = {"model": run.entry.name, "weights": _file_hash(weights), "channels": str(channels),
                     "platform": run.plat.key, "speedup": None if speedup is None else round(float(speedup), 6),
                     "latency_ms": None if latency_ms is None else round(float(latency_ms), 6),
                     "preset": run.pre.to_dict(), "mode": mode, "importance": str(importance), "seed": int(seed),
                     "measure": bool(measure)}
    t_final = _target(run, speedup, latency_ms)
    search, snaps = _search(run, t_final, mode, importance, n_jobs, snapshots, on_iteration)
    _final_retrain(run, search, retrain)
    final = _evaluate_and_measure(run, search)
    report = _report(run, search, final, command, latency_ms, mode, importance)
    write_report(report, run.out)
    if snaps is not None and search.state.snapshots and bool(retrain if retrain_snapshots is None
                                                            else retrain_snapshots) and run.pre.final_epochs != 0:
        report["snapshots"] = _retrain_snapshots(search.state, run.out, run.entry, run.ds, run.pre, seed, run.teacher,
                                                 progress, report, search)
        run.timings["snapshots_retrain_s"] = sum(float(d.get("retrain_s") or 0.0) for d in report["snapshots"])
        run.timings["total_s"] = time.perf_counter() - t0
        write_report(report, run.out)
    return _result(run, search, report)


@dataclass
class _Run:
    """What the phases of one :func:`optimize` call share."""

    entry: Any
    plat: Any
    pre: Preset
    out: Path
    model: nn.Module
    original: nn.Module
    ds: Any
    latency: Any
    measure_fn: Any
    repeats: int
    busy: str
    seed: int
    progress: bool
    t0: float
    timings: dict = field(default_factory=dict)
    signature: dict = field(default_factory=dict)
    original_val_sub: float | None = None      # the original's top-1 on the search's validation subset
    original_widths: dict = field(default_factory=dict)

    @property
    def teacher(self) -> nn.Module | None:
        return self.original if self.pre.distill else None


def _check_targets(speedup: float | None, latency_ms: float | None, measure: bool, predictor: Any,
                   snapshots: Any) -> None:
    """Exactly one sensible target, and settings that can serve it."""
    if (speedup is None) == (latency_ms is None):
        raise bad_value("--speedup/--latency-ms", "exactly one target", {"speedup": speedup, "latency_ms": latency_ms})
    if speedup is not None and not speedup > 1:
        raise bad_value("--speedup", "a target above 1, e.g. 1.8", speedup)
    if latency_ms is not None and not latency_ms > 0:
        raise bad_value("--latency-ms", "a positive latency in ms", latency_ms)
    if latency_ms is not None and not measure and isinstance(predictor, str) and predictor.lower() in ("flops", "macs"):
        raise bad_value("--latency-ms", "a latency target with a latency predictor or with measurement (the FLOPs "
                        "proxy predicts no milliseconds: use --speedup, or measure)", latency_ms)
    if snapshots and not measure:
        raise bad_value("snapshots", "no snapshots without measurement (they are taken at measured speedups)",
                        list(snapshots))


def _prepare(model_name: str, weights: Any, platform: Any, predictor: Any, pre: Preset, out_dir: Any, data: Any,
             measure: bool, channels: Any, busy: str, seed: int, progress: bool, final_repeats: int | None,
             t0: float) -> _Run:
    """Model, original copy, data, predictor and measuring function (the ``load_s`` phase)."""
    from compactnet.models import create_model, get_entry, load_weights
    from compactnet.search.decision import check_repeats, default_repeats
    from compactnet.spec import Platform

    entry = get_entry(model_name)
    plat = platform if isinstance(platform, Platform) else Platform.parse(platform)
    repeats = check_repeats(default_repeats(pre.name) if final_repeats is None else final_repeats)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = create_model(entry.name, channels)
    if weights is not None:
        load_weights(model, weights)
    original = copy.deepcopy(model).eval()
    ds = _load_data(data)
    latency = _load_predictor(predictor, plat)
    measure_fn = protocol_measure(plat, rounds=pre.rounds, input_shape=entry.input_shape, busy=busy,
                                  max_width=pre.max_width, max_repeats=pre.max_repeats,
                                  repeat_pause_s=pre.repeat_pause_s) if measure else None
    run = _Run(entry, plat, pre, out, model, original, ds, latency, measure_fn, repeats, busy, seed, progress, t0)
    run.timings["load_s"] = time.perf_counter() - t0
    return run


def _target(run: _Run, speedup: float | None, latency_ms: float | None) -> float:
    """``T_final``: the speedup asked for, or the one a latency target implies.

    The user's target identifies the run; ``T_final`` of a ``--latency-ms`` run comes from a noisy
    measurement and is taken from the checkpoint when one with this signature exists.
    """
    t_final = speedup if speedup is not None else _saved_t_final(run.out / "checkpoint", run.signature)
    if t_final is not None:
        return float(t_final)
    from compactnet.extract import network_spec_from_torch
    from compactnet.search.latency import as_latency_model

    if run.measure_fn is not None:
        from compactnet.export import export_onnx
        from compactnet.isolated import compare_isolated

        ref = compare_isolated([export_onnx(run.original, input_shape=run.entry.input_shape).onnx_bytes], run.plat,
                               rounds=run.pre.rounds, busy=run.busy).latencies[0].value_ms
    else:
        ref = float(as_latency_model(run.latency).predict_many([network_spec_from_torch(run.original)])[0])
    t_final = ref / latency_ms
    if t_final <= 1:
        raise bad_value("--latency-ms", f"below the original's latency ({ref:.3f} ms)", latency_ms)
    return t_final


def _search(run: _Run, t_final: float, mode: str, importance: str, n_jobs: int, snapshots: Any,
            on_iteration: Any) -> tuple[ProgressiveSearch, Any]:
    """The progressive loop (resumed when a checkpoint with this signature exists)."""
    from compactnet.train import evaluate

    snaps = None
    if snapshots:
        from compactnet.search.snapshots import Snapshots

        snaps = Snapshots(snapshots, run.out / "snapshots", run.entry.name)
    holder: list = []

    def each_iteration(record: dict) -> None:  # trajectory.json is kept current for long runs
        if holder:
            atomic_write_json(run.out / "trajectory.json", holder[0].state.trajectory)
        if on_iteration is not None:
            on_iteration(record)

    search = ProgressiveSearch(run.model, run.latency, run.ds.train, run.ds.val, t_final, run.pre, mode=mode,
                               importance=importance, checkpoint_dir=run.out / "checkpoint", n_jobs=n_jobs,
                               seed=run.seed, measure=run.measure_fn, teacher=run.teacher, progress=run.progress,
                               on_iteration=each_iteration, signature=run.signature,
                               input_shape=run.entry.input_shape, snapshots=snaps)
    holder.append(search)
    search.try_resume()
    run.original_val_sub = evaluate(run.original, search.val_subset)
    run.original_widths = {g.name: g.width for g in search.groups}
    state = search.run()
    run.timings.update(state.timings)
    return search, snaps


def _final_retrain(run: _Run, search: ProgressiveSearch, retrain: bool) -> None:
    """The preset's final recipe on the trimmed network (distilled from the original when the preset says)."""
    from compactnet.train import get_recipe, train

    t1 = time.perf_counter()
    if retrain and run.pre.final_epochs != 0:
        recipe = get_recipe(run.pre.final_recipe, epochs=run.pre.final_epochs)
        _retrain_folder_for(run.out / "retrain", search.state)
        train(run.model, run.ds.train, run.ds.val, recipe, out_dir=run.out / "retrain", seed=run.seed,
              teacher=run.teacher, max_steps=run.pre.final_max_steps, progress=run.progress)
    run.timings["final_retrain_s"] = time.perf_counter() - t1


def _evaluate_and_measure(run: _Run, search: ProgressiveSearch) -> dict:
    """Top-1 of both networks, their ONNX exports, predicted latencies and the final decision."""
    from compactnet.export import export_onnx
    from compactnet.extract import network_spec_from_torch
    from compactnet.search.decision import repeat_measure, worst_case
    from compactnet.train import evaluate

    t2 = time.perf_counter()
    res = {"original": {"val_top1": evaluate(run.original, run.ds.val), "test_top1": evaluate(run.original, run.ds.test)},
           "trimmed": {"val_top1": evaluate(run.model, run.ds.val), "test_top1": evaluate(run.model, run.ds.test)}}
    run.timings["evaluate_s"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    export_onnx(run.original, run.out / "original.onnx", input_shape=run.entry.input_shape)
    exported = export_onnx(run.model, run.out / "model.onnx", input_shape=run.entry.input_shape)
    run.timings["export_s"] = time.perf_counter() - t3
    spec0, spec1 = search.base_spec, network_spec_from_torch(run.model, run.entry.input_shape)
    final = {"res": res, "exported": exported, "spec0": spec0, "spec1": spec1, "measured": None, "comparisons": [],
             "pred0": float(search.latency.predict_many([spec0])[0]),
             "pred1": float(search.latency.predict_many([spec1])[0])}
    if run.measure_fn is not None:
        t4 = time.perf_counter()
        t_final = float(search.state.t_final)
        # drift guard: k comparisons, reached only on the worst lower bound (a refusal is recorded, not raised)
        final["comparisons"] = repeat_measure(lambda: run.measure_fn(run.original, run.model, t_final), run.repeats)
        measured = final["measured"] = worst_case(final["comparisons"], t_final)
        if measured is None:
            log.warning("final measurement refused %d time(s): %s", run.repeats, final["comparisons"][-1].get("refused"))
        else:
            log.info("final decision: worst of %d comparisons %.2fx [%.2f, %.2f] -> target %.2fx %s", run.repeats,
                     measured["speedup"], measured["low"], measured["high"], t_final,
                     "reached" if measured["reached"] else "not reached")
        run.timings["final_measure_s"] = time.perf_counter() - t4
    return final


def _report(run: _Run, search: ProgressiveSearch, final: dict, command: str | None, latency_ms: float | None,
            mode: str, importance: str) -> dict:
    """Write the weights, channels, history, trajectory and its plot; the report dictionary."""
    from compactnet.models import save_weights
    from compactnet.search.report import plot_trajectory

    state, out, entry, plat, pre = search.state, run.out, run.entry, run.plat, run.pre
    t_final = float(state.t_final)
    cfg = config_from_model(run.model)
    save_weights(run.model, out / "weights.safetensors", metadata={"model": entry.name})
    atomic_write_json(out / "channels.json", channels_json(entry.name, cfg))
    (out / "history.json").write_text(history_to_json(search.pruner.history))
    atomic_write_json(out / "trajectory.json", state.trajectory)
    final_widths = search.pruner.widths()
    plot_trajectory(state.trajectory, run.original_widths, final_widths, out / "trajectory.png", state.l0_ms,
                    run.original_val_sub, state.measurements)
    run.timings["total_s"] = time.perf_counter() - run.t0
    cand = [c["seconds"] for r in state.trajectory for c in r.get("candidates", [])]
    target = f"--latency-ms {latency_ms:g}" if latency_ms is not None else f"--speedup {t_final:g}"
    command = command or (f"compactnet optimize --model {entry.name} --platform {plat.key} {target} --preset {pre.name} "
                          f"--mode {mode} --importance {importance} --seed {run.seed}"
                          + ("" if run.measure_fn is not None else " --no-measure"))
    measured, res, spec0, spec1 = final["measured"], final["res"], final["spec0"], final["spec1"]
    pred0, pred1 = final["pred0"], final["pred1"]
    return {
        "command": command,
        "model": entry.name, "mode": mode, "importance": str(importance), "preset": pre.to_dict(),
        "platform": {**plat.to_dict(), "describe": plat.describe()},
        "target_speedup": t_final, "target_latency_ms": latency_ms,
        "schedule": {"t_init": state.t_init, "iterations": state.iterations, "decay": state.decay,
                     "deltas_ms": state.deltas, "extra_iterations": state.extra_done},
        "stop_reason": state.stop_reason, "phase": state.phase,
        "snapshots": state.snapshots,
        "predicted": {"original_ms": pred0, "trimmed_ms": pred1, "speedup": pred0 / pred1 if pred1 > 0 else None},
        "measured": measured, "measurements": state.measurements,
        "final_decision": {"repeats": run.repeats, "rule": "reached only if the worst lower bound of the repeated "
                           "protocol comparisons meets the target", "comparisons": final["comparisons"]},
        "measured_platform": (measured or {}).get("detail", {}).get("platform"),
        "original": {**res["original"], "val_subset_top1": run.original_val_sub, "params": spec0.params,
                     "flops": 2 * spec0.macs},
        "trimmed": {**res["trimmed"], "params": spec1.params, "flops": 2 * spec1.macs},
        "channels": {"original": run.original_widths, "trimmed": final_widths,
                     "config": cfg.to_dict() if cfg is not None else None,
                     "original_config": config_from_model(run.original).to_dict()},
        "candidate_seconds_mean": (sum(cand) / len(cand)) if cand else None,
        "candidates_scored": len(cand),
        "timings": run.timings,
        "data": {"source": getattr(run.ds, "source", None), "copy": getattr(run.ds, "copy", None),
                 "test_hash": getattr(run.ds, "test_hash", None)},
        "onnx": final["exported"].to_dict(),
    }


def _result(run: _Run, search: ProgressiveSearch, report: dict) -> SearchResult:
    out = run.out
    paths = {k: out / v for k, v in (("weights", "weights.safetensors"), ("channels", "channels.json"),
                                      ("onnx", "model.onnx"), ("original_onnx", "original.onnx"),
                                      ("history", "history.json"), ("trajectory", "trajectory.json"),
                                      ("plot", "trajectory.png"), ("report", "report.json"),
                                      ("report_md", "report.md"))}
    paths.update({f"snapshot_{d['tag']}": Path(d["path"]) for d in report.get("snapshots") or []})
    return SearchResult(out, run.model, run.entry.name, config_from_model(run.model), report,
                        search.state.trajectory, paths)


def _retrain_snapshots(state: Any, out: Path, entry: Any, ds: Any, pre: Preset, seed: int, teacher: Any,
                       progress: bool, report: dict, search: Any) -> list[dict]:
    """Retrain every snapshot by the final recipe (finished ones are skipped); their records, enriched."""
    from compactnet.search.snapshots import retrain_snapshot
    from compactnet.train import get_recipe

    recipe = get_recipe(pre.final_recipe, epochs=pre.final_epochs)
    widths_at = {r["iteration"]: r.get("channels") for r in state.trajectory}
    base = {k: report[k] for k in ("model", "mode", "importance", "preset", "platform", "original", "data",
                                   "command", "measured_platform") if k in report}
    base["predicted"] = {"original_ms": report["predicted"]["original_ms"]}
    base["channels"] = {k: report["channels"][k] for k in ("original", "original_config")}
    base["search"] = {"out_dir": str(out), "target_speedup": report["target_speedup"],
                      "final_reached": bool((report.get("measured") or {}).get("reached"))}
    records = []
    for rec in sorted(state.snapshots, key=lambda d: float(d["threshold"])):
        folder = Path(rec["path"])
        if not folder.is_absolute() and not folder.exists():
            folder = out / "snapshots" / rec["tag"]
        rep = retrain_snapshot(folder, entry.name, ds, recipe, seed=seed, teacher=teacher,
                               max_steps=pre.final_max_steps, progress=progress, report_base=base,
                               predict_ms=lambda spec: float(search.latency.predict_many([spec])[0]),
                               original_onnx=out / "original.onnx", group_widths=widths_at.get(rec.get("iteration")),
                               input_shape=entry.input_shape)
        m = rep.get("measured") or {}
        records.append({**rec, "retrained": True, "path": str(folder), "retrain_s": rep.get("timings", {}).get("retrain_s"),
                        "reached": bool(m.get("reached")), "val_top1_pre_retrain": rep["snapshot"]["pre_retrain_val_top1"],
                        "val_top1_retrained": rep["trimmed"]["val_top1"], "test_top1": rep["trimmed"]["test_top1"]})
    return records


__all__ = ["optimize", "SearchResult"]
