"""Progress bars on long loops (data generation, conversion, evaluation, PQ from files), and durations.

Functions that loop over many images take ``progress: bool | None = False``:

* ``False`` (the library default): no bar, so a caller's own output stays clean;
* ``True``: a bar on stderr, terminal or not;
* ``None``: a bar only when stderr is a terminal. Commands pass this, so a bar never fills a
  log file, a CI transcript or a test's captured output.

Never inside Ray Train's workers: training prints its own step lines.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress_bar(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str, unit: str = "image",
                 progress: bool | None = False) -> tqdm:
    """A tqdm bar over ``iterable`` (or updated by hand with ``.update(n)``), shown as ``progress`` says."""
    # disable=None is tqdm's own "off unless the stream is a terminal"; the stream is looked up
    # now, so a redirected or captured sys.stderr receives the bar.
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                disable=None if progress is None else not progress)


def duration(seconds: float) -> str:
    """``41 s``, ``3 min 12 s``, ``2 h 05 min``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
