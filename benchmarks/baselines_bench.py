"""Baselines benchmark (issue 5 point 7, issue 7 point 5): the CompactNet search beside its baselines,
matched on *measured* latency, all with test top-1.

Real run (the lead, on a quiet machine; nothing else CPU-heavy running)::

    python benchmarks/baselines_bench.py --platform ort-cpu-fp32-t1 --speedup 1.8 \\
        --predictor results/predictors/ort-cpu-fp32-t1 --preset quick --out results/baselines/ort-1p8x \\
        --reuse search=results/search/mobilenetv2-ort-cpu-fp32-t1-s1p8x

Synthetic smoke run (tiny ResNet, synthetic images, MACs latency and synthetic runtime; seconds)::

    python benchmarks/baselines_bench.py --quick --out /tmp/baselines-quick

Variants (``--variants``, default all, run in this order):

``search``     the CompactNet loop driven by the platform's predictor, L2 filters, distillation
``random``     the same loop with random filters (``importance="random"``)
``flops``      the same loop driven by FLOPs instead of the predictor (``predictor="flops"``)
``fisher``     the same loop with Fisher importance
``nodistill``  the same loop without distillation (candidates, winners and final retrain)
``uniform``    uniform width scaling to the search's measured speedup (predicted on the platform's
               predictor, see :mod:`compactnet.search.baselines`), trained like the search's network
``control``    the unpruned model given the same extra training (fine-tune steps + final retrain)

Every search variant writes its own ``compactnet optimize`` folder ``OUT/<variant>`` and is resumed
there when killed; a finished one (``report.json`` of a search whose phase is ``done`` with this
bench's settings) is skipped, and ``--reuse VARIANT=DIR`` adopts a finished folder run elsewhere
(checked against the same settings). ``uniform`` and ``control`` need the ``search`` result (for
the target and the fine-tune budget). Each finished variant is recorded in ``OUT/state.json``.

Then the original and every final model are timed together, interleaved in *one* protocol run
(:func:`compactnet.measure.compare`, bootstrap intervals), so the rows are matched side by side;
each model's validation and test top-1 are evaluated (paired McNemar tests between variants on the
same test images). ``report.json`` and ``report.md`` (the table and the findings: does each
ingredient help?) are written in ``OUT`` and the table is printed. The measurement is kept in
``state.json`` and reused by a rerun with the same models (``--remeasure`` times them again); a
refused measurement (busy machine) leaves the searches done and exits with code 3: rerun to measure.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

log = logging.getLogger("baselines_bench")

#: Variant name -> how it differs from the ``search`` variant (``kind`` search/uniform/control).
VARIANTS: dict[str, dict] = {
    "search": {"kind": "search", "importance": "l2", "predictor": "platform", "distill": True,
               "label": "CompactNet search (predictor, L2, distillation)"},
    "random": {"kind": "search", "importance": "random", "predictor": "platform", "distill": True,
               "label": "same loop, random filters"},
    "flops": {"kind": "search", "importance": "l2", "predictor": "flops", "distill": True,
              "label": "same loop driven by FLOPs"},
    "fisher": {"kind": "search", "importance": "fisher", "predictor": "platform", "distill": True,
               "label": "same loop, Fisher importance"},
    "nodistill": {"kind": "search", "importance": "l2", "predictor": "platform", "distill": False,
                  "label": "same loop without distillation"},
    "uniform": {"kind": "uniform", "label": "uniform width scaling (matched to the search)"},
    "control": {"kind": "control", "label": "unpruned, same extra training"},
}

#: (treatment, reference, question) pairs of the findings; delta = treatment - reference.
FINDINGS = (
    ("search", "random", "Do L2 filters beat random pruning (same loop)?"),
    ("search", "flops", "Does the platform predictor beat FLOPs as the loop's latency model?"),
    ("fisher", "search", "Does Fisher importance help over L2?"),
    ("search", "nodistill", "Does distillation help?"),
    ("search", "uniform", "Does the search beat uniform width scaling?"),
    ("search", "control", "What does trimming cost against the unpruned model given the same training?"),
)

#: Preset overrides of the synthetic smoke run (seconds per search).
QUICK_OVERRIDES = {"iterations": 2, "decay": 0.95, "candidate_steps": 1, "candidate_batch": 16, "train_subset": 64,
                   "bn_batches": 1, "val_limit": 40, "winner_steps": 2, "extra_iterations": 0, "final_epochs": 1,
                   "final_max_steps": 2}
QUICK_CHANNELS = {"stages": [8, 16, 16]}
STATE = "state.json"
#: Signature fields of a ``compactnet optimize`` checkpoint that must match for a folder to be reused.
SIGNATURE_KEYS = ("model", "weights", "channels", "platform", "speedup", "mode", "importance", "seed")


# ----- arguments -------------------------------------------------------------------------------------
def parse_variants(text: str) -> list[str]:
    """Variant names from ``a,b,c`` in the canonical order.

    Raises:
        ConfigError: An unknown or missing name.
    """
    from compactnet.errors import bad_value

    names = [v.strip() for v in str(text).split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise bad_value("--variants", "a comma-separated list of " + ", ".join(VARIANTS), unknown or text)
    return [v for v in VARIANTS if v in names]


def parse_reuse(items: list[str] | None) -> dict[str, Path]:
    """``--reuse VARIANT=DIR`` options (search variants only)."""
    from compactnet.errors import bad_value

    out: dict[str, Path] = {}
    for item in items or []:
        name, sep, folder = item.partition("=")
        if not sep or VARIANTS.get(name.strip(), {}).get("kind") != "search" or not folder:
            raise bad_value("--reuse", "VARIANT=DIR with VARIANT among " + ", ".join(
                v for v, d in VARIANTS.items() if d["kind"] == "search"), item)
        out[name.strip()] = Path(folder)
    return out


# ----- helpers -------------------------------------------------------------------------------------------
def file_hash(path: str | Path) -> str:
    """The 16-hex-digit SHA-256 prefix ``compactnet optimize`` records for weights."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)


