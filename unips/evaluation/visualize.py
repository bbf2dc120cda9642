"""Colour pictures of panoptic maps: per-segment colours, overlays, side-by-side panels.

Colours are deterministic: each segment takes its category's colour, shifted by an
amount derived from its segment id so neighbouring instances of one class differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from unips.datasets.categories import CategoryMap

VOID_COLOUR = (0, 0, 0)
BOUNDARY_COLOUR = (255, 255, 255)


def segment_colour(segment_id: int, base: Sequence[int], isthing: bool) -> np.ndarray:
    """``(3,)`` uint8: the category colour, jittered per instance for things."""
    colour = np.asarray(base, dtype=np.int32)
    if isthing:
        # A cheap integer hash of the id gives a stable jitter in [-60, 60] per channel.
        h = (segment_id * 2654435761) & 0xFFFFFFFF
        colour = colour + np.array([(h >> s) % 121 - 60 for s in (0, 8, 16)])
    return np.clip(colour, 0, 255).astype(np.uint8)


def boundaries(ids: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: pixels whose right or lower neighbour belongs to another segment."""
    edge = np.zeros(ids.shape, dtype=bool)
    edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    edge[:-1, :] |= ids[:-1, :] != ids[1:, :]
    return edge


def colorize_panoptic(
    panoptic: np.ndarray, segments_info: Sequence[dict[str, Any]], categories: CategoryMap, draw_boundaries: bool = True
) -> np.ndarray:
    """``(H, W)`` segment ids -> ``(H, W, 3)`` uint8 picture (void black, boundaries white)."""
    picture = np.zeros((*panoptic.shape, 3), dtype=np.uint8)
    picture[:] = VOID_COLOUR
    for seg in segments_info:
        category = categories.categories[categories.train_id(seg["category_id"])]
        picture[panoptic == seg["id"]] = segment_colour(int(seg["id"]), category.color, category.isthing)
    if draw_boundaries:
        picture[boundaries(panoptic)] = BOUNDARY_COLOUR
    return picture


def overlay(image: np.ndarray, picture: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a colour picture over an ``(H, W, 3)`` uint8 image."""
    blended = (1 - alpha) * image.astype(np.float32) + alpha * picture.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def draw_boxes(image: np.ndarray, boxes: np.ndarray, colour: Sequence[int] = (255, 255, 0)) -> np.ndarray:
    """Copy of ``(H, W, 3)`` ``image`` with one-pixel outlines of ``(N, 4)`` ``x1, y1, x2, y2`` boxes."""
    out = image.copy()
    height, width = out.shape[:2]
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        c0, r0 = max(int(x1), 0), max(int(y1), 0)
        c1, r1 = min(int(np.ceil(x2)) - 1, width - 1), min(int(np.ceil(y2)) - 1, height - 1)
        if c0 > c1 or r0 > r1:
            continue
        out[r0, c0 : c1 + 1] = colour
        out[r1, c0 : c1 + 1] = colour
        out[r0 : r1 + 1, c0] = colour
        out[r0 : r1 + 1, c1] = colour
    return out


def side_by_side(panels: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Concatenate equally tall ``(H, W_i, 3)`` panels left to right with white gaps."""
    height = panels[0].shape[0]
    spacer = np.full((height, gap, 3), 255, dtype=np.uint8)
    parts: list[np.ndarray] = []
    for panel in panels:
        if panel.shape[0] != height:
            raise ValueError(f"panels must share a height, got {[p.shape[0] for p in panels]}")
        parts += [panel, spacer]
    return np.concatenate(parts[:-1], axis=1)


def stack_rows(rows: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Stack equally wide ``(H_i, W, 3)`` rows top to bottom with white gaps."""
    width = rows[0].shape[1]
    spacer = np.full((gap, width, 3), 255, dtype=np.uint8)
    parts: list[np.ndarray] = []
    for row in rows:
        parts += [row, spacer]
    return np.concatenate(parts[:-1], axis=0)
