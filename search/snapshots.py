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

Snapshots are not retrained: retrain each with the search's final recipe before publishing it
(:func:`compactnet.train.train` on ``weights.safetensors``), as the search's own result is.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Sequence

from compactnet.errors import bad_value
from compactnet.search._io import atomic_write_json

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


__all__ = ["Snapshots", "snapshot_tag"]
