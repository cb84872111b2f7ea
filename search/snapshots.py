"""Progressive snapshots: save the network each time a measured speedup crosses a threshold.

One progressive search towards a high target (say 2.5x) passes through lower speedups on its way;
:class:`Snapshots` keeps the network at each of them, so one run yields a family of models
(1.5x, 1.8x, 2.0x, 2.5x). A threshold counts as crossed when the protocol's speedup interval has
its lower bound at or above it on a machine that was not busy (DESIGN's "reached"); the
predicted speedup crossing a pending threshold only triggers the measurement.

Each snapshot is a folder ``{out_dir}/s1p5x`` (the zoo's tag spelling) holding

``weights.safetensors``  the network's weights at that iteration (not retrained)
``channels.json``        its channel configuration (``create_model(name, channels=...)``)
``model.onnx``           the network exported by the protocol
``measured.json``        threshold, iteration, measured (original/trimmed ms, speedup, interval, load),
                         predicted speedup, validation top-1 on the scoring subset

:func:`retrain_snapshot` (which :func:`compactnet.search.optimize` runs after the search's own
final retrain, unless ``retrain_snapshots=False``) retrains a snapshot by the search's final recipe
and distillation and turns its folder into a result folder ``compactnet zoo publish`` reads:

``weights.pre-retrain.safetensors``  the weights as the search left them (kept)
``model.pre-retrain.onnx``           their export (kept)
``weights.safetensors``              the retrained weights; ``model.onnx`` their export
``original.onnx``                    the untrimmed network the speedup is measured against
``retrain/``                         the retrain's resumable checkpoint
``report.json`` / ``report.md``      ``target_speedup`` = the threshold, the snapshot's measurement
                                     (``measured``; the retrain does not change the architecture),
                                     predicted latency, validation/test top-1 before and after the
                                     retrain, channels, the command (written last: its presence with
                                     the pre-retrain weights' hash marks a finished retrain, so a
                                     killed run skips it)
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

from compactnet.errors import bad_value
from compactnet.search._io import atomic_write_json
from compactnet.zoo.download import sha256_file

log = logging.getLogger(__name__)


def snapshot_tag(threshold: float) -> str:
    """Folder name of a threshold, spelled as the zoo's speedup tags: ``1.5`` -> ``s1p5x``, ``2`` -> ``s2x``."""
    text = f"{round(float(threshold), 2):.2f}".rstrip("0").rstrip(".")
    return f"s{text.replace('.', 'p')}x"


class Snapshots:
    """Where and at which measured speedups a :class:`~compactnet.search.loop.ProgressiveSearch` saves snapshots.

    Args:
        thresholds: Speedups above 1 (e.g. ``(1.5, 1.8, 2.0, 2.5)``).
        out_dir: Folder of the snapshot folders (``optimize`` uses ``{out_dir}/snapshots``).
        model_name: Registry name written into ``channels.json``.

    Raises:
        ConfigError: A threshold that is not a finite number above 1, or none at all.
    """

    def __init__(self, thresholds: Sequence[float], out_dir: str | Path, model_name: str = "model"):
        ts = [float(t) for t in thresholds]
        if not ts or any(not (math.isfinite(t) and t > 1) for t in ts):
            raise bad_value("snapshots", "speedup thresholds above 1, e.g. (1.5, 1.8, 2.0, 2.5)", list(thresholds))
        self.thresholds = sorted(set(ts))
        self.out_dir = Path(out_dir)
        self.model_name = str(model_name)

    def pending(self, done: Sequence[dict]) -> list[float]:
        """Thresholds not yet saved (``done``: the search state's snapshot records)."""
        saved = {float(d["threshold"]) for d in done}
        return [t for t in self.thresholds if t not in saved]

    def save(self, threshold: float, model: Any, measured: Any, record: dict,
             input_shape: Sequence[int] = (1, 3, 32, 32)) -> dict:
        """Write one snapshot folder; returns the record kept in the search state.

        Args:
            threshold: The threshold crossed.
            model: The current network.
            measured: The :class:`~compactnet.search.loop.Measured` that crossed it.
            record: Search figures to keep beside it (iteration, predicted speedup, validation top-1).
            input_shape: NCHW input shape of the export.
        """
        from compactnet.export import export_onnx
        from compactnet.models import save_weights
        from compactnet.search.groups import channels_json, config_from_model

        folder = self.out_dir / snapshot_tag(threshold)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in (REPORT, "report.md", PRE_WEIGHTS, PRE_ONNX, "original.onnx"):   # another network's retrain
            (folder / stale).unlink(missing_ok=True)
        shutil.rmtree(folder / "retrain", ignore_errors=True)
        save_weights(model, folder / "weights.safetensors", metadata={"model": self.model_name})
        cfg = config_from_model(model)
        if cfg is not None:
            atomic_write_json(folder / "channels.json", channels_json(self.model_name, cfg))
        export_onnx(model, folder / "model.onnx", input_shape=tuple(input_shape))
        out = {"threshold": float(threshold), "tag": snapshot_tag(threshold), "path": str(folder),
               **record, "measured": measured.to_dict()}
        atomic_write_json(folder / "measured.json", out)
        log.info("snapshot %s: measured %.2fx [%.2f, %.2f] at iteration %s", out["tag"], measured.speedup,
                 measured.low, measured.high, record.get("iteration"))
        return out


