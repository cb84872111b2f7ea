"""Remote profiling: an HTTP agent on the target device and a client that talks to it.

The agent (``compactnet agent``, :func:`serve_agent`) runs on the device -- anything with Python
and the runtime: a Raspberry Pi, a phone under Termux with onnxruntime's NNAPI provider, an NPU
board. It receives measurement jobs (ONNX models + a timing :class:`~compactnet.profilers.base.Protocol`),
runs them one at a time from a queue so measurements never overlap, and returns the timings with
the device's :class:`~compactnet.spec.Platform` (hardware id, runtime version).

Endpoints (JSON; ``Authorization: Bearer TOKEN`` when the agent has a token):

``GET /v1/info``             platforms this device can run, queue length.
``POST /v1/jobs``            ``{"job_id", "platform", "protocol", "models": [base64 ONNX, ...]}``;
                             202 queued, 200 when the job id is already known (idempotent), 400 bad
                             request or corrupt model, 401/403 token, 413 upload too large, 503 queue full.
``GET /v1/jobs/ID?wait=S``   the job's status (``queued``, ``running``, ``done``, ``failed``), waiting up
                             to S seconds for it to finish; ``result`` when done, ``error`` when failed.

Safety: binds 127.0.0.1 unless told otherwise and refuses to start on another address without a
token; bounds upload size and job time (a job past ``job_timeout_s`` fails with a clear error).

The client (:class:`AgentClient`, :class:`RemoteProfiler`) names every job with an id it chooses,
so a job retried after a lost connection is neither run nor recorded twice, and returns only
completed jobs: a half-done job is never recorded.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hmac
import ipaddress
import json
import logging
import queue
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Sequence

import onnx

from compactnet.errors import BusyError, CompactNetError, ConfigError, MeasurementError, bad_value
from compactnet.spec import Latency, LayerSpec, Platform

from compactnet.profilers.base import Profiler, Protocol, rotation_protocol, run_timing_job, timing_result
from compactnet.profilers.layers import layer_onnx, network_onnx
from compactnet.profilers.timing import JobTimeout

log = logging.getLogger(__name__)

API = "/v1"
DEFAULT_PORT = 8765
MAX_WAIT_S = 30.0
#: Most model calls one job may ask for: (warm-up + rounds x runs) x models (more: 400).
MAX_JOB_CALLS = 2_000_000


def _legacy_result(result: dict) -> dict:
    """A job result in the form clients older than the minimum rule read (``median_ms``, no new keys)."""
    def old(lat: dict) -> dict:
        keep = ("low_ms", "high_ms", "runs", "rounds", "source")
        return {"median_ms": lat.get("value_ms"), **{k: lat[k] for k in keep if k in lat}}

    out = dict(result)
    out["latencies"] = [old(l) for l in result.get("latencies", [])]
    if isinstance(result.get("overhead"), dict):
        out["overhead"] = old(result["overhead"])
    return out


class AgentError(MeasurementError):
    """The agent refused or failed a job.

    Attributes:
        status: HTTP status (0 when no answer came).
        kind: Machine-readable reason (``timeout``, ``bad_model``, ``auth``, ``too_large``, ...).
    """

    def __init__(self, message: str, status: int = 0, kind: str = ""):
        super().__init__(message)
        self.status = status
        self.kind = kind


class AgentBusyError(AgentError, BusyError):
    """The device behind the agent was busy while it timed the job: timed again after a pause."""


class _BadRequest(Exception):
    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


# ----- the job queue ---------------------------------------------------------------------------
class Agent:
    """Job queue and worker: one job at a time, results kept by job id.

    Args:
        runner_factory: Platform key -> :class:`compactnet.runtimes.Runner` (default
            :func:`compactnet.runtimes.get_runner`); runners are cached per key.
        job_timeout_s: Time limit of one job, from its start.
        max_queue: Jobs waiting at most (more: 503).
        keep_jobs: Finished jobs remembered (for retries and late polls).
        platforms: Platforms listed by ``/v1/info`` (default: :func:`compactnet.runtimes.available_platforms`).
    """

    def __init__(self, runner_factory: Callable[[str], Any] | None = None, job_timeout_s: float = 600.0,
                 max_queue: int = 64, keep_jobs: int = 1024, platforms: Sequence[Platform] | None = None):
        if float(job_timeout_s) <= 0:
            raise bad_value("job_timeout_s", "a positive number of seconds", job_timeout_s)
        if runner_factory is None:
            from compactnet.runtimes import get_runner

            runner_factory = get_runner
        self.runner_factory = runner_factory
        self.job_timeout_s = float(job_timeout_s)
        self.keep_jobs = int(keep_jobs)
        self._platforms = platforms
        self._queue: queue.Queue = queue.Queue(maxsize=int(max_queue))
        self._jobs: collections.OrderedDict[str, dict] = collections.OrderedDict()
        self._runners: dict[str, Any] = {}
        self._runners_lock = threading.Lock()  # HTTP threads (validation) and the worker share the cache
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self.runs = 0  # jobs executed (for tests: a retried job runs once)
        self._worker = threading.Thread(target=self._work, name="compactnet-agent-worker", daemon=True)
        self._worker.start()

    def platforms(self) -> list[dict]:
        """Platforms this device can run."""
        if self._platforms is None:
            from compactnet.runtimes import available_platforms

            self._platforms = available_platforms()
        return [p.to_dict() for p in self._platforms]

    def submit(self, job_id: str, platform: str, models: list[bytes], protocol: Protocol,
               legacy: bool = False) -> tuple[dict, bool]:
        """Queue a job; return (its status, whether it is new). A known id returns the known job.

        ``legacy``: the client predates the minimum rule (its protocol names no estimator): the job is
        timed by the median rule and its latencies are returned in the old form (``median_ms``).
        """
        with self._cond:
            if job_id in self._jobs:
                return self._public(self._jobs[job_id]), False
            job = {"job_id": job_id, "status": "queued", "platform": platform, "submitted": time.time(),
                   "models": models, "protocol": protocol, "legacy": bool(legacy)}
            try:
                self._queue.put_nowait(job_id)
            except queue.Full:
                raise _BadRequest(503, "busy", f"the agent's queue is full ({self._queue.maxsize} jobs); retry later") \
                    from None
            self._jobs[job_id] = job
            self._trim()
            return self._public(job), True

    def get(self, job_id: str, wait_s: float = 0.0) -> dict | None:
        """A job's status, waiting up to ``wait_s`` for it to finish; None for an unknown id."""
        deadline = time.monotonic() + max(0.0, min(float(wait_s), MAX_WAIT_S))
        with self._cond:
            while True:
                job = self._jobs.get(job_id)
                if job is None:
                    return None
                left = deadline - time.monotonic()
                if job["status"] in ("done", "failed") or left <= 0:
                    return self._public(job)
                self._cond.wait(left)

    def queued(self) -> int:
        """Jobs waiting."""
        return self._queue.qsize()

    def close(self) -> None:
        """Stop the worker after the current job."""
        self._stop.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass

    @staticmethod
    def _public(job: dict) -> dict:
        return {k: v for k, v in job.items() if k not in ("models", "protocol")}

    def _trim(self) -> None:
        finished = [k for k, j in self._jobs.items() if j["status"] in ("done", "failed")]
        for k in finished[: max(0, len(finished) - self.keep_jobs)]:
            del self._jobs[k]

    def _runner(self, key: str) -> Any:
        with self._runners_lock:  # one runner per key even when two requests ask at once
            runner = self._runners.get(key)
            if runner is None:
                runner = self._runners[key] = self.runner_factory(key)
            return runner

    def _work(self) -> None:
        while not self._stop.is_set():
            job_id = self._queue.get()
            if job_id is None:
                return
            with self._cond:
                job = self._jobs.get(job_id)
                if job is None:
                    continue
                job["status"] = "running"
                job["started"] = time.time()
            deadline = time.monotonic() + self.job_timeout_s
            try:
                self.runs += 1
                result = run_timing_job(self._runner(job["platform"]), job["models"], job["protocol"],
                                        deadline=deadline)
                if time.monotonic() > deadline:
                    raise JobTimeout("the timing job ran past its time limit")
                update = {"status": "done", "result": _legacy_result(result) if job.get("legacy") else result}
            except JobTimeout:
                update = {"status": "failed", "kind": "timeout",
                          "error": f"job {job_id} exceeded the agent's job time limit of {self.job_timeout_s:g} s "
                                   "(job_timeout_s); send fewer models or fewer rounds/runs"}
            except CompactNetError as exc:
                update = {"status": "failed", "kind": type(exc).__name__, "error": str(exc)}
            except Exception as exc:  # a runtime crash must not kill the worker; reported to the client
                log.exception("job %s failed", job_id)
                update = {"status": "failed", "kind": "internal", "error": f"{type(exc).__name__}: {exc}"}
            with self._cond:
                job.update(update, finished=time.time())
                job.pop("models", None)
                self._cond.notify_all()


