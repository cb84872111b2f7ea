"""Errors raised by the zoo stage; all derive from :class:`compactnet.errors.CompactNetError`."""

from __future__ import annotations

from typing import Sequence

from compactnet.errors import CompactNetError, ConfigError, ModelFileError


class ZooError(CompactNetError):
    """Base class of zoo errors."""


class IndexFormatError(ZooError, ConfigError):
    """A zoo index is malformed, of an unknown schema version, or holds a duplicate name."""


class UnknownEntryError(ZooError, ConfigError, KeyError):
    """A name is not in the index; ``suggestions`` holds close matches."""

    def __init__(self, name: str, suggestions: Sequence[str] = (), where: str = "the index",
                 detail: str = "") -> None:
        self.name = name
        self.suggestions = tuple(suggestions)
        if detail:
            super().__init__(f"{detail} (in {where})")
            return
        hint = f"; did you mean {', '.join(self.suggestions)}?" if self.suggestions else \
            "; run `compactnet zoo list` to see the entries"
        super().__init__(f"no zoo entry named {name!r} in {where}{hint}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DownloadError(ZooError):
    """A download failed or was interrupted (a ``.partial`` file may be kept for resuming)."""


class IntegrityError(DownloadError, ModelFileError):
    """Downloaded bytes do not match the index (SHA-256 mismatch, truncated or oversized file)."""


class UnsafePathError(DownloadError, ConfigError):
    """An index names a file outside its zoo folder or the cache (``../``, absolute path, URL)."""


class OfflineError(DownloadError):
    """Offline mode was asked for and the cache lacks what is needed."""
