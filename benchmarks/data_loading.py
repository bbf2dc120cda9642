"""How fast the panoptic reader serves training samples at Cityscapes resolution.

    python benchmarks/data_loading.py [--images 12] [--height 1024] [--width 2048] [--workers 2]

Generates a synthetic split of the given size in a temporary folder, then measures in
one run, per image: decoding and checking the files, deriving the targets, the paper's
Cityscapes augmentation (scale 0.5-2, 512x1024 crop, flip, jitter), a whole item, and a
DataLoader's throughput; plus the segment-id check with ``pd.unique`` against
``np.unique`` (the reason the reader uses pandas). Last line:

    data_loading images=<N> size=<H>x<W> decode_ms=<a> targets_ms=<b> augment_ms=<c> item_ms=<d>
    loader_ips=<e> unique_speedup=<np/pd> ips_per_core=<1000/d>

``ips_per_core`` is what one loader process serves on one core: a GPU that trains ``g``
images/s needs ``g / ips_per_core`` loader cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from unips.config import AugmentConfig
from unips.datasets import PanopticDataset, collate_panoptic, synthetic
from unips.datasets.targets import panoptic_targets
from unips.datasets.transforms import build_train_augmentation
from unips.seeding import seed_everything


def _ms_per_call(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for i in range(repeats):
        fn(i)
    return 1000 * (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        root = synthetic.generate(Path(tmp) / "syn", args.images, 1, args.height, args.width, seed=0)
        print(f"generated {args.images} images of {args.height}x{args.width} in {time.perf_counter() - start:.1f} s")
        augment = build_train_augmentation(AugmentConfig())  # the paper's Cityscapes recipe
        plain = PanopticDataset(root / "images/train", root / "panoptic_train.json", root / "panoptic_train")
        augmented = PanopticDataset(plain.image_dir, plain.json_path, plain.png_dir, transform=augment)
        n = len(plain)
        loaded = [plain.load(i) for i in range(n)]

        decode_ms = _ms_per_call(plain.load, n)
        targets_ms = _ms_per_call(lambda i: panoptic_targets(loaded[i][1], list(loaded[i][2].segments_info),
                                                             plain.categories), n)
        augment_ms = _ms_per_call(lambda i: augment(loaded[i][0], loaded[i][1]), n)
        item_ms = _ms_per_call(augmented.__getitem__, n)
        np_ms = _ms_per_call(lambda i: np.unique(loaded[i][1]), n)
        pd_ms = _ms_per_call(lambda i: pd.unique(loaded[i][1].ravel()), n)

        loader = DataLoader(augmented, batch_size=2, num_workers=args.workers, collate_fn=collate_panoptic,
                            **seed_everything(0))
        next(iter(loader))  # start the workers before timing
        start = time.perf_counter()
        seen = sum(len(images) for images, _ in loader)
        loader_ips = seen / (time.perf_counter() - start)

    print(f"per image: decode+check {decode_ms:.1f} ms, targets {targets_ms:.1f} ms, augment {augment_ms:.1f} ms, "
          f"whole item {item_ms:.1f} ms; loader with {args.workers} workers {loader_ips:.1f} images/s")
    print(f"segment-id check: np.unique {np_ms:.1f} ms, pd.unique {pd_ms:.1f} ms")
    print(f"data_loading images={n} size={args.height}x{args.width} decode_ms={decode_ms:.1f} "
          f"targets_ms={targets_ms:.1f} augment_ms={augment_ms:.1f} item_ms={item_ms:.1f} "
          f"loader_ips={loader_ips:.2f} unique_speedup={np_ms / pd_ms:.1f} ips_per_core={1000 / item_ms:.1f}")


if __name__ == "__main__":
    main()
