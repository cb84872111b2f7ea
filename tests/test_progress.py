"""Progress bars: live on a terminal, a few whole lines in a log file."""

from __future__ import annotations

import io

import compactnet.progress as P


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_file_gets_a_few_whole_lines_not_one_per_update():
    log = io.StringIO()
    bar = P.progress_bar(total=1000, desc="epoch 1/1", file=log, leave=True)
    for i in range(1000):
        bar.update(1)
        bar.set_postfix(loss=f"{1 / (i + 1):.3f}")  # would force a refresh per update on tqdm's own
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert 1 <= len(lines) <= 4 and all(line.strip() for line in lines)
    assert "1000/1000" in lines[-1] and "epoch 1/1" in lines[-1]


def test_a_terminal_keeps_tqdm_s_live_bar_and_disable_still_disables():
    tty = _Tty()
    bar = P.progress_bar(total=3, file=tty)
    assert not isinstance(bar, P._LogBar)
    bar.close()
    log = io.StringIO()
    P.progress_bar(total=3, file=log, disable=True).close()
    assert log.getvalue() == ""