def correct_mask(model: torch.nn.Module, split: Any, batch_size: int = 500) -> np.ndarray:
    """Per-image correctness of ``model`` on ``split`` (what :func:`compactnet.train.evaluate` averages)."""
    from compactnet.train import batches

    model.eval()
    out = []
    with torch.no_grad():
        for xb, yb in batches(split, batch_size, shuffle=False):
            out.append((model(xb).argmax(1) == yb).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=bool)


def pack_mask(mask: np.ndarray) -> str:
    return base64.b64encode(np.packbits(mask.astype(bool)).tobytes()).decode()


def unpack_mask(text: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))[:n].astype(bool)


def mcnemar(a: np.ndarray, b: np.ndarray) -> dict:
    """Exact two-sided McNemar test of two classifiers on the same images."""
    from scipy.stats import binomtest

    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    p = float(binomtest(min(only_a, only_b), n, 0.5).pvalue) if n else 1.0
    return {"only_a": only_a, "only_b": only_b, "p_value": p}


def search_complete(folder: Path, expected: dict) -> tuple[bool, str]:
    """Whether ``folder`` holds a finished ``compactnet optimize`` result with the expected settings.

    Returns:
        ``(complete, reason)``; the reason says what is missing or differs.
    """
    rep_path, ckpt = folder / "report.json", folder / "checkpoint" / "state.json"
    for p in (rep_path, folder / "weights.safetensors", folder / "channels.json", ckpt):
        if not p.exists():
            return False, f"no {p.relative_to(folder)}"
    try:
        rep = json.loads(rep_path.read_text())
        sig = json.loads(ckpt.read_text()).get("signature") or {}
    except (OSError, ValueError) as exc:
        return False, f"unreadable ({exc})"
    if rep.get("phase") != "done":
        return False, f"search phase {rep.get('phase')!r}, not 'done'"
    diff = [k for k in SIGNATURE_KEYS if k in expected and sig.get(k) != expected[k]]
    saved_pre, want_pre = sig.get("preset") or {}, expected.get("preset") or {}
    diff += [f"preset.{k}" for k in want_pre if k in saved_pre and saved_pre[k] != want_pre[k]]
    if not saved_pre:
        diff.append("preset")
    return (not diff), ("settings differ: " + ", ".join(diff)) if diff else "complete"


