"""How fast AP box and AP mask are computed: pycocotools' COCOeval against faster-coco-eval and hotcoco.

    python benchmarks/ap_speed.py [--images 300] [--height 256] [--width 512] [--seed 0]

Ground truth: the thing instances of N synthetic scenes (``thing_annotations``, RLE masks,
crowd regions included). Detections: each instance found again with a jittered box and a
mask eroded or grown by a pixel, a score, sometimes the wrong class, plus false positives;
a few thousand in all. Each evaluator runs the COCO protocol (load the results, evaluate,
accumulate, summarize) for ``bbox`` and ``segm`` on the same data, three times; the best
time counts. All 12 summary numbers of each must equal pycocotools' to 1e-9. Last line:

    ap_speed images=<N> detections=<D> pycocotools_s=<a> faster_coco_eval_s=<b> hotcoco_s=<c>
    faster_speedup=<a/b> hotcoco_speedup=<a/c> faster_diff=<d> hotcoco_diff=<e>

(times for bbox and segm together; ``*_diff`` the largest |difference| of a summary number.)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from unips.datasets.coco_instances import rle_encode, thing_annotations
from unips.datasets.synthetic import CATEGORIES, render_scene


def make_data(images: int, height: int, width: int, seed: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A COCO instances dataset and detection results (``bbox`` and ``segmentation``) of it."""
    rng = np.random.default_rng(seed)
    things = [c for c in CATEGORIES.to_json() if c["isthing"]]
    dataset: dict[str, Any] = {"images": [], "annotations": [], "categories": things}
    results = []
    for image_id in range(1, images + 1):
        _, panoptic, segments = render_scene(rng, height, width)
        dataset["images"].append({"id": image_id, "height": height, "width": width})
        dataset["annotations"] += thing_annotations(panoptic, segments, CATEGORIES, image_id,
                                                    first_id=len(dataset["annotations"]) + 1)
        for seg in segments:
            if seg["category_id"] not in {c["id"] for c in things}:
                continue
            mask = panoptic == seg["id"]
            for _ in range(int(rng.integers(1, 3))):  # found once or twice (a duplicate)
                changed = ndimage.binary_erosion(mask) if rng.random() < 0.5 else ndimage.binary_dilation(mask)
                changed = changed if changed.any() else mask
                results.append(_result(image_id, changed, rng, seg["category_id"], things))
        for _ in range(int(rng.integers(2, 6))):  # false positives
            mask = np.zeros((height, width), bool)
            y, x = int(rng.integers(0, height - 20)), int(rng.integers(0, width - 20))
            mask[y:y + int(rng.integers(5, 20)), x:x + int(rng.integers(5, 20))] = True
            results.append(_result(image_id, mask, rng, int(rng.choice([c["id"] for c in things])), things))
    return dataset, results


def _result(image_id: int, mask: np.ndarray, rng: np.random.Generator, category: int,
            things: list[dict[str, Any]]) -> dict[str, Any]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    box = np.array([cols[0], rows[0], cols[-1] + 1 - cols[0], rows[-1] + 1 - rows[0]], float)
    box += rng.normal(0, 1.5, 4) * [1, 1, 0.5, 0.5]
    if rng.random() < 0.1:
        category = int(rng.choice([c["id"] for c in things]))
    (rle,) = rle_encode(mask[None])
    return {"image_id": image_id, "category_id": category, "bbox": [float(v) for v in box],
            "segmentation": rle, "score": float(rng.random())}


def _split(results: list[dict[str, Any]], iou_type: str) -> list[dict[str, Any]]:
    """Box results with ``bbox`` only, mask results with ``segmentation`` only (as unips.evaluation.coco_ap)."""
    drop = "segmentation" if iou_type == "bbox" else "bbox"
    return [{k: v for k, v in r.items() if k != drop} for r in results]


def run_pycocotools(dataset: dict[str, Any], results: list[dict[str, Any]], iou_type: str, _: Path) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    gt.dataset = copy.deepcopy(dataset)
    gt.createIndex()
    evaluation = COCOeval(gt, gt.loadRes(_split(results, iou_type)), iou_type)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return np.asarray(evaluation.stats, float)


def run_faster_coco_eval(dataset: dict[str, Any], results: list[dict[str, Any]], iou_type: str, _: Path) -> np.ndarray:
    from faster_coco_eval import COCO, COCOeval_faster

    gt = COCO(copy.deepcopy(dataset))
    evaluation = COCOeval_faster(gt, gt.loadRes(_split(results, iou_type)), iou_type)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return np.asarray(evaluation.stats, float)[:12]


def run_hotcoco(dataset: dict[str, Any], results: list[dict[str, Any]], iou_type: str, folder: Path) -> np.ndarray:
    import hotcoco

    gt = hotcoco.COCO(str(folder / "gt.json"))
    evaluation = hotcoco.COCOeval(gt, gt.loadRes(_split(results, iou_type)), iou_type)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return np.asarray(evaluation.stats, float)[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    dataset, results = make_data(args.images, args.height, args.width, args.seed)
    print(f"{args.images} images, {len(dataset['annotations'])} instances, {len(results)} detections "
          f"(made in {time.perf_counter() - start:.1f} s)")
    times: dict[str, float] = {}
    stats: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "gt.json").write_text(json.dumps(dataset))
        for name, run in (("pycocotools", run_pycocotools), ("faster_coco_eval", run_faster_coco_eval),
                          ("hotcoco", run_hotcoco)):
            best = []
            for _ in range(3):
                start = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):  # every evaluator prints its table
                    out = np.concatenate([run(dataset, results, kind, Path(tmp)) for kind in ("bbox", "segm")])
                best.append(time.perf_counter() - start)
            times[name], stats[name] = min(best), out
            print(f"{name}: {' / '.join(f'{t:.3f}' for t in best)} s; AP box {100 * out[0]:.4f} "
                  f"AP mask {100 * out[12]:.4f}")
    diff = {name: float(np.max(np.abs(stats[name] - stats["pycocotools"]))) for name in stats}
    print(f"ap_speed images={args.images} detections={len(results)} pycocotools_s={times['pycocotools']:.3f} "
          f"faster_coco_eval_s={times['faster_coco_eval']:.3f} hotcoco_s={times['hotcoco']:.3f} "
          f"faster_speedup={times['pycocotools'] / times['faster_coco_eval']:.2f} "
          f"hotcoco_speedup={times['pycocotools'] / times['hotcoco']:.2f} "
          f"faster_diff={diff['faster_coco_eval']:.3g} hotcoco_diff={diff['hotcoco']:.3g}")


if __name__ == "__main__":
    main()
