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


def test_a_name_may_exist_once_per_hardware(monkeypatch):
    import compactnet.spec

    here, there = make_entry(B, top1=80.0, hardware="Here CPU"), make_entry(B, top1=70.0, hardware="There CPU")
    idx = ZooIndex((make_entry(A), here, there))
    assert idx.names == [A, B] and len(idx) == 3 and idx.has(B, "There CPU") and not idx.has(B, "Else")
    assert idx.get(B, "There CPU") is there and idx.get(A) == make_entry(A)
    # without a hardware: this machine's entry when it is among them, else a clear error naming them
    monkeypatch.setattr(compactnet.spec, "hardware_id", lambda: "Here CPU")
    assert idx.get(B) is here
    monkeypatch.setattr(compactnet.spec, "hardware_id", lambda: "Third CPU")
    with pytest.raises(UnknownEntryError, match="Here CPU.*There CPU") as err:
        idx.get(B)
    assert "--hardware" in str(err.value) and "Third CPU" in str(err.value)
    with pytest.raises(UnknownEntryError, match="not for hardware 'Else'"):
        idx.get(B, "Else")
    # add replaces the same (name, hardware) only; remove takes the hardware's entry
    assert idx.add(make_entry(B, top1=1.0, hardware="There CPU"), replace_existing=True).get(B, "Here CPU") is here
    assert idx.remove(B, "There CPU").names == [A, B] and len(idx.remove(B, "There CPU")) == 2
    with pytest.raises(IndexFormatError, match="on 'Here CPU' twice"):
        ZooIndex((here, make_entry(B, hardware="Here CPU")))


def test_hardware_slug_is_file_safe_and_unique_per_string():
    from compactnet.zoo.entry import hardware_slug

    a, b = hardware_slug("Intel(R) Xeon(R) Processor @ 2.50GHz"), hardware_slug("Intel(R) Xeon(R) Processor")
    assert a.startswith("intel-xeon-processor-2-50ghz-") and b.startswith("intel-xeon-processor-") and a != b
    assert hardware_slug("Intel Xeon Processor") != b          # same words, other string: other folder
    assert all(c.isalnum() or c == "-" for c in a + b) and hardware_slug("") .startswith("unknown-")
    e = make_entry(B, hardware="AMD EPYC")
    assert e.folder == f"{B}/{hardware_slug('AMD EPYC')}" and e.key == (B, "AMD EPYC")
