"""Look at a dataset before training: build the synthetic set if needed, describe it, draw its ground truth.

    python experiments/show_data.py [--preset smoke] [--out outputs/data] [key.sub=value ...]

1. generates the preset's synthetic dataset under ``data.root`` on first use,
2. prints each split's statistics (segments per image, pixel shares, box overlaps),
3. writes colour pictures of validation ground truth (image | panoptic | overlay) and
   of augmented training samples with their derived boxes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from unips.commands import run_command
from unips.config import load_config
from unips.datasets.build import build_dataset, split_files
from unips.datasets.panoptic_format import write_png
from unips.datasets.statistics import format_statistics, split_statistics
from unips.evaluation.visualize import colorize_panoptic, draw_boxes, overlay, side_by_side, stack_rows
from unips.seeding import seed_everything


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--out", type=Path, default=Path("outputs/data"))
    parser.add_argument("--num-images", type=int, default=6, help="images per picture")
    parser.add_argument("overrides", nargs="*", help="key.sub=value")
    args = parser.parse_args()

    cfg = load_config(args.preset, args.overrides)
    seed_everything(cfg.seed)
    val = build_dataset(cfg.data, cfg.data.val_split, train=False)  # generates the synthetic set if needed
    train = build_dataset(cfg.data, cfg.data.train_split, train=True)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"dataset: {cfg.data.dataset} at {cfg.data.root.resolve()}")

    statistics = {}
    for split in (cfg.data.train_split, cfg.data.val_split):
        statistics[split] = split_statistics(split_files(cfg.data, split).json_path)
        print(format_statistics(f"split '{split}'", statistics[split]))
    (args.out / "statistics.json").write_text(json.dumps(statistics, indent=2))

    rows = []
    for index in range(min(args.num_images, len(val))):
        image, panoptic, record = val.load(index)
        picture = colorize_panoptic(panoptic, record.segments_info, val.categories)
        rows.append(side_by_side([image, picture, overlay(image, picture)]))
    write_png(args.out / "val_ground_truth.png", stack_rows(rows))

    rows = []
    for index in range(min(args.num_images, len(train))):
        image_tensor, target = train[index]
        image = (image_tensor.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        picture = colorize_panoptic(target["panoptic"].numpy(), target["segments_info"], train.categories)
        boxed = draw_boxes(overlay(image, picture), target["boxes"].numpy())
        rows.append(side_by_side([image, boxed]))
    write_png(args.out / "train_augmented.png", stack_rows(rows))

    print(f"\nstatistics:           {(args.out / 'statistics.json').resolve()}")
    print(f"validation pictures:  {(args.out / 'val_ground_truth.png').resolve()}  (image | panoptic | overlay)")
    print(f"augmented samples:    {(args.out / 'train_augmented.png').resolve()}  (image | overlay + thing boxes)")


if __name__ == "__main__":
    run_command(main)
