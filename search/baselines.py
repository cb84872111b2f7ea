"""Baselines beside a search result: uniform width scaling and the extra-training control.

Issue 5 asks every trimmed result to be compared, under the same budget, with

* **uniform width scaling**: every trimmable channel group scaled by one ratio (never below its
  lower bound; paper mode's hidden widths follow their group), filters of largest L2 norm kept,
  then the *same* training the search's network got: as many fine-tune steps as the search's
  candidates and winners accumulated (``iterations x (candidate_steps + winner_steps)``), batch-norm
  recalibration, and the preset's final retrain (distilling the unpruned model when the preset
  does). The ratio is the largest on a fine grid whose *predicted* speedup meets the target; the
  target is the search's measured speedup when it has one (matching on measured latency as far as
  the predictor allows; measure the baseline too to check), else its predicted one;
* the **control**: the unpruned network given the same extra fine-tune steps and final retrain,
  so that gains from extra training are not credited to trimming.

:func:`baseline_rows` returns the report rows of a search result, its uniform baseline and the
control, side by side. Random pruning and the FLOPs-driven loop are the search itself with
``importance="random"`` or ``predictor="flops"`` (:func:`compactnet.search.optimize`).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from compactnet.errors import bad_value
from compactnet.search.groups import GroupPruner, channels_json, config_from_model
from compactnet.search.importance import get_importance, keep_indices
from compactnet.search.latency import as_latency_model, predict_configs
from compactnet.search.schedule import Preset

log = logging.getLogger(__name__)

#: Step of the ratio grid searched for the uniform baseline.
RATIO_STEP = 0.0025


@dataclass
class BaselineResult:
    """One baseline network and its figures.

    Attributes:
        kind: ``uniform`` or ``control``.
        model: The network (trimmed for ``uniform``), trained.
        ratio: The width ratio (1.0 for the control).
        widths: Width of every search group.
        predicted_ms: Predicted latency (the latency model given).
        predicted_speedup: Predicted original / this.
        finetune_steps: Extra fine-tune steps given before the final retrain.
        final_retrain: Whether the preset's final retrain ran.
        val_top1: Validation top-1 (%).
        test_top1: Test top-1 (%).
        params: Parameters.
        flops: FLOPs (2 x MACs).
        measured: Original vs this network by the protocol (``Measured.to_dict()``), or None.
        seconds: Wall time of building and training it.
    """

    kind: str
    model: nn.Module
    ratio: float
    widths: dict
    predicted_ms: float
    predicted_speedup: float
    finetune_steps: int
    final_retrain: bool
    val_top1: float
    test_top1: float
    params: int
    flops: int
    measured: dict | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def row(self) -> dict:
        """The report row (JSON-ready)."""
        m = self.measured or {}
        return {"kind": self.kind, "ratio": self.ratio, "predicted_ms": self.predicted_ms,
                "predicted_speedup": self.predicted_speedup, "measured_speedup": m.get("speedup"),
                "measured_low": m.get("low"), "measured_high": m.get("high"), "measured_busy": m.get("busy"),
                "val_top1": self.val_top1, "test_top1": self.test_top1, "params": self.params, "flops": self.flops,
                "finetune_steps": self.finetune_steps, "final_retrain": self.final_retrain,
                "widths": dict(self.widths), "seconds": self.seconds, **self.extra}


def _search_groups(pruner: GroupPruner, base_spec: Any) -> list:
    fixed = set(base_spec.fixed)
    return [g for g in pruner.groups if g.root not in fixed and not set(g.followers) & fixed]


def uniform_plan(pruner: GroupPruner, groups: Sequence[Any], ratio: float) -> dict[str, int]:
    """DepGraph widths of scaling every search group by ``ratio`` (at least its lower bound)."""
    plan: dict[str, int] = {}
    for g in groups:
        cur = pruner.dep_width(g.root)
        w = min(cur, max(g.lower_bound, int(round(g.width * ratio))))
        plan.update(pruner.plan_widths(g.name, w))
    return plan


def choose_uniform_ratio(model: nn.Module, latency: Any, speedup: float, mode: str = "paper",
                         input_shape: Sequence[int] = (1, 3, 32, 32), step: float = RATIO_STEP) -> dict:
    """The largest width ratio whose predicted speedup meets ``speedup`` (one batched prediction).

    Latency is not monotone in the width, so a whole grid ``step, 2 step, ..., 1`` is predicted.

    Returns:
        ``{"ratio", "predicted_ms", "original_ms", "predicted_speedup", "plan", "reached"}``; when no
        ratio reaches the target (lower bounds), the fastest ratio with ``reached=False``.

    Raises:
        ConfigError: A target that is not above 1.
    """
    from compactnet.extract import network_spec_from_torch

    if not speedup > 1:
        raise bad_value("speedup", "a target above 1", speedup)
    lat = as_latency_model(latency)
    probe = copy.deepcopy(model)
    pruner = GroupPruner(probe, mode, example_input=torch.zeros(tuple(input_shape)))
    base = network_spec_from_torch(probe, tuple(input_shape))
    groups = _search_groups(pruner, base)
    ratios = np.round(np.arange(1.0, 0.0, -step), 6)
    plans = [uniform_plan(pruner, groups, float(r)) for r in ratios]
    l0 = float(lat.predict_many([base])[0])
    preds = predict_configs(lat, base, plans)
    ok = [k for k in range(len(ratios)) if l0 / preds[k] >= speedup]
    k = ok[0] if ok else int(np.argmin(preds))
    return {"ratio": float(ratios[k]), "predicted_ms": float(preds[k]), "original_ms": l0,
            "predicted_speedup": l0 / float(preds[k]), "plan": plans[k], "reached": bool(ok)}


def _train_like_the_search(model: nn.Module, data: Any, preset: Preset, steps: int, seed: int,
                           teacher: nn.Module | None, final_retrain: bool, out_dir: Path | None,
                           progress: bool) -> None:
    from compactnet.search.loop import finetune, recalibrate_bn, subset
    from compactnet.train import get_recipe, train

    if steps > 0:
        finetune(model, data.train, steps, preset.candidate_batch, preset.candidate_lr, seed, teacher)
        recalibrate_bn(model, subset(data.train, preset.train_subset, seed), preset.bn_batches, seed=seed)
    if final_retrain and preset.final_epochs != 0:
        recipe = get_recipe(preset.final_recipe, epochs=preset.final_epochs)
        train(model, data.train, data.val, recipe, out_dir=out_dir, seed=seed, teacher=teacher,
              max_steps=preset.final_max_steps, progress=progress)


def _finish(kind: str, model: nn.Module, original: nn.Module, latency: Any, data: Any, ratio: float, widths: dict,
            steps: int, final_retrain: bool, measure: Any, target: float, input_shape: Sequence[int], t0: float,
            out_dir: Path | None, model_name: str | None, extra: dict) -> BaselineResult:
    from compactnet.extract import network_spec_from_torch
    from compactnet.train import evaluate

    lat = as_latency_model(latency)
    spec0 = network_spec_from_torch(original, tuple(input_shape))
    spec1 = network_spec_from_torch(model, tuple(input_shape))
    p0, p1 = (float(v) for v in lat.predict_many([spec0, spec1]))
    measured = None
    if measure is not None:
        from compactnet.errors import MeasurementError

        try:
            measured = measure(original, model, target).to_dict()
        except MeasurementError as exc:
            log.warning("%s baseline: measurement refused (%s)", kind, exc)
            measured = {"refused": str(exc)}
    res = BaselineResult(kind, model, float(ratio), dict(widths), p1, p0 / p1 if p1 > 0 else float("nan"), int(steps),
                         bool(final_retrain), float(evaluate(model, data.val)), float(evaluate(model, data.test)),
                         int(spec1.params), int(2 * spec1.macs), measured, time.perf_counter() - t0, dict(extra))
    if out_dir is not None:
        from compactnet.models import save_weights
        from compactnet.search._io import atomic_write_json

        out_dir.mkdir(parents=True, exist_ok=True)
        save_weights(model, out_dir / "weights.safetensors", metadata={"model": model_name or "", "baseline": kind})
        cfg = config_from_model(model)
        if cfg is not None and model_name:
            atomic_write_json(out_dir / "channels.json", channels_json(model_name, cfg))
        atomic_write_json(out_dir / "row.json", res.row())
    return res


def uniform_baseline(model: nn.Module, latency: Any, data: Any, speedup: float, preset: Preset, mode: str = "paper",
                     finetune_steps: int | None = None, seed: int = 0, teacher: nn.Module | None = None,
                     final_retrain: bool = True, measure: Any = None, input_shape: Sequence[int] = (1, 3, 32, 32),
                     out_dir: str | Path | None = None, model_name: str | None = None,
                     progress: bool = False) -> BaselineResult:
    """Uniform width scaling to a predicted ``speedup``, L2 filters, trained like the search's network.

    Args:
        model: The trained, unpruned network (not modified: a copy is trimmed).
        latency: The search's latency model (or predictor) of the platform.
        data: An object with ``train``, ``val`` and ``test`` splits.
        speedup: Target predicted speedup (the search result's measured one, ideally).
        preset: The search's preset (fine-tune batch and rate, BN batches, final recipe).
        mode: ``paper`` or ``extended`` channel groups (lower bounds as the search's).
        finetune_steps: Extra fine-tune steps (default: ``preset.iterations x (candidate_steps +
            winner_steps)``, what the search's network accumulates over its schedule).
        seed: Seed of the fine-tune and retrain.
        teacher: Model distilled into the training (None: none; pass the original when the
            search's preset distils).
        final_retrain: Run the preset's final retrain.
        measure: A :data:`~compactnet.search.loop.MeasureFn` measuring original vs baseline, or None.
        input_shape: NCHW input shape.
        out_dir: Where to save ``weights.safetensors``, ``channels.json`` and ``row.json`` (None: nothing).
        model_name: Registry name for ``channels.json``.
        progress: Progress bars of the final retrain.
    """
    t0 = time.perf_counter()
    original = copy.deepcopy(model).eval()
    choice = choose_uniform_ratio(model, latency, speedup, mode, input_shape)
    net = copy.deepcopy(model)
    pruner = GroupPruner(net, mode, example_input=torch.zeros(tuple(input_shape)))
    plan = {gid: w for gid, w in choice["plan"].items() if w < pruner.dep_width(gid)}
    importance = get_importance("l2", seed)
    importance.prepare(net, None, seed)
    pruner.apply(keep_indices(importance, pruner, plan))
    steps = preset.iterations * (preset.candidate_steps + preset.winner_steps) if finetune_steps is None \
        else int(finetune_steps)
    out = Path(out_dir) if out_dir is not None else None
    _train_like_the_search(net, data, preset, steps, seed, teacher, final_retrain,
                           out / "retrain" if out is not None else None, progress)
    if not choice["reached"]:
        log.warning("uniform scaling cannot reach a predicted %.2fx within the lower bounds (fastest: %.2fx at "
                    "ratio %.3f)", speedup, choice["predicted_speedup"], choice["ratio"])
    return _finish("uniform", net, original, latency, data, choice["ratio"], pruner.widths(), steps, final_retrain,
                   measure, speedup, input_shape, t0, out, model_name,
                   {"target_speedup": float(speedup), "target_reached_on_predictor": choice["reached"]})


def control_baseline(model: nn.Module, latency: Any, data: Any, preset: Preset, finetune_steps: int | None = None,
                     seed: int = 0, teacher: nn.Module | None = None, final_retrain: bool = True,
                     measure: Any = None, input_shape: Sequence[int] = (1, 3, 32, 32),
                     out_dir: str | Path | None = None, model_name: str | None = None,
                     progress: bool = False, mode: str = "paper") -> BaselineResult:
    """The unpruned network given the same extra training as the search's (see :func:`uniform_baseline`)."""
    t0 = time.perf_counter()
    original = copy.deepcopy(model).eval()
    net = copy.deepcopy(model)
    steps = preset.iterations * (preset.candidate_steps + preset.winner_steps) if finetune_steps is None \
        else int(finetune_steps)
    out = Path(out_dir) if out_dir is not None else None
    _train_like_the_search(net, data, preset, steps, seed, teacher, final_retrain,
                           out / "retrain" if out is not None else None, progress)
    widths = GroupPruner(copy.deepcopy(net), mode, example_input=torch.zeros(tuple(input_shape))).widths()
    return _finish("control", net, original, latency, data, 1.0, widths, steps, final_retrain, measure, 1.0,
                   input_shape, t0, out, model_name, {})


def search_row(report: Mapping[str, Any], trajectory: Sequence[Mapping[str, Any]] = ()) -> dict:
    """The search result's row, in the baselines' columns."""
    m = report.get("measured") or {}
    pred = report.get("predicted") or {}
    return {"kind": "search", "ratio": None, "predicted_ms": pred.get("trimmed_ms"),
            "predicted_speedup": pred.get("speedup"), "measured_speedup": m.get("speedup"),
            "measured_low": m.get("low"), "measured_high": m.get("high"), "measured_busy": m.get("busy"),
            "val_top1": (report.get("trimmed") or {}).get("val_top1"),
            "test_top1": (report.get("trimmed") or {}).get("test_top1"),
            "params": (report.get("trimmed") or {}).get("params"), "flops": (report.get("trimmed") or {}).get("flops"),
            "finetune_steps": None, "final_retrain": None,
            "widths": dict((report.get("channels") or {}).get("trimmed") or {}), "iterations": len(trajectory)}


def baseline_rows(result: Any, original: nn.Module, latency: Any, data: Any, preset: Preset | None = None,
                  mode: str | None = None, seed: int = 0, measure: Any = None, teacher: nn.Module | None = None,
                  final_retrain: bool = True, input_shape: Sequence[int] = (1, 3, 32, 32),
                  out_dir: str | Path | None = None, progress: bool = False) -> list[dict]:
    """Rows of a search result, its uniform-scaling baseline and the control, under the same budget.

    Args:
        result: A :class:`~compactnet.search.optimize.SearchResult` (or anything with ``report`` and
            ``trajectory``).
        original: The unpruned, trained network the search started from.
        latency: The latency model the search used (a fresh one: it is recalibrated only by the search).
        data: ``train``/``val``/``test`` splits.
        preset: The search's preset (default: the one in the report).
        mode: Channel groups (default: the report's).
        seed: Seed of the baselines' training.
        measure: A measuring function for the baselines (original vs baseline), or None.
        teacher: Distilled into the baselines' training (default: ``original`` when the preset distils).
        final_retrain: Run the preset's final retrain on the baselines.
        input_shape: NCHW input shape.
        out_dir: Folder for ``uniform/`` and ``control/`` (weights, channels, row), or None.
        progress: Progress bars.

    Returns:
        ``[search row, uniform row, control row]`` (see :meth:`BaselineResult.row`); the uniform
        baseline targets the search's measured speedup when it was measured, else its predicted one.
    """
    from compactnet.search.schedule import get_preset

    rep = result.report
    if preset is None:
        d = dict(rep.get("preset") or {})
        name = d.pop("name", "quick")
        preset = get_preset(name, **{k: v for k, v in d.items() if k in Preset.__dataclass_fields__})
    mode = mode or rep.get("mode") or "paper"
    if teacher is None and preset.distill:
        teacher = original
    m = rep.get("measured") or {}
    target = m.get("speedup") if m.get("speedup") and not m.get("busy") else (rep.get("predicted") or {}).get("speedup")
    if not target or not target > 1:
        raise bad_value("result", "a search result with a speedup above 1 (measured or predicted)", target)
    iters = len(result.trajectory) or preset.iterations
    steps = iters * (preset.candidate_steps + preset.winner_steps)
    out = Path(out_dir) if out_dir is not None else None
    name = rep.get("model")
    uni = uniform_baseline(original, latency, data, float(target), preset, mode, steps, seed, teacher, final_retrain,
                           measure, input_shape, out / "uniform" if out else None, name, progress)
    ctl = control_baseline(original, latency, data, preset, steps, seed, teacher, final_retrain, measure, input_shape,
                           out / "control" if out else None, name, progress, mode)
    rows = [search_row(rep, result.trajectory), uni.row(), ctl.row()]
    if out is not None:
        from compactnet.search._io import atomic_write_json

        atomic_write_json(out / "baselines.json", rows)
    return rows


__all__ = ["BaselineResult", "RATIO_STEP", "uniform_plan", "choose_uniform_ratio", "uniform_baseline",
           "control_baseline", "search_row", "baseline_rows"]
