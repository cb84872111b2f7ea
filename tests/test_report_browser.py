"""``compactnet report`` pages opened in a real browser: Debian's headless Chromium.

The page is served from 127.0.0.1 and Chromium is pointed at a recording proxy for everything
else, so any request the page makes beyond its own URL (a font, a script, an image from a CDN)
is seen. The rendered DOM must hold every figure as a decoded image, and the screenshot must
show something. Skipped, with the reason, where Chromium is not installed (``apt-get install
chromium``; ``.ci/run`` installs it when it can).
"""

from __future__ import annotations

import base64
import functools
import http.server
import re
import shutil
import socketserver
import subprocess
import threading

import pytest

from compactnet.report import write_report
from tests.test_report import _trajectory, search_dir, store_dir  # noqa: F401 -- fixtures used below

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (Debian: apt-get install "
                                                          "chromium); the browser check of the HTML report is skipped")
PNG = b"\x89PNG\r\n\x1a\n"


class _Recorder(socketserver.ThreadingTCPServer):
    """A 'proxy' that accepts connections and records their first line (never forwards)."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self):
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), _RecordHandler)


class _RecordHandler(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline(2048).decode("latin-1").strip()
        if line:
            self.server.requests.append(line)
        self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request lines on the test's stderr
        pass


@pytest.fixture
def served(tmp_path):
    """``serve(path) -> URL`` of a file served from 127.0.0.1; the recording proxy as ``serve.proxy``."""
    servers = []

    def serve(path):
        handler = functools.partial(_Quiet, directory=str(path.parent))
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/{path.name}"

    proxy = _Recorder()
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    servers.append(proxy)
    serve.proxy = proxy
    yield serve
    for s in servers:
        s.shutdown()
        s.server_close()


def _chromium(url: str, proxy_port: int, tmp_path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-default-apps", "--no-default-browser-check", f"--user-data-dir={tmp_path / 'profile'}",
           f"--proxy-server=http://127.0.0.1:{proxy_port}", "--proxy-bypass-list=<-loopback>",
           "--virtual-time-budget=5000", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _check_page(path, n_figures: int, served, tmp_path) -> None:
    url = served(path)
    port = served.proxy.server_address[1]
    dom = _chromium(url, port, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    imgs = re.findall(r'<img[^>]+src="data:image/png;base64,([A-Za-z0-9+/=]+)"', dom.stdout)
    assert len(imgs) == n_figures and all(base64.b64decode(i).startswith(PNG) for i in imgs)
    shot = tmp_path / f"{path.stem}.png"
    res = _chromium(url, port, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(PNG) and len(data) > 20_000  # a blank 1280x2000 page compresses to a few kB
    # everything the page loaded came from its own origin: nothing reached the proxy
    assert served.proxy.requests == [], served.proxy.requests


def test_search_report_renders_its_figures_without_external_requests(search_dir, served, tmp_path):  # noqa: F811
    _check_page(write_report(search_dir), 4, served, tmp_path)


def test_profile_report_renders_its_figures_without_external_requests(store_dir, served, tmp_path):  # noqa: F811
    _check_page(write_report(store_dir), 5, served, tmp_path)