def load_result_model(model_name: str, folder: Path, default_channels: Any) -> torch.nn.Module:
    """The network a variant folder holds (``weights.safetensors`` + ``channels.json``)."""
    from compactnet.models import create_model, load_weights

    ch = folder / "channels.json"
    model = create_model(model_name, str(ch) if ch.exists() else default_channels)
    load_weights(model, folder / "weights.safetensors")
    return model.eval()


def synthetic_data(n_train: int = 400, n_val: int = 120, n_test: int = 200) -> Any:
    """Class-separable random images, CIFAR-shaped (:func:`compactnet.data.synthetic_cifar10`)."""
    from compactnet.data import synthetic_cifar10

    return synthetic_cifar10(n_train, n_val, n_test)


def load_predictor(arg: str | None, platform: str) -> Any:
    """A saved predictor (portable folder or joblib file) as a latency model."""
    from compactnet.errors import bad_value
    from compactnet.search.latency import as_latency_model

    if not arg:
        raise bad_value("--predictor", "a saved latency predictor of the platform (e.g. "
                        f"results/predictors/{platform})", arg)
    if arg.lower() in ("flops", "macs"):
        raise bad_value("--predictor", "the platform's predictor (the FLOPs loop is the 'flops' variant)", arg)
    from compactnet.predictors import persist

    p = Path(arg)
    if not p.exists():
        raise bad_value("--predictor", "an existing saved predictor (folder or file)", arg)
    return as_latency_model(persist.load_portable(p, platform) if p.is_dir() else persist.load(p, platform))


