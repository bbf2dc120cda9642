"""The inference modes' post-processing on hand-built cases."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from unips.datasets.categories import Category, CategoryMap
from unips.models.inference import channels_to_panoptic, finish_segments, heuristic_merge, upsampled_argmax

# Training ids: 0 = car (dataset id 26), 1 = road (7), 2 = sky (23).
CATEGORIES = CategoryMap((Category(7, "road", False, (0, 0, 0)), Category(23, "sky", False, (0, 0, 0)),
                          Category(26, "car", True, (0, 0, 0))))
CAR, ROAD, SKY = 2, 0, 1


def test_heuristic_merge_drops_covered_instances_removes_small_stuff_and_leaves_void() -> None:
    masks = np.zeros((3, 10, 10), dtype=bool)
    masks[0, 2:8, 2:8] = True  # best car
    masks[1, 3:8, 3:8] = True  # mostly under car 0: dropped
    masks[2, 6:10, 6:10] = True  # partly under car 0 (4 of 16 px): kept, its free pixels only
    scores = np.array([0.9, 0.8, 0.7])
    semantic = np.full((10, 10), ROAD)
    semantic[9, 0:2] = SKY  # sky is only 2 pixels (one segment per stuff class): trimmed
    semantic[2:4, 0:2] = CAR  # car pixels that no instance covers: void
    panoptic, segments = heuristic_merge(masks, scores, np.array([CAR, CAR, CAR]), semantic, CATEGORIES,
                                         score_thresh=0.5, overlap_thresh=0.5)
    panoptic, segments = finish_segments(panoptic, segments, CATEGORIES, trim_stuff=True, stuff_area_limit=3)
    cars = [s for s in segments if s["category_id"] == 26]
    assert [s["score"] for s in cars] == [0.9, 0.7]
    assert cars[0]["area"] == 36 and cars[1]["area"] == 12  # 16 minus the 4 pixels car 0 holds
    assert (panoptic[2:4, 0:2] == 0).all()  # uncovered car-class pixels stay void
    assert (panoptic[9, 0:2] == 0).all()  # the small sky segment was trimmed
    assert [(s["category_id"], s["area"]) for s in segments if not s["isthing"]] == [(7, 100 - 36 - 12 - 4 - 2)]
    assert all(s["isthing"] == (s["category_id"] == 26) for s in segments)
    assert all(s["bbox"] is not None for s in segments)


def test_low_scores_never_enter_the_heuristic_merge() -> None:
    masks = np.ones((1, 4, 4), dtype=bool)
    panoptic, segments = heuristic_merge(masks, np.array([0.3]), np.array([CAR]), np.full((4, 4), ROAD), CATEGORIES,
                                         score_thresh=0.5)
    assert [s["category_id"] for s in segments] == [7]


def test_channels_become_segments_of_their_class() -> None:
    channel_map = np.array([[0, 0, 2], [1, 1, 2], [1, 4, 4]])
    classes = [ROAD, SKY, CAR, CAR, CAR]  # channel 3 wins no pixel: no segment
    panoptic, segments = channels_to_panoptic(channel_map, classes, [1, 1, 0.9, 0.8, 0.7], CATEGORIES)
    assert [(s["category_id"], s["score"]) for s in segments] == [(7, 1.0), (23, 1.0), (26, 0.9), (26, 0.7)]
    assert panoptic.tolist() == [[1, 1, 3], [2, 2, 3], [2, 4, 4]]


def test_upsampled_argmax_equals_a_single_full_resolution_argmax() -> None:
    logits = torch.randn(37, 5, 9, generator=torch.Generator().manual_seed(0))
    expected = F.interpolate(logits[None], scale_factor=4, mode="bilinear", align_corners=False)[0].argmax(0)
    torch.testing.assert_close(upsampled_argmax(logits, 18, 33, stride=4, chunk=8), expected[:18, :33])
