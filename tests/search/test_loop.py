"""The trimming loop: width choice per group, resume after a kill, stop on measured, parallel candidates."""

from __future__ import annotations

import math

import pytest
import torch
from search_tiny import TINY_MNV2, TINY_RESNET

from compactnet.errors import MeasurementError
from compactnet.extract import spec_for
from compactnet.models import MobileNetV2Config, create_model
from compactnet.models.mobilenetv2 import stage_of_width_index
from compactnet.search.latency import MacsLatencyModel
from compactnet.search.loop import Measured, ProgressiveSearch

TIMING = ("seconds", "candidate_seconds_mean", "candidates_wall_s", "winner_finetune_s")


def _model(name="mobilenetv2", channels=TINY_MNV2):
    torch.manual_seed(0)
    return create_model(name, channels)


def _search(data, preset, latency, model=None, **kw):
    kw.setdefault("progress", False)
    return ProgressiveSearch(model if model is not None else _model(), latency, data.train, data.val, kw.pop("speedup", 1.25), preset,
                             mode=kw.pop("mode", "paper"), **kw)


def _strip(trajectory):
    out = []
    for r in trajectory:
        r = {k: v for k, v in r.items() if k not in TIMING}
        r["candidates"] = [{k: v for k, v in c.items() if k != "seconds"} for c in r["candidates"]]
        out.append(r)
    return out


def test_each_group_takes_the_largest_count_meeting_the_sub_target(tiny_data, tiny_preset, aligned_latency):
    s = _search(tiny_data, tiny_preset, aligned_latency)
    state = s.run()
    assert len(state.trajectory) == 2
    bounds = {g.name: g.lower_bound for g in s.groups}
    stages = stage_of_width_index()
    prev = MobileNetV2Config.from_dict(TINY_MNV2)
    for rec in state.trajectory:
        assert not rec["short_of_target"]
        # brute force through the registry's config -> spec path (not the search's own plan)
        cur_ms = aligned_latency.predict_many([spec_for("mobilenetv2", prev)])[0]
        assert rec["current_ms"] == pytest.approx(cur_ms)
        for cand in rec["candidates"]:
            st = int(cand["group"][5:])
            specs = []
            counts = list(range(bounds[cand["group"]], cand["width_before"]))
            for w in counts:
                widths = [w if stages[i] == st else c for i, c in enumerate(prev.widths)]
                specs.append(spec_for("mobilenetv2", MobileNetV2Config(widths=tuple(widths), last=prev.last)))
            lat = aligned_latency.predict_many(specs)
            ok = [c for c, l in zip(counts, lat) if cur_ms - l >= rec["delta_ms"] - 1e-12]
            assert cand["width"] == max(ok)
            assert cand["predicted_ms"] == pytest.approx(lat[counts.index(cand["width"])])
        best = max(rec["candidates"], key=lambda c: (c["val_top1"], -c["predicted_ms"]))
        assert (rec["group"], rec["width"]) == (best["group"], best["width"])
        prev = MobileNetV2Config.from_dict(rec["config"])
    assert state.trajectory[-1]["predicted_ms"] < state.l0_ms
    assert s.model.config == prev


def test_when_no_group_can_meet_the_cut_the_fastest_counts_compete(tiny_data, tiny_preset, aligned_latency):
    s = _search(tiny_data, tiny_preset, aligned_latency, speedup=1.4)
    state = s.run()
    short = [r for r in state.trajectory if r["short_of_target"]]
    assert short, "a 1.4x target in 2 iterations needs cuts no single stage of the tiny network can make"
    rec = short[0]
    cur = rec["current_ms"]
    assert rec["predicted_ms"] < cur and cur - rec["predicted_ms"] < rec["delta_ms"]
    for cand in rec["candidates"]:        # each at the fastest count its lower bound allows
        assert cand["predicted_ms"] < cur
    assert len(state.trajectory) == 2 and not state.stop_reason


