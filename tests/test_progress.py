"""Progress bars: on stderr, shown when asked, or (``progress=None``, what commands pass) when stderr is a terminal."""

from __future__ import annotations

import io
import sys

import pytest

from unips.progress import progress_bar


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("progress", "terminal", "shown"), [
    (False, True, False),  # the library default: never
    (True, False, True),  # asked for: always
    (None, False, False),  # a command's default: a log or a pipe gets no bar
    (None, True, True),  # ... a terminal does
])
def test_a_bar_is_shown_when_asked_or_on_a_terminal(monkeypatch: pytest.MonkeyPatch, progress: bool | None,
                                                    terminal: bool, shown: bool) -> None:
    stderr = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    assert list(progress_bar(range(3), desc="val", progress=progress)) == [0, 1, 2]  # bar or not, the same items
    if shown:
        assert "val: 100%" in stderr.getvalue() and "3/3" in stderr.getvalue()
    else:
        assert stderr.getvalue() == ""
