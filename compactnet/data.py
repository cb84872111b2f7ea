"""CIFAR-10 loading, caching and the fixed splits of DESIGN's data rule.

Two sources are read: the packed JPEG copy (``cifar10-jpeg.npz``, read with NumPy, no pickle) and
the standard ``cifar-10-batches-py`` folder (Python pickles, read with a restricted unpickler
admitting only the arrays, lists, dicts and bytes they hold). Decoded arrays are cached as
``.npz`` keyed by the source's SHA-256. Nothing is ever downloaded.

Splits: the 50,000 training images become 45,000 train + 5,000 validation, stratified by class
with seed 0; the 10,000 test images are only for reported figures.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compactnet.errors import DataError

log = logging.getLogger(__name__)

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: Per-channel mean and std of the CIFAR-10 training images, on [0, 1] pixels.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
VAL_SIZE = 5000
SPLIT_SEED = 0
ENV_VAR = "COMPACTNET_DATA"
_REPO_DEFAULT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cifar10-jpeg.npz"
_ARRAY_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
#: What NumPy raises on a missing, truncated or corrupt ``.npz`` (zip) file.
_NPZ_ERRORS = (OSError, ValueError, KeyError, zipfile.BadZipFile, zlib.error)


@dataclass(frozen=True)
class Split:
    """Images (N, 32, 32, 3) uint8 RGB and labels (N,) int64 of one split."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Cifar10:
    """The three splits plus where they came from.

    Attributes:
        train: 45,000 training images.
        val: 5,000 validation images (stratified, seed 0).
        test: 10,000 test images.
        source: Path of the data read.
        copy: ``"packed-jpeg"`` or ``"original"``: which copy of CIFAR-10 the figures used.
    """

    train: Split
    val: Split
    test: Split
    source: str
    copy: str

    @property
    def test_hash(self) -> str:
        """SHA-256 (first 16 hex digits) of the test images and labels, named on every card."""
        return split_hash(self.test)


def split_hash(split: Split) -> str:
    """Short SHA-256 of a split's pixels and labels."""
    h = hashlib.sha256(np.ascontiguousarray(split.images).tobytes())
    h.update(np.ascontiguousarray(split.labels.astype(np.int64)).tobytes())
    return h.hexdigest()[:16]


def resolve_data_path(path: str | os.PathLike | None = None) -> Path:
    """Find the data set: ``path`` if given, else ``$COMPACTNET_DATA`` if set, else the development copy.

    Only one place is looked at: a path given explicitly (or through ``$COMPACTNET_DATA``) that does
    not exist is an error, never a silent fall-back to another copy.

    Raises:
        DataError: Nothing is found there; the message says where to put the data.
    """
    if path is not None and str(path) != "":
        where, how = Path(path), "the path given"
    elif os.environ.get(ENV_VAR):
        where, how = Path(os.environ[ENV_VAR]), f"${ENV_VAR}"
    else:
        where, how = _REPO_DEFAULT, "the default location"
    if where.exists():
        return where
    raise DataError(
        f"CIFAR-10 not found at {where} ({how}): pass --data PATH (or set ${ENV_VAR}) to the "
        "'cifar-10-batches-py' folder or a 'cifar10-jpeg.npz' file; CompactNet never downloads data"
    )


def home_dir() -> Path:
    """CompactNet's own folder: ``$COMPACTNET_HOME`` if set, else the user cache ``~/.cache/compactnet``
    (``$XDG_CACHE_HOME/compactnet``). Predictors go to ``home_dir() / "predictors"``."""
    home = os.environ.get("COMPACTNET_HOME")
    if home:
        return Path(home)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "compactnet"


def cache_dir() -> Path:
    """Folder for decoded arrays and other caches (``$COMPACTNET_HOME/cache`` or the user cache)."""
    return home_dir() / "cache" if os.environ.get("COMPACTNET_HOME") else home_dir()


