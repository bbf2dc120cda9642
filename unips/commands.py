"""How every command reports a mistake in its input: one ``error: ...`` line, exit status 1.

The message names what is wrong (file, image or segment id, config key, run or study), so a
traceback would only hide it. ``--debug`` anywhere on the command line, or ``UNIPS_DEBUG=1``,
shows the traceback instead. Anything else (a bug, a crash inside a library) keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

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


def add_workdir_argument(parser: argparse.ArgumentParser) -> None:
    """``--workdir``: the folder a command works in (its relative paths, ``./mlflow.db``, ``ray_results/``)."""
    parser.add_argument("--workdir", type=Path, default=os.environ.get("UNIPS_WORKDIR") or None,
                        help="work in this folder (created if missing), as `git -C` does: data/, mlflow.db, "
                             "ray_results/ and outputs/ go there and relative paths are read from there; for "
                             "`ray submit`, which starts in the home folder (default: $UNIPS_WORKDIR, else here)")


def enter_workdir(workdir: Path | None) -> None:
    """Change into ``workdir`` (made if missing), as ``git -C`` does; nothing when None."""
    if workdir is not None:
        workdir = workdir.expanduser()
        workdir.mkdir(parents=True, exist_ok=True)
        os.chdir(workdir)


class _ModeList(argparse.Action):
    """Collects ``--mode full heu`` and ``--mode full,heu`` alike into ``["full", "heu"]``."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        from unips.config import InferenceMode  # unips.config imports this module

        known = [mode.value for mode in InferenceMode]
        modes = [mode for value in values for mode in value.split(",") if mode]
        unknown = [mode for mode in modes if mode not in known]
        if unknown or not modes:
            hint = "; the pictures go before it" if any(os.path.exists(mode) for mode in unknown) else ""
            parser.error(f"{option_string}: modes are {', '.join(known)} (spaces or commas between them); "
                         f"got {' '.join(values)!r}{hint}")
        setattr(namespace, self.dest, list(dict.fromkeys(modes)))


def add_mode_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """``--mode full heu`` (or ``--mode full,heu``; ``--modes`` too): inference modes as ``args.modes``, None if
    not given."""
    parser.add_argument("--mode", "--modes", dest="modes", nargs="+", action=_ModeList, default=None,
                        metavar="MODE", help=f"{help}: full, amx, heu")