def test_a_killed_search_resumes_to_the_same_trajectory(tmp_path, tiny_data, tiny_preset, aligned_latency):
    full = _search(tiny_data, tiny_preset, aligned_latency, checkpoint_dir=tmp_path / "a")
    full.run()

    class Killed(Exception):
        pass

    def kill(rec):
        if rec["iteration"] == 1:
            raise Killed

    first = _search(tiny_data, tiny_preset, MacsLatencyModel(align=4), checkpoint_dir=tmp_path / "b", on_iteration=kill)
    with pytest.raises(Killed):
        first.run()
    again = _search(tiny_data, tiny_preset, MacsLatencyModel(align=4), checkpoint_dir=tmp_path / "b")
    assert again.try_resume() and again.state.iteration == 1
    state = again.run()
    assert _strip(state.trajectory) == _strip(full.state.trajectory)
    a, b = full.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # only the last checkpoint's weights are kept
    assert len(list((tmp_path / "b").glob("weights-*.safetensors"))) == 1


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path, tiny_data, tiny_preset, aligned_latency):
    from compactnet.errors import ConfigError

    s = _search(tiny_data, tiny_preset, aligned_latency, checkpoint_dir=tmp_path, signature={"speedup": 1.4})
    s.run()
    other = _search(tiny_data, tiny_preset, aligned_latency, checkpoint_dir=tmp_path, signature={"speedup": 2.0})
    with pytest.raises(ConfigError, match="speedup"):
        other.try_resume()


def _device(truth: MacsLatencyModel, search_holder: list):
    """A fake protocol measurement: latencies from ``truth`` with a 1% interval."""
    from compactnet.extract import network_spec_from_torch

    def measure(original, trimmed, target):
        a, b = truth.predict_many([network_spec_from_torch(original), network_spec_from_torch(trimmed)])
        r = a / b
        return Measured(float(a), float(b), float(r), r * 0.99, r * 1.01, bool(r * 0.99 >= target))

    return measure


def test_a_missed_measured_target_recalibrates_and_continues(tiny_data, tiny_preset):
    predictor = MacsLatencyModel(ms_per_mmac=0.01)
    # the device pays a fixed per-call overhead the predictor ignores: measured speedups fall short
    truth = MacsLatencyModel(ms_per_mmac=0.02, overhead_ms=0.1)
    s = _search(tiny_data, tiny_preset, predictor, model=_model("resnet20", TINY_RESNET), mode="extended",
                measure=_device(truth, []))
    state = s.run()
    first = state.measurements[0]
    assert not first["reached"] and first["speedup"] < 1.25
    extra = [r for r in state.trajectory if r["phase"] == "extra"]
    assert extra and state.extra_done == len(extra) <= tiny_preset.extra_iterations
    assert len(state.recalibrations) == len(extra)
    # after recalibration the predictor reproduces the measurement it was given
    assert state.measurements[1]["speedup"] > first["speedup"]
    last = state.measurements[-1]
    assert last["reached"] or "misses" in state.stop_reason
    assert state.phase == "done"


def test_a_refused_measurement_stops_on_the_prediction_and_a_rerun_measures(tmp_path, tiny_data, tiny_preset):
    def busy(original, trimmed, target):
        raise MeasurementError("the machine is busy")

    s = _search(tiny_data, tiny_preset, MacsLatencyModel(align=4), measure=busy, checkpoint_dir=tmp_path)
    state = s.run()
    assert state.stop_reason == "measurement refused (the machine is busy); stopped on the predicted latency"
    assert state.measurements[-1]["refused"] == "the machine is busy"
    assert len(state.trajectory) == tiny_preset.iterations and not state.recalibrations
    assert state.phase == "measure"          # not "done": the checkpoint says a measurement is owed
    # a rerun on a quiet machine measures and carries on from the checkpoint
    truth = MacsLatencyModel(align=4)
    again = _search(tiny_data, tiny_preset, MacsLatencyModel(align=4), measure=_device(truth, []),
                    checkpoint_dir=tmp_path)
    assert again.try_resume() and again.state.phase == "measure"
    state = again.run()
    assert state.phase == "done" and "refused" not in state.stop_reason
    assert [("refused" in m) for m in state.measurements] == [True] + [False] * (len(state.measurements) - 1)


