"""Dataset statistics on a hand-made JSON whose answers are known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unips.datasets.statistics import split_statistics


def test_statistics_of_a_hand_made_split(tmp_path: Path) -> None:
    # Image 1 (10x10): stuff 60 px, three things: A [0,0,4,4] overlaps B [2,2,4,4]; C [7,7,2,2] inside nothing.
    # Image 2 (10x10): stuff 90 px, a crowd of 5 px; 5 void px.
    data = {
        "images": [{"id": 1, "file_name": "1.png", "height": 10, "width": 10},
                   {"id": 2, "file_name": "2.png", "height": 10, "width": 10}],
        "annotations": [
            {"image_id": 1, "file_name": "1.png", "segments_info": [
                {"id": 1, "category_id": 9, "area": 60, "bbox": [0, 0, 10, 10], "iscrowd": 0},
                {"id": 2, "category_id": 1, "area": 16, "bbox": [0, 0, 4, 4], "iscrowd": 0},
                {"id": 3, "category_id": 1, "area": 12, "bbox": [2, 2, 4, 4], "iscrowd": 0},
                {"id": 4, "category_id": 2, "area": 4, "bbox": [7, 7, 2, 2], "iscrowd": 0}]},
            {"image_id": 2, "file_name": "2.png", "segments_info": [
                {"id": 1, "category_id": 9, "area": 90, "bbox": [0, 0, 10, 10], "iscrowd": 0},
                {"id": 5, "category_id": 1, "area": 5, "bbox": [3, 3, 2, 3], "iscrowd": 1}]}],
        "categories": [{"id": 1, "name": "a", "isthing": 1}, {"id": 2, "name": "b", "isthing": 1},
                       {"id": 9, "name": "s", "isthing": 0}],
    }
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    stats = split_statistics(path)
    assert stats["images"] == 2
    assert stats["segments_per_image"] == 3.0 and stats["things_per_image"] == 1.5
    assert stats["crowd_per_image"] == 0.5 and stats["stuff_per_image"] == 1.0
    assert stats["thing_pixel_share"] == pytest.approx(32 / 200)
    assert stats["crowd_pixel_share"] == pytest.approx(5 / 200)
    assert stats["stuff_pixel_share"] == pytest.approx(150 / 200)
    assert stats["void_pixel_share"] == pytest.approx(13 / 200)
    assert stats["overlapping_box_share"] == pytest.approx(2 / 3)
    assert stats["nested_box_share"] == 0.0
    assert stats["border_cut_share"] == pytest.approx(1 / 3)  # only A touches the border
