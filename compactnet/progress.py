"""Progress bars that suit a terminal and a log file alike (every bar of the package comes from here).

On a terminal a bar is tqdm's live bar. When the stream is not a terminal (a log file, CI, ``nohup``),
tqdm would write one ``\\r``-separated update per step -- hundreds of them per training epoch. There the
bar writes a plain line at most every :data:`LOG_INTERVAL_S` seconds, plus one when it closes.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm as _plain
from tqdm.auto import tqdm

#: Seconds between progress lines when the stream is not a terminal.
LOG_INTERVAL_S = 15.0


class _Lines:
    """A text stream that turns tqdm's carriage-return updates into whole lines."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


class _LogBar(_plain):
    """A tqdm bar whose postfix updates wait for the next timed refresh instead of forcing one."""

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        super().set_description(desc, refresh=False)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress_bar(*args: Any, **kwargs: Any) -> tqdm:
    """A tqdm bar (same arguments); on a stream that is not a terminal, a line every few seconds.

    Args:
        *args: Passed to ``tqdm``.
        **kwargs: Passed to ``tqdm``; ``file`` defaults to ``sys.stderr``.
    """
    stream = kwargs.pop("file", None) or sys.stderr
    if _is_terminal(stream) or kwargs.get("disable"):
        return tqdm(*args, file=stream, **kwargs)
    kwargs.setdefault("mininterval", LOG_INTERVAL_S)
    kwargs["maxinterval"] = max(kwargs.get("maxinterval", 0), kwargs["mininterval"])
    kwargs.setdefault("ascii", True)
    kwargs.setdefault("ncols", 100)
    return _LogBar(*args, file=_Lines(stream), **kwargs)


__all__ = ["progress_bar", "LOG_INTERVAL_S"]
