"""Error types shared by every CompactNet stage.

Every error a user can cause derives from :class:`CompactNetError`; the CLI turns it into a
one-line message and a non-zero exit, never a traceback.
"""

from __future__ import annotations


class CompactNetError(Exception):
    """Base class of every error caused by user input or environment."""


class ConfigError(CompactNetError, ValueError):
    """A parameter or configuration has a value outside what is allowed."""


class DataError(CompactNetError):
    """A data set is missing, corrupt or of an unexpected layout."""


class ModelFileError(CompactNetError):
    """A weights or ONNX file is missing, truncated or does not match the model."""


class UnsupportedOpError(CompactNetError):
    """An ONNX graph holds an operator CompactNet cannot describe."""


class MeasurementError(CompactNetError):
    """A latency measurement could not be taken or was refused (busy machine, runtime error)."""


class BusyError(MeasurementError):
    """Other processes kept the CPU busy while we timed: the figures were not kept.

    Raised under the ``refuse`` busy policy; callers that can simply time again (a profiler batch, a
    protocol comparison) do so after a pause before giving up (:data:`compactnet.measure.BUSY_RETRIES`).
    """


def bad_value(name: str, allowed: str, received: object) -> ConfigError:
    """Build a :class:`ConfigError` naming the parameter, the allowed values and the value received.

    Args:
        name: Parameter name as the user spells it.
        allowed: Human-readable description of the allowed values.
        received: The value that was given.

    Returns:
        The error, ready to raise.
    """
    return ConfigError(f"{name} must be {allowed}; got {received!r}")