PRE_WEIGHTS = "weights.pre-retrain.safetensors"
PRE_ONNX = "model.pre-retrain.onnx"
REPORT = "report.json"


def _sha256(path: Path) -> str:
    return sha256_file(path)


def _copy_atomic(src: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def retrained_report(folder: str | Path) -> dict | None:
    """The report of a snapshot whose retrain finished, else None.

    Finished means: ``report.json`` names the SHA-256 of ``weights.pre-retrain.safetensors`` as it is
    now, and the retrained ``weights.safetensors`` and ``model.onnx`` are there.
    """
    f = Path(folder)
    if not all((f / n).is_file() for n in (REPORT, PRE_WEIGHTS, "weights.safetensors", "model.onnx")):
        return None
    try:
        rep = json.loads((f / REPORT).read_text())
    except (OSError, ValueError):
        return None
    snap = rep.get("snapshot") if isinstance(rep, dict) else None
    if not isinstance(snap, dict) or not snap.get("retrained") or snap.get("pre_retrain_sha256") != _sha256(f / PRE_WEIGHTS):
        return None
    return rep


def retrain_snapshot(folder: str | Path, model_name: str, data: Any, recipe: Any, *, seed: int = 0,
                     teacher: Any = None, max_steps: int | None = None, progress: bool = False,
                     report_base: dict | None = None, predict_ms: Any = None, original_onnx: str | Path | None = None,
                     group_widths: dict | None = None, input_shape: Sequence[int] = (1, 3, 32, 32)) -> dict:
    """Retrain one snapshot by the search's final recipe and make its folder a publishable result.

    Resumable: a finished retrain (:func:`retrained_report`) is skipped, and a killed one resumes
    from ``retrain/`` (:func:`compactnet.train.train`'s checkpoint), starting from
    ``weights.pre-retrain.safetensors`` (the weights the search saved, copied there once).

    Args:
        folder: The snapshot folder (as :meth:`Snapshots.save` wrote it).
        model_name: Registry name.
        data: Object with ``train``, ``val``, ``test`` splits.
        recipe: The final retrain's :class:`~compactnet.train.Recipe`.
        seed: Seed of the retrain (the search's).
        teacher: Model distilled into the retrain (the search's: the unpruned one, or None).
        max_steps: Steps per epoch (the preset's ``final_max_steps``).
        progress: Progress bars.
        report_base: Keys shared with the search's report (model, platform, preset, mode, importance,
            original, data, command, ``predicted.original_ms``, ``channels.original``).
        predict_ms: ``NetworkSpec -> predicted ms`` for the snapshot's network (None: not recorded).
        original_onnx: The untrimmed network's ONNX (copied in as ``original.onnx``, the baseline
            ``zoo publish`` times against).
        group_widths: Width per search group at the snapshot (the trajectory's ``channels``).
        input_shape: NCHW input shape of the export.

    Returns:
        The snapshot's ``report.json`` content.

    Raises:
        ModelFileError: The folder lacks ``measured.json``, ``channels.json`` or weights.
    """
    from compactnet.errors import ModelFileError
    from compactnet.export import export_onnx
    from compactnet.extract import network_spec_from_torch
    from compactnet.models import create_model, load_weights, save_weights
    from compactnet.search.groups import config_from_model
    from compactnet.search.report import write_report
    from compactnet.train import evaluate, train

    f = Path(folder)
    done = retrained_report(f)
    if done is not None:
        log.info("snapshot %s: already retrained (test top-1 %.2f%%), skipped", f.name,
                 float(done.get("trimmed", {}).get("test_top1") or float("nan")))
        return done
    try:
        meas = json.loads((f / "measured.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{f / 'measured.json'} is missing or unreadable ({exc}): not a snapshot folder") from exc
    if not (f / "channels.json").is_file():
        raise ModelFileError(f"{f} holds no channels.json: cannot rebuild the snapshot's network")
    t0 = time.perf_counter()
    if not (f / PRE_WEIGHTS).is_file():
        if not (f / "weights.safetensors").is_file():
            raise ModelFileError(f"{f} holds neither {PRE_WEIGHTS} nor weights.safetensors")
        _copy_atomic(f / "weights.safetensors", f / PRE_WEIGHTS)
    if not (f / PRE_ONNX).is_file() and (f / "model.onnx").is_file():
        _copy_atomic(f / "model.onnx", f / PRE_ONNX)
    pre_sha = _sha256(f / PRE_WEIGHTS)
    model = load_weights(create_model(model_name, channels=f / "channels.json"), f / PRE_WEIGHTS)
    before = {"val_top1": evaluate(model, data.val)}
    train(model, data.train, data.val, recipe, out_dir=f / "retrain", seed=seed, teacher=teacher,
          max_steps=max_steps, progress=progress)
    retrain_s = time.perf_counter() - t0
    after = {"val_top1": evaluate(model, data.val), "test_top1": evaluate(model, data.test)}
    save_weights(model, f / "weights.safetensors", metadata={"model": model_name})
    exported = export_onnx(model, f / "model.onnx", input_shape=tuple(input_shape))
    if original_onnx is not None and Path(original_onnx).is_file():
        _copy_atomic(Path(original_onnx), f / "original.onnx")
    spec = network_spec_from_torch(model, tuple(input_shape))
    cfg = config_from_model(model)
    threshold = float(meas["threshold"])
    m = dict(meas.get("measured") or {})
    m["reached"] = bool(m and not m.get("busy") and float(m["low"]) >= threshold)
    m["note"] = "measured when the search crossed the threshold, before the retrain (same architecture)"
    base = dict(report_base or {})
    pred0 = (base.get("predicted") or {}).get("original_ms")
    pred1 = float(predict_ms(spec)) if predict_ms is not None else None
    tag = meas.get("tag") or snapshot_tag(threshold)
    command = base.get("command") or ""
    rep = {
        **base,
        "command": (f"{command}  # snapshot {tag} of this search, retrained by its final recipe" if command
                    else f"snapshot {tag}, retrained"),
        "target_speedup": threshold, "target_latency_ms": None,
        "stop_reason": f"snapshot: measured lower bound crossed {threshold:g}x at iteration {meas.get('iteration')}",
        "phase": "snapshot",
        "snapshot": {"threshold": threshold, "tag": tag, "iteration": meas.get("iteration"),
                     "predicted_speedup_at_crossing": meas.get("predicted_speedup"),
                     "val_top1_scoring_subset": meas.get("val_top1"), "retrained": True,
                     "pre_retrain_weights": PRE_WEIGHTS, "pre_retrain_sha256": pre_sha,
                     "pre_retrain_val_top1": before["val_top1"]},
        "predicted": {"original_ms": pred0, "trimmed_ms": pred1,
                      "speedup": (pred0 / pred1) if pred0 and pred1 else None},
        "measured": m or None, "measurements": [m] if m else [],
        "trimmed": {**after, "params": spec.params, "flops": 2 * spec.macs},
        "channels": {**(base.get("channels") or {}), "trimmed": dict(group_widths or {}),
                     "config": cfg.to_dict() if cfg is not None else None},
        "retrain": {"recipe": getattr(recipe, "name", str(recipe)), "epochs": getattr(recipe, "epochs", None),
                    "max_steps": max_steps, "distill": teacher is not None, "seed": int(seed)},
        "timings": {"retrain_s": retrain_s, "total_s": time.perf_counter() - t0},
        "onnx": exported.to_dict(),
    }
    write_report(rep, f)                      # last: marks the retrain finished
    log.info("snapshot %s retrained: val %.2f%% -> %.2f%%, test %.2f%%", tag, before["val_top1"], after["val_top1"],
             after["test_top1"])
    return rep


__all__ = ["Snapshots", "snapshot_tag", "retrain_snapshot", "retrained_report", "PRE_WEIGHTS", "PRE_ONNX"]