def test_a_measurement_flagged_busy_is_recorded_and_never_recalibrates(tmp_path, tiny_data, tiny_preset):
    truth = MacsLatencyModel(ms_per_mmac=0.02, overhead_ms=0.1)     # would miss the target: recalibrate
    honest = _device(truth, [])

    def flagged(original, trimmed, target):
        m = honest(original, trimmed, target)
        return Measured(m.original_ms, m.trimmed_ms, m.speedup, m.low, m.high, False, {"busy": True}, busy=True)

    predictor = MacsLatencyModel(ms_per_mmac=0.01)
    s = _search(tiny_data, tiny_preset, predictor, model=_model("resnet20", TINY_RESNET), mode="extended",
                measure=flagged, checkpoint_dir=tmp_path)
    state = s.run()
    assert state.stop_reason.startswith("measurement flagged") and "stopped on the predicted latency" in state.stop_reason
    assert len(state.measurements) == 1 and state.measurements[0]["busy"] is True
    assert not state.recalibrations and state.extra_done == 0 and predictor.scale == 1.0
    assert all(r["phase"] == "schedule" for r in state.trajectory)
    assert state.phase == "measure"


def test_resume_refuses_a_checkpoint_made_with_another_predictor(tmp_path, tiny_data, tiny_preset):
    from compactnet.errors import ConfigError

    _search(tiny_data, tiny_preset, MacsLatencyModel(align=4), checkpoint_dir=tmp_path).run()
    other = _search(tiny_data, tiny_preset, MacsLatencyModel(ms_per_mmac=0.02, align=4), checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match="another latency predictor"):
        other.try_resume()
    same = _search(tiny_data, tiny_preset, MacsLatencyModel(align=4), checkpoint_dir=tmp_path)
    assert same.try_resume()


def test_a_kill_inside_the_measurement_of_the_extra_phase_resumes_to_the_same_search(tmp_path, tiny_data,
                                                                                      tiny_preset):
    truth = MacsLatencyModel(ms_per_mmac=0.02, overhead_ms=0.1)

    def run(ckpt, measure, resume=False):
        s = _search(tiny_data, tiny_preset, MacsLatencyModel(ms_per_mmac=0.01), model=_model("resnet20", TINY_RESNET),
                    mode="extended", measure=measure, checkpoint_dir=ckpt)
        if resume:
            assert s.try_resume()
        return s, s.run()

    full, ref = run(tmp_path / "a", _device(truth, []))
    assert ref.extra_done >= 1, "the set-up must reach the extra phase"

    class Killed(Exception):
        pass

    calls = []
    honest = _device(truth, [])

    def dies_on_second(original, trimmed, target):
        calls.append(1)
        if len(calls) == 2:              # the measurement after the first extra iteration
            raise Killed
        return honest(original, trimmed, target)

    with pytest.raises(Killed):
        run(tmp_path / "b", dies_on_second)
    again, state = run(tmp_path / "b", _device(truth, []), resume=True)
    assert _strip(state.trajectory) == _strip(ref.trajectory)
    assert state.extra_done == ref.extra_done and state.stop_reason == ref.stop_reason
    strip_m = [{k: v for k, v in m.items() if k != "detail"} for m in state.measurements]
    assert strip_m == [{k: v for k, v in m.items() if k != "detail"} for m in ref.measurements]
    assert state.recalibrations == ref.recalibrations
    a, b = full.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_snapshots_are_saved_when_the_measured_lower_bound_crosses_a_threshold(tmp_path, tiny_data, tiny_preset):
    import json

    from compactnet.models import load_weights
    from compactnet.search.snapshots import Snapshots, snapshot_tag

    assert (snapshot_tag(1.5), snapshot_tag(2.0), snapshot_tag(1.8)) == ("s1p5x", "s2x", "s1p8x")
    truth = MacsLatencyModel(align=4)
    snaps = Snapshots((1.02, 1.05, 9.0), tmp_path / "snapshots", "mobilenetv2")
    s = _search(tiny_data, tiny_preset, MacsLatencyModel(align=4), measure=_device(truth, []), snapshots=snaps)
    state = s.run()
    crossed = [d["threshold"] for d in state.snapshots]
    assert crossed and 9.0 not in crossed and not (tmp_path / "snapshots" / "s9x").exists()
    for d in state.snapshots:
        folder = tmp_path / "snapshots" / snapshot_tag(d["threshold"])
        rec = json.loads((folder / "measured.json").read_text())
        assert rec["measured"]["low"] >= d["threshold"] and rec["iteration"] == d["iteration"]
        net = load_weights(create_model("mobilenetv2", channels=folder / "channels.json"), folder / "weights.safetensors")
        assert (folder / "model.onnx").stat().st_size > 0 and net is not None
    # without snapshots nothing is measured before the schedule ends (the default is unchanged)
    plain = _search(tiny_data, tiny_preset, MacsLatencyModel(align=4), measure=_device(truth, [])).run()
    assert [m["iteration"] for m in plain.measurements][0] == tiny_preset.iterations
    assert not plain.snapshots


