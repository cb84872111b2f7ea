"""The measuring worker process: same comparisons as in-process, errors carried back, a dead worker replaced."""

from __future__ import annotations

import pytest
import torch

from compactnet import isolated
from compactnet.errors import MeasurementError, ModelFileError
from compactnet.measure import Comparison
from compactnet.runtimes import SyntheticRunner
from compactnet.spec import Platform
from compactnet.isolated import compare_isolated, isolatable


def _tiny_models() -> list[bytes]:
    from compactnet.export import export_onnx

    torch.manual_seed(0)
    return [export_onnx(torch.nn.Conv2d(3, c, 3, padding=1), input_shape=(1, 3, 16, 16)).onnx_bytes for c in (32, 4)]


FAST = {"rounds": 3, "runs": 3, "warmup": 1, "busy": "ignore", "check_window": 0, "window_s": 0, "instances": 1}


def test_isolatable_takes_real_local_runtimes_only():
    assert isolatable("ort-cpu-fp32-t1") and isolatable(Platform.parse("openvino-cpu-fp32-t1"))
    assert isolatable("ncnn-cpu-fp32-t1")
    assert not isolatable("synthetic-cpu-fp32-t1")
    assert not isolatable("not a key")
    assert not isolatable(SyntheticRunner())


def test_synthetic_and_ready_runners_are_measured_in_process(monkeypatch):
    def no_worker():
        raise AssertionError("no worker for the synthetic runtime")

    monkeypatch.setattr(isolated, "_Worker", no_worker)
    from compactnet.spec import LayerSpec

    small = LayerSpec("small", "conv", 32, 32, 16, 16, kernel=3, padding=1)
    comp = compare_isolated([small], SyntheticRunner(), rounds=7, runs=2, warmup=0)
    assert isinstance(comp, Comparison) and comp.latencies[0].value_ms > 0


@pytest.mark.runtime
def test_worker_compares_like_in_process_and_carries_errors_back():
    models = _tiny_models()
    comp = compare_isolated(models, "ort-cpu-fp32-t1", names=["wide", "narrow"], keep_times=True, **FAST)
    assert isinstance(comp, Comparison) and comp.names == ("wide", "narrow")
    assert comp.platform.runtime == "ort" and comp.platform.hardware and comp.estimator == "min"
    assert comp.times.shape == (2, 1, 3, 3) and comp.latencies[0].value_ms > comp.latencies[1].value_ms * 0.5
    pid = isolated._worker.proc.pid
    with pytest.raises(ModelFileError, match="not a valid ONNX model"):
        compare_isolated([b"not onnx"], "ort-cpu-fp32-t1", **FAST)
    assert isolated._worker.proc.pid == pid  # an error in compare() keeps the worker


@pytest.mark.runtime
def test_a_dead_worker_is_reported_and_replaced():
    models = _tiny_models()
    compare_isolated(models[:1], "ort-cpu-fp32-t1", **FAST)
    old = isolated._worker
    old.proc.kill()
    old.proc.wait()
    comp = compare_isolated(models[:1], "ort-cpu-fp32-t1", **FAST)  # a new worker is started
    assert comp.latencies[0].value_ms > 0 and isolated._worker is not old


def test_a_worker_dying_mid_call_raises_a_measurement_error(monkeypatch):
    class Dead:
        def __init__(self):
            import subprocess
            import sys

            self.proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.buffer.read(8)"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)

        alive = isolated._Worker.alive
        call = isolated._Worker.call
        close = isolated._Worker.close

    monkeypatch.setattr(isolated, "_Worker", Dead)
    monkeypatch.setattr(isolated, "_worker", None)
    with pytest.raises(MeasurementError, match="measuring worker process stopped"):
        compare_isolated([b"x"], "ort-cpu-fp32-t1", **FAST)
    assert isolated._worker is None  # the next call starts a new one


def test_protocol_measure_uses_the_worker_unless_told(monkeypatch):
    from compactnet.search.loop import protocol_measure

    calls = []

    def fake(models, platform, **kw):
        calls.append("worker")
        raise MeasurementError("stop here")

    monkeypatch.setattr(isolated, "compare_isolated", fake)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    with pytest.raises(MeasurementError, match="stop here"):
        protocol_measure("ort-cpu-fp32-t1", input_shape=(1, 3, 8, 8))(net, net, 1.5)
    assert calls == ["worker"]


def test_lock_memory_reports_whether_it_locked(monkeypatch):
    import ctypes

    assert isinstance(isolated.lock_memory(), bool)  # True as root or with a high `ulimit -l`; never raises

    class Refusing:
        def mlockall(self, flags):
            return -1

    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: Refusing())
    assert isolated.lock_memory() is False


@pytest.mark.runtime
def test_the_worker_measures_without_the_lock_when_told():
    comp = compare_isolated(_tiny_models()[:1], "ort-cpu-fp32-t1", lock=False, **FAST)
    assert comp.latencies[0].value_ms > 0
