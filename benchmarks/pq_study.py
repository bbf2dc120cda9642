"""A study's evaluation: one validation set scored for several prediction sets, with and without the ground-truth cache.

    python benchmarks/pq_study.py [--images 40] [--sets 8] [--height 1024] [--width 2048] [--workers 2]

Writes N ground-truth scenes and ``--sets`` prediction sets perturbed from them (other
seeds) as COCO panoptic PNG + JSON in a temporary folder, then scores every prediction set
with ``evaluate_pq_files``: once decoding the ground truth each time, once with
``gt_cache`` (the first set fills the cache, the others read it). The numbers must be
equal. Last line:

    pq_study images=<N> sets=<S> plain_s=<a> cached_s=<b> speedup=<a/b> first_cached_s=<c> later_cached_s=<d>

(``plain_s`` and ``cached_s`` for all sets; ``first_cached_s`` the set that filled the cache,
``later_cached_s`` the mean of the others.)
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from unips.datasets.panoptic_format import id2rgb, write_json, write_png
from unips.datasets.synthetic import CATEGORIES, render_scene
from unips.evaluation.export import PanopticExporter
from unips.evaluation.pq_files import evaluate_pq_files
from unips.testing.perturb import perturb


def _write_image(args: tuple[Path, int, int, int, int]) -> tuple[list[dict], list[dict]]:
    """One scene's ground-truth PNG and its predictions' PNGs; (its segments_info, one annotation per set)."""
    root, index, height, width, sets = args
    _, panoptic, segments = render_scene(np.random.default_rng([0, index]), height, width)
    write_png(root / "gt" / f"{index:06d}.png", id2rgb(panoptic))
    annotations = []
    for k in range(sets):
        pred, pred_segments = perturb(np.random.default_rng([k + 1, index]), panoptic, segments, CATEGORIES)
        exporter = PanopticExporter(root / f"set{k}", CATEGORIES, name="pred")  # writes the PNG, dataset ids
        exporter.add(index, pred, pred_segments, f"{index:06d}.png")
        annotations.append(exporter.annotations[0])
    return segments, annotations


def generate(root: Path, images: int, sets: int, height: int, width: int) -> None:
    """``gt.json`` + ``gt/`` and ``set<k>/pred.json`` + ``set<k>/pred/`` under ``root``."""
    (root / "gt").mkdir(parents=True)
    with multiprocessing.Pool() as pool:
        scenes = pool.map(_write_image, [(root, i + 1, height, width, sets) for i in range(images)])
    names = [f"{i + 1:06d}.png" for i in range(images)]
    write_json(root / "gt.json", {
        "images": [{"id": i + 1, "file_name": name, "height": height, "width": width} for i, name in enumerate(names)],
        "annotations": [{"image_id": i + 1, "file_name": name, "segments_info": segments}
                        for i, (name, (segments, _)) in enumerate(zip(names, scenes, strict=True))],
        "categories": CATEGORIES.to_json()})
    for k in range(sets):
        write_json(root / f"set{k}" / "pred.json", {"annotations": [annotations[k] for _, annotations in scenes]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--sets", type=int, default=8)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        generate(root, args.images, args.sets, args.height, args.width)
        print(f"generated {args.images} images and {args.sets} prediction sets in {time.perf_counter() - start:.1f} s")
        evaluate_pq_files(root / "gt.json", root / "set0/pred.json", root / "gt", root / "set0/pred")  # start numba

        def score(k: int, cache: Path | None) -> tuple[pd.DataFrame, float]:
            start = time.perf_counter()
            result, _ = evaluate_pq_files(root / "gt.json", root / f"set{k}/pred.json", root / "gt",
                                          root / f"set{k}/pred", workers=args.workers, gt_cache=cache)
            return result.per_class, time.perf_counter() - start

        plain = [score(k, None) for k in range(args.sets)]
        cached = [score(k, root / "cache") for k in range(args.sets)]
    for (expected, _), (got, _) in zip(plain, cached, strict=True):
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
    plain_s, cached_s = sum(t for _, t in plain), sum(t for _, t in cached)
    later = [t for _, t in cached[1:]]
    print(f"per set (s): plain {' / '.join(f'{t:.3f}' for _, t in plain)}; "
          f"cached {' / '.join(f'{t:.3f}' for _, t in cached)}; numbers equal")
    print(f"pq_study images={args.images} sets={args.sets} plain_s={plain_s:.3f} cached_s={cached_s:.3f} "
          f"speedup={plain_s / cached_s:.2f} first_cached_s={cached[0][1]:.3f} "
          f"later_cached_s={sum(later) / max(len(later), 1):.3f}")


if __name__ == "__main__":
    main()
