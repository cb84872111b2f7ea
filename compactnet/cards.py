"""Model cards: what a trained or trimmed model is, how it was made and what it measured.

A card is a JSON file beside the weights. Bundled baselines live in ``compactnet/assets``.
"""

from __future__ import annotations

import json
import platform as _pyplatform
import sys
from pathlib import Path
from typing import Any

from compactnet.errors import ConfigError, ModelFileError

ASSETS = Path(__file__).resolve().parent / "assets"


def baseline_paths(model_name: str) -> tuple[Path, Path]:
    """(weights, card) of the bundled CIFAR-10 baseline of ``model_name``.

    Raises:
        ModelFileError: No baseline is bundled for that model.
    """
    weights = ASSETS / f"{model_name}.cifar10.safetensors"
    card = ASSETS / f"{model_name}.cifar10.card.json"
    if not weights.exists():
        bundled = sorted(p.name.split(".")[0] for p in ASSETS.glob("*.cifar10.safetensors"))
        raise ModelFileError(f"no bundled baseline for {model_name!r} (bundled: {', '.join(bundled) or 'none'}); "
                             "pass --weights FILE.safetensors")
    return weights, card


def read_card(path: str | Path) -> dict[str, Any]:
    """Read a card JSON file."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError as exc:
        raise ModelFileError(f"card {p} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"card {p} is not valid JSON ({exc.msg})") from exc


def write_card(path: str | Path, card: dict[str, Any]) -> None:
    """Write a card atomically, with environment versions added."""
    import torch

    from compactnet.spec import hardware_id

    card = {**card, "environment": {"python": sys.version.split()[0], "torch": torch.__version__,
                                    "hardware": hardware_id(), "os": _pyplatform.platform()}}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    tmp.replace(p)


def resolve_weights(model_name: str, weights: str | Path | None) -> Path:
    """The weights file to use: the one given, else the bundled baseline."""
    if weights is not None:
        p = Path(weights)
        if not p.exists():
            raise ModelFileError(f"--weights {p} does not exist")
        if p.suffix != ".safetensors":
            raise ConfigError(f"--weights must be a .safetensors file (pickled checkpoints are not loaded); got {p.name}")
        return p
    return baseline_paths(model_name)[0]
