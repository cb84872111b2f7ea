"""``compactnet report`` pages opened in a real browser: Debian's headless Chromium.

The page is served from 127.0.0.1 under a Content-Security-Policy that allows nothing but inline
styles and ``data:`` images and has the browser report every violation back to the server, so any
request the page tries beyond itself (a font, a script, an image from a CDN) is seen -- and
Chromium's own background traffic is not mistaken for the page's. The rendered DOM must hold every figure as a decoded image, and the screenshot must
show something. Skipped, with the reason, where Chromium is not installed (``apt-get install
chromium``; ``.ci/run`` installs it when it can).
"""

from __future__ import annotations

import base64
import functools
import http.server
import re
import shutil
import subprocess
import threading

import pytest

from compactnet.report import write_report
from tests.test_report import _trajectory, search_dir, store_dir  # noqa: F401 -- fixtures used below

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (Debian: apt-get install "
                                                          "chromium); the browser check of the HTML report is skipped")
PNG = b"\x89PNG\r\n\x1a\n"


#: What the report may load: nothing but its own inline styles and data: images. A violation is
#: blocked *and* reported by the browser to the serving origin (/csp-report), whatever its target.
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
       "report-uri /csp-report")


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the report with :data:`CSP` and records the violation reports posted back."""

    reports: list = []

    def end_headers(self):
        if self.path.endswith(".html"):
            self.send_header("Content-Security-Policy", CSP)
        super().end_headers()

    def do_POST(self):  # noqa: N802 -- http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        if self.path.startswith("/csp-report"):
            self.reports.append(body.decode("utf-8", "replace"))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):  # no request lines on the test's stderr
        pass


@pytest.fixture
def served():
    """``serve(path) -> URL`` of a file served from 127.0.0.1 under :data:`CSP`; reports in ``serve.reports``."""
    servers = []
    reports: list = []

    def serve(path):
        handler = functools.partial(type("H", (_Handler,), {"reports": reports}), directory=str(path.parent))
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/{path.name}"

    serve.reports = reports
    yield serve
    for s in servers:
        s.shutdown()
        s.server_close()


def _chromium(url: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-default-apps", "--no-default-browser-check", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=5000", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _check_page(path, n_figures: int, served, tmp_path) -> None:
    url = served(path)
    dom = _chromium(url, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', dom.stdout)
    assert dom.stdout.count("<img") == len(imgs) == n_figures
    assert all(base64.b64decode(i).startswith(PNG) for i in imgs)
    shot = tmp_path / f"{path.stem}.png"
    res = _chromium(url, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(PNG) and len(data) > 20_000  # a blank 1280x2000 page compresses to a few kB
    assert served.reports == []  # the page asked for nothing beyond itself


def test_the_check_sees_an_external_request(served, tmp_path):
    page = tmp_path / "leaky.html"
    page.write_text('<html><body><img src="http://example.invalid/logo.png"><p>x</p></body></html>')
    assert _chromium(served(page), tmp_path, "--dump-dom").returncode == 0
    assert served.reports and "example.invalid" in served.reports[0]


def test_search_report_renders_its_figures_without_external_requests(search_dir, served, tmp_path):  # noqa: F811
    _check_page(write_report(search_dir), 4, served, tmp_path)


def test_profile_report_renders_its_figures_without_external_requests(store_dir, served, tmp_path):  # noqa: F811
    _check_page(write_report(store_dir), 5, served, tmp_path)
