"""Protocol measurements in a small worker process of their own.

A search or a training run is a large process: hundreds of MB of tensors and optimizer state, the
decoded dataset, torch's thread pool. Measured inside it, a 0.45 ms network read 0.50-0.62 ms round
to round on machine C where a quiet process read 0.45-0.47 ms, and the search's decisions (stop the
schedule, target reached) followed that spread. :func:`compare_isolated` runs
:func:`compactnet.measure.compare` in a worker started with ``python -m compactnet.isolated``: a fresh
interpreter that imports numpy, onnx and the runtime, never torch, and is kept for the next
comparison (models are sent as ONNX bytes; each comparison loads new sessions, as in-process). On
machine D a training process did not disturb the figures (``benchmarks/isolation_bench.py``: speedup
spread 0.4% in-process, 0.5% in the worker, the original 1% slower in-process); the worker costs about
a second once and removes that bias and the dependence on what the calling process holds.

The worker talks over its stdin/stdout with length-prefixed pickles between this process and the
child it started (nothing from outside is unpickled); the child moves its own stdout to stderr first
so that a runtime printing to stdout cannot corrupt the channel. A worker that dies is reported as a
:class:`~compactnet.errors.MeasurementError` and started anew on the next call.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO, Sequence

from compactnet.errors import MeasurementError

log = logging.getLogger(__name__)

#: Runtimes measured in the worker: the real local ones. ``synthetic`` (virtual clock) and ready
#: :class:`~compactnet.runtimes.Runner` objects (e.g. a remote agent's) are measured in-process.
ISOLATED_RUNTIMES = ("ort", "openvino", "ncnn")

_HEADER = struct.Struct("!Q")


def _send(stream: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream: BinaryIO) -> Any:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError("the channel closed")
    (size,) = _HEADER.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the channel closed mid-message")
    return pickle.loads(data)  # noqa: S301 (our own child's answer over a private pipe)


def _as_bytes(model: Any) -> Any:
    """ONNX bytes for a path or ``onnx.ModelProto``; anything else unchanged."""
    if isinstance(model, (str, Path)):
        try:
            return Path(model).read_bytes()
        except OSError:
            return model  # compare() reports the unreadable file in its own words
    if hasattr(model, "SerializeToString"):
        return model.SerializeToString()
    return model


class _Worker:
    """One child process running comparisons, one at a time."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "compactnet.isolated"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        log.debug("measuring worker started (pid %d)", self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, models: list, platform: Any, kwargs: dict, lock: bool = True) -> Any:
        level = logging.getLogger("compactnet").getEffectiveLevel()
        try:
            _send(self.proc.stdin, {"models": models, "platform": platform, "kwargs": kwargs, "log_level": level,
                                    "lock": lock})
            status, payload = _receive(self.proc.stdout)
        except (EOFError, BrokenPipeError, OSError) as exc:
            try:
                code = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # the channel broke but the process lingers: end it
                self.proc.kill()
                code = self.proc.wait()
            raise MeasurementError(
                f"the measuring worker process stopped ({'exit code ' + str(code) if code is not None else exc}); "
                "its error output is above. Measure again (a new worker is started), or pass isolate=False "
                "to measure in this process") from exc
        if status == "error":
            raise payload
        return payload

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


_lock = threading.Lock()
_worker: _Worker | None = None


def _shutdown() -> None:
    global _worker
    if _worker is not None:
        _worker.close()
        _worker = None


atexit.register(_shutdown)


def isolatable(platform: Any) -> bool:
    """Whether :func:`compare_isolated` measures ``platform`` in the worker (a key or Platform of a
    real local runtime) rather than in this process."""
    from compactnet.spec import Platform

    if isinstance(platform, str):
        try:
            platform = Platform.parse(platform)
        except Exception:  # noqa: BLE001 - compare() reports a bad key in its own words
            return False
    return isinstance(platform, Platform) and platform.runtime in ISOLATED_RUNTIMES


def compare_isolated(models: Sequence[Any], platform: Any, *, lock: bool = True, **kwargs: Any) -> Any:
    """:func:`compactnet.measure.compare` run in the measuring worker process.

    Same arguments and result; ``progress`` callbacks are not forwarded (the worker reports nothing
    until it is done). Platforms the worker cannot take (``synthetic``, a ready ``Runner``) are
    measured in this process. ``lock`` (default True): the worker locks its memory in RAM
    (:func:`lock_memory`) before and after each comparison.

    Raises:
        MeasurementError: The worker process stopped; or whatever ``compare`` raised in it
            (``BusyError``, ``ConfigError``, ``ModelFileError``, ...), re-raised here.
    """
    from compactnet import measure as protocol

    if not isolatable(platform):
        return protocol.compare(models, platform, **kwargs)
    kwargs = dict(kwargs)
    kwargs.pop("progress", None)
    kwargs["estimator"] = protocol._resolve_estimator(kwargs.get("estimator"))
    models = [_as_bytes(m) for m in models]
    global _worker
    with _lock:
        if _worker is None or not _worker.alive():
            _worker = _Worker()
        worker = _worker
        try:
            return worker.call(models, platform, kwargs, lock)
        except MeasurementError:
            if not worker.alive():
                _worker = None
            raise


# ----- the worker side --------------------------------------------------------------------------
_MCL_CURRENT = 1


def lock_memory() -> bool:
    """Lock the pages this process has mapped now into RAM (``mlockall(MCL_CURRENT)``); True on success.

    Virtual machines here run the kernel's proactive reclaim (DAMON with a ``pageout`` scheme on
    machine D): file-backed pages not touched for a while, such as a runtime library's code, are
    dropped and read back on the next call, so the first rounds after an idle stretch run slow. The
    worker is idle while the search trains, then measures. Without the privilege or the memory-lock
    limit (``ulimit -l``) the call fails and nothing changes (logged at debug level).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.mlockall(_MCL_CURRENT) == 0:
            return True
        log.debug("mlockall failed: %s", os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as exc:
        log.debug("mlockall unavailable: %s", exc)
    return False


def _serve() -> None:
    """The worker's loop: read a request, compare, answer; until stdin closes."""
    channel_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a runtime prints goes to stderr, not into the channel
    sys.stdout = sys.stderr
    channel_in = sys.stdin.buffer
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s (measuring worker): %(message)s")
    from compactnet import measure as protocol
    from compactnet.runtimes import get_runner

    while True:
        try:
            request = _receive(channel_in)
        except EOFError:
            return
        logging.getLogger("compactnet").setLevel(request.get("log_level", logging.WARNING))
        lock = request.get("lock", True)
        try:
            runner = get_runner(request["platform"])  # the runtime's libraries are mapped now
            if lock:
                lock_memory()
            answer = ("ok", protocol.compare(request["models"], runner, **request["kwargs"]))
            if lock:
                lock_memory()  # what compiling mapped (OpenVINO's plugins) stays for the next request
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
            try:
                pickle.dumps(exc)
            except Exception:  # noqa: BLE001 - an exception that cannot travel is sent as text
                exc = MeasurementError(f"{type(exc).__name__}: {exc}")
            answer = ("error", exc)
        _send(channel_out, answer)


if __name__ == "__main__":
    _serve()


__all__ = ["compare_isolated", "isolatable", "lock_memory", "ISOLATED_RUNTIMES"]
