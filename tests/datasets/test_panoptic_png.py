"""The panoptic PNG decoder against PNGs written row filter by row filter, and against Pillow."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unips.datasets.panoptic_format import PanopticFormatError, id2rgb
from unips.datasets.panoptic_png import decode_panoptic_png


def _paeth(left: int, up: int, up_left: int) -> int:
    estimate = left + up - up_left
    to_left, to_up, to_up_left = abs(estimate - left), abs(estimate - up), abs(estimate - up_left)
    if to_left <= to_up and to_left <= to_up_left:
        return left
    return up if to_up <= to_up_left else up_left


def _filtered(rgb: np.ndarray, kinds: list[int]) -> bytes:
    """The PNG pixel data of ``rgb`` ``(H, W, 3)`` uint8, row ``y`` filtered with ``kinds[y]`` (PNG spec 9.2)."""
    height, width, _ = rgb.shape
    rows = rgb.reshape(height, 3 * width).astype(np.int32)
    out = bytearray()
    for y, kind in enumerate(kinds):
        row, above = rows[y], rows[y - 1] if y else np.zeros(3 * width, np.int32)
        left = np.concatenate([np.zeros(3, np.int32), row[:-3]])
        up_left = np.concatenate([np.zeros(3, np.int32), above[:-3]])
        if kind == 0:
            predicted = np.zeros_like(row)
        elif kind == 1:
            predicted = left
        elif kind == 2:
            predicted = above
        elif kind == 3:
            predicted = (left + above) // 2
        else:
            predicted = np.array([_paeth(a, b, c) for a, b, c in zip(left, above, up_left, strict=True)])
        out.append(kind)
        out += ((row - predicted) % 256).astype(np.uint8).tobytes()
    return bytes(out)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png(pixel_data: bytes, width: int, height: int, colour_type: int = 2, interlace: int = 0,
         idat_parts: int = 1) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, interlace)
    stream = zlib.compress(pixel_data)
    step = -(-len(stream) // idat_parts)
    idats = b"".join(_chunk(b"IDAT", stream[k:k + step]) for k in range(0, len(stream), step))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"tEXt", b"k\x00v") + idats + _chunk(b"IEND", b"")


def _segments(height: int, width: int, seed: int) -> np.ndarray:
    """Flat blocks of large ids (all three bytes in use) with noisy borders, as a panoptic map."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 2**24, size=(4, 5))[np.arange(height)[:, None] * 4 // height,
                                               np.arange(width)[None, :] * 5 // width]
    noise = rng.random((height, width)) < 0.05
    ids[noise] = rng.integers(0, 2**24, size=int(noise.sum()))
    return ids.astype(np.uint32)


@pytest.mark.parametrize("kinds", ["each", "random"])
def test_every_row_filter_decodes_to_the_ids(tmp_path: Path, kinds: str) -> None:
    height, width = 20, 37
    ids = _segments(height, width, seed=3)
    rng = np.random.default_rng(4)
    row_kinds = [y % 5 for y in range(height)] if kinds == "each" else rng.integers(0, 5, height).tolist()
    data = _png(_filtered(id2rgb(ids), row_kinds), width, height, idat_parts=3)
    path = tmp_path / "x.png"
    path.write_bytes(data)
    np.testing.assert_array_equal(decode_panoptic_png(data, path), ids)
    # Pillow reads the same file alike (our hand-written file is a valid PNG).
    rgb = np.asarray(Image.open(path)).astype(np.uint32)
    np.testing.assert_array_equal(rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2], ids)


def test_a_pillow_written_png_decodes_as_pillow_reads_it(tmp_path: Path) -> None:
    ids = _segments(64, 128, seed=5)
    path = tmp_path / "p.png"
    Image.fromarray(id2rgb(ids)).save(path)
    np.testing.assert_array_equal(decode_panoptic_png(path.read_bytes(), path), ids)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda rgb: _png(_filtered(rgb, [2] * 4), 5, 4, colour_type=6), "must be an 8-bit RGB PNG"),
    (lambda rgb: _png(_filtered(rgb, [2] * 4), 5, 4, interlace=1), "is interlaced"),
    (lambda rgb: _png(_filtered(rgb, [2, 2, 7, 2]), 5, 4), "unknown filter type in row 2"),
    (lambda rgb: _png(_filtered(rgb, [2] * 3), 5, 4), "cannot decode"),  # a row missing
    (lambda rgb: _png(_filtered(rgb, [2] * 4), 5, 4)[:60], "truncated PNG chunk"),
    (lambda rgb: b"GIF89a" + bytes(40), "not a PNG file"),
])
def test_a_bad_file_is_named(tmp_path: Path, damage, message: str) -> None:
    path = tmp_path / "bad.png"
    data = damage(id2rgb(_segments(4, 5, seed=6)))
    with pytest.raises(PanopticFormatError, match=message) as error:
        decode_panoptic_png(data, path, "predicted PNG", image_id=9)
    assert str(path) in str(error.value)


def test_a_corrupt_stream_is_named(tmp_path: Path) -> None:
    good = _png(_filtered(id2rgb(_segments(4, 5, seed=7)), [1] * 4), 5, 4)
    start = good.index(b"IDAT") + 4
    corrupt = good[:start] + bytes(b ^ 0x5A for b in good[start:start + 8]) + good[start + 8:]
    with pytest.raises(PanopticFormatError, match="cannot decode ground-truth PNG of image id 3"):
        decode_panoptic_png(corrupt, tmp_path / "c.png", "ground-truth PNG", image_id=3)