# ----- HTTP ---------------------------------------------------------------------------------------
def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_model(data: bytes, where: str) -> None:
    """Raise a 400 :class:`_BadRequest` when ``data`` is not a loadable, valid ONNX model."""
    try:
        proto = onnx.load_from_string(data)
        onnx.checker.check_model(proto)
    except Exception as exc:  # protobuf DecodeError, ValidationError, ...: all mean a corrupt model
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _BadRequest(400, "bad_model", f"{where} is not a valid ONNX model: {first}") from None
    if len(proto.graph.node) == 0:
        raise _BadRequest(400, "bad_model", f"{where} is not a valid ONNX model: the graph has no nodes")


class _Handler(BaseHTTPRequestHandler):
    server: "AgentServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # route to logging, not stderr
        log.info("%s %s", self.address_string(), fmt % args)

    def _send(self, status: int, body: dict, close: bool = False) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="compactnet-agent"')
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, kind: str, message: str, close: bool = False) -> None:
        self._send(status, {"error": message, "kind": kind}, close)

    def _authorised(self) -> bool:
        token = self.server.token
        if not token:
            return True
        got = self.headers.get("Authorization", "")
        if not got.startswith("Bearer "):
            self._error(401, "auth", "this agent requires a token: send 'Authorization: Bearer TOKEN'")
            return False
        if not hmac.compare_digest(got[7:].strip().encode(), token.encode()):
            self._error(403, "auth", "wrong token")
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if not self._authorised():
            return
        url = urllib.parse.urlsplit(self.path)
        agent = self.server.agent
        if url.path == f"{API}/info":
            self._send(200, {"platforms": agent.platforms(), "queued": agent.queued(),
                             "max_upload_bytes": self.server.max_upload_bytes, "job_timeout_s": agent.job_timeout_s})
            return
        if url.path.startswith(f"{API}/jobs/"):
            job_id = url.path[len(f"{API}/jobs/"):]
            qs = urllib.parse.parse_qs(url.query)
            try:
                wait = float(qs.get("wait", ["0"])[0])
            except ValueError:
                self._error(400, "bad_request", f"wait must be a number of seconds; got {qs['wait'][0]!r}")
                return
            job = agent.get(job_id, wait)
            if job is None:
                self._error(404, "unknown_job", f"no job {job_id!r} on this agent (restarted, or never submitted)")
            else:
                self._send(200, job)
            return
        self._error(404, "not_found", f"no endpoint {url.path}; try {API}/info")

    def do_POST(self) -> None:  # noqa: N802
        if not self._authorised():
            self._drain(int(self.headers.get("Content-Length") or 0))
            return
        url = urllib.parse.urlsplit(self.path)
        if url.path != f"{API}/jobs":
            self._error(404, "not_found", f"no endpoint {url.path}; POST jobs to {API}/jobs")
            return
        length = self.headers.get("Content-Length")
        if length is None:
            self._error(411, "bad_request", "Content-Length is required", close=True)
            return
        try:
            n = int(length)
        except ValueError:
            self._error(400, "bad_request", f"bad Content-Length {length!r}", close=True)
            return
        limit = self.server.max_upload_bytes
        if n > limit:
            self._drain(n)
            self._error(413, "too_large", f"upload of {n} bytes exceeds the agent's limit of {limit} bytes "
                                          "(max_upload_mb)", close=True)
            return
        body = self.rfile.read(n)
        try:
            job_id, platform, models, protocol, legacy = self._parse_job(body)
            status, new = self.server.agent.submit(job_id, platform, models, protocol, legacy)
        except _BadRequest as exc:
            self._error(exc.status, exc.kind, exc.message)
            return
        self._send(202 if new else 200, status)

    def _drain(self, n: int) -> None:
        """Read and discard a request body (up to 64 MiB) so the client sees the answer, not a reset."""
        left = min(max(0, n), 64 << 20)
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)
        if n > (64 << 20):
            self.close_connection = True

    def _parse_job(self, body: bytes) -> tuple[str, str, list[bytes], Protocol, bool]:
        try:
            d = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _BadRequest(400, "bad_request", f"the job is not JSON: {exc}") from None
        if not isinstance(d, dict):
            raise _BadRequest(400, "bad_request", "the job must be a JSON object")
        job_id = str(d.get("job_id") or "")
        if not job_id or len(job_id) > 100 or not all(c.isalnum() or c in "-_" for c in job_id):
            raise _BadRequest(400, "bad_request", f"job_id must be 1-100 letters, digits, '-' or '_'; got {job_id!r}")
        platform = str(d.get("platform", ""))
        try:
            Platform.parse(platform)
            wire = d.get("protocol")
            legacy = isinstance(wire, dict) and "estimator" not in wire  # a client older than the minimum rule
            protocol = Protocol.from_dict({**wire, "estimator": "median"} if legacy else wire)
        except (ConfigError, TypeError, ValueError) as exc:  # a malformed value is the client's error, never a crash
            raise _BadRequest(400, "bad_request", f"bad protocol or platform: {exc}") from None
        raw = d.get("models")
        if not isinstance(raw, list) or not raw:
            raise _BadRequest(400, "bad_request", "models must be a non-empty list of base64-encoded ONNX models")
        calls = protocol.calls_per_model * (len(raw) + 1)  # + the empty model timed alongside
        if calls > MAX_JOB_CALLS:
            raise _BadRequest(400, "too_many_calls",
                              f"the job asks for {calls:,} model calls ((warmup + rounds x runs) x models); this "
                              f"agent runs at most {MAX_JOB_CALLS:,} per job: send fewer models or rounds/runs")
        models = []
        for i, m in enumerate(raw):
            try:
                data = base64.b64decode(str(m), validate=True)
            except (binascii.Error, ValueError):
                raise _BadRequest(400, "bad_model", f"models[{i}] is not valid base64") from None
            validate_model(data, f"models[{i}]")
            models.append(data)
        try:
            self.server.agent._runner(platform)
        except (CompactNetError, ValueError, TypeError) as exc:
            raise _BadRequest(400, "bad_platform", f"this device cannot run {platform}: {exc}") from None
        return job_id, platform, models, protocol, legacy


