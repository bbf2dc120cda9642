"""What a panoptic split contains, computed from its JSON alone.

    python -m unips.datasets.statistics data/synthetic/panoptic_val.json
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from unips.commands import run_command
from unips.datasets.panoptic_json import parse_panoptic_json
from unips.datasets.panoptic_format import read_json


def _box_relations(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``(N, 4)`` ``x, y, w, h`` boxes: which overlap another box, which lie inside another box."""
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    inter_w = np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None])
    inter_h = np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None])
    overlap = (inter_w > 0) & (inter_h > 0)
    inside = (x0[:, None] >= x0[None]) & (y0[:, None] >= y0[None]) & (x1[:, None] <= x1[None]) & (
        y1[:, None] <= y1[None]
    )
    np.fill_diagonal(overlap, False)
    np.fill_diagonal(inside, False)
    return overlap.any(axis=1), inside.any(axis=1)


def _box_counts(boxes: np.ndarray, height: int, width: int) -> tuple[int, int, int]:
    """Of ``(N, 4)`` ``x, y, w, h`` boxes: how many overlap another, lie inside another, touch the border."""
    overlap, inside = _box_relations(boxes)
    border = ((boxes[:, 0] <= 0) | (boxes[:, 1] <= 0) | (boxes[:, 0] + boxes[:, 2] >= width)
              | (boxes[:, 1] + boxes[:, 3] >= height))
    return int(overlap.sum()), int(inside.sum()), int(border.sum())


def split_statistics(json_path: str | Path) -> dict[str, Any]:
    """Counts and shares over one split.

    Returns the number of images; per image, the mean number of segments, thing
    instances, crowd regions and stuff segments; the shares of pixels that are
    things, crowd, stuff and void; and, over the non-crowd thing instances, the
    share whose box overlaps another instance's box, lies inside another
    instance's box, or touches the image border.
    """
    json_path = Path(json_path)
    data = read_json(json_path)
    categories, records = parse_panoptic_json(data, json_path)
    n_things = n_crowd = n_stuff = n_overlap = n_inside = n_border = 0
    px = {"thing": 0, "crowd": 0, "stuff": 0, "total": 0}
    for record in records:
        if record.height is None:
            raise ValueError(f"{json_path}: image id {record.image_id} lacks height/width")
        px["total"] += record.height * record.width
        boxes = []
        for seg in record.segments_info:
            isthing = categories.is_thing(categories.train_id(seg["category_id"]))
            kind = "stuff" if not isthing else ("crowd" if seg.get("iscrowd", 0) else "thing")
            px[kind] += seg["area"]
            n_stuff += kind == "stuff"
            n_crowd += kind == "crowd"
            if kind == "thing":
                boxes.append(seg["bbox"])
        if boxes:
            overlap, inside, border = _box_counts(np.asarray(boxes, dtype=np.float64), record.height, record.width)
            n_things, n_overlap, n_inside, n_border = (n_things + len(boxes), n_overlap + overlap,
                                                       n_inside + inside, n_border + border)
    n_images = len(records)
    things = max(n_things, 1)
    return {
        "images": n_images,
        "segments_per_image": (n_things + n_crowd + n_stuff) / n_images,
        "things_per_image": n_things / n_images,
        "crowd_per_image": n_crowd / n_images,
        "stuff_per_image": n_stuff / n_images,
        "thing_pixel_share": px["thing"] / px["total"],
        "crowd_pixel_share": px["crowd"] / px["total"],
        "stuff_pixel_share": px["stuff"] / px["total"],
        "void_pixel_share": 1.0 - (px["thing"] + px["crowd"] + px["stuff"]) / px["total"],
        "overlapping_box_share": n_overlap / things,
        "nested_box_share": n_inside / things,
        "border_cut_share": n_border / things,
    }


def format_statistics(name: str, stats: dict[str, Any]) -> str:
    """Two-column text table."""
    lines = [f"{name}"]
    for key, value in stats.items():
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
        lines.append(f"  {key:<24s}{text:>10s}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Statistics of COCO panoptic JSON files.")
    parser.add_argument("json", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in args.json:
        print(format_statistics(str(path), split_statistics(path)))


if __name__ == "__main__":
    run_command(main)
