"""Verified, resumable downloads from loopback HTTP, file:// URLs and plain paths."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from compactnet.zoo.download import check_relative_path, fetch_index, pull, resolve_source, zoo_cache_dir
from compactnet.zoo.entry import hardware_slug
from compactnet.zoo.errors import DownloadError, IntegrityError, OfflineError, UnknownEntryError, UnsafePathError
from compactnet.zoo.index import load_index, save_index
from zoo_helpers import HW, sha

BASE = "resnet20.cifar10.ort-cpu-fp32-t1.base"
TRIM = "resnet20.cifar10.ort-cpu-fp32-t1.s1p5x"
#: The cache folders of the entries (name, then hardware: one name may be published for two hardwares).
TRIM_DIR = f"{TRIM}/{hardware_slug(HW)}"


def _files(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())


def _expected(zoo_dir: Path, name: str) -> tuple[bytes, bytes]:
    e = load_index(zoo_dir / "index.json").get(name)
    return (zoo_dir / e.onnx.path).read_bytes(), (zoo_dir / e.weights.path).read_bytes()


@pytest.mark.parametrize("how", ["http", "file-url", "path"])
def test_good_pull(how, zoo_dir, zoo_server, tmp_path):
    index_url = {"http": zoo_server + "index.json", "file-url": (zoo_dir / "index.json").as_uri(),
                 "path": str(zoo_dir / "index.json")}[how]
    cache = tmp_path / "cache"
    files = pull(TRIM, index_url=index_url, cache_dir=cache, progress=False)
    onnx, weights = _expected(zoo_dir, TRIM)
    assert files.onnx.read_bytes() == onnx and files.weights.read_bytes() == weights
    assert files.onnx.parent == cache.resolve() / TRIM_DIR
    assert json.loads((files.directory / "entry.json").read_text())["name"] == TRIM
    assert json.loads(files.channels.read_text()) == {"model": "resnet20", "stages": [4, 8, 8], "inner": None,
                                                      "num_classes": 10}
    assert not list(cache.rglob("*.partial")) and not list(cache.rglob("*.tmp"))
    # a second pull is a cache hit and returns the same paths
    assert pull(TRIM, index_url=index_url, cache_dir=cache, progress=False).onnx == files.onnx


def test_default_cache_is_compactnet_home(zoo_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("COMPACTNET_HOME", str(tmp_path / "home"))
    assert zoo_cache_dir() == tmp_path / "home" / "zoo"
    files = pull(BASE, index_url=str(zoo_dir / "index.json"), progress=False)
    assert files.onnx.is_relative_to((tmp_path / "home" / "zoo").resolve())
    monkeypatch.delenv("COMPACTNET_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert zoo_cache_dir() == tmp_path / "xdg" / "compactnet" / "zoo"


def _corrupt_index(zoo_dir: Path, name: str, **changes) -> None:
    idx = load_index(zoo_dir / "index.json")
    d = idx.get(name).to_dict()
    for key, value in changes.items():
        role, field = key.split("__")
        d[role][field] = value
    from compactnet.zoo.entry import ZooEntry

    save_index(idx.add(ZooEntry.from_dict(d), replace_existing=True), zoo_dir / "index.json")


def test_hash_mismatch_refused(zoo_dir, zoo_server, tmp_path):
    _corrupt_index(zoo_dir, TRIM, weights__sha256=sha(b"something else"))
    cache = tmp_path / "cache"
    with pytest.raises(IntegrityError, match="SHA-256 mismatch"):
        pull(TRIM, index_url=zoo_server + "index.json", cache_dir=cache, progress=False)
    assert not (cache / TRIM_DIR / "weights.safetensors").exists()
    assert not list(cache.rglob("*.partial"))


def test_truncated_file_refused(zoo_dir, zoo_server, tmp_path):
    e = load_index(zoo_dir / "index.json").get(TRIM)
    path = zoo_dir / e.onnx.path
    path.write_bytes(path.read_bytes()[:1000])  # the served file is shorter than the index says
    cache = tmp_path / "cache"
    with pytest.raises(IntegrityError, match="truncated"):
        pull(TRIM, index_url=zoo_server + "index.json", cache_dir=cache, progress=False)
    assert not (cache / TRIM_DIR / "model.onnx").exists() and not list(cache.rglob("*.partial"))
    with pytest.raises(IntegrityError, match="truncated"):
        pull(TRIM, index_url=str(zoo_dir / "index.json"), cache_dir=cache, progress=False)
    assert not (cache / TRIM_DIR / "model.onnx").exists() and not list(cache.rglob("*.partial"))


def test_oversized_file_refused(zoo_dir, tmp_path):
    e = load_index(zoo_dir / "index.json").get(TRIM)
    with open(zoo_dir / e.weights.path, "ab") as fh:
        fh.write(b"extra")
    cache = tmp_path / "cache"
    with pytest.raises(IntegrityError, match="larger"):
        pull(TRIM, index_url=(zoo_dir / "index.json").as_uri(), cache_dir=cache, progress=False)
    assert not (cache / TRIM_DIR / "weights.safetensors").exists() and not list(cache.rglob("*.partial"))


@pytest.mark.parametrize("bad", ["../../outside.onnx", "/etc/passwd", "models/../../x.onnx",
                                 "https://evil.example/x.onnx", "//evil.example/x.onnx", "C:/x.onnx",
                                 "models\\..\\x.onnx", "%2e%2e/x.onnx", "models/", ""])
def test_path_traversal_refused(bad, zoo_dir, zoo_server, tmp_path):
    with pytest.raises(UnsafePathError):
        check_relative_path(bad)
    _corrupt_index(zoo_dir, TRIM, onnx__path=bad)
    cache = tmp_path / "cache"
    for url in (zoo_server + "index.json", str(zoo_dir / "index.json")):
        with pytest.raises(UnsafePathError, match="refusing"):
            pull(TRIM, index_url=url, cache_dir=cache, progress=False)
    # refused before anything was fetched: not even the (valid) weights file is in the cache
    assert not (cache / TRIM_DIR).exists()
    assert not (tmp_path / "outside.onnx").exists()


def test_resolve_source_stays_under_index():
    assert resolve_source("https://h.example/zoo/index.json", "models/a b/model.onnx") == \
        "https://h.example/zoo/models/a%20b/model.onnx"
    assert resolve_source("/srv/zoo/index.json", "files/x.onnx") == str(Path("/srv/zoo/files/x.onnx").resolve())


def test_resume_after_interruption(cutting_server, zoo_dir, tmp_path):
    server, url = cutting_server
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="interrupted.*pull again to resume"):
        pull(TRIM, index_url=url + "index.json", cache_dir=cache, progress=False)
    partials = list(cache.rglob("*.partial"))
    assert len(partials) == 1 and 0 < partials[0].stat().st_size
    assert not (cache / TRIM_DIR / "model.onnx").exists()
    half = partials[0].stat().st_size
    # the second attempt continues with a Range request and completes the file
    with pytest.raises(DownloadError):  # the weights' first transfer is cut in its turn
        pull(TRIM, index_url=url + "index.json", cache_dir=cache, progress=False)
    assert f"bytes={half}-" in server.ranges
    files = pull(TRIM, index_url=url + "index.json", cache_dir=cache, progress=False)
    onnx, weights = _expected(zoo_dir, TRIM)
    assert files.onnx.read_bytes() == onnx and files.weights.read_bytes() == weights
    assert not list(cache.rglob("*.partial"))
    assert sum(1 for r in server.ranges if r) == 2


def test_resume_with_stale_partial_restarts(zoo_dir, tmp_path):
    """A partial file whose bytes are wrong fails the hash check after resuming, then downloads afresh."""
    cache = tmp_path / "cache"
    e = load_index(zoo_dir / "index.json").get(TRIM)
    dest = cache / TRIM_DIR / "model.onnx"
    dest.parent.mkdir(parents=True)
    Path(f"{dest}.{e.onnx.sha256[:16]}.partial").write_bytes(b"\xff" * 5000)
    files = pull(TRIM, index_url=str(zoo_dir / "index.json"), cache_dir=cache, progress=False)
    assert files.onnx.read_bytes() == _expected(zoo_dir, TRIM)[0]


def test_resume_against_server_without_ranges(zoo_dir, tmp_path):
    """A server that ignores Range answers 200: the partial file is restarted, not appended to."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(zoo_dir)))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        cache = tmp_path / "cache"
        e = load_index(zoo_dir / "index.json").get(TRIM)
        onnx = _expected(zoo_dir, TRIM)[0]
        dest = cache / TRIM_DIR / "model.onnx"
        dest.parent.mkdir(parents=True)
        Path(f"{dest}.{e.onnx.sha256[:16]}.partial").write_bytes(onnx[:1234])
        files = pull(TRIM, index_url=f"http://127.0.0.1:{server.server_address[1]}/index.json", cache_dir=cache,
                     progress=False)
        assert files.onnx.read_bytes() == onnx
    finally:
        server.shutdown()
        server.server_close()


