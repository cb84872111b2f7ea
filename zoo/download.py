"""Verified, resumable downloads of zoo entries into a local cache (torch.hub style).

Only the user's explicit call (``compactnet zoo pull NAME`` or :func:`pull` / :func:`load`) downloads
anything. Files are streamed to a ``.partial`` file inside the cache folder, checked for size and
SHA-256 against the index, and moved into place with one atomic rename; a hash mismatch, a
truncated or oversized file, or an index naming a path outside its folder or the cache is refused
and leaves nothing at the destination. An interrupted transfer keeps its ``.partial`` file (named
after the expected hash, so a stale one is never mixed with new content) and the next pull
resumes it with an HTTP ``Range`` request (or a seek, for ``file://`` and plain paths). Only ONNX
and safetensors files are fetched; nothing downloaded is ever unpickled.

Index locations: ``https://`` and ``http://`` URLs, ``file://`` URLs and plain paths. The default
index is ``$COMPACTNET_ZOO_INDEX`` if set, else the repository's own ``zoo/index.json`` (next to
this module). A hosted zoo is any static folder holding ``index.json`` and the files it names, e.g.
``https://HOST/PATH/index.json`` or
``https://raw.githubusercontent.com/OWNER/compactnet/main/zoo/index.json``.

Cache: ``$COMPACTNET_HOME/zoo`` if set, else ``$XDG_CACHE_HOME/compactnet/zoo`` (``~/.cache``).
Layout: ``<cache>/<entry name>/<file name>`` plus ``<cache>/indexes/<url hash>.json`` (remote
index copies for offline use).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Iterator
from urllib.parse import quote, urljoin, urlsplit
from urllib.request import url2pathname

from compactnet.errors import bad_value
from compactnet.zoo.entry import FileRef, ZooEntry
from compactnet.zoo.errors import DownloadError, IndexFormatError, IntegrityError, OfflineError, UnsafePathError
from compactnet.zoo.index import ZooIndex, parse_index

log = logging.getLogger(__name__)

__all__ = ["ENV_INDEX", "ENV_HOME", "REPO_INDEX", "INDEX_URL_FORM", "ZooFiles", "default_index_url",
           "zoo_cache_dir", "fetch_index", "pull", "load", "download_file", "check_relative_path",
           "resolve_source", "cache_path", "sha256_file"]

#: Environment variable naming the default index (URL or path).
ENV_INDEX = "COMPACTNET_ZOO_INDEX"
#: Environment variable of CompactNet's home folder (the cache goes to ``$COMPACTNET_HOME/zoo``).
ENV_HOME = "COMPACTNET_HOME"
#: The repository's own index, next to this module.
REPO_INDEX = Path(__file__).resolve().parent / "index.json"
#: Documented form of a hosted index URL.
INDEX_URL_FORM = "https://HOST/PATH/index.json (e.g. https://raw.githubusercontent.com/OWNER/compactnet/main/zoo/index.json)"

_CHUNK = 1 << 16
_MAX_INDEX_BYTES = 32 << 20
_USER_AGENT = "compactnet-zoo/1"


# ----- locations --------------------------------------------------------------------------
def default_index_url() -> str:
    """``$COMPACTNET_ZOO_INDEX``, else the repository's ``zoo/index.json``."""
    return os.environ.get(ENV_INDEX) or str(REPO_INDEX)


def zoo_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The zoo cache: ``cache_dir``, ``$COMPACTNET_HOME/zoo``, or the user cache dir."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    home = os.environ.get(ENV_HOME)
    if home:
        return Path(home).expanduser() / "zoo"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "compactnet" / "zoo"


def _kind(location: str) -> str:
    """``remote`` (http/https) or ``local`` (file:// or path)."""
    parts = urlsplit(str(location))
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return "remote"
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise bad_value("index_url", "a file:// URL on this machine (file:///path/index.json)", location)
        return "local"
    if scheme == "" or (len(scheme) == 1 and os.name == "nt"):
        return "local"
    raise bad_value("index_url", "an https://, http:// or file:// URL or a path", location)


