"""Serve a zoo folder over HTTP (static files, with byte ranges so interrupted pulls resume).

A zoo folder is ``index.json``, ``index.html`` and the files the index names; any static file
server can host it. :func:`serve` is the built-in one, bound to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import threading
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from compactnet.errors import bad_value

log = logging.getLogger(__name__)

__all__ = ["RangeRequestHandler", "make_server", "serve", "serve_in_thread"]

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeRequestHandler(SimpleHTTPRequestHandler):
    """``SimpleHTTPRequestHandler`` plus single byte-range requests (``Range: bytes=a-b``, ``a-``, ``-n``)."""

    protocol_version = "HTTP/1.1"
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".onnx": "application/octet-stream",
                      ".safetensors": "application/octet-stream", ".json": "application/json"}

    def send_head(self):  # noqa: D401 - http.server API
        self._range = None
        header = self.headers.get("Range")
        path = self.translate_path(self.path)
        if header is None or os.path.isdir(path):
            return super().send_head()
        m = _RANGE_RE.match(header.strip())
        if not m or (not m[1] and not m[2]):
            return super().send_head()  # unsupported (multi-range) request: send the whole file
        try:
            fh = open(path, "rb")
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        size = os.fstat(fh.fileno()).st_size
        if m[1]:
            first = int(m[1])
            last = min(int(m[2]), size - 1) if m[2] else size - 1
        else:
            first, last = max(0, size - int(m[2])), size - 1
        if first >= size or last < first:
            fh.close()
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        self._range = (first, last)
        self.send_response(HTTPStatus.PARTIAL_CONTENT)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Length", str(last - first + 1))
        self.end_headers()
        fh.seek(first)
        return fh

    def end_headers(self) -> None:
        if not getattr(self, "_range", None):
            self.send_header("Accept-Ranges", "bytes")
        super().end_headers()

    def copyfile(self, source, outputfile) -> None:  # noqa: D401 - http.server API
        rng = getattr(self, "_range", None)
        if rng is None:
            return super().copyfile(source, outputfile)
        remaining = rng[1] - rng[0] + 1
        while remaining > 0:
            chunk = source.read(min(1 << 16, remaining))
            if not chunk:
                break
            outputfile.write(chunk)
            remaining -= len(chunk)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server API
        log.info("%s - %s", self.address_string(), format % args)


def make_server(directory: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A threading HTTP server of ``directory`` (not started); ``port=0`` picks a free port.

    Raises:
        ConfigError: ``directory`` is not a folder.
    """
    root = Path(directory)
    if not root.is_dir():
        raise bad_value("directory", "an existing zoo folder (holding index.json)", str(directory))
    if not (root / "index.json").is_file():
        log.warning("%s has no index.json: `compactnet zoo pull --index` will find no entries there", root)
    server = ThreadingHTTPServer((host, int(port)), partial(RangeRequestHandler, directory=str(root)))
    server.daemon_threads = True
    return server


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(directory: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve a zoo folder until interrupted (Ctrl-C).

    Args:
        directory: The zoo folder.
        host: Address to bind; 127.0.0.1 by default (pass ``0.0.0.0`` to share on the network).
        port: TCP port (0: any free port).
    """
    server = make_server(directory, host, port)
    if not _is_loopback(host):
        log.warning("serving %s on %s: reachable from other machines", directory, host)
    bound_host, bound_port = server.server_address[:2]
    log.info("serving zoo %s at http://%s:%d/index.json (Ctrl-C to stop)", directory, bound_host, bound_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopped")
    finally:
        server.server_close()


def serve_in_thread(directory: str | os.PathLike, host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Start a server in a daemon thread; returns (server, base URL). Call ``server.shutdown()`` to stop."""
    server = make_server(directory, host, port)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                     name="zoo-serve").start()
    bound_host, bound_port = server.server_address[:2]
    return server, f"http://{bound_host}:{bound_port}/"