def test_corrupt_cached_file_is_replaced(zoo_dir, tmp_path):
    cache = tmp_path / "cache"
    files = pull(BASE, index_url=str(zoo_dir / "index.json"), cache_dir=cache, progress=False)
    files.weights.write_bytes(b"tampered")
    again = pull(BASE, index_url=str(zoo_dir / "index.json"), cache_dir=cache, progress=False)
    assert again.weights.read_bytes() == _expected(zoo_dir, BASE)[1]


def test_offline_with_and_without_cache(zoo_dir, tmp_path):
    from compactnet.zoo.serve import serve_in_thread

    cache = tmp_path / "cache"
    server, url = serve_in_thread(zoo_dir)
    try:
        with pytest.raises(OfflineError, match="no cached copy of the zoo index"):
            pull(BASE, index_url=url + "index.json", cache_dir=cache, offline=True, progress=False)
        pull(BASE, index_url=url + "index.json", cache_dir=cache, progress=False)
    finally:
        server.shutdown()
        server.server_close()
    # the server is gone: offline mode reads the cached index copy and the cached files
    files = pull(BASE, index_url=url + "index.json", cache_dir=cache, offline=True, progress=False)
    assert files.onnx.read_bytes() == _expected(zoo_dir, BASE)[0]
    with pytest.raises(OfflineError, match="not in the zoo cache"):
        pull(TRIM, index_url=url + "index.json", cache_dir=cache, offline=True, progress=False)
    with pytest.raises(DownloadError, match="cannot fetch zoo index"):
        pull(BASE, index_url=url + "index.json", cache_dir=cache, progress=False)
    # a local index works offline too, files still only from the cache
    with pytest.raises(OfflineError):
        pull(TRIM, index_url=str(zoo_dir / "index.json"), cache_dir=cache, offline=True, progress=False)
    assert not (cache / TRIM_DIR).exists()


