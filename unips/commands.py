"""How every command reports a mistake in its input: one ``error: ...`` line, exit status 1.

The message names what is wrong (file, image or segment id, config key, run or study), so a
traceback would only hide it. ``--debug`` anywhere on the command line, or ``UNIPS_DEBUG=1``,
shows the traceback instead. Anything else (a bug, a crash inside a library) keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn

# Bad input: missing or existing files, malformed data or configs (ConfigError and
# PanopticFormatError are ValueErrors), checkpoints that are not ours, runs or studies not in the store.
INPUT_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, FileExistsError, NotADirectoryError, ValueError,
                                                 LookupError)
BUGS = (KeyError, IndexError)  # LookupErrors that come from code, not from input


def run_command(main: Callable[[], int | None]) -> NoReturn:
    """Run a command's ``main`` and exit with its status; input errors become one line on stderr."""
    debug = "--debug" in sys.argv or os.environ.get("UNIPS_DEBUG") == "1"
    sys.argv = [arg for arg in sys.argv if arg != "--debug"]
    try:
        status = main()
    except INPUT_ERRORS as error:
        if debug or isinstance(error, BUGS):
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    sys.exit(status or 0)