# ----- the bench ---------------------------------------------------------------------------------------------
class Bench:
    """State, variants and measurement of one benchmark folder."""

    def __init__(self, args: argparse.Namespace, model_name: str, weights: Path, channels: Any, data: Any,
                 predictor_arg: Any, latency: Any, preset: Any, overrides: dict, compare: Callable, runner: Any,
                 measure_searches: bool):
        self.args, self.model_name, self.weights, self.channels = args, model_name, weights, channels
        self.data, self.predictor_arg, self.latency, self.preset = data, predictor_arg, latency, preset
        self.overrides, self.compare, self.runner, self.measure_searches = overrides, compare, runner, measure_searches
        self.out = Path(args.out)
        self.settings = {"model": model_name, "weights": file_hash(weights), "channels": str(channels),
                         "platform": args.platform, "speedup": round(float(args.speedup), 6),
                         "preset": preset.to_dict(), "mode": args.mode, "seed": int(args.seed),
                         "quick": bool(args.quick)}
        self.state = self._load_state()

    # state ------------------------------------------------------------------------------------------------
    def _load_state(self) -> dict:
        from compactnet.errors import ConfigError

        path = self.out / STATE
        if not path.exists():
            return {"settings": self.settings, "variants": {}, "measurement": None}
        state = json.loads(path.read_text())
        saved = json.loads(json.dumps(state.get("settings") or {}))
        want = json.loads(json.dumps(self.settings))
        diff = sorted(k for k in set(saved) | set(want) if saved.get(k) != want.get(k))
        if diff:
            raise ConfigError(f"{path} belongs to a benchmark with other settings ({', '.join(diff)}); use another "
                              "--out or delete it to start over")
        return state

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / STATE, self.state)

    # variants ---------------------------------------------------------------------------------------------
    def expected_signature(self, name: str) -> dict:
        v = VARIANTS[name]
        pre = self.variant_preset(name)
        return {"model": self.model_name, "weights": self.settings["weights"], "channels": str(self.channels),
                "platform": self.args.platform, "speedup": self.settings["speedup"], "mode": self.args.mode,
                "importance": v["importance"], "seed": int(self.args.seed), "preset": pre.to_dict()}

    def variant_preset(self, name: str) -> Any:
        from compactnet.search.schedule import get_preset

        v = VARIANTS[name]
        return get_preset(self.preset, distill=False) if v.get("distill") is False else self.preset

    def rel(self, folder: Path) -> str:
        """A variant's folder as recorded: relative to ``--out`` (no machine's absolute paths)."""
        return os.path.relpath(Path(folder).resolve(), self.out.resolve())

    def folder(self, record: dict) -> Path:
        """A recorded variant folder (relative to ``--out``; older states recorded it as given: absolute, or
        relative to the working directory)."""
        d = Path(record["dir"])
        if d.is_absolute() or (not (self.out / d).exists() and d.exists()):
            return d
        return self.out / d

    def run_search(self, name: str, reuse: Path | None) -> dict:
        from compactnet.errors import ConfigError
        from compactnet.search.optimize import optimize

        v = VARIANTS[name]
        expected = self.expected_signature(name)
        if reuse is not None:
            ok, why = search_complete(reuse, expected)
            if not ok:
                raise ConfigError(f"--reuse {name}={reuse}: not a finished search with this benchmark's settings "
                                  f"({why})")
            folder, source = reuse, "reused"
        else:
            folder = self.out / name
            ok, why = search_complete(folder, expected)
            source = "found"
            if not ok:
                log.info("%s: running the search in %s (%s)", name, folder, why)
                pred = "flops" if v["predictor"] == "flops" else self.predictor_arg
                overrides = dict(self.overrides)
                if v.get("distill") is False:
                    overrides["distill"] = False
                optimize(self.model_name, self.weights, self.args.platform, speedup=self.args.speedup,
                         predictor=pred, preset=self.args.preset, mode=self.args.mode, importance=v["importance"],
                         out_dir=folder, data=self.data, n_jobs=self.args.n_jobs, seed=self.args.seed,
                         measure=self.measure_searches, channels=self.channels, progress=not self.args.quiet,
                         busy=self.args.busy, **overrides)
                ok, why = search_complete(folder, expected)
                if not ok:
                    raise ConfigError(f"{name}: the search in {folder} did not finish ({why}); run again (on a quiet "
                                      "machine when its measurement was refused)")
                source = "run"
        rep = json.loads((folder / "report.json").read_text())
        traj = json.loads((folder / "trajectory.json").read_text()) if (folder / "trajectory.json").exists() else []
        m = rep.get("measured") or {}
        return {"dir": self.rel(folder), "source": source, "iterations": len(traj),
                "search_predicted_speedup": (rep.get("predicted") or {}).get("speedup"),
                "search_measured": {k: m.get(k) for k in ("speedup", "low", "high", "reached", "busy")} if m else None,
                "stop_reason": rep.get("stop_reason"), "wall_s": (rep.get("timings") or {}).get("total_s")}

    def run_baseline(self, name: str) -> dict:
        from compactnet.errors import ConfigError
        from compactnet.search.baselines import control_baseline, uniform_baseline

        folder = self.out / name
        row_path = folder / "row.json"
        if row_path.exists() and (folder / "weights.safetensors").exists():
            row = json.loads(row_path.read_text())
            return {"dir": self.rel(folder), "source": "found", "wall_s": row.get("seconds"), "row": row}
        s = self.state["variants"].get("search")
        if not s:
            raise ConfigError(f"variant '{name}' needs the 'search' result (its measured speedup and fine-tune "
                              "budget): add 'search' to --variants or finish it first")
        rep = json.loads((self.folder(s) / "report.json").read_text())
        m = rep.get("measured") or {}
        target = m.get("speedup") if m.get("speedup") and not m.get("busy") \
            else (rep.get("predicted") or {}).get("speedup")
        steps = max(1, int(s.get("iterations") or self.preset.iterations or 1)) * \
            (self.preset.candidate_steps + self.preset.winner_steps)
        original = self.original()
        teacher = original if self.preset.distill else None
        common = dict(finetune_steps=steps, seed=self.args.seed, teacher=teacher, final_retrain=True, measure=None,
                      out_dir=folder, model_name=self.model_name, progress=not self.args.quiet)
        if name == "uniform":
            if not target or not float(target) > 1:
                raise ConfigError(f"uniform: the search's speedup ({target}) gives no target above 1")
            res = uniform_baseline(original, self.latency, self.data, float(target), self.preset, self.args.mode,
                                   **common)
        else:
            res = control_baseline(original, self.latency, self.data, self.preset, mode=self.args.mode, **common)
        return {"dir": self.rel(folder), "source": "run", "wall_s": res.seconds, "row": res.row()}

    def original(self) -> torch.nn.Module:
        from compactnet.models import create_model, load_weights

        model = create_model(self.model_name, self.channels)
        load_weights(model, self.weights)
        return model.eval()

    def finish_variant(self, name: str, record: dict) -> None:
        """Evaluate the variant's network and record it as done."""
        from compactnet.extract import network_spec_from_torch
        from compactnet.train import evaluate

        model = load_result_model(self.model_name, self.folder(record), self.channels)
        spec = network_spec_from_torch(model)
        mask = correct_mask(model, self.data.test)
        record.update({"status": "done", "weights_hash": file_hash(self.folder(record) / "weights.safetensors"),
                       "val_top1": float(evaluate(model, self.data.val)), "test_top1": float(100.0 * mask.mean()),
                       "test_correct": pack_mask(mask), "params": int(spec.params), "flops": int(2 * spec.macs),
                       "predicted_ms": float(np.asarray(self.latency.predict_many([spec]))[0])})
        record.pop("row", None)
        self.state["variants"][name] = record
        self.save()

    def run(self, variants: list[str], reuse: dict[str, Path]) -> None:
        for name in variants:
            if self.state["variants"].get(name, {}).get("status") == "done":
                log.info("%s: finished earlier (%s), skipped", name, self.state["variants"][name]["dir"])
                continue
            t0 = time.perf_counter()
            kind = VARIANTS[name]["kind"]
            log.info("%s: %s", name, VARIANTS[name]["label"])
            record = self.run_search(name, reuse.get(name)) if kind == "search" else self.run_baseline(name)
            record["bench_s"] = time.perf_counter() - t0
            self.finish_variant(name, record)

    # measurement --------------------------------------------------------------------------------------------
    def measure(self, variants: list[str], remeasure: bool) -> dict | None:
        """One interleaved protocol run of the original and every variant (reused when the models match)."""
        from compactnet.errors import MeasurementError
        from compactnet.export import export_onnx

        key = {"names": ["original", *variants], "weights": [self.settings["weights"]] + [
            self.state["variants"][v]["weights_hash"] for v in variants], "rounds": self.args.rounds}
        saved = self.state.get("measurement")
        if saved and not remeasure and saved.get("key") == key and saved.get("comparison"):
            log.info("measurement of these models found in %s (use --remeasure to time them again)", STATE)
            return saved
        models = [self.original()] + [load_result_model(self.model_name, self.folder(self.state["variants"][v]),
                                                        self.channels) for v in variants]
        files = [export_onnx(m).onnx_bytes for m in models]
        t0 = time.perf_counter()
        try:
            comp = self.compare(files, self.runner, names=key["names"], rounds=self.args.rounds, busy=self.args.busy)
        except MeasurementError as exc:
            log.error("measurement refused: %s", exc)
            self.state["measurement"] = {"key": key, "comparison": None, "refused": str(exc)}
            self.save()
            return None
        self.state["measurement"] = {"key": key, "comparison": comp.to_dict(), "seconds": time.perf_counter() - t0}
        self.save()
        return self.state["measurement"]