def test_unknown_name_suggests(zoo_dir, tmp_path):
    with pytest.raises(UnknownEntryError, match="did you mean .*s1p5x"):
        pull("resnet20.cifar10.ort-cpu-fp32-t1.s1p4x", index_url=str(zoo_dir / "index.json"),
             cache_dir=tmp_path, progress=False)


def test_bad_index_locations(tmp_path):
    from compactnet.errors import ConfigError
    from compactnet.zoo.errors import IndexFormatError

    with pytest.raises(ConfigError, match="https://"):
        fetch_index("ftp://example.org/index.json")
    with pytest.raises(IndexFormatError, match="does not exist"):
        fetch_index(tmp_path / "none.json")
    with pytest.raises(DownloadError, match="HTTP 404"):
        from compactnet.zoo.serve import serve_in_thread

        server, url = serve_in_thread(tmp_path)
        try:
            fetch_index(url + "index.json", cache_dir=tmp_path / "c")
        finally:
            server.shutdown()
            server.server_close()


def test_serve_supports_ranges(zoo_dir, zoo_server):
    e = load_index(zoo_dir / "index.json").get(BASE)
    data = (zoo_dir / e.onnx.path).read_bytes()
    for header, expected in (("bytes=100-", data[100:]), ("bytes=10-19", data[10:20]), ("bytes=-5", data[-5:])):
        req = urllib.request.Request(zoo_server + e.onnx.path, headers={"Range": header})
        with urllib.request.urlopen(req) as resp:
            assert resp.status == 206 and resp.read() == expected
            assert resp.headers["Content-Range"].endswith(f"/{len(data)}")
    with urllib.request.urlopen(zoo_server + e.onnx.path) as resp:
        assert resp.status == 200 and resp.read() == data and resp.headers["Accept-Ranges"] == "bytes"
    req = urllib.request.Request(zoo_server + e.onnx.path, headers={"Range": f"bytes={len(data) + 5}-"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    assert err.value.code == 416
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(zoo_server + "../../etc/passwd")


def test_serve_binds_loopback_by_default(zoo_dir):
    import inspect

    from compactnet.zoo.serve import make_server, serve

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    server = make_server(zoo_dir, port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()