class AgentServer(ThreadingHTTPServer):
    """The agent's HTTP server (one thread per connection; jobs run one at a time in :class:`Agent`).

    Attributes:
        agent: The job queue.
        token: Bearer token, or None.
        max_upload_bytes: Largest accepted request body.
    """

    daemon_threads = True

    def __init__(self, host: str, port: int, agent: Agent, token: str | None, max_upload_bytes: int):
        self.agent = agent
        self.token = token or None
        self.max_upload_bytes = int(max_upload_bytes)
        super().__init__((host, int(port)), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer is routine (it retries); log it instead of printing a traceback."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.info("client %s went away: %s", client_address, exc)
        else:
            log.exception("error while serving %s", client_address)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8765``."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> threading.Thread:
        """Serve in a daemon thread; return it."""
        t = threading.Thread(target=self.serve_forever, name="compactnet-agent-http", daemon=True)
        t.start()
        return t

    def stop(self, close_agent: bool = True) -> None:
        """Stop serving (and the worker, unless ``close_agent`` is False)."""
        self.shutdown()
        self.server_close()
        if close_agent:
            self.agent.close()


def serve_agent(host: str = "127.0.0.1", port: int = DEFAULT_PORT, token: str | None = None,
                max_upload_mb: float = 64.0, job_timeout_s: float = 600.0, block: bool = True,
                agent: Agent | None = None, runner_factory: Callable[[str], Any] | None = None) -> AgentServer:
    """Start the measurement agent.

    Args:
        host: Address to bind (default loopback). Any other address needs a token.
        port: TCP port (0: any free port; see :attr:`AgentServer.url`).
        token: Bearer token required on every request when set.
        max_upload_mb: Largest request body, MiB (larger: 413).
        job_timeout_s: Time limit of one job.
        block: Serve until interrupted (True) or return the started server (False).
        agent: Reuse an existing job queue (e.g. to restart the HTTP side).
        runner_factory: Platform key -> runner (default :func:`compactnet.runtimes.get_runner`).

    Raises:
        ConfigError: A non-loopback address without a token, or bad limits.
    """
    if not _is_loopback(host) and not token:
        raise ConfigError(f"--host {host} exposes the agent beyond this machine: set a token (--token, or "
                          "$COMPACTNET_AGENT_TOKEN) or bind 127.0.0.1")
    if float(max_upload_mb) <= 0:
        raise bad_value("max_upload_mb", "a positive size in MiB", max_upload_mb)
    agent = agent or Agent(runner_factory, job_timeout_s)
    server = AgentServer(host, port, agent, token, int(float(max_upload_mb) * (1 << 20)))
    log.info("compactnet agent on %s (token %s, uploads <= %g MiB, jobs <= %g s)", server.url,
             "required" if token else "not required", max_upload_mb, agent.job_timeout_s)
    if block:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    else:
        server.start()
    return server


# ----- client ---------------------------------------------------------------------------------------
_CONNECTION_ERRORS = (ConnectionError, socket.timeout, TimeoutError, urllib.error.URLError, OSError)


class AgentClient:
    """Talks to an agent; retries lost connections with the same job id.

    Args:
        url: The agent's base URL (``http://host:port``).
        token: Bearer token.
        retries: Connection attempts per request before giving up.
        backoff_s: First wait between attempts (doubles, at most 5 s).
        request_timeout_s: Socket timeout of one request.
        job_timeout_s: How long :meth:`wait` waits for a job overall.
    """

    def __init__(self, url: str, token: str | None = None, retries: int = 8, backoff_s: float = 0.2,
                 request_timeout_s: float = 60.0, job_timeout_s: float = 3600.0):
        self.url = url.rstrip("/")
        self.token = token
        self.retries = max(1, int(retries))
        self.backoff_s = float(backoff_s)
        self.request_timeout_s = float(request_timeout_s)
        self.job_timeout_s = float(job_timeout_s)
        self.reconnects = 0

    def _request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        wait = self.backoff_s
        last: Exception | None = None
        for attempt in range(self.retries):
            req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=self.request_timeout_s) as resp:
                    return resp.status, json.loads(resp.read() or b"{}")
            except urllib.error.HTTPError as exc:
                try:
                    payload = json.loads(exc.read() or b"{}")
                except json.JSONDecodeError:
                    payload = {"error": exc.reason}
                if exc.code == 503 and attempt + 1 < self.retries:
                    time.sleep(wait)
                    wait = min(5.0, wait * 2)
                    continue
                return exc.code, payload
            except _CONNECTION_ERRORS as exc:
                last = exc
                self.reconnects += 1
                log.info("agent %s: connection lost (%s); retry %d/%d", self.url, exc, attempt + 1, self.retries)
                time.sleep(wait)
                wait = min(5.0, wait * 2)
        raise AgentError(f"cannot reach the agent at {self.url} after {self.retries} attempts: {last}", 0,
                         "unreachable")

    @staticmethod
    def _raise(status: int, payload: dict) -> None:
        raise AgentError(f"agent answered {status}: {payload.get('error', payload)}", status, payload.get("kind", ""))

    def info(self) -> dict:
        """``GET /v1/info``."""
        status, payload = self._request("GET", f"{API}/info")
        if status != 200:
            self._raise(status, payload)
        return payload

    def submit(self, models: Sequence[bytes], platform: str, protocol: Protocol, job_id: str | None = None) -> str:
        """Submit a job (idempotent for a given ``job_id``); return its id."""
        job_id = job_id or uuid.uuid4().hex
        wire = {k: v for k, v in protocol.to_dict().items() if k != "anchors"}  # client-side only; older agents
        body = {"job_id": job_id, "platform": platform, "protocol": wire,  # reject keys they do not know
                "models": [base64.b64encode(m).decode() for m in models]}
        status, payload = self._request("POST", f"{API}/jobs", body)
        if status == 400 and "estimator" in str(payload.get("error", "")):
            # an agent older than the minimum rule: it times by the median rule, and its results say so
            # (they arrive as median_ms and read as estimator "median")
            log.warning("the agent at %s predates the minimum rule: its figures are medians of round medians "
                        "(update the agent to measure by the minimum)", self.url)
            body["protocol"] = {k: v for k, v in wire.items() if k != "estimator"}
            status, payload = self._request("POST", f"{API}/jobs", body)
        if status not in (200, 202):
            self._raise(status, payload)
        return job_id

    def wait(self, job_id: str, resubmit: Callable[[], None] | None = None) -> dict:
        """Wait for a job to finish and return its result.

        Raises:
            AgentError: The job failed (``kind`` ``timeout`` for the agent's time limit) or did not
                finish within ``job_timeout_s``.
        """
        end = time.monotonic() + self.job_timeout_s
        while time.monotonic() < end:
            wait = min(MAX_WAIT_S, max(0.1, end - time.monotonic()), self.request_timeout_s / 2)
            status, payload = self._request("GET", f"{API}/jobs/{job_id}?wait={wait:.1f}")
            if status == 404 and resubmit is not None:  # the agent restarted and lost the job: run it again
                log.warning("agent %s lost job %s; submitting it again", self.url, job_id)
                resubmit()
                continue
            if status != 200:
                self._raise(status, payload)
            if payload.get("status") == "done":
                return payload["result"]
            if payload.get("status") == "failed":
                kind = payload.get("kind", "")
                cls = AgentBusyError if kind == "BusyError" else AgentError
                raise cls(f"agent job failed: {payload.get('error')}", 200, kind)
        raise AgentError(f"job {job_id} did not finish within {self.job_timeout_s:g} s", 0, "timeout")

    def run(self, models: Sequence[bytes], platform: str, protocol: Protocol) -> dict:
        """Submit and wait; a lost connection is retried with the same job id."""
        job_id = uuid.uuid4().hex
        self.submit(models, platform, protocol, job_id)
        return self.wait(job_id, resubmit=lambda: self.submit(models, platform, protocol, job_id))


