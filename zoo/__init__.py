"""compactnet.zoo: a cross-platform registry of trimmed models, downloadable by platform and budget.

* :mod:`~compactnet.zoo.entry` — :class:`ZooEntry` records and the zoo name grammar (:func:`parse_name`);
* :mod:`~compactnet.zoo.index` — the versioned index (:class:`ZooIndex`, :func:`load_index`, :func:`save_index`);
* :mod:`~compactnet.zoo.download` — verified, resumable downloads (:func:`pull`, :func:`load`);
* :mod:`~compactnet.zoo.select` — the best entry for a platform and budget (:func:`best`);
* :mod:`~compactnet.zoo.publish` — search result to entry (:func:`publish`, :func:`publish_model`);
* :mod:`~compactnet.zoo.catalogue` — the static HTML page (:func:`write_catalogue`);
* :mod:`~compactnet.zoo.serve` — a static HTTP server with byte ranges (:func:`serve`);
* :mod:`~compactnet.zoo.listing` — text tables (:func:`format_table`, :func:`format_entry`).

Heavy dependencies (torch, onnx, matplotlib) are imported inside the functions that need them.
"""

from compactnet.zoo.catalogue import write_catalogue
from compactnet.zoo.download import (REPO_INDEX, ZooFiles, default_index_url, fetch_index, load, pull,
                                     zoo_cache_dir)
from compactnet.zoo.entry import (FileRef, InputContract, Metrics, NameParts, Provenance, ZooEntry, make_name,
                                  parse_name, speedup_tag, tag_speedup)
from compactnet.zoo.errors import (DownloadError, IndexFormatError, IntegrityError, OfflineError, UnknownEntryError,
                                   UnsafePathError, ZooError)
from compactnet.zoo.index import SCHEMA_VERSION, ZooIndex, load_index, save_index
from compactnet.zoo.listing import format_entry, format_table
from compactnet.zoo.publish import publish, publish_model
from compactnet.zoo.select import Candidate, Selection, best, rank
from compactnet.zoo.serve import make_server, serve

__all__ = ["ZooEntry", "FileRef", "InputContract", "Metrics", "Provenance", "NameParts", "parse_name", "make_name",
           "speedup_tag", "tag_speedup", "ZooIndex", "SCHEMA_VERSION", "load_index", "save_index", "fetch_index",
           "pull", "load", "ZooFiles", "default_index_url", "zoo_cache_dir", "REPO_INDEX", "best", "rank",
           "Selection", "Candidate", "publish", "publish_model", "write_catalogue", "serve", "make_server",
           "format_table", "format_entry", "ZooError", "IndexFormatError", "UnknownEntryError", "DownloadError",
           "IntegrityError", "UnsafePathError", "OfflineError"]