# ----- report ----------------------------------------------------------------------------------------------------
def _ratio(comp: Any, a: Any, b: Any) -> tuple[float, float, float]:
    """Latency of ``a`` over ``b`` from one comparison: their round figures by the comparison's own
    estimator (a paired bootstrap over rounds; 1 = matched), widened by its drift term."""
    from compactnet.measure import bootstrap_ratio, widen

    r = bootstrap_ratio(np.asarray(a.rounds), np.asarray(b.rounds), estimator=comp.estimator)
    return widen(*r, comp.drift_sd)


def build_report(bench: Bench, variants: list[str], measurement: dict | None) -> dict:
    """Rows (original first), findings and context."""
    from compactnet.extract import network_spec_from_torch
    from compactnet.measure import Comparison
    from compactnet.train import evaluate

    original = bench.original()
    spec0 = network_spec_from_torch(original)
    mask0 = correct_mask(original, bench.data.test)
    pred0 = float(np.asarray(bench.latency.predict_many([spec0]))[0])
    comp = Comparison.from_dict(measurement["comparison"]) if measurement and measurement.get("comparison") else None
    base_top1 = float(100.0 * mask0.mean())
    n_test = len(mask0)
    masks = {v: unpack_mask(bench.state["variants"][v]["test_correct"], n_test) for v in variants}
    ctl = bench.state["variants"].get("control") if "control" in variants else None
    rows = [{"variant": "original", "label": "unpruned baseline", "test_top1": base_top1,
             "val_top1": float(evaluate(original, bench.data.val)), "params": int(spec0.params),
             "flops": int(2 * spec0.macs), "predicted_ms": pred0, "predicted_speedup": 1.0,
             "delta_vs_baseline": 0.0, "delta_vs_control": (base_top1 - ctl["test_top1"]) if ctl else None,
             "wall_s": None}]
    for v in variants:
        r = bench.state["variants"][v]
        rows.append({"variant": v, "label": VARIANTS[v]["label"], "test_top1": r["test_top1"],
                     "val_top1": r["val_top1"],
                     "params": r["params"], "flops": r["flops"], "predicted_ms": r["predicted_ms"],
                     "predicted_speedup": pred0 / r["predicted_ms"] if r["predicted_ms"] > 0 else None,
                     "delta_vs_baseline": r["test_top1"] - base_top1,
                     "delta_vs_control": (r["test_top1"] - ctl["test_top1"]) if ctl else None,
                     "wall_s": r.get("wall_s"), "dir": r["dir"], "source": r.get("source"),
                     "search_measured": r.get("search_measured"), "stop_reason": r.get("stop_reason")})
    if comp is not None:
        for i, row in enumerate(rows):
            lat = comp.latencies[i]
            ratio, lo, hi = comp.speedups[i]
            row.update({"measured_ms": lat.value_ms, "measured_speedup": ratio, "measured_low": lo,
                        "measured_high": hi})
            if "search" in comp.names and row["variant"] not in ("original", "search"):
                # latency of this row over the search's, paired bootstrap on the same rounds (1 = matched)
                s = comp.index("search")
                row["latency_vs_search"] = _ratio(comp, lat, comp.latencies[s])
    findings = []
    by = {r["variant"]: r for r in rows}
    for a, b, question in FINDINGS:
        if a not in masks or b not in masks:
            continue
        test = mcnemar(masks[a], masks[b])
        delta = by[a]["test_top1"] - by[b]["test_top1"]
        sig = test["p_value"] < 0.05
        verdict = ("yes" if delta > 0 else "no, it is worse") if sig else "no significant difference"
        if b == "control":
            verdict = (f"trimming costs {-delta:.2f} points" if delta < 0 else "no cost") + \
                ("" if sig else " (not significant)")
        f = {"question": question, "treatment": a, "reference": b, "delta_top1": delta, **test,
             "verdict": verdict}
        if comp is not None and a in comp.names and b in comp.names:
            la, lb = comp.latencies[comp.index(a)], comp.latencies[comp.index(b)]
            f["latency_ratio"] = _ratio(comp, la, lb)
            if b != "control" and not f["latency_ratio"][1] <= 1 <= f["latency_ratio"][2]:
                f["verdict"] += (f"; latencies not matched ({a} {f['latency_ratio'][0]:.2f}x {b}'s, interval "
                                 "excludes 1): weigh accuracy against speed")
        findings.append(f)
    return {"settings": bench.settings, "platform": comp.platform.describe() if comp else bench.args.platform,
            "target_speedup": float(bench.args.speedup), "variants": variants, "rows": rows, "findings": findings,
            "measurement": measurement, "test_images": n_test, "data": getattr(bench.data, "copy", None),
            "command": " ".join(sys.argv), "note": (
                "measured: one interleaved protocol run of all models, speedup over the original with its 95% "
                "bootstrap interval; predicted: the platform's predictor (before any recalibration) for every row; "
                "top-1 on the test split; findings: paired exact McNemar test on the same test images")}


