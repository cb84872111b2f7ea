"""Model registry: every supported architecture declared in one table.

Use :func:`create_model` to build a model by name from an optional channel configuration, and
:func:`load_weights` to fill it from a safetensors file (never a pickled module).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from compactnet.errors import CompactNetError, ConfigError, ModelFileError, bad_value
from compactnet.models.mobilenetv2 import MobileNetV2, MobileNetV2Config
from compactnet.models.resnet import ResNet20, ResNet20Config
from compactnet.models.vgg import VGG, VGGConfig


@dataclass(frozen=True)
class ModelEntry:
    """One registered architecture.

    Attributes:
        name: Registry name, as the CLI spells it.
        builder: Callable building the module from a config.
        config_cls: Frozen channel-configuration dataclass with ``from_dict``/``to_dict``.
        input_shape: NCHW input shape at batch 1.
        description: One line for ``--help`` and listings.
    """

    name: str
    builder: Callable[[Any], nn.Module]
    config_cls: type
    input_shape: tuple[int, int, int, int]
    description: str


_REGISTRY: dict[str, ModelEntry] = {
    e.name: e
    for e in (
        ModelEntry("mobilenetv2", MobileNetV2, MobileNetV2Config, (1, 3, 32, 32),
                   "MobileNetV2 as Table 1 of the CompactNet paper (stride-2 stem, CIFAR-10)"),
        ModelEntry("resnet20", ResNet20, ResNet20Config, (1, 3, 32, 32),
                   "ResNet-20 for CIFAR-10 with 1x1 projection shortcuts"),
        ModelEntry("vgg16", VGG, VGGConfig, (1, 3, 32, 32),
                   "VGG-16 at half width with batch-norm, for CIFAR-10"),
    )
}


def list_models() -> list[str]:
    """Names of all registered models."""
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """Look a model up by name (case-insensitive).

    Raises:
        ConfigError: The name is not registered.
    """
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    if key not in _REGISTRY:
        raise bad_value("--model", "one of " + ", ".join(list_models()), name)
    return _REGISTRY[key]


def parse_channels(name: str, channels: Any = None) -> Any:
    """Turn a channel configuration (None, list, dict, config object, or JSON file path) into the model's config.

    Raises:
        ConfigError: The configuration does not fit the model.
    """
    entry = get_entry(name)
    if channels is None:
        return entry.config_cls()
    if isinstance(channels, entry.config_cls):
        return channels
    if isinstance(channels, (str, Path)):
        channels = read_channels_file(channels)
    if isinstance(channels, dict) and channels.get("model") not in (None, entry.name):
        raise ConfigError(f"--channels file is for model {channels['model']!r}, not {entry.name!r}")
    try:
        return entry.config_cls.from_dict(channels)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, CompactNetError):
            raise
        raise ConfigError(f"--channels does not fit {entry.name}: {exc}") from exc


def read_channels_file(path: str | Path) -> Any:
    """Read a channel-configuration JSON file with a clear error when it is missing or malformed."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--channels file {p} does not exist; write a JSON list or object of widths")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--channels file {p} is not valid JSON ({exc.msg} at line {exc.lineno})") from exc


def create_model(name: str, channels: Any = None, **kwargs: Any) -> nn.Module:
    """Build a registered model from an optional channel configuration."""
    entry = get_entry(name)
    return entry.builder(parse_channels(entry.name, channels), **kwargs)


def model_name_of(model: nn.Module) -> str:
    """Registry name of a model instance."""
    for entry in _REGISTRY.values():
        if type(model) is entry.builder:
            return entry.name
    raise bad_value("model", "an instance of a registered architecture", type(model).__name__)


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Fill ``model`` from a safetensors file, with a clear error on a missing, corrupt or mismatched file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"weights file {p} does not exist")
    try:
        state = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"weights file {p} is not a readable safetensors file: {exc}") from exc
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = sorted(set(own) - set(state))
    if mismatched or missing:
        detail = f"shape mismatch at {mismatched[0]}" if mismatched else f"missing {missing[0]}"
        raise ModelFileError(f"weights file {p} does not fit this channel configuration ({detail}); "
                             "pass the --channels file the weights were trained with")
    model.load_state_dict(state, strict=False)
    return model


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write a model's state dict (no optimiser state) as safetensors, atomically."""
    from safetensors.torch import save_file

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tmp), metadata=metadata)
    tmp.replace(p)


def config_of(model: nn.Module) -> Any:
    """The channel configuration a model was built from."""
    return model.config  # type: ignore[attr-defined]


__all__ = ["ModelEntry", "create_model", "get_entry", "list_models", "load_weights", "save_weights",
           "parse_channels", "model_name_of", "config_of", "read_channels_file",
           "MobileNetV2", "MobileNetV2Config", "ResNet20", "ResNet20Config", "VGG", "VGGConfig"]
