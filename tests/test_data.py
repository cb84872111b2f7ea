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
