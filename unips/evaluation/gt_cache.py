"""Ground truth decoded once: each ground-truth PNG kept as per-pixel segment rows in a cache folder.

Scoring many prediction sets against one validation set (a study's rows, a checkpoint
after another) decodes the same ground-truth PNGs each time. The cache keeps each one as
the rows the joint histogram needs (``0`` an id ``segments_info`` lacks, ``1`` void,
``k + 2`` segment ``k`` of ``segments_info``), one ``.npy`` file per image (uint8, or
uint16 beyond 254 segments), read back memory-mapped: the second evaluation decodes only
the predictions.

Keys: a folder per annotation file, named by the SHA-256 of its bytes (another
``segments_info`` order or category, another file); inside it, one file per PNG named by
its name, size and modification time. A changed annotation file or PNG is therefore never
read from the cache; what it replaced stays on disk until the folder is removed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unips.datasets.panoptic_format import MAX_SEGMENT_ID
from unips.datasets.panoptic_png import read_panoptic_png
from unips.evaluation.pq_stats import FIRST_SEGMENT, SegmentRows, segment_index


def default_cache_folder() -> Path:
    """``$UNIPS_CACHE_DIR``, else ``$XDG_CACHE_HOME/unips``, else ``~/.cache/unips``; then ``pq_ground_truth``."""
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    root = os.environ.get("UNIPS_CACHE_DIR") or user_cache / "unips"
    return Path(root) / "pq_ground_truth"


def _segment_ids(segments_info: Sequence[dict[str, Any]]) -> np.ndarray | None:
    """The listed ids, or None where they are not valid unique ids (the evaluator then words the error)."""
    ids = [seg.get("id") for seg in segments_info]
    if not all(isinstance(i, (int, np.integer)) and 0 < i <= MAX_SEGMENT_ID for i in ids) or len(set(ids)) < len(ids):
        return None
    return np.asarray(ids, np.int64)


def _rows(ids: np.ndarray, listed: np.ndarray) -> np.ndarray | None:
    """``(H, W)`` rows of an id map, or None if it holds an id that ``listed`` lacks (an error to word)."""
    rows = len(listed) + FIRST_SEGMENT
    if rows > np.iinfo(np.uint16).max or ids.max(initial=0) > MAX_SEGMENT_ID:
        return None
    table = np.zeros(1 << int(max(listed.max(initial=0), ids.max(initial=0))).bit_length(), np.uint16)
    with segment_index(table, listed):  # the histogram's own id -> row mapping
        out = table[ids]
    if (out == 0).any():
        return None
    return out.astype(np.uint8) if rows <= 256 else out


class GroundTruthCache:
    """The ground-truth PNGs of the annotation file ``gt_json``, as segment rows under ``folder``."""

    def __init__(self, folder: str | os.PathLike[str], gt_json: str | os.PathLike[str]) -> None:
        digest = hashlib.sha256(Path(gt_json).read_bytes()).hexdigest()[:24]
        self.folder = Path(folder) / digest

    def _entry(self, png: Path) -> Path:
        stat = png.stat()
        return self.folder / f"{png.name}.{stat.st_size}.{stat.st_mtime_ns}.npy"

    def ground_truth(self, png: Path, segments_info: Sequence[dict[str, Any]],
                     image_id: object) -> SegmentRows | np.ndarray:
        """The cached rows of ``png``; else the PNG decoded, kept as rows where it is consistent with
        ``segments_info`` and returned as such, or returned as ids where it is not (to be named)."""
        if not png.is_file():
            return read_panoptic_png(png, image_id=image_id, what="ground-truth PNG")  # raises, naming it
        entry = self._entry(png)
        if entry.is_file():
            return SegmentRows(np.asarray(np.load(entry, mmap_mode="r")))
        ids = read_panoptic_png(png, image_id=image_id, what="ground-truth PNG")
        listed = _segment_ids(segments_info)
        rows = _rows(ids, listed) if listed is not None else None
        if rows is None:
            return ids
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{png.name}.", suffix=".tmp")
        try:  # written whole, then renamed: another process never reads half a file
            with os.fdopen(fd, "wb") as f:
                np.save(f, rows)
            os.replace(tmp, entry)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return SegmentRows(rows)