class RemoteProfiler(Profiler):
    """A :class:`Profiler` whose runner half runs on an agent.

    Args:
        url: The agent's base URL.
        platform: Platform key to run on the device.
        token: Bearer token.
        protocol: Timing protocol (sent with every job; the device checks its own load).
        weight_seed: Seed of the layers' random weights.
        client: An :class:`AgentClient` (built from url/token otherwise).

    The agent's ``/v1/info`` lists its runtimes and providers (by their default key); the precision
    and threads of ``platform`` need not be listed (``ort-cpu-fp16-t2`` is accepted when the agent
    lists ``ort-cpu-fp32-t1``): the agent validates the full key when it gets the first job.

    Raises:
        ConfigError: The agent lists no platform of that runtime and provider.
        AgentError: The agent cannot be reached.
    """

    def __init__(self, url: str, platform: str | Platform, token: str | None = None, protocol: Protocol | None = None,
                 weight_seed: int = 0, client: AgentClient | None = None):
        self.client = client or AgentClient(url, token)
        want = platform if isinstance(platform, Platform) else Platform.parse(platform, hardware="")
        listed = [Platform.from_dict(p) for p in self.client.info()["platforms"]]
        exact = [p for p in listed if p.key == want.key]
        match = exact or [p for p in listed if (p.runtime, p.provider) == (want.runtime, want.provider)]
        if not match and listed:
            raise bad_value("--platform", "a runtime and provider the agent lists: " + ", ".join(p.key for p in listed),
                            want.key)
        plat = Platform(want.runtime, want.provider, want.precision, want.threads,
                        match[0].hardware if match else "", match[0].runtime_version if match else "")
        super().__init__(plat, protocol)
        self.weight_seed = weight_seed

    def _run(self, models: list[bytes], protocol: Protocol) -> tuple[list[Latency], float, float]:
        res = self.client.run(models, self.platform.key, protocol)
        self.platform = Platform.from_dict(res["platform"])  # the device's own hardware id and version
        return timing_result(res)

    def time_layers(self, layers: Sequence[LayerSpec], protocol: Protocol) -> tuple[list[Latency], float, float]:
        return self._run([layer_onnx(l, self.weight_seed) for l in layers],
                         rotation_protocol(layers, protocol, self.platform.precision))

    def time_networks(self, networks: Sequence[Sequence[LayerSpec]], protocol: Protocol
                      ) -> tuple[list[Latency], float, float]:
        return self._run([network_onnx(n, self.weight_seed) for n in networks], protocol.replace(context="isolated"))
