"""Zoo test helpers: synthetic entries, a zoo folder on disk, loopback servers."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from compactnet.zoo.index import ZooIndex, save_index
from zoo_helpers import make_entry


@pytest.fixture
def zoo_dir(tmp_path):
    """A zoo folder with two entries whose files are plain bytes (downloads never parse them)."""
    root = tmp_path / "zoo"
    entries = []
    for i, tag in enumerate(("base", "s1p5x")):
        name = f"resnet20.cifar10.ort-cpu-fp32-t1.{tag}"
        onnx, weights = bytes([i]) * 300_000 + b"onnx", bytes([i + 7]) * 200_000 + b"st"
        e = make_entry(name, onnx, weights)
        for ref, data in ((e.onnx, onnx), (e.weights, weights)):
            (root / ref.path).parent.mkdir(parents=True, exist_ok=True)
            (root / ref.path).write_bytes(data)
        entries.append(e)
    save_index(ZooIndex(tuple(entries)), root / "index.json")
    return root


class _CuttingHandler(BaseHTTPRequestHandler):
    """Serves files of ``server.root``; the first full GET of each file is cut after half its bytes."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        path = self.server.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        rng = self.headers.get("Range")
        self.server.ranges.append(rng)
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            body = data[start:]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not rng and path.suffix != ".json" and path.name not in self.server.cut:
            self.server.cut.add(path.name)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def cutting_server(zoo_dir):
    """A loopback server that drops the connection half-way through the first download of each file."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CuttingHandler)
    server.root, server.ranges, server.cut = Path(zoo_dir), [], set()
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def zoo_server(zoo_dir):
    """``compactnet.zoo.serve`` on loopback (port 0) serving ``zoo_dir``."""
    from compactnet.zoo.serve import serve_in_thread

    server, url = serve_in_thread(zoo_dir)
    yield url
    server.shutdown()
    server.server_close()