def test_tracking_stops_the_schedule_when_the_measured_target_is_met(tiny_data, tiny_preset):
    from dataclasses import replace

    preset = replace(tiny_preset, iterations=5, track=True)
    # the predictor charges a per-call overhead the device does not pay: it underestimates speedups
    predictor = MacsLatencyModel(ms_per_mmac=0.01, overhead_ms=0.5)
    truth = MacsLatencyModel(ms_per_mmac=0.01)
    state = _search(tiny_data, preset, predictor, measure=_device(truth, [])).run()
    tracked = [m for m in state.measurements if m.get("tracking")]
    assert len(state.trajectory) < preset.iterations and "target met as measured" in state.stop_reason
    assert tracked and tracked[-1]["reached"] and not any(m["reached"] for m in tracked[:-1])
    assert state.trajectory[-1]["measured_speedup"][0] == pytest.approx(tracked[-1]["speedup"])
    assert state.trajectory[-1]["predicted_speedup"] < tracked[-1]["speedup"]
    # the final decision reuses the tracking measurement of the same network: nothing is measured twice
    assert len(state.measurements) == len(tracked) and state.phase == "done"
    # with a stopping margin the loop asks the raised goal of its measurements (the final decision keeps the target)
    margin = _search(tiny_data, replace(preset, stop_margin=0.1), predictor, measure=_device(truth, [])).run()
    met = [m for m in margin.measurements if m.get("reached")]
    assert met and all(m["low"] >= 1.25 * 1.1 for m in met)
    # the same search without tracking follows the predicted schedule to its end and overshoots
    plain = _search(tiny_data, tiny_preset, predictor, measure=_device(truth, []), speedup=1.25).run()
    assert plain.measurements[0]["iteration"] == tiny_preset.iterations


