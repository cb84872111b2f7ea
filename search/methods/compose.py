"""Composition of methods (``compactnet optimize --methods trim,lowrank,int8``).

Per iteration, every enabled method proposes one action meeting the iteration's predicted latency
cut (or, when none can, its largest predicted cut):

* ``trim``: the existing loop's candidate generation (:class:`~compactnet.search.groups.GroupPruner`
  groups, every count predicted in one batched call, :func:`~compactnet.search.schedule.choose_width`,
  importance-ranked channels, a short fine-tune and batch-norm recalibration per group through
  :func:`~compactnet.search.loop.score_candidate`); the best-scoring group is the trim candidate;
* ``lowrank``: one not yet decomposed layer at the highest rank whose predicted latency meets the
  cut (the layer losing the least PCA energy per ms gained), decomposed, fine-tuned as briefly;
* ``int8``: post-training static int8 of the current network, the **last step** (skipped, with a
  warning, when the int8 latency model predicts it no faster than fp32 on the platform): the fp32
  actions run until the int8 version of the current network is predicted to reach the target (so
  int8 alone "meets" a target it can meet, with no trimming), then int8 is applied.

The trim and low-rank candidates are ranked by **predicted latency gain per validation accuracy lost** (accuracy
loss floored at ``min_loss`` points, so a free gain ranks by gain) and the best is applied; a
history of every candidate is kept. The result is labelled as a composition and, when int8 is
enabled, compared with the **untrimmed int8 baseline** (DESIGN: int8 alone can "meet" a trimming
target), never with fp32 alone.

``share`` (retraining-free weight sharing) targets **size**, not latency: it is not an action of the
loop. After the latency methods reach the target, :func:`share_composition` clusters the resulting
fp32 network's weights (:func:`~compactnet.search.methods.weight_sharing.share_weights`, with its
exploration's accuracy tolerance and an optional size budget), writes the artefact (bit-packed
indices + codebooks) and records the composed size vs the fp32 safetensors size and the validation
top-1 before/after sharing. Weight sharing does not change latency (the shared weights are decoded
to fp32 before inference), so the predicted and measured latencies are those of the unshared network.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from compactnet.errors import bad_value
from compactnet.search.methods._common import compare_fn, subset

log = logging.getLogger(__name__)

METHODS = ("trim", "lowrank", "int8", "share")
LATENCY_METHODS = ("trim", "lowrank", "int8")


@dataclass(frozen=True)
class ComposeSettings:
    """Budget of a composition.

    Attributes:
        max_iterations: Iterations at most.
        candidate_steps: Fine-tune steps of a trim or low-rank candidate before scoring.
        candidate_batch: Their batch size.
        candidate_lr: Their learning rate (SGD, momentum 0.9).
        train_subset: Training images a candidate's steps draw from.
        bn_batches: Batch-norm recalibration batches before scoring.
        val_limit: Validation images scoring candidates (class-stratified subset).
        winner_steps: Fine-tune steps of the applied action (distilled when a teacher is given).
        mode: Channel groups of ``trim`` (``extended``: every DepGraph group; ``paper`` needs an
            undecomposed MobileNetV2).
        importance: Importance criterion of ``trim`` (name or object).
        max_trim_candidates: Groups scored per iteration for ``trim`` (None: every group meeting the
            cut, as the trimming loop; else those keeping the largest fraction of their width).
        grid_points: Candidate ranks per layer for ``lowrank``.
        include_pointwise: ``lowrank`` may decompose 1x1 convs.
        n_calibration: Calibration images of ``int8``.
        int8_factor: Assumed int8 speedup when no int8 latency model is given (labelled as assumed).
        min_loss: Floor of the accuracy loss (points) in the gain-per-loss ratio.
    """

    max_iterations: int = 8
    candidate_steps: int = 10
    candidate_batch: int = 64
    candidate_lr: float = 0.005
    train_subset: int = 2000
    bn_batches: int = 4
    val_limit: int = 1000
    winner_steps: int = 60
    mode: str = "extended"
    importance: Any = "l2"
    max_trim_candidates: int | None = None
    grid_points: int = 24
    include_pointwise: bool = False
    n_calibration: int = 256
    int8_factor: float = 1.5
    min_loss: float = 0.1


@dataclass
class ComposeResult:
    """What :func:`compose` produced.

    Attributes:
        model: The fp32 network after the trim and low-rank actions.
        int8: The int8 graphs when the last action was ``int8`` (else None).
        methods: Enabled methods.
        history: Per iteration: the candidates (method, action, predicted ms, val top-1, score) and
            the one applied.
        original_ms: Predicted latency of the original network (fp32 platform).
        predicted_ms: Predicted latency of the result (int8 platform when int8 was applied).
        target_ms: ``original_ms / speedup``.
        original_val: Validation top-1 of the original (scoring subset).
        val: Validation top-1 of the result (scoring subset; ONNX inference when int8).
        baseline: The untrimmed int8 baseline (predicted ms, val top-1) when int8 is enabled.
        ranks: Decomposed layers and their ranks.
        label: ``composed: trim+lowrank+int8`` (the methods applied; ``+share`` once
            :func:`share_composition` has run).
        seconds: Wall seconds.
        latency_assumed: The int8 latency was assumed from ``int8_factor``.
        sharing: Weight-sharing record added by :func:`share_composition` (None before).
    """

    model: nn.Module
    int8: Any
    methods: tuple[str, ...]
    history: list[dict]
    original_ms: float
    predicted_ms: float
    target_ms: float
    original_val: float
    val: float
    baseline: dict | None
    ranks: dict[str, int]
    label: str
    seconds: float
    latency_assumed: bool = False
    sharing: dict | None = None

    def summary(self) -> dict:
        """JSON-ready summary (no model)."""
        out = {"label": self.label, "methods": list(self.methods), "original_ms": self.original_ms,
               "predicted_ms": self.predicted_ms, "target_ms": self.target_ms,
               "predicted_speedup_vs_fp32": self.original_ms / self.predicted_ms if self.predicted_ms > 0 else None,
               "original_val_top1": self.original_val, "val_top1": self.val, "ranks": self.ranks,
               "int8_applied": self.int8 is not None, "int8_latency_assumed": self.latency_assumed,
               "history": self.history, "seconds": self.seconds, "baseline_int8": self.baseline}
        if self.baseline:
            b = self.baseline
            out["predicted_speedup_vs_int8_baseline"] = b["predicted_ms"] / self.predicted_ms
            out["val_top1_minus_int8_baseline"] = self.val - b["val_top1"]
        if self.sharing is not None:
            out["weight_sharing"] = self.sharing
        return out


class _Int8Latency:
    """Predicted int8 latency: a model for the int8 platform, or fp32 / an assumed factor."""

    def __init__(self, fp32: Any, int8: Any, factor: float):
        self.fp32, self.int8, self.factor = fp32, int8, float(factor)
        self.assumed = int8 is None

    def __call__(self, spec: Any) -> float:
        if self.int8 is not None:
            return float(np.asarray(self.int8.predict_many([spec]))[0])
        return float(np.asarray(self.fp32.predict_many([spec]))[0]) / self.factor


def _in_lowrank(name: str, lowrank_names: Sequence[str]) -> bool:
    return any(name == n or name.startswith(n + ".") for n in lowrank_names)


def _trim_candidate(model: nn.Module, latency: Any, spec: Any, cur_ms: float, delta: float, s: ComposeSettings,
                    train_sub: Any, val_sub: Any, seed: int, input_shape: Sequence[int], lowrank_names: list[str]
                    ) -> dict | None:
    from compactnet.search.groups import GroupPruner
    from compactnet.search.importance import get_importance, keep_indices
    from compactnet.search.latency import predict_configs
    from compactnet.search.loop import score_candidate
    from compactnet.search.schedule import choose_width

    pruner = GroupPruner(model, s.mode, example_input=torch.zeros(tuple(input_shape)))
    widths = spec.group_widths
    missing = [g for g in pruner.members if g not in widths]
    if missing:
        log.warning("trim: the spec has no channel group for DepGraph group(s) %s; trim skipped", missing[:3])
        return None
    fixed = set(spec.fixed)
    groups = [g for g in pruner.groups if g.root not in fixed and not set(g.followers) & fixed
              and not _in_lowrank(g.root, lowrank_names)]
    configs, owners = [], []
    for g in groups:
        for w in pruner.candidate_counts(g.name):
            configs.append(pruner.plan_widths(g.name, w))
            owners.append((g.name, w))
    if not configs:
        return None
    preds = predict_configs(latency, spec, configs)
    plans, short = [], []
    for g in groups:
        idx = [k for k, (n, _w) in enumerate(owners) if n == g.name]
        if not idx:
            continue
        counts = [owners[k][1] for k in idx]
        w = choose_width(counts, preds[idx], cur_ms, delta)
        if w is None:
            k = idx[int(np.argmin(preds[idx]))]
            if preds[k] < cur_ms:
                short.append((g.name, owners[k][1], configs[k], float(preds[k])))
            continue
        k = idx[counts.index(w)]
        plans.append((g.name, int(w), configs[k], float(preds[k])))
    plans = plans or short
    if not plans:
        return None
    if s.max_trim_candidates:
        cur = {g.name: pruner.dep_width(g.root) for g in groups}
        plans = sorted(plans, key=lambda p: (-p[1] / cur[p[0]], p[3]))[: s.max_trim_candidates]
    imp = get_importance(s.importance, seed)
    if imp.needs_gradients:
        from compactnet.train import batches, prepare_memory_format

        gen = torch.Generator().manual_seed(seed)
        fmt = prepare_memory_format(model)
        it = batches(train_sub, s.candidate_batch, True, gen, False, fmt)
        imp.prepare(model, [b for _, b in zip(range(4), it)], seed)
    else:
        imp.prepare(model, None, seed)
    best = None
    for name, w, cfg, pred in plans:
        keeps = keep_indices(imp, pruner, cfg)
        r = score_candidate(model, s.mode, keeps, train_sub, val_sub, s.candidate_steps, s.candidate_batch,
                            s.candidate_lr, s.bn_batches, seed, None, input_shape)
        cand = {"method": "trim", "action": {"group": name, "width": w}, "predicted_ms": pred,
                "val_top1": float(r["val_top1"]), "_keeps": keeps, "_state": r["state"]}
        if best is None or (cand["val_top1"], -pred) > (best["val_top1"], -best["predicted_ms"]):
            best = cand
    model.zero_grad(set_to_none=True)
    return best


def _lowrank_candidate(model: nn.Module, latency: Any, spec: Any, cur_ms: float, delta: float, s: ComposeSettings,
                       train_sub: Any, val_sub: Any, seed: int, input_shape: Sequence[int], lowrank_names: list[str]
                       ) -> dict | None:
    from compactnet.search.loop import finetune, recalibrate_bn
    from compactnet.search.methods import lowrank as lr
    from compactnet.train import evaluate

    infos = lr.layer_infos(model, input_shape, include_pointwise=s.include_pointwise)
    infos = {n: i for n, i in infos.items() if not _in_lowrank(n, lowrank_names)}
    names_in_spec = {l.name for l in spec.layers}
    infos = {n: i for n, i in infos.items() if n in names_in_spec}
    if not infos:
        return None
    variants = [(n, k) for n, i in infos.items() for k in lr.rank_grid(i.max_rank, s.grid_points)]
    preds = np.asarray(latency.predict_many([lr.decomposed_spec(spec, infos, {n: k}) for n, k in variants]), float)
    best_ok, best_short = None, None
    for (n, k), p in zip(variants, preds):
        gain = cur_ms - float(p)
        if gain <= 0:
            continue
        lost = -math.log(max(infos[n].energy_at(k), 1e-300))
        ratio = gain / max(lost, 1e-9)
        if gain >= delta:
            # per layer the highest rank meeting the cut; across layers the least energy per ms
            key = (ratio, k)
            if best_ok is None or key > best_ok[0]:
                best_ok = (key, n, k, float(p))
        elif best_short is None or gain > best_short[0][0]:
            best_short = ((gain, k), n, k, float(p))
    pick = best_ok or best_short
    if pick is None:
        return None
    _key, n, k, p = pick
    cand_model = lr.decompose(model, {n: k})
    finetune(cand_model, train_sub, s.candidate_steps, s.candidate_batch, s.candidate_lr, seed)
    recalibrate_bn(cand_model, train_sub, s.bn_batches, seed=seed)
    acc = evaluate(cand_model, val_sub)
    return {"method": "lowrank", "action": {"layer": n, "rank": int(k), "energy": infos[n].energy_at(k)},
            "predicted_ms": p, "val_top1": float(acc), "short_of_target": best_ok is None, "_model": cand_model}


def _int8_candidate(model: nn.Module, spec: Any, int8_lat: _Int8Latency, s: ComposeSettings, train_split: Any,
                    val_sub: Any, seed: int, input_shape: Sequence[int]) -> dict:
    from compactnet.search.methods.int8 import evaluate_onnx, quantize_model

    models = quantize_model(model, train_split, s.n_calibration, seed, input_shape, timing_pair=False)
    return {"method": "int8", "action": {"calibration_images": models.calibration_images},
            "predicted_ms": int8_lat(spec), "val_top1": evaluate_onnx(models.int8, val_sub),
            "latency_assumed": int8_lat.assumed, "_models": models}


def compose(model: nn.Module, data: Any, latency: Any, speedup: float, methods: Sequence[str] = METHODS,
            int8_latency: Any = None, settings: ComposeSettings | None = None, teacher: nn.Module | None = None,
            seed: int = 0, input_shape: Sequence[int] = (1, 3, 32, 32),
            on_iteration: Callable[[dict], None] | None = None) -> ComposeResult:
    """Compose trimming, low-rank decomposition and int8 until a predicted speedup is reached.

    Args:
        model: The trained network (changed in place by ``trim``; replaced by ``lowrank``; see
            ``result.model``).
        data: Object with ``train`` and ``val`` splits.
        latency: fp32 latency model of the target platform: ``predict_many(list[NetworkSpec])``
            (a fitted ``LatencyPredictor``, any search ``LatencyModel``).
        speedup: Target predicted speedup over the original's fp32 latency.
        methods: Enabled methods among ``trim``, ``lowrank``, ``int8``, ``share`` (``share`` is accepted
            and ignored here: it targets size, see :func:`share_composition`).
        int8_latency: Latency model of the platform's int8 variant (``ort-cpu-int8-t1``); None
            assumes ``settings.int8_factor`` (and says so in the result).
        settings: :class:`ComposeSettings`.
        teacher: Distilled into each applied action's fine-tune (None: no distillation).
        seed: Seed of every random choice.
        input_shape: NCHW input shape.
        on_iteration: Called with each history record.

    Raises:
        ConfigError: Unknown methods, a speedup not above 1, or a latency model without ``predict_many``.
    """
    from compactnet.extract import network_spec_from_torch
    from compactnet.search.loop import finetune
    from compactnet.search.methods import lowrank as lr
    from compactnet.train import evaluate

    methods = tuple(dict.fromkeys(str(m).strip().lower() for m in methods))
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise bad_value("--methods", "a comma-separated subset of " + ",".join(METHODS), ",".join(methods) or "''")
    if not speedup > 1:
        raise bad_value("speedup", "a target above 1, e.g. 1.8", speedup)
    if not hasattr(latency, "predict_many"):
        raise bad_value("latency", "a latency model with predict_many(list[NetworkSpec])", type(latency).__name__)
    s = settings or ComposeSettings()
    t0 = time.perf_counter()
    int8_lat = _Int8Latency(latency, int8_latency, s.int8_factor)
    val_sub = subset(data.val, s.val_limit, seed)
    spec0 = network_spec_from_torch(model, input_shape)
    l0 = float(np.asarray(latency.predict_many([spec0]))[0])
    target = l0 / speedup
    original_val = evaluate(model, val_sub)
    baseline = None
    if "int8" in methods:
        b = _int8_candidate(model, spec0, int8_lat, s, data.train, val_sub, seed, input_shape)
        baseline = {"predicted_ms": b["predicted_ms"], "val_top1": b["val_top1"], "latency_assumed": int8_lat.assumed,
                    "predicted_speedup_vs_fp32": l0 / b["predicted_ms"]}
    history: list[dict] = []
    applied: list[str] = []
    int8_models = None
    cur_ms, cur_val = l0, original_val
    use_int8 = "int8" in methods
    fp32_methods = [m for m in methods if m in ("trim", "lowrank")]

    def reached(spec: Any, fp32_ms: float) -> bool:
        return (int8_lat(spec) if use_int8 else fp32_ms) <= target

    spec = spec0
    for it in range(1, s.max_iterations + 1):
        if reached(spec, cur_ms) or not fp32_methods:
            break
        seed_i = int(np.random.SeedSequence([seed, it]).generate_state(1)[0] % (2 ** 31))
        # the fp32 latency to reach: with int8 as the last step, the one whose int8 version meets the target
        goal = target * cur_ms / int8_lat(spec) if use_int8 else target
        delta = max((cur_ms - goal) / (s.max_iterations - it + 1), 0.0)
        train_sub = subset(data.train, s.train_subset, seed_i)
        lowrank_names = list(lr.ranks_of(model))
        cands: list[dict] = []
        if "trim" in methods:
            c = _trim_candidate(model, latency, spec, cur_ms, delta, s, train_sub, val_sub, seed_i, input_shape,
                                lowrank_names)
            if c:
                cands.append(c)
        if "lowrank" in methods:
            c = _lowrank_candidate(model, latency, spec, cur_ms, delta, s, train_sub, val_sub, seed_i, input_shape,
                                   lowrank_names)
            if c:
                cands.append(c)
        for c in cands:
            gain = cur_ms - c["predicted_ms"]
            loss = max(cur_val - c["val_top1"], s.min_loss)
            c["gain_ms"], c["score"] = gain, gain / loss
        usable = [c for c in cands if c["gain_ms"] > 0]
        record = {"iteration": it, "delta_ms": delta, "current_ms": cur_ms, "current_val": cur_val,
                  "candidates": [{k: v for k, v in c.items() if not k.startswith("_")} for c in cands]}
        if not usable:
            record["applied"] = None
            history.append(record)
            log.warning("iteration %d: no method can get faster; stopping", it)
            break
        win = max(usable, key=lambda c: (c["score"], c["gain_ms"]))
        if win["method"] == "trim":
            from compactnet.search.groups import GroupPruner

            GroupPruner(model, s.mode, example_input=torch.zeros(tuple(input_shape))).apply(win["_keeps"])
            model.load_state_dict(win["_state"])
        else:
            model = win["_model"]
        if s.winner_steps > 0:
            finetune(model, data.train, s.winner_steps, s.candidate_batch, s.candidate_lr, seed_i + 1, teacher)
        cur_val = evaluate(model, val_sub)
        spec = network_spec_from_torch(model, input_shape)
        cur_ms = float(np.asarray(latency.predict_many([spec]))[0])
        applied.append(win["method"])
        record.update({"applied": win["method"], "action": win["action"], "predicted_ms": cur_ms, "val_top1": cur_val,
                       "predicted_speedup": l0 / cur_ms})
        history.append(record)
        log.info("iteration %d: %s %s -> %.4f ms (%.2fx), val %.2f%%", it, win["method"], win["action"], cur_ms,
                 l0 / cur_ms, cur_val)
        if on_iteration:
            on_iteration(record)
    int8_ms = int8_lat(spec) if use_int8 else None
    if int8_ms is not None and int8_ms >= cur_ms:
        # int8 is not free everywhere: without VNNI or on small layers its graphs can be slower
        record = {"iteration": len(history) + 1, "current_ms": cur_ms, "current_val": cur_val, "candidates": [],
                  "applied": None, "last_step": True, "predicted_ms": cur_ms, "val_top1": cur_val,
                  "note": f"int8 not applied: predicted {int8_ms:.4f} ms, not faster than fp32 {cur_ms:.4f} ms"}
        log.warning("%s on this platform", record["note"])
        history.append(record)
        if on_iteration:
            on_iteration(record)
    elif int8_ms is not None:  # int8 is the last step
        seed_i = int(np.random.SeedSequence([seed, len(history) + 1]).generate_state(1)[0] % (2 ** 31))
        c = _int8_candidate(model, spec, int8_lat, s, data.train, val_sub, seed_i, input_shape)
        int8_models = c["_models"]
        record = {"iteration": len(history) + 1, "current_ms": cur_ms, "current_val": cur_val,
                  "candidates": [{k: v for k, v in c.items() if not k.startswith("_")}], "applied": "int8",
                  "action": c["action"], "predicted_ms": c["predicted_ms"], "val_top1": c["val_top1"],
                  "predicted_speedup": l0 / c["predicted_ms"], "last_step": True,
                  "target_reached": c["predicted_ms"] <= target}
        cur_ms, cur_val = c["predicted_ms"], c["val_top1"]
        applied.append("int8")
        history.append(record)
        if on_iteration:
            on_iteration(record)
    label = "composed: " + "+".join(dict.fromkeys(applied)) if applied else "composed: nothing applied"
    return ComposeResult(model, int8_models, methods, history, l0, cur_ms, target, original_val, cur_val, baseline,
                         lr.ranks_of(model), label, time.perf_counter() - t0, int8_lat.assumed)


def share_composition(result: ComposeResult, data: Any, out_dir: str | Any, max_size_bytes: int | None = None,
                      dataset_scale: float = 0.5, tolerance: float = 0.99, seed: int = 0,
                      model_name: str | None = None, **explore_kw: Any) -> dict:
    """Weight sharing as the size step of a composition, applied to ``result.model`` after the latency steps.

    Runs :func:`~compactnet.search.methods.weight_sharing.share_weights` on the composed fp32 network
    (its exploration keeps ``tolerance`` of the composed network's validation top-1, evaluated on
    ``dataset_scale`` of the validation split; ``max_size_bytes`` None maximises compression at that
    tolerance), which writes ``out_dir/shared.safetensors`` (bit-packed indices + codebooks),
    ``out_dir/fp32.safetensors`` and ``out_dir/weight_sharing.json``. Updates ``result.sharing`` and
    appends ``+share`` to ``result.label``; latency fields are left alone (sharing does not change it).

    Args:
        result: A :class:`ComposeResult` (``result.model`` must be the fp32 network).
        data: Object with ``val`` (exploration, before/after top-1) and ``test`` splits.
        out_dir: Folder of the artefact.
        max_size_bytes: Size budget of the artefact (None: as small as the tolerance allows).
        dataset_scale: Fraction of the validation split the exploration evaluates.
        tolerance: Kept fraction of the composed network's validation top-1.
        seed: Seed of the exploration.
        model_name: Written into the artefact's header.
        **explore_kw: Passed to :func:`~compactnet.search.methods.weight_sharing.explore`.

    Returns:
        The sharing record (also in ``result.sharing`` and ``result.summary()["weight_sharing"]``).

    Raises:
        ConfigError: A size budget no per-layer choice meets (the weight-sharing module's error).
    """
    import copy

    from compactnet.search.methods.weight_sharing import load_shared, share_weights
    from compactnet.train import evaluate

    rep = share_weights(result.model, data, out_dir, dataset_scale=dataset_scale, tolerance=tolerance, seed=seed,
                        model_name=model_name, eval_split="val", max_size_bytes=max_size_bytes, **explore_kw)
    shared_model = load_shared(rep["artefact"], copy.deepcopy(result.model))
    rec = {"artefact": rep["artefact"], "artefact_bytes": rep["artefact_bytes"],
           "fp32_safetensors_bytes": rep["fp32_safetensors_bytes"], "compression_ratio": rep["compression_ratio"],
           "max_size_bytes": max_size_bytes, "tolerance": tolerance, "dataset_scale": dataset_scale,
           "mean_index_bits": rep["mean_index_bits"],
           "val_top1_before_sharing": rep["val_top1_original"], "val_top1_after_sharing": rep["val_top1_shared"],
           "test_top1_before_sharing": evaluate(result.model, data.test),
           "test_top1_after_sharing": evaluate(shared_model, data.test),
           "exploration_seconds": rep["exploration"]["wall_s"],
           "latency_changed": False,
           "note": "weight sharing targets size only: it does not change latency (weights are decoded to fp32 "
                   "before inference); the latencies reported are those of the unshared composed network"
                   + ("; the int8 graphs are not shared (the artefact holds the fp32 network)"
                      if result.int8 is not None else "")}
    result.sharing = rec
    if "+share" not in result.label and result.label != "composed: share":
        result.label = ("composed: share" if result.label == "composed: nothing applied"
                        else result.label + "+share")
    log.info("%s: %d bytes vs %d fp32 safetensors bytes (%.2fx), val top-1 %.2f%% -> %.2f%%", result.label,
             rec["artefact_bytes"], rec["fp32_safetensors_bytes"], rec["compression_ratio"],
             rec["val_top1_before_sharing"], rec["val_top1_after_sharing"])
    return rec


def measure_composition(original: nn.Module, result: ComposeResult, data: Any, platform: Any = "ort-cpu-fp32-t1",
                        n_calibration: int = 256, seed: int = 0, input_shape: Sequence[int] = (1, 3, 32, 32),
                        compare: Callable | None = None, **compare_kw: Any) -> Any:
    """Measure the composition against the **untrimmed int8 baseline** (first) and the fp32 original.

    The graphs are already in their precision (QDQ int8 or fp32), so they are timed on the ``fp32``
    runner of the platform's runtime (:func:`~compactnet.search.methods.int8.timing_platform`): an
    ``int8`` key's runner would quantize them again.

    Returns:
        The :class:`~compactnet.measure.Comparison` of ``[int8-baseline, composed, fp32-original]``;
        ``speedups[1]`` is the composition's speedup over the int8 baseline.
    """
    from compactnet.export import export_onnx
    from compactnet.search.methods.int8 import quantize_model, timing_platform

    base = quantize_model(original, data.train, n_calibration, seed, input_shape).int8_b1
    if result.int8 is not None:
        composed = quantize_model(result.model, data.train, n_calibration, seed, input_shape).int8_b1
    else:
        composed = export_onnx(result.model, input_shape=input_shape).onnx_bytes
    fp32 = export_onnx(original, input_shape=input_shape).onnx_bytes
    return compare_fn(compare)([base, composed, fp32], timing_platform(platform), names=["int8-baseline", "composed", "fp32-original"],
                               **compare_kw)


__all__ = ["METHODS", "LATENCY_METHODS", "ComposeSettings", "ComposeResult", "compose", "share_composition",
           "measure_composition"]