def _local_path(location: str) -> Path:
    parts = urlsplit(str(location))
    if parts.scheme.lower() == "file":
        return Path(url2pathname(parts.path))
    return Path(location).expanduser()


def check_relative_path(relpath: str) -> PurePosixPath:
    """Check that an index file path stays inside its folder.

    Refused: empty paths, absolute paths, ``..`` components, URLs (``scheme:`` or ``//host``),
    backslashes, drive letters, percent-escapes, query and fragment characters, control characters.

    Raises:
        UnsafePathError: The path could escape the zoo folder or the cache.
    """
    text = str(relpath)
    reason = None
    if not text or text.strip() != text:
        reason = "it is empty or has surrounding spaces"
    elif any(ord(c) < 32 for c in text) or any(c in text for c in "\\%?#"):
        reason = "it holds a backslash, '%', '?', '#' or a control character"
    elif text.startswith("/") or urlsplit(text).scheme or urlsplit(text).netloc or ":" in text:
        reason = "it is absolute or a URL"
    else:
        parts = PurePosixPath(text).parts
        if any(p == ".." for p in parts):
            reason = "it climbs out with '..'"
        elif not parts or parts[-1] in (".", "") or text.endswith("/"):
            reason = "it names no file"
    if reason:
        raise UnsafePathError(f"refusing zoo index file path {text!r}: {reason}; file paths must be "
                              "relative to the index's folder, like models/NAME/model.onnx")
    return PurePosixPath(text)


def resolve_source(index_location: str, relpath: str) -> str:
    """URL or local path of an index's file, checked to stay under the index's folder.

    Raises:
        UnsafePathError: The path escapes the index's folder.
    """
    rel = check_relative_path(relpath)
    if _kind(index_location) == "remote":
        base = index_location.split("?", 1)[0].split("#", 1)[0]
        base_dir = base.rsplit("/", 1)[0] + "/"
        url = urljoin(base_dir, quote(str(rel)))
        if not url.startswith(base_dir):
            raise UnsafePathError(f"refusing zoo index file path {relpath!r}: it resolves to {url}, outside {base_dir}")
        return url
    root = _local_path(index_location).expanduser().resolve().parent
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise UnsafePathError(f"refusing zoo index file path {relpath!r}: it resolves to {path}, outside {root}")
    return str(path)


def cache_path(cache_root: Path, entry_name: str, relpath: str) -> Path:
    """Destination of an entry's file in the cache: ``<cache>/<entry folder>/<file name>``.

    ``entry_name`` is the entry's :attr:`~compactnet.zoo.entry.ZooEntry.folder` (name and hardware).

    Raises:
        UnsafePathError: The destination would fall outside the cache.
    """
    rel = check_relative_path(relpath)
    root = Path(cache_root).resolve()
    dest = (root / entry_name / rel.name).resolve()
    if not dest.is_relative_to(root / entry_name) or dest.parent != (root / entry_name):
        raise UnsafePathError(f"refusing to write {dest}: outside the zoo cache {root}")
    return dest


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_valid(path: Path, ref: FileRef, check_hash: bool) -> bool:
    try:
        if path.stat().st_size != ref.size:
            return False
    except OSError:
        return False
    return (not check_hash) or sha256_file(path) == ref.sha256