def test_tracking_recalibrates_and_replans_on_a_miss_and_resumes_the_same(tmp_path, tiny_data, tiny_preset):
    from dataclasses import replace

    preset = replace(tiny_preset, iterations=3, extra_iterations=1, track=True)
    predictor = MacsLatencyModel(ms_per_mmac=0.01)
    truth = MacsLatencyModel(ms_per_mmac=0.02, overhead_ms=0.1)   # measured speedups fall short
    s = _search(tiny_data, preset, predictor, measure=_device(truth, []), checkpoint_dir=tmp_path)
    planned = list(s.state.deltas)
    state = s.run()
    misses = [r for r in state.trajectory if r["phase"] == "schedule" and "replan" in r]
    assert misses and all(len(r["measured_speedup"]) == 3 for r in misses)
    # each miss rescales the rest of the schedule by one factor (the decayed shape kept), 2% floor aside
    for r in misses:
        rest, plan = planned[r["iteration"]:], r["replan"]
        assert len(plan["deltas"]) == len(rest) and all(d >= plan["floor_ms"] for d in plan["deltas"])
        scaled = [(a, b) for a, b in zip(rest, plan["deltas"]) if b > plan["floor_ms"]]
        if scaled:
            assert all(b / a == pytest.approx(plan["cut_ms"] / sum(rest)) for a, b in scaled)
        planned = planned[:r["iteration"]] + plan["deltas"]
    # no network is measured twice or recalibrated on twice: the measuring phase reuses the last
    # iteration's tracking measurement and its recalibration
    iters = [m["iteration"] for m in state.measurements]
    assert len(iters) == len(set(iters)) and iters[:3] == [1, 2, 3]
    recal = [r["iteration"] for r in state.recalibrations]
    assert len(recal) == len(set(recal)) and recal[:len(misses)] == [r["iteration"] for r in misses]
    # a fresh process resumes the finished search from its checkpoint with the same recalibrated model
    again = _search(tiny_data, preset, MacsLatencyModel(ms_per_mmac=0.01), measure=_device(truth, []),
                    checkpoint_dir=tmp_path)
    assert again.try_resume() and again.state.deltas == state.deltas == planned
    assert again.latency.predict_many([again.current_spec()])[0] == pytest.approx(
        s.latency.predict_many([s.current_spec()])[0])


def test_a_met_target_is_checkpointed_with_its_iteration(tmp_path, tiny_data, tiny_preset):
    from dataclasses import replace

    preset = replace(tiny_preset, iterations=5, track=True)
    predictor = MacsLatencyModel(ms_per_mmac=0.01, overhead_ms=0.5)   # underestimates speedups
    truth = MacsLatencyModel(ms_per_mmac=0.01)

    def killed(record):
        if record.get("measured_speedup") and record["measured_speedup"][1] >= 1.25:
            raise KeyboardInterrupt   # killed right after the iteration that met the target was saved

    s = _search(tiny_data, preset, predictor, measure=_device(truth, []), checkpoint_dir=tmp_path, on_iteration=killed)
    with pytest.raises(KeyboardInterrupt):
        s.run()
    again = _search(tiny_data, preset, MacsLatencyModel(ms_per_mmac=0.01, overhead_ms=0.5), measure=_device(truth, []),
                    checkpoint_dir=tmp_path)
    assert again.try_resume() and again.state.phase == "measure"
    done = len(again.state.trajectory)
    state = again.run()           # measures the met network again and stops: no further trimming
    assert len(state.trajectory) == done and state.measurements[-1]["reached"] and state.phase == "done"


@pytest.mark.slow
def test_parallel_candidates_match_sequential(tiny_data, tiny_preset, aligned_latency):
    one = tiny_preset.__class__(**{**tiny_preset.to_dict(), "iterations": 1})
    a = _search(tiny_data, one, aligned_latency, speedup=1.08)
    b = _search(tiny_data, one, MacsLatencyModel(align=4), n_jobs=2, speedup=1.08)
    ra, rb = a.run().trajectory, b.run().trajectory
    assert len(ra) == len(rb) == 1 and len(ra[0]["candidates"]) > 1
    assert [(c["group"], c["width"]) for c in ra[0]["candidates"]] == [(c["group"], c["width"]) for c in rb[0]["candidates"]]
    # same seeds, one thread per worker: loky workers score exactly as the sequential loop
    assert [c["val_top1"] for c in ra[0]["candidates"]] == [c["val_top1"] for c in rb[0]["candidates"]]
    assert rb[0]["val_top1"] == ra[0]["val_top1"]


@pytest.mark.slow
def test_candidates_run_on_a_local_dask_cluster(tiny_data, tiny_preset, aligned_latency):
    distributed = pytest.importorskip("dask.distributed")
    import joblib

    one = tiny_preset.__class__(**{**tiny_preset.to_dict(), "iterations": 1})
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None):
        with joblib.parallel_backend("dask"):
            state = _search(tiny_data, one, aligned_latency, n_jobs=2, speedup=1.08).run()
    ref = _search(tiny_data, one, MacsLatencyModel(align=4), speedup=1.08).run()
    assert [(c["group"], c["width"]) for c in state.trajectory[0]["candidates"]] == \
        [(c["group"], c["width"]) for c in ref.trajectory[0]["candidates"]]
    assert not math.isnan(state.trajectory[0]["val_top1"])


