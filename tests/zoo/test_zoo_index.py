"""The versioned zoo index."""

from __future__ import annotations

import json

import pytest

from compactnet.zoo.errors import IndexFormatError, UnknownEntryError
from compactnet.zoo.index import SCHEMA_VERSION, ZooIndex, load_index, parse_index, save_index
from compactnet.zoo.listing import format_entry, format_table
from zoo_helpers import make_entry

A = "resnet20.cifar10.ort-cpu-fp32-t1.base"
B = "resnet20.cifar10.ort-cpu-fp32-t1.s1p5x"
C = "mobilenetv2.cifar10.openvino-cpu-fp32-t1.s2x"


def _index():
    return ZooIndex((make_entry(A), make_entry(B, speedup=1.6), make_entry(C, hardware="Other CPU")))


def test_save_load_round_trip(tmp_path):
    idx = _index()
    path = save_index(idx, tmp_path / "index.json")
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION and len(data["entries"]) == 3
    back = load_index(path)
    assert back == idx and back.names == [A, B, C]
    assert not list(tmp_path.glob(".*tmp"))


def test_duplicate_name_is_an_error(tmp_path):
    with pytest.raises(IndexFormatError, match="twice"):
        ZooIndex((make_entry(A), make_entry(A)))
    d = _index().to_dict()
    d["entries"].append(d["entries"][0])
    (tmp_path / "i.json").write_text(json.dumps(d))
    with pytest.raises(IndexFormatError, match="twice"):
        load_index(tmp_path / "i.json")
    with pytest.raises(IndexFormatError, match="already has"):
        _index().add(make_entry(A))
    replaced = _index().add(make_entry(A, top1=50.0), replace_existing=True)
    assert replaced.get(A).metrics.top1 == 50.0 and len(replaced) == 3


@pytest.mark.parametrize("version, match", [(2, "upgrade compactnet"), (0, "reads schema_version 1"),
                                            ("1", "integer"), (None, "integer")])
def test_schema_version_checked(version, match):
    d = _index().to_dict()
    d["schema_version"] = version
    with pytest.raises(IndexFormatError, match=match):
        parse_index(d, "x.json")


def test_not_an_index(tmp_path):
    with pytest.raises(IndexFormatError, match="not valid JSON"):
        parse_index("{", "x")
    with pytest.raises(IndexFormatError, match="not a zoo index"):
        parse_index([], "x")
    with pytest.raises(IndexFormatError, match="does not exist"):
        load_index(tmp_path / "missing.json")
    d = _index().to_dict()
    d["entries"][1]["name"] = "bad name"
    with pytest.raises(IndexFormatError, match="bad name"):
        parse_index(d, "x")


def test_filter_and_get():
    idx = _index()
    assert [e.name for e in idx.filter(platform="ort-cpu-fp32-t1")] == [A, B]
    assert [e.name for e in idx.filter(arch="mobilenetv2")] == [C]
    assert idx.filter(hardware="Other CPU")[0].name == C
    assert idx.platforms == ["ort-cpu-fp32-t1", "openvino-cpu-fp32-t1"]
    assert idx.get(B).metrics.speedup == 1.6
    with pytest.raises(UnknownEntryError) as err:
        idx.get("resnet20.cifar10.ort-cpu-fp32-t1.s1p6x")
    assert B in err.value.suggestions and "did you mean" in str(err.value)
    assert idx.remove(A).names == [B, C]


def test_format_table_and_entry():
    idx = _index()
    table = format_table(idx)
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].startswith("NAME")
    assert "1.60x [1.55-1.65]" in table and "90.00" in table
    assert format_table([]) == "(no entries)"
    info = format_entry(idx.get(B))
    assert B in info and "opset 17" in info and "airplane" in info and "compactnet optimize" in info


def test_an_index_that_is_not_utf8_is_an_index_format_error(tmp_path):
    from compactnet.zoo.download import fetch_index
    from compactnet.zoo.index import load_index

    bad = tmp_path / "index.json"
    bad.write_bytes(b'{"schema_version": 1, "entries": [], "note": "caf\xe9"}')   # latin-1, not UTF-8
    with pytest.raises(IndexFormatError, match="not UTF-8"):
        load_index(bad)
    with pytest.raises(IndexFormatError, match="not UTF-8"):
        fetch_index(str(bad), tmp_path / "cache")
    with pytest.raises(IndexFormatError, match="not UTF-8"):
        fetch_index(bad.as_uri(), tmp_path / "cache")