def load_cifar10(path: str | os.PathLike | None = None, use_cache: bool = True) -> Cifar10:
    """Load CIFAR-10, split as DESIGN's rule says.

    Args:
        path: A ``cifar10-jpeg.npz`` file or a ``cifar-10-batches-py`` folder; see
            :func:`resolve_data_path` for the fallbacks.
        use_cache: Read and write decoded arrays in :func:`cache_dir`.

    Raises:
        DataError: Missing, corrupt or unexpected data.
    """
    src = resolve_data_path(path)
    copy = "original" if src.is_dir() else "packed-jpeg"
    arrays = _cached_arrays(src, use_cache)
    train_x, train_y = arrays["train_images"], arrays["train_labels"].astype(np.int64)
    # A full copy gives DESIGN's 45,000/5,000; a smaller (test) copy keeps the same 10% ratio.
    tr, va = stratified_split(train_y, min(VAL_SIZE, len(train_y) // 10), SPLIT_SEED)
    return Cifar10(
        train=Split(train_x[tr], train_y[tr]),
        val=Split(train_x[va], train_y[va]),
        test=Split(arrays["test_images"], arrays["test_labels"].astype(np.int64)),
        source=str(src),
        copy=copy,
    )


def synthetic_split(n: int, seed: int) -> Split:
    """Class-separable random CIFAR-shaped images for tests and smoke runs (never for figures).

    Class ``c`` brightens colour channel ``c % 3`` by ``20 * c``, so a small network learns it in a
    few steps.

    Args:
        n: Number of images (labels cycle through the 10 classes).
        seed: Seed of the pixel noise.

    Returns:
        The split.
    """
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.int64)
    images = rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
    for c in range(10):
        sel = labels == c
        images[sel, :, :, c % 3] = np.clip(images[sel, :, :, c % 3].astype(int) + 20 * c, 0, 255)
    return Split(images, labels)


def synthetic_cifar10(n_train: int = 400, n_val: int = 120, n_test: int = 200) -> Cifar10:
    """Three :func:`synthetic_split` splits (seeds 0, 1, 2) labelled ``synthetic``."""
    return Cifar10(synthetic_split(n_train, 0), synthetic_split(n_val, 1), synthetic_split(n_test, 2),
                   "synthetic", "synthetic")


def stratified_split(labels: np.ndarray, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of (train, val): ``val_size`` split evenly over classes after a seeded shuffle."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    classes = np.unique(labels)
    per_class = val_size // len(classes)
    val = np.concatenate([order[labels[order] == c][:per_class] for c in classes])
    mask = np.ones(len(labels), bool)
    mask[val] = False
    return np.flatnonzero(mask), np.sort(val)


def _file_digest(src: Path) -> str:
    h = hashlib.sha256()
    files = sorted(src.glob("*_batch*")) if src.is_dir() else [src]
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:20]


def _cached_arrays(src: Path, use_cache: bool) -> dict[str, np.ndarray]:
    cache = cache_dir() / f"cifar10-{_file_digest(src)}.npz" if use_cache else None
    if cache is not None and cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as z:
                cached = {k: z[k] for k in z.files}
            if all(k in cached for k in _ARRAY_KEYS):
                return cached
            log.warning("decoded cache %s lacks arrays; decoding again", cache)
        except _NPZ_ERRORS:
            log.warning("decoded cache %s is unreadable; decoding again", cache)
    arrays = _read_original(src) if src.is_dir() else _read_packed(src)
    if cache is not None:
        tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp.npz")
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(tmp, **arrays)
            tmp.replace(cache)
        except OSError as exc:
            log.warning("cannot write the decoded cache %s (%s); continuing without it", cache, exc)
            tmp.unlink(missing_ok=True)
    return arrays


def _read_packed(src: Path) -> dict[str, np.ndarray]:
    from PIL import Image

    if not zipfile.is_zipfile(src):
        raise DataError(f"{src} is not a readable CIFAR-10 JPEG archive: not an .npz (zip) file, or a truncated one")
    try:
        out = {}
        with np.load(src, allow_pickle=False) as z:
            for split in ("train", "test"):
                jpeg, offsets, labels = z[f"{split}_jpeg"], z[f"{split}_offsets"], z[f"{split}_labels"]
                if len(offsets) != len(labels) + 1:
                    raise DataError(f"{src}: {split}_offsets has {len(offsets)} entries for {len(labels)} labels")
                images = np.empty((len(labels), 32, 32, 3), np.uint8)
                for i in range(len(labels)):
                    img = Image.open(io.BytesIO(jpeg[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB")
                    if img.size != (32, 32):
                        raise DataError(f"{src}: {split} image {i} is {img.size[0]}x{img.size[1]}, not 32x32")
                    images[i] = np.asarray(img)
                out[f"{split}_images"], out[f"{split}_labels"] = images, labels.astype(np.uint8)
    except DataError:
        raise
    except (*_NPZ_ERRORS, EOFError) as exc:
        raise DataError(f"{src} is not a readable CIFAR-10 JPEG archive ({type(exc).__name__}: {exc}); "
                        "expected keys train_jpeg, train_offsets, train_labels, test_*") from exc
    _check_counts(src, out)
    return out


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that admits only NumPy arrays and the builtin containers CIFAR-10 pickles hold."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 spell a bytes object
    }

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise DataError(f"refusing to unpickle {module}.{name}: CIFAR-10 batches hold only arrays, "
                        "lists, dicts and bytes")


def read_batch_file(path: Path) -> dict:
    """Read one ``data_batch_*`` / ``test_batch`` pickle through the restricted unpickler."""
    try:
        with open(path, "rb") as fh:
            d = _RestrictedUnpickler(fh, encoding="bytes").load()
    except DataError:
        raise
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{path} is not a readable CIFAR-10 batch ({type(exc).__name__}: {exc})") from exc
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise DataError(f"{path} is not a CIFAR-10 batch: expected a dict with b'data' and b'labels'")
    return d


def _read_original(src: Path) -> dict[str, np.ndarray]:
    names = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    out = {}
    for split, files in names.items():
        xs, ys = [], []
        for name in files:
            f = src / name
            if not f.exists():
                raise DataError(f"{src} lacks {name}: expected the 'cifar-10-batches-py' folder")
            d = read_batch_file(f)
            data, labels = np.asarray(d[b"data"]), np.asarray(d[b"labels"])
            if labels.ndim != 1 or data.size != 3072 * len(labels) or data.dtype.kind not in "ui":
                raise DataError(f"{f}: b'data' holds {data.size} {data.dtype} values for {labels.size} labels; "
                                f"a CIFAR-10 batch holds 3072 uint8 values (32x32x3) per label")
            xs.append(data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(labels.astype(np.uint8))
        out[f"{split}_images"], out[f"{split}_labels"] = np.concatenate(xs), np.concatenate(ys)
    _check_counts(src, out)
    return out


def _check_counts(src: Path, arrays: dict[str, np.ndarray]) -> None:
    n_train, n_test = len(arrays["train_labels"]), len(arrays["test_labels"])
    if (n_train, n_test) != (50000, 10000):
        log.warning("%s holds %d train and %d test images (CIFAR-10 has 50,000 and 10,000)", src, n_train, n_test)
    for split in ("train", "test"):
        if arrays[f"{split}_labels"].size and int(arrays[f"{split}_labels"].max()) > 9:
            raise DataError(f"{src}: {split} labels outside 0-9")
