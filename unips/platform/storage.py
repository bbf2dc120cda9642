"""Where Ray results live: a local or shared-filesystem folder, or a URI of any filesystem pyarrow knows.

``platform.storage_path`` is handed to Ray Train and Ray Tune untouched when it is a URI (``s3://``,
``gs://``, ``hdfs://``, ...); what the platform reads back itself (whether a run or study exists, a run's
checkpoints, a final ``state.pt``) goes through :mod:`pyarrow.fs` here, as Ray's own storage does, never
through :mod:`pathlib`. A location is a plain string: a local path, or a URI whose query (e.g.
``?endpoint_override=127.0.0.1:9000&scheme=http`` for an S3-compatible server) and user info are kept
when a path is joined to it.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pyarrow import fs


def is_uri(location: str) -> bool:
    """Whether ``location`` names a filesystem by scheme (``s3://bucket/x``), not a local path."""
    return "://" in location


def resolve_storage(storage_path: str | Path | None, workdir: Path) -> str:
    """The storage location of a config: a URI untouched, a local path absolute (relative to ``workdir``),
    ``<workdir>/ray_results`` when unset."""
    location = str(storage_path) if storage_path is not None else "ray_results"
    if is_uri(location):
        return location
    return str((workdir / location).resolve())


def join(location: str, *parts: str) -> str:
    """``location`` with ``parts`` appended to its path (a URI keeps its scheme, user info and query)."""
    if not is_uri(location):
        return str(Path(location, *parts))
    split = urlsplit(location)
    return urlunsplit(split._replace(path=posixpath.join(split.path or "/", *parts)))


def name_of(location: str) -> str:
    """The last part of the location's path (a run's or a checkpoint's folder name)."""
    path = urlsplit(location).path if is_uri(location) else location
    return posixpath.basename(path.rstrip("/"))


def parent_of(location: str) -> str:
    """The folder holding ``location``."""
    if not is_uri(location):
        return str(Path(location).parent)
    split = urlsplit(location)
    return urlunsplit(split._replace(path=posixpath.dirname(split.path.rstrip("/"))))


def filesystem(location: str) -> tuple[fs.FileSystem, str]:
    """The pyarrow filesystem of ``location`` and the path inside it (as Ray resolves it)."""
    if is_uri(location):
        return fs.FileSystem.from_uri(location)
    return fs.LocalFileSystem(), str(Path(location).resolve())


def kind(location: str) -> fs.FileType:
    """File, Directory (in an object store: a prefix with objects under it) or NotFound."""
    system, path = filesystem(location)
    return system.get_file_info(path).type


def exists(location: str) -> bool:
    return kind(location) != fs.FileType.NotFound


def is_dir(location: str) -> bool:
    return kind(location) == fs.FileType.Directory


def make_dirs(location: str) -> None:
    """Create the folder ``location`` (an object store has no folders: nothing to do there but succeed)."""
    system, path = filesystem(location)
    system.create_dir(path, recursive=True)


def subfolders(location: str, prefix: str = "") -> list[str]:
    """The locations of the folders directly inside ``location`` whose names start with ``prefix``, sorted."""
    if not is_dir(location):
        return []
    system, path = filesystem(location)
    infos = system.get_file_info(fs.FileSelector(path))
    names = sorted(info.base_name for info in infos if info.type == fs.FileType.Directory
                   and info.base_name.startswith(prefix))
    return [join(location, name) for name in names]


def read_bytes(location: str) -> bytes:
    """The whole file at ``location``; FileNotFoundError naming it when there is none."""
    if kind(location) != fs.FileType.File:
        raise FileNotFoundError(f"no file at {location}")
    system, path = filesystem(location)
    # A random-access file reads its known size in one request; a stream would fetch it chunk by chunk.
    with system.open_input_file(path) as file:
        return file.read()


def write_bytes(location: str, data: bytes) -> None:
    """Write ``data`` to the file at ``location`` (whole, replacing what was there), making its folder."""
    make_dirs(parent_of(location))
    system, path = filesystem(location)
    with system.open_output_stream(path) as stream:
        stream.write(data)
