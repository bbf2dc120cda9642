"""Colour pictures of panoptic maps."""

from __future__ import annotations

import numpy as np

from unips.datasets.synthetic import CATEGORIES
from unips.evaluation.visualize import colorize_panoptic, draw_boxes, overlay, side_by_side


def test_colorize_gives_void_black_distinct_instances_and_white_boundaries() -> None:
    ids = np.zeros((6, 8), dtype=np.int32)
    ids[:, :3] = 1001
    ids[:, 3:6] = 1002
    segments = [{"id": 1001, "category_id": 1}, {"id": 1002, "category_id": 1}]
    picture = colorize_panoptic(ids, segments, CATEGORIES)
    assert picture.shape == (6, 8, 3) and picture.dtype == np.uint8
    assert (picture[:, 7] == 0).all()  # void, away from any boundary
    assert (picture[:, 2] == 255).all() and (picture[:, 5] == 255).all()  # boundaries
    assert not np.array_equal(picture[0, 0], picture[0, 3])  # two boxes of one class differ
    plain = colorize_panoptic(ids, segments, CATEGORIES, draw_boundaries=False)
    assert (plain[:, :3] == plain[0, 0]).all()


def test_draw_boxes_outlines_exactly_the_box() -> None:
    out = draw_boxes(np.zeros((10, 10, 3), np.uint8), np.array([[2, 3, 6, 8]]), colour=(9, 9, 9))
    drawn = (out == 9).all(axis=-1)
    expected = np.zeros((10, 10), bool)
    expected[3, 2:6] = expected[7, 2:6] = expected[3:8, 2] = expected[3:8, 5] = True
    np.testing.assert_array_equal(drawn, expected)


def test_overlay_and_side_by_side() -> None:
    a, b = np.zeros((4, 5, 3), np.uint8), np.full((4, 5, 3), 200, np.uint8)
    assert (overlay(a, b, alpha=0.25) == 50).all()
    assert side_by_side([a, b], gap=2).shape == (4, 12, 3)