def markdown(report: dict) -> str:
    def fmt(v: Any, f: str = "{:.2f}") -> str:
        return "-" if v is None else f.format(v)

    m = report.get("measurement") or {}
    comp = m.get("comparison") or {}
    lines = [f"# Baselines at {report['target_speedup']:g}x on {report['platform']}", ""]
    if comp:
        lines += [f"One interleaved measurement of all models: {comp['rounds']} rounds x {comp['runs']} runs, load "
                  f"{fmt(comp.get('load'))}" + (" — BUSY (flagged), not a protocol measurement" if comp.get("busy")
                                                else "") + f", {comp.get('when')}.", ""]
    else:
        lines += ["Not measured" + (f" (refused: {m['refused']})" if m.get("refused") else "") + ": rerun on a quiet "
                  "machine.", ""]
    lines += ["| variant | measured ms | measured speedup [95% CI] | latency / search's [95% CI] | predicted speedup | "
              "test top-1 | Δ baseline | Δ control | params | FLOPs (M) | wall time (min) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        sp = (f"{r['measured_speedup']:.2f}x [{r['measured_low']:.2f}, {r['measured_high']:.2f}]"
              if r.get("measured_speedup") is not None else "-")
        vs = r.get("latency_vs_search")
        vs = f"{vs[0]:.2f} [{vs[1]:.2f}, {vs[2]:.2f}]" if vs else "-"
        lines.append(f"| {r['variant']} | {fmt(r.get('measured_ms'), '{:.3f}')} | {sp} | {vs} | "
                     f"{fmt(r.get('predicted_speedup'))}x | {r['test_top1']:.2f} | {r['delta_vs_baseline']:+.2f} | "
                     f"{fmt(r.get('delta_vs_control'), '{:+.2f}')} | {r['params']} | {r['flops'] / 1e6:.2f} | "
                     f"{fmt(None if r.get('wall_s') is None else r['wall_s'] / 60, '{:.1f}')} |")
    lines += ["", "Variants: " + "; ".join(f"**{r['variant']}** {r['label']}" for r in report["rows"]), ""]
    if report["findings"]:
        lines += ["## Does each help?", "",
                  "| question | Δ top-1 (points) | McNemar p | latency ratio [95% CI] | verdict |",
                  "|---|---|---|---|---|"]
        for f in report["findings"]:
            lr = f.get("latency_ratio")
            lr = f"{lr[0]:.2f} [{lr[1]:.2f}, {lr[2]:.2f}]" if lr else "-"
            lines.append(f"| {f['question']} ({f['treatment']} vs {f['reference']}) | {f['delta_top1']:+.2f} | "
                         f"{f['p_value']:.3f} | {lr} | {f['verdict']} |")
        lines.append("")
    lines += [report["note"] + f"; {report['test_images']} test images; one seed per variant.", ""]
    for r in report["rows"][1:]:
        sm = r.get("search_measured")
        if sm:
            lines.append(f"- {r['variant']}: its own final decision {fmt(sm.get('speedup'))}x "
                         f"[{fmt(sm.get('low'))}, {fmt(sm.get('high'))}], reached={sm.get('reached')}; "
                         f"{r.get('stop_reason') or ''} ({r['source']}: {r['dir']})")
    return "\n".join(lines)


