"""The measurement agent on loopback: auth, limits, corrupt models, timeouts, reconnects."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import urllib.request

import pytest

from compactnet.errors import ConfigError
from compactnet.spec import Latency, LayerSpec, Platform
from compactnet.profilers.agent import Agent, AgentClient, AgentError, RemoteProfiler, serve_agent
from compactnet.profilers.base import Protocol
from compactnet.profilers.layers import layer_onnx

SYN = "synthetic-cpu-fp32-t1"
FAST = Protocol(rounds=3, runs=3, warmup=1, busy="ignore")
SMALL = LayerSpec("c", "conv", 8, 8, 4, 4, kernel=3, padding=1, bn=True, act="relu6")
BIG = LayerSpec("big", "conv", 64, 64, 4, 4, kernel=3, padding=1)  # ~150 KB of weights


def _synthetic(key: str):
    from compactnet.runtimes import get_runner

    return get_runner(key, sigma=0.0)


class _SlowRunner:
    """Each inference sleeps: a job of rounds x runs calls takes real time."""

    def __init__(self, key: str, sleep_s: float = 0.004):
        self.platform = Platform.parse(key, hardware="slow-board", runtime_version="0.1")
        self.sleep_s = sleep_s
        self.timer = time.perf_counter_ns
        self.loads = 0

    def load(self, model):
        self.loads += 1
        return lambda: time.sleep(self.sleep_s)


def _serve(**kw):
    kw.setdefault("runner_factory", _synthetic)
    agent = kw.pop("agent", None) or Agent(kw.pop("runner_factory"), kw.pop("job_timeout_s", 60.0),
                                           platforms=[Platform.parse(SYN, hardware="synthetic")])
    kw.pop("runner_factory", None)
    return serve_agent("127.0.0.1", kw.pop("port", 0), block=False, agent=agent, **kw)


@pytest.fixture
def agent_server():
    servers = []

    def start(**kw):
        s = _serve(**kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        try:
            s.stop()
        except OSError:
            pass


def test_remote_profiler_measures_on_the_agent(agent_server):
    srv = agent_server()
    prof = RemoteProfiler(srv.url, SYN, protocol=FAST)
    ms = prof.measure([SMALL, BIG])
    assert all(m.latency.value_ms > 0 for m in ms)
    assert ms[0].platform.hardware == "synthetic" and ms[0].platform.runtime_version == "1"
    assert srv.agent.runs == 1
    with pytest.raises(ConfigError, match="agent lists"):
        RemoteProfiler(srv.url, "ort-cpu-fp32-t1", protocol=FAST)


def test_exposed_agent_needs_a_token():
    with pytest.raises(ConfigError, match="token"):
        serve_agent("0.0.0.0", 0, token=None, block=False, agent=Agent(_synthetic))


def test_token_missing_or_wrong(agent_server):
    srv = agent_server(token="s3cret")
    with pytest.raises(AgentError) as no:
        AgentClient(srv.url).info()
    assert no.value.status == 401
    with pytest.raises(AgentError) as wrong:
        AgentClient(srv.url, token="guess").submit([layer_onnx(SMALL)], SYN, FAST)
    assert wrong.value.status == 403
    assert srv.agent.runs == 0
    ok = AgentClient(srv.url, token="s3cret")
    assert ok.info()["platforms"][0]["key"] == SYN
    assert ok.run([layer_onnx(SMALL)], SYN, FAST)["latencies"]


def test_oversize_upload_is_refused(agent_server):
    srv = agent_server(max_upload_mb=0.05)
    assert len(layer_onnx(BIG)) > 0.05 * (1 << 20)
    with pytest.raises(AgentError) as big:
        AgentClient(srv.url).submit([layer_onnx(BIG)], SYN, FAST)
    assert big.value.status == 413 and "limit" in str(big.value)
    assert AgentClient(srv.url).run([layer_onnx(SMALL)], SYN, FAST)["latencies"]  # the agent still serves


def test_corrupt_model_is_a_clear_400(agent_server):
    srv = agent_server()
    client = AgentClient(srv.url)
    good = layer_onnx(SMALL)
    for bad in (b"not an onnx model at all", good[: len(good) // 2]):
        with pytest.raises(AgentError) as err:
            client.submit([good, bad], SYN, FAST)
        assert err.value.status == 400 and err.value.kind == "bad_model"
        assert "models[1] is not a valid ONNX model" in str(err.value)
    req = urllib.request.Request(srv.url + "/v1/jobs", data=b"{nope", method="POST")
    with pytest.raises(urllib.error.HTTPError) as raw:
        urllib.request.urlopen(req, timeout=10)
    assert raw.value.code == 400 and "not JSON" in json.loads(raw.value.read())["error"]
    assert srv.agent.runs == 0


def test_job_timeout_is_a_clear_error(agent_server):
    agent = Agent(lambda key: _SlowRunner(key), job_timeout_s=0.3, platforms=[Platform.parse(SYN)])
    srv = agent_server(agent=agent)
    t0 = time.monotonic()
    with pytest.raises(AgentError) as err:
        AgentClient(srv.url).run([layer_onnx(SMALL)], SYN, Protocol(rounds=7, runs=40, busy="ignore"))
    assert err.value.kind == "timeout" and "job_timeout_s" in str(err.value)
    assert time.monotonic() - t0 < 5  # stopped at the limit, not after the 2+ s the job needed


class _Proxy:
    """A TCP proxy that can drop every connection, to lose the client's link mid-job."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.listen()
        self.conns: list[socket.socket] = []
        self.up = threading.Event()
        self.up.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if not self.up.is_set():
                c.close()
                continue
            u = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def drop(self):
        self.up.clear()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass
        self.conns.clear()

    def restore(self):
        self.up.set()

    def close(self):
        self.drop()
        self.sock.close()


