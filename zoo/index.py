"""The zoo index: a versioned JSON list of :class:`ZooEntry` records.

File layout::

    {"schema_version": 1, "entries": [{...ZooEntry...}, ...]}

Entry file paths are relative to the folder (or URL) holding the index. An entry is identified by
its name *and* its hardware: the same name (``mobilenetv2.cifar10.ort-cpu-fp32-t1.s1p8x``) may be
published from two machines, each with its own measured figures, so that entries measured elsewhere
stay offered (ranked by a predictor) where they were not measured. A duplicate (name, hardware) is
an error; an index of a newer schema version is refused with a message saying to upgrade.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping

from compactnet.zoo.entry import ZooEntry, parse_name
from compactnet.zoo.errors import IndexFormatError, UnknownEntryError

__all__ = ["SCHEMA_VERSION", "ZooIndex", "load_index", "save_index", "parse_index", "empty_index", "names_by_platform"]

#: Schema version this code reads and writes.
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ZooIndex:
    """An immutable set of entries, in publishing order.

    Attributes:
        entries: The entries; names are unique.
        schema_version: Schema version of the file read (always :data:`SCHEMA_VERSION` when written).
        source: Where the index was read from (path or URL), for messages.
    """

    entries: tuple[ZooEntry, ...] = ()
    schema_version: int = SCHEMA_VERSION
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(self.entries))
        seen: set[tuple[str, str]] = set()
        for e in self.entries:
            if e.key in seen:
                raise IndexFormatError(f"zoo index {self.source or ''} lists {e.name!r} on {e.hardware!r} twice; "
                                       "a name is unique per hardware")
            seen.add(e.key)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[ZooEntry]:
        return iter(self.entries)

    def __contains__(self, name: object) -> bool:
        return any(e.name == name for e in self.entries)

    @property
    def names(self) -> list[str]:
        """Entry names in order (a name published for two hardwares once)."""
        return list(dict.fromkeys(e.name for e in self.entries))

    def has(self, name: str, hardware: str) -> bool:
        """Whether the index holds ``name`` measured on ``hardware``."""
        return any(e.key == (name, hardware) for e in self.entries)

    def get(self, name: str, hardware: str | None = None) -> ZooEntry:
        """The entry called ``name`` (on ``hardware`` when the name exists for several).

        Without ``hardware``, a name published for one hardware is that entry; one published for
        several is this machine's (:func:`compactnet.spec.hardware_id`) when it is among them.

        Raises:
            UnknownEntryError: No such entry (close matches listed), or not on that hardware, or
                several hardwares and none of them this machine (the error lists them).
        """
        same = [e for e in self.entries if e.name == name]
        where = f"the zoo index {self.source}".rstrip()
        if not same:
            raise UnknownEntryError(name, difflib.get_close_matches(name, self.names, n=3, cutoff=0.6), where=where)
        hardwares = [e.hardware for e in same]
        if hardware is None and len(same) == 1:
            return same[0]
        if hardware is None:
            from compactnet.spec import hardware_id

            hardware, mine = hardware_id(), True
        else:
            mine = False
        for e in same:
            if e.hardware == hardware:
                return e
        what = "this machine's hardware" if mine else "hardware"
        raise UnknownEntryError(name, where=where, detail=(
            f"{name!r} is published for {len(same)} hardware(s), not for {what} {hardware!r}: pass --hardware "
            "(hardware=) with one of " + ", ".join(repr(h) for h in hardwares)))

    def filter(self, platform: str | None = None, arch: str | None = None, dataset: str | None = None,
               hardware: str | None = None) -> list[ZooEntry]:
        """Entries matching every given criterion (platform key, architecture, data set, hardware)."""
        return [e for e in self.entries
                if (platform is None or e.platform == platform)
                and (arch is None or e.architecture == arch)
                and (dataset is None or e.dataset == dataset)
                and (hardware is None or e.hardware == hardware)]

    @property
    def platforms(self) -> list[str]:
        """Platform keys with entries, in first-seen order."""
        return list(dict.fromkeys(e.platform for e in self.entries))

    def add(self, entry: ZooEntry, replace_existing: bool = False) -> "ZooIndex":
        """A new index with ``entry`` appended (or replacing the entry of that name on that hardware).

        Raises:
            IndexFormatError: The name exists on that hardware and ``replace_existing`` is false.
        """
        exists = self.has(entry.name, entry.hardware)
        if exists and not replace_existing:
            raise IndexFormatError(f"zoo index already has an entry named {entry.name!r} on {entry.hardware!r}; "
                                   "pass replace_existing=True (--replace) to overwrite it")
        entries = [entry if e.key == entry.key else e for e in self.entries]
        if not exists:
            entries.append(entry)
        return replace(self, entries=tuple(entries), schema_version=SCHEMA_VERSION)

    def remove(self, name: str, hardware: str | None = None) -> "ZooIndex":
        """A new index without the entry ``name`` (on ``hardware``; see :meth:`get`), which must exist."""
        gone = self.get(name, hardware)
        return replace(self, entries=tuple(e for e in self.entries if e.key != gone.key))

    def to_dict(self) -> dict:
        """JSON-ready form, always at :data:`SCHEMA_VERSION`."""
        return {"schema_version": SCHEMA_VERSION, "entries": [e.to_dict() for e in self.entries]}


def parse_index(data: Any, source: str = "") -> ZooIndex:
    """Build an index from parsed JSON (or JSON text / UTF-8 bytes).

    Raises:
        IndexFormatError: Bytes that are not UTF-8, not an index, unknown schema version, malformed entry or duplicate name.
    """
    where = f"zoo index {source}".rstrip()
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise IndexFormatError(f"{where} is not UTF-8 text (byte {exc.start}: {exc.reason}); an index is UTF-8 "
                                   "JSON") from exc
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise IndexFormatError(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, Mapping) or "entries" not in data:
        raise IndexFormatError(f"{where} is not a zoo index: expected an object with 'schema_version' and 'entries'")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise IndexFormatError(f"{where}: schema_version must be an integer; got {version!r}")
    if version != SCHEMA_VERSION:
        newer = " (newer than this CompactNet: upgrade compactnet to read it)" if version > SCHEMA_VERSION else ""
        raise IndexFormatError(f"{where} has schema_version {version}; this CompactNet reads "
                               f"schema_version {SCHEMA_VERSION}{newer}")
    if not isinstance(data["entries"], list):
        raise IndexFormatError(f"{where}: 'entries' must be a list")
    entries = []
    for i, d in enumerate(data["entries"]):
        try:
            entries.append(ZooEntry.from_dict(d))
        except IndexFormatError:
            raise
        except (ValueError, TypeError) as exc:  # ConfigError is a ValueError
            name = d.get("name", f"#{i}") if isinstance(d, Mapping) else f"#{i}"
            raise IndexFormatError(f"{where}: entry {name!r} is invalid: {exc}") from exc
    return ZooIndex(tuple(entries), version, source)


def load_index(path: str | os.PathLike) -> ZooIndex:
    """Read an index file from disk (see :func:`compactnet.zoo.download.fetch_index` for URLs).

    Raises:
        IndexFormatError: Missing, unreadable or malformed index.
    """
    p = Path(path)
    if not p.is_file():
        raise IndexFormatError(f"zoo index {p} does not exist; pass --index PATH or URL")
    return parse_index(p.read_bytes(), str(p))  # decoded (and refused when not UTF-8) in one place


def save_index(index: ZooIndex, path: str | os.PathLike) -> Path:
    """Write an index atomically (temporary file in the same folder, then rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(index.to_dict(), indent=1, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, p)
    return p


def empty_index() -> ZooIndex:
    """An index with no entries."""
    return ZooIndex(())


def names_by_platform(index: ZooIndex) -> dict[str, list[str]]:
    """Entry names grouped by platform key."""
    out: dict[str, list[str]] = {}
    for name in index.names:   # a name published for several hardwares once
        out.setdefault(parse_name(name).platform_key, []).append(name)
    return out
