"""The CompactNet trimming loop: predicted sub-targets, candidates per group, stop on measured.

Per iteration ``i`` (PAPER-NOTES, "Trimming step"):

1. the sub-target cut ``delta_i`` (:mod:`compactnet.search.schedule`);
2. for every search group, the latency of every channel count it may take is predicted in one
   batched call (all groups of the iteration together), and the largest count whose predicted cut
   meets ``delta_i`` is chosen (latency is not monotone in the count; aligned counts can be preferred).
   When no group can cut ``delta_i`` within its lower bound, every group proposes its fastest count
   instead (the record says ``short_of_target``); the search stops only when no group can get faster;
3. each group's candidate keeps its most important channels (:mod:`compactnet.search.importance`)
   and is scored: a few fine-tune steps on a training subset and batch-norm recalibration, then
   top-1 on a fixed, class-balanced validation subset. Candidates run in parallel with joblib;
4. the best candidate wins, is fine-tuned longer and becomes the current network.

After the schedule the original and the trimmed networks are measured by the protocol
(:func:`compactnet.measure.compare`); when the speedup interval's lower bound misses the target,
the predictor is recalibrated on the measurement (both the original's and the trimmed network's
latency) and extra iterations follow (bounded), each measured again. A measurement the protocol
refuses (busy machine) or flags as taken on a busy machine is recorded but never used: the search
stops on the predicted latency, says so in ``stop_reason`` and stays in its measuring phase, so
running it again on a quiet machine re-measures and continues.

Optional snapshots (:class:`Snapshots`): each time a measured speedup's lower bound crosses one of
the given thresholds (e.g. 1.5, 1.8, 2.0, 2.5), the current network is saved (weights, channels,
ONNX, measured figures) under ``snapshots/s1p5x`` etc.; a threshold the predicted speedup crosses
triggers the measurement (with tracking, every iteration's measurement does).

Tracking (``Preset.track``, on in the ``default`` and ``paper`` presets): original and current are
measured after every schedule iteration as well (NetAdapt's empirical measurements). The schedule
stops as soon as the measured lower bound meets the target; a miss recalibrates the predictor on the
measurement and rescales the remaining sub-targets so that they end at the target. Without tracking
nothing is measured before the schedule ends (besides snapshots).

Everything the search decides is checkpointed after every iteration (weights as safetensors, the
pruning history, trajectory, recalibrations and RNG state as JSON, atomic writes); a killed search
rebuilds the network from the original weights by replaying the history, loads the checkpoint's
weights and continues where it stopped. Iteration ``i`` draws all its randomness from
``(seed, i)``, so a resumed search retraces an uninterrupted one.

Running on a cluster: candidates are dispatched with ``joblib.Parallel(n_jobs)`` under whatever
joblib backend is active, so a distributed backend applies unchanged::

    from dask.distributed import Client          # pip install "dask[distributed]"
    import joblib
    client = Client("tcp://scheduler:8786")       # or Client() for a local cluster
    with joblib.parallel_backend("dask"):
        optimize(..., n_jobs=-1)

or with Ray (``pip install ray``): ``from ray.util.joblib import register_ray; register_ray()`` and
``joblib.parallel_backend("ray")``. Workers need ``compactnet`` installed; each candidate ships the
current model, its trim plan and the training/validation subsets (a few MB) and returns its
score and fine-tuned weights.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from compactnet.data import Split
from compactnet.errors import CompactNetError, ConfigError, MeasurementError, ModelFileError
from compactnet.search._io import atomic_write_json
from compactnet.search.groups import GroupPruner, config_from_model
from compactnet.search.importance import Importance, get_importance, keep_indices
from compactnet.search.latency import LatencyModel, as_latency_model, predict_configs
from compactnet.search.measuring import Measured, MeasureFn, protocol_measure
from compactnet.search.schedule import Preset, choose_width, solve_t_init, sub_targets
from compactnet.search.scoring import FINETUNE_MAX_GRAD_NORM, finetune, recalibrate_bn, score_candidate, subset
from compactnet.spec import NetworkSpec

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
#: The smallest cut a re-planned or extra iteration asks, as a fraction of the current latency: a
#: network the recalibrated model calls fast enough while the measurement disagrees still moves.
MIN_STEP_FRACTION = 0.02


# ----- state --------------------------------------------------------------------------------------
@dataclass
class SearchState:
    """Everything a resumed search needs (JSON)."""

    signature: dict
    t_final: float
    iterations: int
    decay: float
    t_init: float
    l0_ms: float
    deltas: list[float]
    iteration: int = 0                      # iterations finished (schedule + extra)
    extra_done: int = 0
    phase: str = "schedule"                 # schedule | measure | extra | done (a refused or busy
                                            # measurement leaves measure/extra: a rerun re-measures)
    stop_reason: str = ""
    history: list[dict] = field(default_factory=list)
    trajectory: list[dict] = field(default_factory=list)
    recalibrations: list[dict] = field(default_factory=list)
    measurements: list[dict] = field(default_factory=list)
    snapshots: list[dict] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    weights_file: str = ""
    rng: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SearchState":
        """Inverse of :meth:`to_dict`."""
        return cls(**dict(d))


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state().tolist(), "numpy": _np_state(), "python": repr(random.getstate())}


def _np_state() -> list:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _set_rng_state(d: Mapping[str, Any]) -> None:
    if "torch" in d:
        torch.set_rng_state(torch.tensor(d["torch"], dtype=torch.uint8))
    if "numpy" in d:
        name, keys, pos, has_gauss, cached = d["numpy"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


# ----- the search ---------------------------------------------------------------------------------
class ProgressiveSearch:
    """The trimming loop on one model, one latency model and one data set.

    Args:
        model: The trained network (trimmed in place; the original is kept as a copy).
        latency: A :class:`~compactnet.search.latency.LatencyModel` (or anything
            :func:`~compactnet.search.latency.as_latency_model` adapts).
        train_split: Training images (candidate subsets and the winner's fine-tune draw from it).
        val_split: Validation images (candidates are scored on a fixed class-balanced subset).
        speedup: Target speedup ``T_final``.
        preset: Budget (:class:`~compactnet.search.schedule.Preset`).
        mode: ``paper`` or ``extended``.
        importance: Criterion name or object.
        checkpoint_dir: Where ``state.json`` and the weights go (None: no checkpoints, no resume).
        n_jobs: Parallel candidate evaluations (joblib; -1: all cores).
        seed: Seed of every random choice.
        measure: A :data:`MeasureFn` (see :func:`protocol_measure`), or None to stop on predicted latency.
        teacher: Model distilled into the winner's fine-tune (None: no distillation).
        verify: Check after every iteration that the trimmed network's extracted spec is the one
            whose latency was predicted.
        progress: Show a progress bar.
        on_iteration: Called with each trajectory record after its checkpoint is written.
        signature: Settings identifying the search; a checkpoint with another signature is refused.
        input_shape: NCHW input shape (tracing, spec extraction).
        snapshots: A :class:`~compactnet.search.snapshots.Snapshots` (thresholds and folder), or None
            (default: no snapshots, no measurement before the schedule ends). Needs ``measure``.

    Raises:
        ConfigError: A target the schedule cannot reach, or groups the spec cannot follow.
    """

    def __init__(self, model: nn.Module, latency: Any, train_split: Split, val_split: Split, speedup: float,
                 preset: Preset, mode: str = "paper", importance: str | Importance = "l2",
                 checkpoint_dir: str | Path | None = None, n_jobs: int = 1, seed: int = 0,
                 measure: MeasureFn | None = None, teacher: nn.Module | None = None, verify: bool = True,
                 progress: bool = True, on_iteration: Callable[[dict], None] | None = None,
                 signature: Mapping[str, Any] | None = None, input_shape: Sequence[int] = (1, 3, 32, 32),
                 snapshots: Any = None):
        from compactnet.extract import network_spec_from_torch

        t0 = time.perf_counter()
        self.original = copy.deepcopy(model).eval()
        self.model = model
        self.latency: LatencyModel = as_latency_model(latency)
        self.train_split, self.val_split = train_split, val_split
        self.preset = preset
        self.mode = mode
        self.seed = int(seed)
        self.importance = get_importance(importance, seed)
        self.n_jobs = int(n_jobs)
        self.measure_fn = measure
        self.teacher = teacher
        self.verify = verify
        self.progress = progress
        self.on_iteration = on_iteration
        self.input_shape = tuple(input_shape)
        self.ckpt = Path(checkpoint_dir) if checkpoint_dir else None
        if snapshots is not None and measure is None:
            raise ConfigError("snapshots are taken at measured speedups: pass a measure function (measure=...) "
                              "or no snapshots")
        self.snapshots = snapshots
        self.pruner = GroupPruner(model, mode, example_input=torch.zeros(self.input_shape))
        self.base_spec = network_spec_from_torch(model, self.input_shape)
        spec_groups = self.base_spec.group_widths
        missing = [gid for gid in self.pruner.members if gid not in spec_groups]
        if missing:
            raise ConfigError(f"the spec extracted from the model has no channel group for DepGraph group(s) "
                              f"{missing[:3]}; the search cannot predict their latency")
        fixed = set(self.base_spec.fixed)
        self.groups = [g for g in self.pruner.groups if g.root not in fixed and not set(g.followers) & fixed]
        self.val_subset = subset(val_split, preset.val_limit, seed)
        n, d = preset.schedule(speedup)
        l0 = float(self.latency.predict_many([self.base_spec])[0])
        self.state = SearchState(signature=dict(signature or {}), t_final=float(speedup), iterations=n, decay=d,
                                 t_init=solve_t_init(speedup, n, d), l0_ms=l0,
                                 deltas=[float(x) for x in sub_targets(l0, solve_t_init(speedup, n, d), n, d)])
        self.state.timings["setup_s"] = time.perf_counter() - t0
        self.original_val: float | None = None
        self._last_refusal = ""
        # the last tracking measurement (iteration, measurement, recalibrated on it): the measuring phase
        # reuses it for the same network instead of timing it again
        self._tracked: tuple[int, Measured, bool] | None = None

    # ----- network state --------------------------------------------------------------------------
    def dep_widths(self) -> dict[str, int]:
        """Current width of every DepGraph group."""
        return {gid: self.pruner.dep_width(gid) for gid in self.pruner.members}

    def current_spec(self) -> NetworkSpec:
        """The spec of the current network (the base spec at the current widths)."""
        return self.base_spec.with_channels(self.dep_widths())

    def predicted_ms(self) -> float:
        """Predicted latency of the current network."""
        return float(self.latency.predict_many([self.current_spec()])[0])

    # ----- checkpoints ----------------------------------------------------------------------------
    def _save(self) -> None:
        from compactnet.models import save_weights

        if self.ckpt is None:
            return
        self.ckpt.mkdir(parents=True, exist_ok=True)
        name = f"weights-{self.state.iteration:04d}-{self.state.phase}.safetensors"
        save_weights(self.model, self.ckpt / name)
        old = self.state.weights_file
        self.state.weights_file = name
        self.state.history = [r.to_dict() for r in self.pruner.history]
        self.state.rng = _rng_state()
        atomic_write_json(self.ckpt / STATE_FILE, self.state.to_dict())
        if old and old != name and (self.ckpt / old).exists():
            (self.ckpt / old).unlink()

    def try_resume(self) -> bool:
        """Continue from ``checkpoint_dir`` when it holds a search with the same signature.

        Returns:
            Whether a checkpoint was loaded.

        Raises:
            ConfigError: The checkpoint belongs to another search (other model, target, preset ...) or
                was made with another latency predictor (its predicted original latency differs).
            ModelFileError: The checkpoint is unreadable.
        """
        from compactnet.models import load_weights

        if self.ckpt is None or not (self.ckpt / STATE_FILE).exists():
            return False
        try:
            saved = SearchState.from_dict(json.loads((self.ckpt / STATE_FILE).read_text()))
        except (json.JSONDecodeError, TypeError, KeyError) as exc:
            raise ModelFileError(f"search checkpoint {self.ckpt / STATE_FILE} is unreadable ({exc}); delete "
                                 "the folder to start over") from exc
        if saved.signature != json.loads(json.dumps(self.state.signature)):
            diff = sorted(k for k in set(saved.signature) | set(self.state.signature)
                          if saved.signature.get(k) != self.state.signature.get(k))
            raise ConfigError(f"{self.ckpt} holds a search with other settings ({', '.join(diff)}); use another "
                              "output folder or delete it to start over")
        # the signature cannot name a predictor object: its prediction of the original identifies it
        if not math.isclose(saved.l0_ms, self.state.l0_ms, rel_tol=1e-6, abs_tol=1e-12):
            raise ConfigError(f"{self.ckpt} holds a search made with another latency predictor (it predicted the "
                              f"original at {saved.l0_ms:.6g} ms, this one at {self.state.l0_ms:.6g} ms); pass the "
                              "same predictor, or use another output folder or delete it to start over")
        self.pruner.replay(saved.history)
        if saved.weights_file:
            load_weights(self.model, self.ckpt / saved.weights_file)
        for r in saved.recalibrations:
            self._recalibrate(NetworkSpec.from_dict(r["spec"]), float(r["measured_ms"]), r.get("original_ms"))
        _set_rng_state(saved.rng)
        saved.timings.setdefault("setup_s", self.state.timings.get("setup_s", 0.0))
        self.state = saved
        log.info("resumed the search from %s after %d iteration(s), phase %s", self.ckpt, saved.iteration, saved.phase)
        return True

    def _recalibrate(self, spec: NetworkSpec, trimmed_ms: float, original_ms: float | None) -> None:
        # the original's measurement first: a latency model keeping one scale ends on the trimmed
        # network's; one keeping every measurement (Calibrating) fits on both ends of the range
        if original_ms is not None and float(original_ms) > 0:
            self.latency.recalibrate(self.base_spec, float(original_ms))
        self.latency.recalibrate(spec, float(trimmed_ms))

    # ----- one iteration --------------------------------------------------------------------------
    def _choose(self, delta: float) -> tuple[float, list[dict]]:
        cur_spec = self.current_spec()
        cur_ms = float(self.latency.predict_many([cur_spec])[0])
        plans, configs, owners = [], [], []
        for g in self.groups:
            counts = self.pruner.candidate_counts(g.name)
            for w in counts:
                configs.append(self.pruner.plan_widths(g.name, w))
                owners.append((g.name, w))
        preds = predict_configs(self.latency, cur_spec, configs)  # one batched call for all groups
        fallback = []
        for g in self.groups:
            idx = [k for k, (name, _w) in enumerate(owners) if name == g.name]
            if not idx:
                continue
            counts = [owners[k][1] for k in idx]
            w = choose_width(counts, preds[idx], cur_ms, delta, self.preset.align, self.preset.align_tolerance)
            if w is None:
                # this group cannot cut delta: its candidate would be its fastest count (the paper's
                # "remove filters until the cut is met" stops at the lower bound)
                k = idx[int(np.lexsort((-np.asarray(counts), preds[idx]))[0])]
                if preds[k] < cur_ms:
                    fallback.append({"group": g.name, "width_before": self.pruner.dep_width(g.root),
                                     "width": int(owners[k][1]), "widths": configs[k],
                                     "predicted_ms": float(preds[k]), "short_of_target": True})
                continue
            k = idx[counts.index(w)]
            plans.append({"group": g.name, "width_before": self.pruner.dep_width(g.root), "width": int(w),
                          "widths": configs[k], "predicted_ms": float(preds[k]), "short_of_target": False})
        # only when no group can meet the sub-target do the short ones compete
        return cur_ms, plans or fallback

    def _iteration_seed(self, i: int) -> int:
        return int(np.random.SeedSequence([self.seed, i]).generate_state(1)[0] % (2 ** 31))

    def step(self, delta: float, phase: str) -> dict | None:
        """One iteration with sub-target ``delta`` ms; returns its trajectory record (None: nothing fits)."""
        from joblib import Parallel, delayed

        t0 = time.perf_counter()
        i = self.state.iteration + 1
        seed = self._iteration_seed(i)
        cur_ms, plans = self._choose(delta)
        if not plans:
            return None
        train_sub = subset(self.train_split, self.preset.train_subset, seed)
        if self.importance.needs_gradients:
            from compactnet.train import batches, prepare_memory_format

            gen = torch.Generator().manual_seed(seed)
            fmt = prepare_memory_format(self.model)
            it = batches(train_sub, self.preset.candidate_batch, True, gen, False, fmt)
            self.importance.prepare(self.model, [b for _, b in zip(range(4), it)], seed)
        else:
            self.importance.prepare(self.model, None, seed)
        for p in plans:
            p["keeps"] = keep_indices(self.importance, self.pruner, p["widths"])
        self.model.zero_grad(set_to_none=True)
        jobs = self.n_jobs if self.n_jobs > 0 else (os.cpu_count() or 1)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        # sequential: keep the caller's thread setting; parallel: share the cores among the workers
        threads = None if min(jobs, len(plans)) <= 1 else max(1, cores // min(jobs, len(plans)))
        pre = self.preset
        t_cand = time.perf_counter()
        results = Parallel(n_jobs=self.n_jobs)(
            delayed(score_candidate)(self.model, self.mode, p["keeps"], train_sub, self.val_subset,
                                     pre.candidate_steps, pre.candidate_batch, pre.candidate_lr, pre.bn_batches,
                                     seed, threads, self.input_shape)
            for p in plans)
        cand_s = time.perf_counter() - t_cand
        for p, r in zip(plans, results):
            p["val_top1"], p["seconds"] = float(r["val_top1"]), float(r["seconds"])
        best = max(range(len(plans)), key=lambda k: (plans[k]["val_top1"], -plans[k]["predicted_ms"], -k))
        win = plans[best]
        self.pruner.apply(win["keeps"])
        self.model.load_state_dict(results[best]["state"])
        t_win = time.perf_counter()
        val, undone = self._finetune_winner(win, results[best]["state"], train_sub, seed)
        win_s = time.perf_counter() - t_win
        spec = self.current_spec()
        if self.verify:
            self._verify(spec)
        l0_now, pred = (float(v) for v in self.latency.predict_many([self.base_spec, spec]))
        cfg = config_from_model(self.model)
        record = {
            "iteration": i, "phase": phase, "delta_ms": float(delta), "current_ms": cur_ms,
            "group": win["group"], "width_before": win["width_before"], "width": win["width"],
            "predicted_ms": pred, "predicted_speedup": l0_now / pred if pred > 0 else math.nan,
            "candidate_val_top1": win["val_top1"], "val_top1": float(val),
            "channels": self.pruner.widths(),
            "config": cfg.to_dict() if cfg is not None else None,
            "short_of_target": bool(win["short_of_target"]),
            "finetune_undone": undone,
            "candidates": [{k: p[k] for k in ("group", "width_before", "width", "predicted_ms", "val_top1", "seconds")}
                           for p in plans],
            "candidate_seconds_mean": float(np.mean([p["seconds"] for p in plans])),
            "candidates_wall_s": cand_s, "winner_finetune_s": win_s,
            "seconds": time.perf_counter() - t0,
        }
        tm = self.state.timings
        tm["candidates_s"] = tm.get("candidates_s", 0.0) + cand_s
        tm["winner_finetune_s"] = tm.get("winner_finetune_s", 0.0) + win_s
        tm["iterations_s"] = tm.get("iterations_s", 0.0) + record["seconds"]
        return record

    def _finetune_winner(self, win: dict, state: dict, train_sub: Split, seed: int) -> tuple[float, bool]:
        """Fine-tune the iteration's winner; undo it when it lost more than ``Preset.winner_guard`` points.

        Returns:
            ``(validation top-1 kept, whether the fine-tune was undone)``.
        """
        from compactnet.train import evaluate

        pre = self.preset
        if pre.winner_steps <= 0:
            return float(evaluate(self.model, self.val_subset)), False
        finetune(self.model, self.train_split, pre.winner_steps, pre.candidate_batch, pre.candidate_lr,
                 seed + 1, self.teacher)
        recalibrate_bn(self.model, train_sub, pre.bn_batches, seed=seed)
        val = float(evaluate(self.model, self.val_subset))
        if pre.winner_guard is not None and val < win["val_top1"] - pre.winner_guard:
            log.warning("the winner's fine-tune lost %.1f points (%.1f%% -> %.1f%%): undone, the candidate's "
                        "weights kept", win["val_top1"] - val, win["val_top1"], val)
            self.model.load_state_dict(state)
            return float(win["val_top1"]), True
        return val, False

    def _verify(self, spec: NetworkSpec) -> None:
        from compactnet.extract import layer_differences, network_spec_from_torch

        got = network_spec_from_torch(self.model, self.input_shape)
        diffs = layer_differences(got, spec)
        if diffs:
            raise CompactNetError("the trimmed network is not the one whose latency was predicted: "
                                  + "; ".join(diffs[:3]))

    def _finish_iteration(self, record: dict) -> None:
        self.state.iteration = record["iteration"]
        self.state.trajectory.append(record)
        self._save()
        if self.on_iteration:
            self.on_iteration(record)

    # ----- measurements ---------------------------------------------------------------------------
    _HALTS = ("measurement refused", "measurement flagged")

    def _measure(self, target: float, iteration: int, **extra: Any) -> Measured | None:
        """Measure original vs current; None when the protocol refused (recorded in the state)."""
        st = self.state
        t0 = time.perf_counter()
        try:
            m = self.measure_fn(self.original, self.model, target)
        except MeasurementError as exc:
            st.measurements.append({"iteration": iteration, "refused": str(exc), **extra})
            self._last_refusal = str(exc)
            return None
        finally:
            st.timings["measure_s"] = st.timings.get("measure_s", 0.0) + time.perf_counter() - t0
        pred = float(self.latency.predict_many([self.current_spec()])[0])
        st.measurements.append({"iteration": iteration, "predicted_ms": pred, **m.to_dict(), **extra})
        return m

    def _take_snapshots(self, m: Measured, iteration: int, predicted_speedup: float, val_top1: float | None) -> None:
        """Save a snapshot for every pending threshold the measurement's lower bound crosses."""
        if self.snapshots is None or m.busy:
            return
        for t in self.snapshots.pending(self.state.snapshots):
            if m.low >= t:
                rec = self.snapshots.save(t, self.model, m, {"iteration": iteration,
                                                             "predicted_speedup": float(predicted_speedup),
                                                             "val_top1": val_top1}, self.input_shape)
                self.state.snapshots.append(rec)

    def _snapshot_check(self, rec: dict) -> bool:
        """After an iteration: measure when the predicted speedup crosses a pending threshold.

        Returns:
            False (the schedule goes on; only tracking stops it early).
        """
        if self.snapshots is None:
            return False
        pending = self.snapshots.pending(self.state.snapshots)
        if not pending or not rec["predicted_speedup"] >= pending[0]:
            return False
        m = self._measure(pending[0], rec["iteration"], snapshot=True)
        if m is None:
            log.warning("snapshot measurement refused (%s); trying again after the next iteration",
                        self._last_refusal)
            return False
        if m.busy:
            log.warning("snapshot measurement flagged (busy machine): not used")
            return False
        self._take_snapshots(m, rec["iteration"], rec["predicted_speedup"], rec["val_top1"])
        rec["snapshots"] = [d["tag"] for d in self.state.snapshots if d["iteration"] == rec["iteration"]]
        return False

    # ----- tracking (Preset.track) ------------------------------------------------------------------
    @property
    def _goal(self) -> float:
        """The speedup the loop stops on: the target raised by ``Preset.stop_margin`` (the final decision,
        repeated comparisons of the retrained network, keeps the target itself)."""
        return self.state.t_final * (1.0 + float(self.preset.stop_margin))

    @property
    def _tracking(self) -> bool:
        return bool(self.preset.track) and self.measure_fn is not None

    def _track(self, rec: dict) -> bool:
        """Measure after a schedule iteration; True when the measured lower bound meets the target.

        A miss recalibrates the latency model on the measurement (both ends, kept in the state so a
        resumed search replays it) and re-plans the remaining sub-targets (:meth:`_replan`). A refused
        or busy measurement changes nothing: the schedule goes on as predicted and the final
        measurement decides.
        """
        st = self.state
        m = self._measure(self._goal, rec["iteration"], tracking=True)
        if m is None or m.busy:
            log.warning("tracking measurement after iteration %d %s: the schedule goes on as predicted",
                        rec["iteration"], "refused (" + self._last_refusal + ")" if m is None else "flagged (busy)")
            return False
        rec["measured_speedup"] = [m.speedup, m.low, m.high]
        self._take_snapshots(m, rec["iteration"], rec["predicted_speedup"], rec["val_top1"])
        rec["snapshots"] = [d["tag"] for d in st.snapshots if d["iteration"] == rec["iteration"]]
        log.info("iteration %d: measured %.2fx [%.2f, %.2f], predicted %.2fx (target %.2fx)", rec["iteration"],
                 m.speedup, m.low, m.high, rec["predicted_speedup"], st.t_final)
        if m.reached:
            self._tracked = (rec["iteration"], m, False)
            return True
        self._recalibrate_on(m, rec["iteration"])
        self._tracked = (rec["iteration"], m, True)
        rec["replan"] = self._replan(m, rec["iteration"])
        return False

    def _recalibrate_on(self, m: Measured, iteration: int) -> None:
        """Recalibrate on a measurement of the current network and record it (replayed on resume)."""
        spec = self.current_spec()
        self._recalibrate(spec, m.trimmed_ms, m.original_ms)
        self.state.recalibrations.append({"spec": spec.to_dict(), "measured_ms": m.trimmed_ms,
                                          "original_ms": m.original_ms, "iteration": iteration})

    def _target_ms(self, m: Measured) -> float:
        """The latency the goal asks of the measured original, widened by the measurement's relative
        width below its ratio so that the lower bound is what meets it.

        The widening is capped at half of ``Preset.max_width``: a measurement wider than that was taken
        in a slow stretch of the machine (the final decision measures again until one is narrower),
        and planning on its width trimmed past the target (a [1.51, 2.30] tracking interval asked for
        a 20% deeper cut than a quiet one).
        """
        margin = m.speedup / m.low if m.low > 0 else 1.0
        if self.preset.max_width is not None:
            margin = min(margin, 1.0 + float(self.preset.max_width) / 2.0)
        return m.original_ms / (self._goal * max(1.0, margin))

    def _extra_delta(self, m: Measured) -> tuple[float, float]:
        """The sub-target of an extra iteration.

        The cut the recalibrated prediction of the current network still needs to reach
        :meth:`_target_ms`, spread over the extra iterations left but no smaller than the schedule's
        last sub-target (gradual steps, as the schedule takes them), never larger than the cut needed
        (on machine D the last sub-target was 1.5 times the missing cut and a 1.8x search ended at
        2.11x), and at least 2% of the current latency.

        Returns:
            ``(delta_ms, target_ms)``.
        """
        pred = float(self.latency.predict_many([self.current_spec()])[0])
        target_ms = self._target_ms(m)
        need = pred - target_ms
        left = max(1, self.preset.extra_iterations - self.state.extra_done)
        step = min(need, max(self.state.deltas[-1], need / left)) if self.state.deltas else need
        return max(MIN_STEP_FRACTION * pred, step), target_ms

    def _replan(self, m: Measured, done: int) -> dict:
        """Rescale the sub-targets after iteration ``done`` so that they end at the target.

        The remaining cut is the recalibrated prediction of the current network minus the latency the
        target asks of the measured original (widened by the interval's relative width, so that the
        lower bound is what meets it); the decayed shape of the schedule is kept, and every step cuts
        at least 2% of the current latency (a network the recalibrated model calls fast enough while
        the measurement disagrees still moves).

        Returns:
            ``{"deltas": new sub-targets, "cut_ms": remaining cut, "floor_ms": the 2% floor}`` (no
            deltas after the last iteration).
        """
        st = self.state
        rest = st.deltas[done:]
        pred = float(self.latency.predict_many([self.current_spec()])[0])
        target_ms = self._target_ms(m)
        cut, total, floor = max(pred - target_ms, 0.0), float(sum(rest)), MIN_STEP_FRACTION * pred
        new = [max(floor, d * cut / total if total > 0 else cut / len(rest)) for d in rest]
        st.deltas = st.deltas[:done] + new
        if new:
            log.info("re-planned %d sub-target(s): %.4f ms to cut (was %.4f predicted)", len(new), sum(new), total)
        return {"deltas": new, "cut_ms": cut, "floor_ms": floor}

    # ----- the loop -------------------------------------------------------------------------------
    def run(self) -> SearchState:
        """Run (or continue) the search until the target is met on the device, or budgets run out.

        A refused measurement (busy machine, ``busy="refuse"``) or one flagged as busy
        (``busy="flag"``/``"ignore"``) is recorded and never recalibrates anything: the search stops on
        the predicted latency with a ``stop_reason`` saying so, and stays in its measuring phase (not
        ``done``), so running it again (``try_resume``) on a quiet machine re-measures and continues.
        """
        from compactnet.progress import progress_bar

        st = self.state
        total = st.iterations + (self.preset.extra_iterations if self.measure_fn else 0)
        bar = progress_bar(total=total, initial=st.iteration, desc="trimming", unit="it", disable=not self.progress)
        try:
            self._run_schedule(bar)
            if st.phase == "schedule":
                st.phase = "measure"
                self._save()
            halted = self._run_measuring(bar)
            if not halted:
                st.phase = "done"
            self._save()
        finally:
            bar.close()
        return st

    def _run_schedule(self, bar: Any) -> None:
        """The schedule's iterations (tracked when ``Preset.track``), until done or met as measured."""
        st = self.state
        while st.phase == "schedule" and st.iteration < st.iterations:
            rec = self.step(st.deltas[st.iteration], "schedule")
            if rec is None:
                st.stop_reason = (f"iteration {st.iteration + 1}: every group is at its lower bound or "
                                  "cannot get faster")
                log.warning("%s", st.stop_reason)
                st.phase = "measure"
                self._save()
                return
            met = self._track(rec) if self._tracking else self._snapshot_check(rec)
            if met:  # saved with the iteration: a resumed search does not trim past a met target
                st.phase = "measure"
                if st.iteration + 1 < st.iterations:
                    st.stop_reason = (f"target met as measured after iteration {st.iteration + 1} of "
                                      f"{st.iterations} (tracking): the schedule stops early")
                    log.info("%s", st.stop_reason)
            self._finish_iteration(rec)
            bar.update(1)
            bar.set_postfix(pred=f"{rec['predicted_ms']:.3f}ms", x=f"{rec['predicted_speedup']:.2f}",
                            val=f"{rec['val_top1']:.1f}%",
                            **({"measured": f"{rec['measured_speedup'][0]:.2f}x"} if "measured_speedup" in rec
                               else {}))

    def _halt(self, m: Measured | None) -> bool:
        """Record why a refused (None) or busy measurement stops the search; False when it can be used."""
        st = self.state
        if m is None:
            st.stop_reason = f"measurement refused ({self._last_refusal}); stopped on the predicted latency"
        elif m.busy:
            st.stop_reason = (f"measurement flagged: taken on a busy machine (speedup {m.speedup:.2f}x "
                              f"[{m.low:.2f}, {m.high:.2f}], not used); stopped on the predicted latency")
        else:
            return False
        log.warning("%s; run again on a quiet machine to measure and continue", st.stop_reason)
        return True

    def _run_measuring(self, bar: Any) -> bool:
        """Measure; on a miss, extra iterations until the target holds or they run out.

        Returns:
            True when a refused or busy measurement halted the search (it stays resumable).
        """
        st = self.state
        while st.phase in ("measure", "extra"):
            if self.measure_fn is None:
                st.phase = "done"
                return False
            tracked = self._tracked if self._tracked is not None and self._tracked[0] == st.iteration else None
            self._tracked = None
            m = tracked[1] if tracked is not None else self._measure(self._goal, st.iteration)
            if self._halt(m):
                return True
            if st.stop_reason.startswith(self._HALTS):     # an earlier run's refusal is history now
                st.stop_reason = ""
            log.info("measured speedup %.2fx [%.2f, %.2f] (target %.2fx) after %d iterations", m.speedup, m.low,
                     m.high, st.t_final, st.iteration)
            last = st.trajectory[-1] if st.trajectory else {}
            self._take_snapshots(m, st.iteration, last.get("predicted_speedup", 1.0), last.get("val_top1"))
            if m.reached:
                st.phase = "done"
                return False
            if st.extra_done >= self.preset.extra_iterations:
                goal = (f"{st.t_final:.2f}x" if self._goal == st.t_final
                        else f"{self._goal:.2f}x (target {st.t_final:.2f}x + stop margin)")
                st.stop_reason = (f"measured speedup {m.speedup:.2f}x (lower bound {m.low:.2f}) misses "
                                  f"{goal} after {st.extra_done} extra iteration(s)")
                log.warning("%s", st.stop_reason)
                st.phase = "done"
                return False
            if tracked is None or not tracked[2]:  # a tracking miss of this network recalibrated already
                self._recalibrate_on(m, st.iteration)
            delta, target_ms = self._extra_delta(m)
            st.phase = "extra"
            rec = self.step(delta, "extra")
            if rec is None:
                st.stop_reason = "extra iteration: every group is at its lower bound or cannot get faster"
                log.warning("%s", st.stop_reason)
                st.phase = "done"
                return False
            st.extra_done += 1
            rec["target_ms"] = target_ms
            self._finish_iteration(rec)
            bar.update(1)
        return False


__all__ = ["ProgressiveSearch", "SearchState", "Measured", "MeasureFn", "protocol_measure", "score_candidate",
           "finetune", "recalibrate_bn", "subset", "FINETUNE_MAX_GRAD_NORM"]
