"""compactnet.profilers: measure layers on real runtimes with few samples, locally or on a remote device.

Modules: :mod:`~compactnet.profilers.layers` (a LayerSpec as an ONNX graph),
:mod:`~compactnet.profilers.timing` (rotation / isolated / flush contexts),
:mod:`~compactnet.profilers.base` (Profiler, Protocol, SyntheticProfiler, noise floor),
:mod:`~compactnet.profilers.sampling` (dense, random, sobol, prior, adaptive),
:mod:`~compactnet.profilers.store` (SQLite sample store), :mod:`~compactnet.profilers.run`
(profile, platform_table), :mod:`~compactnet.profilers.agent` (remote agent and client),
:mod:`~compactnet.profilers.validate` (the Figure-7 check), :mod:`~compactnet.profilers.composition`
(effective per-call overhead fitted on prefix networks).

Names are imported lazily so that ``import compactnet.profilers`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "layer_onnx": "layers", "network_onnx": "layers", "overhead_onnx": "layers", "pointwise": "layers",
    "Protocol": "base", "Profiler": "base", "RunnerProfiler": "base", "SyntheticProfiler": "base",
    "get_profiler": "base", "noise_floor": "base",
    "make_strategy": "sampling", "UncertaintyModel": "sampling", "STRATEGIES": "sampling",
    "SampleStore": "store",
    "profile": "run", "ProfileReport": "run", "platform_table": "run",
    "serve_agent": "agent", "AgentClient": "agent", "RemoteProfiler": "agent",
    "figure7": "validate", "Figure7Report": "validate",
    "Composition": "composition", "save_composition": "composition", "load_composition": "composition",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"compactnet.profilers.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'compactnet.profilers' has no attribute {name!r}")
