"""The COCO panoptic file format: segment-id PNGs, JSON files, and their errors.

A panoptic PNG stores one segment id per pixel as ``id = R + 256 G + 256^2 B``
(``panopticapi.utils.rgb2id``); id 0 is VOID. Every reader here raises an error
that names the file (and the image / segment id) at fault.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

VOID_ID = 0
MAX_SEGMENT_ID = 256**3 - 1


class PanopticFormatError(ValueError):
    """A panoptic dataset file exists but its content is not what the format requires."""


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 colours -> ``(H, W)`` int32 segment ids."""
    rgb = rgb.astype(np.int32, copy=False)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """``(H, W)`` segment ids -> ``(H, W, 3)`` uint8 colours (inverse of :func:`rgb2id`)."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() > MAX_SEGMENT_ID):
        raise ValueError(f"segment ids must lie in [0, {MAX_SEGMENT_ID}], got [{ids.min()}, {ids.max()}]")
    ids = ids.astype(np.uint32, copy=False)
    return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=-1).astype(np.uint8)


def mask_bbox_xywh(mask: np.ndarray) -> list[int]:
    """Tight ``[x, y, width, height]`` of a non-empty ``(H, W)`` boolean mask (COCO convention)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    x0, y0 = int(cols[0]), int(rows[0])
    return [x0, y0, int(cols[-1]) - x0 + 1, int(rows[-1]) - y0 + 1]


def read_json(path: str | os.PathLike[str]) -> Any:
    """Load a JSON file; a missing or malformed file raises an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"JSON file not found: {path}")
    try:
        with path.open("r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise PanopticFormatError(f"{path} is not valid JSON: {err}") from err


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _decode(path: str | os.PathLike[str], what: str, image_id: object, required_mode: str | None,
            convert: str | None) -> np.ndarray:
    """Decode an image file with PIL; a missing, corrupt or wrong-mode file raises an error naming it."""
    path = Path(path)
    which = f" (image id {image_id})" if image_id is not None else ""
    if not path.is_file():
        raise FileNotFoundError(f"{what}{which} not found: {path}")
    try:
        with Image.open(path) as img:
            mode = img.mode
            array = np.array(img.convert(convert) if convert else img)  # a writable copy, as torch wants
    except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for truncated / corrupt files
        raise PanopticFormatError(f"cannot decode {what}{which} {path}: {err}") from err
    if required_mode is not None and mode != required_mode:
        raise PanopticFormatError(f"{what}{which} must be {required_mode}, got mode {mode}: {path}")
    return array


def read_rgb_image(path: str | os.PathLike[str], *, image_id: object = None) -> np.ndarray:
    """Decode an image file to ``(H, W, 3)`` uint8 (any PIL mode is converted to RGB)."""
    return _decode(path, "image", image_id, required_mode=None, convert="RGB")


def write_png(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write a uint8 ``(H, W)`` or ``(H, W, 3)`` array as PNG (deterministic bytes)."""
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG")


def check_segments_match(
    ids_in_png: np.ndarray, ids_in_json: list[int], *, image_id: object, png_path: Path, json_path: Path
) -> None:
    """Every non-void id of the PNG has a JSON segment, and every JSON segment is in the PNG."""
    in_png = {int(i) for i in ids_in_png if i != VOID_ID}
    in_json = set(ids_in_json)
    missing_in_json = sorted(in_png - in_json)
    if missing_in_json:
        raise PanopticFormatError(
            f"image id {image_id}: segment id(s) {missing_in_json} are in the PNG {png_path} "
            f"but not in its segments_info in {json_path}"
        )
    missing_in_png = sorted(in_json - in_png)
    if missing_in_png:
        raise PanopticFormatError(
            f"image id {image_id}: segment id(s) {missing_in_png} are in segments_info in {json_path} "
            f"but not in the PNG {png_path}"
        )


def to_numpy(x: Any) -> np.ndarray:
    """A numpy array from a numpy array, a list or a (possibly CUDA) torch tensor, without copying on CPU."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)  # torch, without importing it


def as_id_map(ids: Any, what: str, where: str) -> np.ndarray:
    """A ``(H, W)`` integer id map from a numpy array or a (possibly CUDA) torch tensor, without copying on CPU."""
    ids = to_numpy(ids)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise PanopticFormatError(f"{where}: the {what} map must be a 2-D integer array, got {ids.dtype} {ids.shape}")
    return ids
