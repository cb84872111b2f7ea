import pickle

import numpy as np
import pytest

from compactnet.data import load_cifar10, read_batch_file, resolve_data_path, split_hash, stratified_split
from compactnet.errors import DataError


def test_packed_copy_loads_and_splits(tiny_npz):
    ds = load_cifar10(tiny_npz)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (180, 20, 50)
    assert ds.copy == "packed-jpeg"
    assert ds.train.images.shape[1:] == (32, 32, 3) and ds.train.images.dtype == np.uint8
    assert np.bincount(ds.val.labels, minlength=10).tolist() == [2] * 10
    assert len(ds.test_hash) == 16


def test_cache_gives_identical_arrays(tiny_npz):
    a = load_cifar10(tiny_npz)
    b = load_cifar10(tiny_npz)  # second read comes from the decoded cache
    assert np.array_equal(a.train.images, b.train.images)
    assert a.test_hash == b.test_hash


def test_original_folder_loads(tiny_batches):
    ds = load_cifar10(tiny_batches)
    assert ds.copy == "original"
    assert (len(ds.train) + len(ds.val), len(ds.test)) == (200, 50)


def test_split_is_disjoint_stratified_and_seeded():
    labels = np.repeat(np.arange(10), 100)
    rng = np.random.default_rng(3)
    labels = labels[rng.permutation(len(labels))]
    tr, va = stratified_split(labels, 100, seed=0)
    assert len(set(tr) & set(va)) == 0 and len(tr) + len(va) == 1000
    assert np.bincount(labels[va]).tolist() == [10] * 10
    tr2, va2 = stratified_split(labels, 100, seed=0)
    assert np.array_equal(va, va2)
    _, va3 = stratified_split(labels, 100, seed=1)
    assert not np.array_equal(va, va3)


def test_missing_data_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPACTNET_DATA", raising=False)
    with pytest.raises(DataError, match="--data"):
        resolve_data_path(tmp_path / "nope.npz")


def test_corrupt_archive_is_a_data_error(tmp_path):
    bad = tmp_path / "cifar10-jpeg.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match="not a readable"):
        load_cifar10(bad)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_restricted_unpickler_refuses_code(tmp_path):
    f = tmp_path / "data_batch_1"
    f.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    with pytest.raises(DataError, match="refusing to unpickle builtins.print"):
        read_batch_file(f)


def test_split_hash_changes_with_content(tiny_npz):
    ds = load_cifar10(tiny_npz)
    h = split_hash(ds.test)
    ds.test.images[0, 0, 0, 0] ^= 1
    assert split_hash(ds.test) != h


def test_explicit_path_never_falls_back_to_the_env_var(tiny_npz, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPACTNET_DATA", str(tiny_npz))
    assert resolve_data_path(None) == tiny_npz  # no path: the env var
    with pytest.raises(DataError, match="nope.npz"):
        resolve_data_path(tmp_path / "nope.npz")  # a path given is the only place looked at
    monkeypatch.setenv("COMPACTNET_DATA", str(tmp_path / "gone.npz"))
    with pytest.raises(DataError, match="gone.npz"):
        resolve_data_path(None)


@pytest.mark.parametrize("cut", ["truncated", "corrupted"])
def test_truncated_or_corrupted_real_archive_is_a_data_error(tiny_npz, tmp_path, cut):
    data = tiny_npz.read_bytes()
    if cut == "truncated":
        data = data[: len(data) // 2]
    else:  # a burst of zeros inside the first member: the zip's CRC check fails
        data = data[:2000] + b"\0" * 500 + data[2500:]
    bad = tmp_path / "bad" / "cifar10-jpeg.npz"
    bad.parent.mkdir()
    bad.write_bytes(data)
    with pytest.raises(DataError, match="not a readable"):
        load_cifar10(bad)


def test_corrupt_cache_is_decoded_again(tiny_npz, caplog):
    from compactnet.data import cache_dir

    first = load_cifar10(tiny_npz)
    (cache,) = cache_dir().glob("cifar10-*.npz")
    cache.write_bytes(cache.read_bytes()[:1000])  # truncated cache
    with caplog.at_level("WARNING", logger="compactnet.data"):
        again = load_cifar10(tiny_npz)
    assert "decoding again" in caplog.text
    assert np.array_equal(first.train.images, again.train.images) and first.test_hash == again.test_hash
    assert np.load(cache)["test_labels"].shape == (50,)  # rewritten whole


def test_batch_with_wrong_data_size_is_a_data_error(tiny_batches):
    f = tiny_batches / "data_batch_2"
    d = read_batch_file(f)
    d[b"data"] = d[b"data"][:, :3000]  # 3000 values per image instead of 3072
    f.write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(DataError, match="3072"):
        load_cifar10(tiny_batches, use_cache=False)


def test_home_and_cache_folders(tmp_path, monkeypatch):
    from compactnet.data import cache_dir, home_dir

    monkeypatch.setenv("COMPACTNET_HOME", str(tmp_path / "home"))
    assert home_dir() == tmp_path / "home" and cache_dir() == tmp_path / "home" / "cache"
    monkeypatch.delenv("COMPACTNET_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert home_dir() == tmp_path / "xdg" / "compactnet" and cache_dir() == home_dir()
