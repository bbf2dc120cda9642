"""Stuff trimming: small stuff segments become void (paper Appendix C, Table I).

Most panoptic methods set stuff segments below an area limit to void before
scoring; the paper does too "unless specified otherwise". It removes false-positive
stuff segments that cost RQ out of proportion to their pixels.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from unips.datasets.panoptic_format import VOID_ID


def trim_small_stuff(
    panoptic: np.ndarray,
    segments_info: Sequence[dict[str, Any]],
    thing_category_ids: Collection[int],
    area_limit: int,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Set stuff segments with fewer than ``area_limit`` pixels to void.

    Args:
        panoptic: ``(H, W)`` segment ids, 0 = void; not modified.
        segments_info: the segments (``id``, ``category_id``, ...) of ``panoptic``.
        thing_category_ids: category ids that are things (never trimmed).
        area_limit: stuff segments with ``area < area_limit`` pixels (counted in the map) are removed.

    Returns:
        ``(panoptic', segments_info')``: a new map and the segments that remain, unchanged otherwise.
    """
    things = set(thing_category_ids)
    removed = []
    kept = []
    for seg in segments_info:
        if seg["category_id"] not in things and int(np.count_nonzero(panoptic == seg["id"])) < area_limit:
            removed.append(seg["id"])
        else:
            kept.append(seg)
    if not removed:
        return panoptic.copy(), kept
    return np.where(np.isin(panoptic, removed), VOID_ID, panoptic), kept
