"""Pictures of one's own (no annotations) as the network's input: any common file, RGB out.

    files = list_pictures([Path("my_photos"), Path("street.jpg")])
    image = read_picture(files[0])  # (H, W, 3) uint8

PIL decodes the file; a camera's EXIF rotation is applied (the picture as a viewer shows
it), greyscale and palette pictures become three equal channels, an alpha channel is
dropped, and 16-bit samples are scaled to 8 bits (PIL's own conversion would clip them
to white). A file PIL cannot read raises :class:`UnreadablePicture` naming it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# What a folder is searched for; a file named explicitly is tried whatever its suffix.
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")


class UnreadablePicture(ValueError):
    """A picture file that is missing, corrupt, truncated or not an image."""


def list_pictures(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The picture files named by ``inputs``: a file as given, a folder's pictures (by suffix, its
    subfolders included, sorted); a path that does not exist raises ``FileNotFoundError`` naming it."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES)
        elif item.exists():
            files.append(item)
        else:
            raise FileNotFoundError(f"no picture or folder {item}")
    return files


def as_rgb(img: Image.Image) -> np.ndarray:
    """A decoded PIL picture as ``(H, W, 3)`` uint8."""
    img = ImageOps.exif_transpose(img)
    if img.mode.startswith("I") or img.mode == "F":  # 16-bit (or 32-bit integer / float) greyscale
        grey = np.asarray(img, dtype=np.float64)
        # 65535 / 257 = 255: 16-bit white stays white. Modes I and F do not say their range: values
        # beyond 8 bits are taken as 16-bit ones.
        sixteen = img.mode.startswith("I;16") or grey.max(initial=0) > 255
        scale = 257.0 if sixteen else 1.0
        grey = np.clip(np.rint(grey / scale), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.array(img.convert("RGB"))  # L, P, RGBA, LA, CMYK, YCbCr...: a writable copy


def read_picture(source: str | os.PathLike[str] | bytes) -> np.ndarray:
    """Decode a picture file (a path, or its bytes) to ``(H, W, 3)`` uint8."""
    name = "picture bytes" if isinstance(source, bytes) else str(source)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            return as_rgb(img)
    except Image.DecompressionBombError as err:
        raise UnreadablePicture(f"{name}: {err}") from err
    except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for missing, truncated or foreign files
        raise UnreadablePicture(f"cannot read {name}: {err}") from err