# ----- streaming --------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(fh: BinaryIO) -> Iterator[None]:
    """Exclusive advisory lock on an open file (POSIX), so two pulls never append to one partial file."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _open_stream(source: str, start: int, timeout: float) -> tuple[BinaryIO, int, int | None]:
    """Open ``source`` at byte ``start``; returns (stream, actual start, bytes announced or None)."""
    if _kind(source) == "local":
        path = _local_path(source)
        try:
            fh = open(path, "rb")
        except OSError as exc:
            raise DownloadError(f"cannot read zoo file {path}: {exc.strerror or exc}") from exc
        total = os.fstat(fh.fileno()).st_size
        start = min(start, total)
        fh.seek(start)
        return fh, start, total - start
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(source, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:
            exc.close()
            return _open_stream(source, 0, timeout)  # server's file shorter than our partial: start over
        raise DownloadError(f"download of {source} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot reach {source}: {reason}") from exc
    if start and resp.status == 206:
        content_range = resp.headers.get("Content-Range", "")
        if not content_range.startswith(f"bytes {start}-"):
            resp.close()
            raise DownloadError(f"{source} answered a resume request with Content-Range {content_range!r}; "
                                f"expected bytes {start}-...")
    elif start:
        start = 0  # range ignored (200): the whole file follows
    length = resp.headers.get("Content-Length")
    return resp, start, int(length) if length and length.isdigit() else None


def download_file(source: str, dest: str | os.PathLike, ref: FileRef, progress: bool = True,
                  check_hash: bool = True, timeout: float = 30.0, resume: bool = True) -> Path:
    """Fetch ``source`` into ``dest`` if the cache lacks a valid copy; verify; move atomically.

    Args:
        source: URL (``http(s)://``, ``file://``) or local path.
        dest: Final path inside the cache.
        ref: Expected size and SHA-256.
        progress: Show a tqdm progress bar.
        check_hash: Verify SHA-256 (on by default; off only checks the size).
        timeout: Socket timeout in seconds.
        resume: Continue an existing ``.partial`` file.

    Returns:
        ``dest``.

    Raises:
        IntegrityError: Size or hash mismatch (the partial file is deleted, nothing is moved).
        DownloadError: The transfer failed or was cut (the partial file is kept for resuming).
    """
    dest = Path(dest)
    if _is_valid(dest, ref, check_hash):
        log.debug("zoo cache hit %s", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f"{dest.name}.{ref.sha256[:16]}.partial")
    with open(partial, "ab") as out, _locked(out):
        if _is_valid(dest, ref, check_hash):  # another process finished it while we waited
            return dest
        start = out.seek(0, os.SEEK_END) if resume else 0
        if start > ref.size:
            start = 0
        if start < ref.size or ref.size == 0:
            start = _transfer(source, out, start, ref, progress, timeout)
        out.flush()
        os.fsync(out.fileno())
        got = os.fstat(out.fileno()).st_size
        if got != ref.size:
            out.truncate(0)
            partial.unlink(missing_ok=True)
            what = "truncated" if got < ref.size else "larger than the index says"
            raise IntegrityError(f"{source} is {what}: {got} bytes, the index says {ref.size}; nothing was kept")
        digest = sha256_file(partial) if check_hash else ref.sha256
        if digest != ref.sha256:
            out.truncate(0)
            partial.unlink(missing_ok=True)
            if start > 0:
                log.warning("resumed download of %s failed its SHA-256 check; downloading it again from the start",
                            source)
                return download_file(source, dest, ref, progress, check_hash, timeout, resume=False)
            raise IntegrityError(f"SHA-256 mismatch for {source}: the index says {ref.sha256}, the file has "
                                 f"{digest}; nothing was kept")
        if not check_hash:
            log.warning("SHA-256 check of %s skipped (check_hash=False)", dest)
        os.replace(partial, dest)
    return dest


def _transfer(source: str, out: BinaryIO, start: int, ref: FileRef, progress: bool, timeout: float) -> int:
    """Append ``source`` from ``start`` to ``out``; returns the offset the transfer started at."""
    from compactnet.progress import progress_bar

    stream, start, announced = _open_stream(source, start, timeout)
    out.truncate(start)
    out.seek(start)
    if start:
        log.info("resuming %s at byte %d of %d", source, start, ref.size)
    limit = ref.size - start + 1  # one byte more than expected reveals an oversized file
    received = 0
    bar = progress_bar(total=ref.size, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=Path(urlsplit(source).path).name or "download", disable=not progress, leave=False)
    try:
        with stream, bar:
            while received < limit:
                try:
                    chunk = stream.read(min(_CHUNK, limit - received))
                except (http.client.IncompleteRead, ConnectionError, socket.timeout, TimeoutError,
                        http.client.HTTPException, OSError) as exc:
                    raise DownloadError(f"download of {source} was interrupted after {start + received} of "
                                        f"{ref.size} bytes ({type(exc).__name__}); pull again to resume") from exc
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    finally:
        out.flush()
    if announced is not None and received < announced and received < limit:
        raise DownloadError(f"download of {source} was interrupted after {start + received} of {ref.size} bytes "
                            "(connection closed early); pull again to resume")
    return start


# ----- index ------------------------------------------------------------------------------
def _index_copy(cache_root: Path, location: str) -> Path:
    return cache_root / "indexes" / (hashlib.sha256(location.encode()).hexdigest()[:16] + ".json")


def fetch_index(index_url: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                offline: bool = False, timeout: float = 30.0) -> ZooIndex:
    """Read a zoo index from a URL or path (see :data:`INDEX_URL_FORM`).

    A remote index is copied into the cache each time it is read, and offline mode reads that copy.
    The returned index's ``source`` is the location files are resolved against.

    Raises:
        OfflineError: Offline and no cached copy of a remote index.
        DownloadError: The index cannot be fetched.
        IndexFormatError: The index is malformed or of an unknown schema version.
    """
    location = str(index_url) if index_url is not None else default_index_url()
    if _kind(location) == "local":
        path = _local_path(location)
        if not path.is_file():
            hint = (" (the repository's index has no entries yet, or this is an installed package: pass "
                    f"--index URL, e.g. {INDEX_URL_FORM}, or set ${ENV_INDEX})") if path == REPO_INDEX else ""
            raise IndexFormatError(f"zoo index {path} does not exist{hint}")
        return parse_index(path.read_bytes(), str(path.resolve()))
    copy_path = _index_copy(zoo_cache_dir(cache_dir), location)
    host = urlsplit(location).hostname or ""
    if urlsplit(location).scheme.lower() == "http" and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("zoo index %s is fetched over plain http: file hashes protect against corruption, not against "
                    "a tampered index; prefer https", location)
    if offline:
        if not copy_path.is_file():
            raise OfflineError(f"offline: no cached copy of the zoo index {location}; pull once online first")
        index = parse_index(copy_path.read_bytes(), location)
        return index
    try:
        req = urllib.request.Request(location, headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = resp.read(_MAX_INDEX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"cannot fetch zoo index {location}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise DownloadError(f"cannot fetch zoo index {location}: {getattr(exc, 'reason', exc)}; "
                            "use offline=True (--offline) to read the cached copy") from exc
    if len(data) > _MAX_INDEX_BYTES:
        raise IndexFormatError(f"zoo index {location} is larger than {_MAX_INDEX_BYTES >> 20} MiB; refusing it")
    index = parse_index(data, location)
    copy_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = copy_path.with_name(f".{copy_path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, copy_path)
    return index


# ----- pull / load ------------------------------------------------------------------------
@dataclass(frozen=True)
class ZooFiles:
    """A pulled entry's local files.

    Attributes:
        entry: The index entry.
        onnx: Verified ONNX file, ready for ``onnxruntime.InferenceSession``.
        weights: Verified safetensors weights.
        directory: The entry's cache folder (also holding ``entry.json``).
        model: The torch model (``load(..., build_model=True)`` only).
        channels: ``channels.json`` in the registry's format, for ``compactnet evaluate --channels``.
    """

    entry: ZooEntry
    onnx: Path
    weights: Path
    directory: Path
    model: Any = None
    channels: Path | None = None

    def session(self, threads: int = 1, providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> Any:
        """An onnxruntime session on the ONNX file (one intra-op thread by default)."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        return ort.InferenceSession(str(self.onnx), sess_options=opts, providers=list(providers))

    def to_dict(self) -> dict:
        """Paths and name, JSON-ready (for ``--json``)."""
        return {"name": self.entry.name, "hardware": self.entry.hardware, "onnx": str(self.onnx),
                "weights": str(self.weights),
                "channels": str(self.channels) if self.channels else None, "directory": str(self.directory)}


def pull(name: str, index_url: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
         offline: bool = False, progress: bool = True, check_hash: bool = True, timeout: float = 30.0,
         hardware: str | None = None) -> ZooFiles:
    """Download (or find in the cache) the files of zoo entry ``name``, verified.

    Args:
        name: Zoo name, e.g. ``mobilenetv2.cifar10.ort-cpu-fp32-t1.s1p8x``.
        index_url: Index URL or path; default :func:`default_index_url`.
        cache_dir: Cache folder; default :func:`zoo_cache_dir`.
        offline: Use only the cache (and a local or cached index); never touch the network.
        progress: Show progress bars.
        check_hash: Verify SHA-256 (default on).
        timeout: Socket timeout, seconds.
        hardware: The hardware whose entry to pull when the name is published for several
            (default: the only one, else this machine's; see :meth:`ZooIndex.get`).

    Raises:
        UnknownEntryError: ``name`` is not in the index (close matches suggested), or not for that hardware.
        OfflineError: Offline and the cache lacks a verified copy.
        IntegrityError, UnsafePathError, DownloadError: See :func:`download_file`.
    """
    index = fetch_index(index_url, cache_dir, offline=offline, timeout=timeout)
    entry = index.get(name, hardware)
    root = zoo_cache_dir(cache_dir)
    jobs = [(ref, resolve_source(index.source, ref.path), cache_path(root, entry.folder, ref.path))
            for ref in (entry.onnx, entry.weights)]  # every path is checked before anything is fetched
    if len({dest for _r, _s, dest in jobs}) != len(jobs):
        raise UnsafePathError(f"zoo entry {name!r} names two files with the same file name")
    paths = []
    for ref, source, dest in jobs:
        if offline:
            if not _is_valid(dest, ref, check_hash):
                raise OfflineError(f"offline: {dest.name} of {name!r} is not in the zoo cache {root} "
                                   "(or fails its SHA-256 check); pull it once without --offline")
            paths.append(dest)
        else:
            paths.append(download_file(source, dest, ref, progress=progress, check_hash=check_hash, timeout=timeout))
    folder = root / entry.folder
    _write_json(folder / "entry.json", entry.to_dict())
    _write_json(folder / "channels.json", {"model": entry.architecture, **dict(entry.channels)})
    return ZooFiles(entry, paths[0], paths[1], folder, channels=folder / "channels.json")


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load(name: str, index_url: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
         offline: bool = False, progress: bool = True, build_model: bool = False, check_onnx: bool = True,
         hardware: str | None = None) -> ZooFiles:
    """Pull an entry and check it loads: ONNX path + weights path, optionally a torch model.

    Args:
        name: Zoo name.
        index_url: Index URL or path.
        cache_dir: Cache folder.
        offline: Use only the cache.
        progress: Show progress bars.
        build_model: Also build ``create_model(architecture, channels)`` and fill it from the
            safetensors weights (set in ``ZooFiles.model``, in eval mode).
        check_onnx: Parse the ONNX file and check its IR version and opset against the entry.
        hardware: See :func:`pull`.

    Raises:
        ModelFileError: The ONNX file does not parse or disagrees with the entry.
    """
    files = pull(name, index_url=index_url, cache_dir=cache_dir, offline=offline, progress=progress,
                 hardware=hardware)
    if check_onnx:
        _check_onnx(files.onnx, files.entry)
    model = None
    if build_model:
        from compactnet.models import create_model, load_weights

        model = load_weights(create_model(files.entry.architecture, dict(files.entry.channels)), files.weights)
        model.eval()
    return ZooFiles(files.entry, files.onnx, files.weights, files.directory, model, files.channels)


def _check_onnx(path: Path, entry: ZooEntry) -> None:
    import onnx

    from compactnet.errors import ModelFileError

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and others; all mean "not an ONNX file"
        raise ModelFileError(f"{path} is not a readable ONNX file: {exc}") from exc
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if entry.onnx.ir_version is not None and proto.ir_version != entry.onnx.ir_version:
        raise ModelFileError(f"{path}: IR version {proto.ir_version}, the index says {entry.onnx.ir_version}")
    if entry.onnx.opset is not None and opset != entry.onnx.opset:
        raise ModelFileError(f"{path}: opset {opset}, the index says {entry.onnx.opset}")
    inputs = [i.name for i in proto.graph.input]
    if entry.input.name not in inputs:
        raise ModelFileError(f"{path}: no input named {entry.input.name!r} (inputs: {inputs})")