def test_client_reconnects_mid_job_and_the_job_runs_once(agent_server):
    runners = {}

    def factory(key):
        runners[key] = _SlowRunner(key, sleep_s=0.003)
        return runners[key]

    agent = Agent(factory, job_timeout_s=60, platforms=[Platform.parse(SYN)])
    srv = agent_server(agent=agent)
    proxy = _Proxy(srv.server_address[1])
    try:
        client = AgentClient(f"http://127.0.0.1:{proxy.port}", retries=20, backoff_s=0.1)
        result = {}
        th = threading.Thread(target=lambda: result.update(client.run([layer_onnx(SMALL)], SYN,
                                                                      Protocol(rounds=3, runs=40, busy="ignore"))))
        th.start()
        time.sleep(0.3)  # the job is running (about 1 s)
        assert agent.get(next(iter(agent._jobs)))["status"] == "running"
        proxy.drop()
        time.sleep(0.4)
        proxy.restore()
        th.join(timeout=30)
        assert not th.is_alive()
    finally:
        proxy.close()
    assert client.reconnects >= 1
    assert agent.runs == 1 and runners[SYN].loads == 2  # one job: the layer and the overhead model, once
    assert len(result["latencies"]) == 1 and result["platform"]["hardware"] == "slow-board"
    # submitting the same job id again returns the recorded job, it does not run it again
    job_id = next(iter(agent._jobs))
    direct = AgentClient(srv.url)
    direct.submit([layer_onnx(SMALL)], SYN, FAST, job_id=job_id)
    assert direct.wait(job_id) == result and agent.runs == 1