def test_a_winner_fine_tune_that_loses_too_much_is_undone(monkeypatch, tiny_data, tiny_preset, aligned_latency):
    import dataclasses

    from compactnet.search import loop

    real = loop.finetune

    def ruinous(model, split, steps, batch_size, lr, seed, teacher=None):
        if teacher is None and steps == tiny_preset.candidate_steps:
            return real(model, split, steps, batch_size, lr, seed)  # candidates: the real fine-tune
        with torch.no_grad():                                         # the winner's: ruin the classifier
            for m in model.modules():
                if isinstance(m, torch.nn.Linear):
                    m.weight.zero_()
                    m.bias.fill_(0.0)
                    m.bias[0] = 1.0

    import compactnet.train as train_mod

    real_eval = train_mod.evaluate

    def evaluate(model, split, *a, **k):  # a zeroed classifier scores 0 (the ruin, made unmistakable)
        linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][0]
        return 0.0 if not linear.weight.abs().sum() else real_eval(model, split, *a, **k)

    monkeypatch.setattr(loop, "finetune", ruinous)
    monkeypatch.setattr(train_mod, "evaluate", evaluate)
    preset = dataclasses.replace(tiny_preset, winner_steps=tiny_preset.candidate_steps + 1, distill=False)
    s = _search(tiny_data, preset, aligned_latency)
    state = s.run()
    rec = state.trajectory[0]
    assert rec["candidate_val_top1"] > 2
    assert rec["finetune_undone"] and rec["val_top1"] == rec["candidate_val_top1"]
    linear = [m for m in s.model.modules() if isinstance(m, torch.nn.Linear)][0]
    assert linear.weight.abs().sum() > 0      # the candidate's weights, not the ruined ones

    off = _search(tiny_data, dataclasses.replace(preset, winner_guard=None), aligned_latency).run()
    assert not off.trajectory[0]["finetune_undone"] and off.trajectory[0]["val_top1"] < rec["val_top1"]


def test_the_search_fine_tunes_clip_outlier_gradients(monkeypatch):
    import compactnet.train as train_mod
    from compactnet.search import loop

    got = []
    monkeypatch.setattr(train_mod, "train", lambda model, split, val, recipe, **k: got.append(recipe))
    loop.finetune(torch.nn.Linear(2, 2), None, 5, 8, 0.01, 0)
    assert got[0].max_grad_norm == loop.FINETUNE_MAX_GRAD_NORM > 0


def test_an_extra_iteration_cuts_no_more_than_the_measured_miss_needs(tiny_data, tiny_preset, aligned_latency):
    from dataclasses import replace

    s = _search(tiny_data, replace(tiny_preset, max_width=0.12), aligned_latency)
    pred = float(s.latency.predict_many([s.current_spec()])[0])
    s.state.deltas = [0.5 * pred]                      # a large last sub-target
    o = pred * 1.2                                     # measured original: the current network at 1.2x
    near = Measured(o, pred, 1.2, 1.17, 1.23, False)  # short of the 1.25x target
    delta, target = s._extra_delta(near)
    assert target == pytest.approx(o / (s._goal * 1.2 / 1.17))
    assert delta == pytest.approx(pred - target) and delta < 0.5 * pred
    # a disturbed, wide measurement plans with at most half of max_width of margin
    wide = Measured(o, pred, 1.2, 0.9, 1.5, False)
    assert s._extra_delta(wide)[1] == pytest.approx(o / (s._goal * 1.06))
    # a large miss is spread over the extra iterations left, never below the last sub-target
    s.state.deltas = [0.01 * pred]
    far = Measured(pred, pred, 1.0, 0.99, 1.01, False)
    delta, target = s._extra_delta(far)
    assert delta == pytest.approx(max(0.02 * pred, (pred - target) / tiny_preset.extra_iterations))