# ----- main ---------------------------------------------------------------------------------------------------------
def _setup(args: argparse.Namespace) -> tuple:
    """Model, weights, channels, data, predictor argument, latency model, compare, runner, search measurement."""
    from compactnet.data import load_cifar10
    from compactnet.measure import compare as protocol_compare
    from compactnet.models import create_model, save_weights

    if args.quick:
        from compactnet.runtimes import SyntheticRunner
        from compactnet.search.latency import MacsLatencyModel
        from compactnet.train import Recipe, train

        data = synthetic_data()
        base = Path(args.out) / "base"
        weights = base / "weights.safetensors"
        if not weights.exists():          # trained once: the searches resume against the same hash
            torch.manual_seed(args.seed)
            model = create_model("resnet20", QUICK_CHANNELS)
            train(model, data.train, None, Recipe("quick", "sgd", lr=0.05, epochs=2, batch_size=32, warmup_epochs=0.0,
                                                  augment=False, label_smoothing=0.0), progress=False)
            base.mkdir(parents=True, exist_ok=True)
            save_weights(model, weights)
        # the "platform predictor": MACs with a penalty on unaligned widths (non-monotone, unlike FLOPs)
        latency = MacsLatencyModel(ms_per_mmac=0.01, align=4, penalty=0.5)
        runner = SyntheticRunner("synthetic-cpu-fp32-t1")
        compare = functools.partial(protocol_compare, check_window=0, runs=5, warmup=2)
        return "resnet20", weights, dict(QUICK_CHANNELS), data, latency, latency, compare, runner, False
    weights = Path(args.weights)
    if not weights.exists():
        from compactnet.errors import bad_value

        raise bad_value("--weights", "an existing safetensors file", str(weights))
    return (args.model, weights, args.channels, load_cifar10(args.data), args.predictor,
            load_predictor(args.predictor, args.platform), protocol_compare, args.platform, True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mobilenetv2")
    ap.add_argument("--weights", default="compactnet/assets/mobilenetv2.cifar10.safetensors")
    ap.add_argument("--channels", help="channel configuration JSON of the weights (default: the registry's)")
    ap.add_argument("--data", help="CIFAR-10 path (default $COMPACTNET_DATA / the development copy)")
    ap.add_argument("--platform", default="ort-cpu-fp32-t1")
    ap.add_argument("--speedup", type=float, default=1.8)
    ap.add_argument("--predictor", help="saved latency predictor of the platform (portable folder)")
    ap.add_argument("--preset", default="quick", choices=("default", "quick", "paper"))
    ap.add_argument("--mode", default="paper", choices=("paper", "extended"))
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated among " + ", ".join(VARIANTS))
    ap.add_argument("--reuse", action="append", metavar="VARIANT=DIR",
                    help="adopt a finished compactnet optimize folder for a search variant (repeatable)")
    ap.add_argument("--rounds", type=int, default=21, help="rounds of the joint measurement (protocol: >= 7)")
    ap.add_argument("--busy", default="refuse", choices=("refuse", "flag", "ignore"))
    ap.add_argument("--remeasure", action="store_true", help="time the models again even if measured before")
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/baselines/ort-1p8x")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for training/evaluation")
    ap.add_argument("--quick", action="store_true", help="tiny synthetic smoke run (no real data or runtime timing)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")

    from compactnet.errors import CompactNetError
    from compactnet.search.schedule import get_preset
    from compactnet.train import setup_threads

    try:
        variants = parse_variants(args.variants)
        reuse = parse_reuse(args.reuse)
        setup_threads(args.threads or (1 if args.quick else None))
        overrides = dict(QUICK_OVERRIDES) if args.quick else {}
        if args.quick:
            args.platform = "synthetic-cpu-fp32-t1"
        model_name, weights, channels, data, pred_arg, latency, compare, runner, measure_searches = _setup(args)
        preset = get_preset(args.preset, **overrides)
        bench = Bench(args, model_name, weights, channels, data, pred_arg, latency, preset, overrides, compare,
                      runner, measure_searches)
        bench.save()
        t0 = time.perf_counter()
        bench.run(variants, reuse)
        measurement = bench.measure(variants, args.remeasure)
        report = build_report(bench, variants, measurement)
    except CompactNetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report["bench_wall_s"] = time.perf_counter() - t0
    write_json(bench.out / "report.json", report)
    md = markdown(report)
    (bench.out / "report.md").write_text(md + "\n")
    print(md)
    if measurement is None:
        print("the joint measurement was refused (busy machine): every variant is saved; rerun the same command on "
              "a quiet machine to measure", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