def test_jobs_never_overlap(agent_server):
    active, peak = [0], [0]
    lock = threading.Lock()

    class _Counting(_SlowRunner):
        def load(self, model):
            def call():
                with lock:
                    active[0] += 1
                    peak[0] = max(peak[0], active[0])
                time.sleep(0.001)
                with lock:
                    active[0] -= 1
            return call

    agent = Agent(lambda key: _Counting(key), platforms=[Platform.parse(SYN)])
    srv = agent_server(agent=agent)
    out = []
    threads = [threading.Thread(target=lambda: out.append(AgentClient(srv.url).run([layer_onnx(SMALL)], SYN, FAST)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(out) == 4 and peak[0] == 1 and agent.runs == 4


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url + "/v1/jobs", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_bad_protocol_values_and_huge_jobs_are_a_400_not_a_dropped_connection(agent_server):
    srv = agent_server()
    model = base64.b64encode(layer_onnx(SMALL)).decode()
    job = {"job_id": "j1", "platform": SYN, "models": [model]}
    for proto in ({"rounds": "x"}, {"runs": None}, ["rounds"], {"max_load": {}}):
        status, body = _post(srv.url, {**job, "protocol": proto})
        assert status == 400 and body["kind"] == "bad_request", (proto, body)
    status, body = _post(srv.url, {**job, "protocol": {"rounds": 1000, "runs": 1000}})
    assert status == 400 and body["kind"] == "too_many_calls" and "2,000,000" in body["error"]
    assert srv.agent.runs == 0
    assert AgentClient(srv.url).run([layer_onnx(SMALL)], SYN, FAST)["latencies"]  # still serving


def test_deadline_covers_compilation(agent_server):
    class _SlowCompile(_SlowRunner):
        def load(self, model):
            time.sleep(0.2)
            return super().load(model)

    made = []
    agent = Agent(lambda key: made.append(_SlowCompile(key, sleep_s=0.0)) or made[-1], job_timeout_s=0.3,
                  platforms=[Platform.parse(SYN)])
    srv = agent_server(agent=agent)
    with pytest.raises(AgentError) as err:
        AgentClient(srv.url).run([layer_onnx(SMALL)] * 6, SYN, Protocol(rounds=7, runs=1, warmup=0, busy="ignore"))
    assert err.value.kind == "timeout"
    assert made[-1].loads < 6  # stopped after the compile that crossed the limit, not after all of them


def test_runner_cache_builds_one_runner_per_key_under_concurrency():
    built = []

    def factory(key):
        time.sleep(0.05)
        built.append(key)
        return _SlowRunner(key)

    agent = Agent(factory, platforms=[Platform.parse(SYN)])
    try:
        got = []
        threads = [threading.Thread(target=lambda: got.append(agent._runner(SYN))) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert built == [SYN] and len(got) == 8 and all(r is got[0] for r in got)
    finally:
        agent.close()


def test_remote_profiler_accepts_other_threads_and_precisions_of_a_listed_runtime(agent_server):
    srv = agent_server()
    prof = RemoteProfiler(srv.url, "synthetic-cpu-fp32-t2", protocol=FAST)
    assert prof.platform.key == "synthetic-cpu-fp32-t2" and prof.platform.hardware == "synthetic"
    m = prof.measure([SMALL])[0]
    assert m.platform.key == "synthetic-cpu-fp32-t2" and m.latency.value_ms > 0
    assert m.overhead_ms > 0  # the agent's overhead figure reaches the measurement
    with pytest.raises(ConfigError, match="runtime and provider"):
        RemoteProfiler(srv.url, "ort-cpu-fp32-t2", protocol=FAST)


def test_a_busy_device_is_timed_again(agent_server, monkeypatch):
    """The device refuses a job it timed while busy (BusyError); the client times it again after a pause."""
    import compactnet.profilers.agent as agent_mod
    from compactnet.errors import BusyError

    real, calls = agent_mod.run_timing_job, []

    def busy_once(*a, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise BusyError("machine busy: 0.9 CPU cores used by other processes during the timing")
        return real(*a, **kw)

    monkeypatch.setattr(agent_mod, "run_timing_job", busy_once)
    srv = agent_server()
    [m] = RemoteProfiler(srv.url, SYN, protocol=FAST).measure([SMALL])
    assert m.latency.value_ms > 0 and len(calls) == 2


def test_clients_older_than_the_minimum_rule_get_medians_in_the_old_form(agent_server):
    srv = agent_server()
    model = base64.b64encode(layer_onnx(SMALL)).decode()
    old_protocol = {k: v for k, v in FAST.to_dict().items() if k not in ("anchors", "estimator")}
    status, _ = _post(srv.url, {"job_id": "old1", "platform": SYN, "models": [model], "protocol": old_protocol})
    assert status in (200, 202)
    result = AgentClient(srv.url).wait("old1")
    lat = result["latencies"][0]
    assert "median_ms" in lat and "value_ms" not in lat and "estimator" not in lat  # what an old client reads
    assert Latency.from_dict(lat).estimator == "median"
    # a current client names its estimator and gets the new form
    new = AgentClient(srv.url).run([layer_onnx(SMALL)], SYN, FAST)["latencies"][0]
    assert new["estimator"] == FAST.estimator and "value_ms" in new
