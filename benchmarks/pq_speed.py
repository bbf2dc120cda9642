"""How fast PQ is computed: our evaluator against panopticapi and hotcoco, on the same files.

    python benchmarks/pq_speed.py [--images 100] [--height 1024] [--width 2048] [--workers 2]

Generates N ground-truth scenes with the synthetic generator and N predictions
perturbed from them (:mod:`unips.testing.perturb`), written as COCO panoptic
PNG + JSON in a temporary folder, then measures in one run:

(a) the file path on the same files: ours (``evaluate_pq_files`` with ``--workers``
    threads), ``panopticapi.evaluation.pq_compute`` (one process per CPU core) and
    ``hotcoco.panoptic.pq_compute`` (Rust); all three must agree. Each runs three times and
    the best time counts (all three printed); our first run includes starting numba (about
    0.25 s once per process);
(b) the in-memory path used during training evaluation: ``PQAccumulator.update`` on
    id maps already in memory (int64, as the dataset's targets), in ms per pair on one core;
(c) peak memory: the CLI's resident set (one process, its threads) in a fresh
    process, and the in-memory accumulator's traced allocations after 1 and after N images.

Last line:

    pq_speed images=<N> ours_s=<a> panopticapi_s=<b> hotcoco_s=<c> speedup=<b/a> vs_hotcoco=<c/a>
    ours_first_s=<our first run>
    inmem_ms=<m> max_abs_diff=<d>

``max_abs_diff`` is the largest absolute difference of any PQ / SQ / RQ (All, Things,
Stuff and per class, fractions) between our file path and panopticapi, the reference,
with equal ``n`` and per-class TP / FP / FN required as well. The other comparisons are
printed above the last line and checked to 1e-9: hotcoco adds IoUs in another order and
differs from panopticapi itself by an ulp, and the in-memory path sums in one process
where panopticapi splits the images over its processes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from unips.datasets.panoptic_format import id2rgb, write_json, write_png
from unips.datasets.panoptic_png import read_panoptic_png
from unips.datasets.synthetic import CATEGORIES, render_scene
from unips.evaluation.export import PanopticExporter
from unips.evaluation.pq_files import evaluate_pq_files
from unips.evaluation.pq_stats import PQAccumulator
from unips.testing.perturb import perturb


def _make_pair(args: tuple[Path, int, int, int, int]) -> tuple[dict[str, Any], np.ndarray, list[dict[str, Any]]]:
    root, index, height, width, seed = args
    rng = np.random.default_rng([seed, index])
    _, panoptic, segments = render_scene(rng, height, width)
    write_png(root / "gt" / f"{index:06d}.png", id2rgb(panoptic))
    pred, pred_segments = perturb(rng, panoptic, segments, CATEGORIES, p_empty=0.02)
    annotation = {"image_id": index, "file_name": f"{index:06d}.png", "segments_info": segments}
    return annotation, pred, pred_segments


def generate(root: Path, images: int, height: int, width: int, seed: int) -> None:
    """Ground truth ``gt.json`` + ``gt/`` and predictions ``pred.json`` + ``pred/`` under ``root``."""
    (root / "gt").mkdir(parents=True)
    exporter = PanopticExporter(root, CATEGORIES, name="pred")
    annotations, image_list = [], []
    with multiprocessing.Pool() as pool:
        jobs = [(root, i + 1, height, width, seed) for i in range(images)]
        for annotation, pred, pred_segments in pool.imap(_make_pair, jobs):
            annotations.append(annotation)
            image_list.append({"id": annotation["image_id"], "file_name": annotation["file_name"],
                               "height": height, "width": width})
            exporter.add(annotation["image_id"], pred, pred_segments, annotation["file_name"])
    exporter.write_json()
    write_json(root / "gt.json", {"images": image_list, "annotations": annotations,
                                  "categories": CATEGORIES.to_json()})


def _compare(ours: dict[str, Any], reference: dict[str, Any], name: str) -> float:
    """Largest |difference| of PQ / SQ / RQ; n and (where the reference has them) TP / FP / FN must be equal."""
    worst = 0.0
    for group in ("All", "Things", "Stuff"):
        if ours[group]["n"] != reference[group]["n"]:
            raise AssertionError(f"{name}: {group} n {ours[group]['n']} != {reference[group]['n']}")
        worst = max(worst, *(abs(ours[group][k] - reference[group][k]) for k in ("pq", "sq", "rq")))
    for category_id, ref in reference["per_class"].items():
        mine = ours["per_class"][int(category_id)]
        worst = max(worst, *(abs(mine[k] - ref[k]) for k in ("pq", "sq", "rq")))
        for k in ("tp", "fp", "fn"):
            if k in ref and mine[k] != ref[k]:
                raise AssertionError(f"{name}: category {category_id} {k} {mine[k]} != {ref[k]}")
    if worst > 1e-9:  # summation order explains an ulp, not this
        raise AssertionError(f"{name}: PQ / SQ / RQ differ by {worst:.3g}")
    return worst


_MEMORY_PROBE = """
import json, resource, sys
from unips.evaluation.pq import main
imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open("/dev/null", "w") as quiet:
    sys.stdout = quiet
    main(sys.argv[1:])
sys.stdout = sys.__stdout__
kib = lambda who: resource.getrusage(who).ru_maxrss
print(json.dumps({"imports": imports, "peak": kib(resource.RUSAGE_SELF)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=2, help="our threads (panopticapi uses a process per core)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from hotcoco.panoptic import pq_compute as hotcoco_pq_compute
    from panopticapi.evaluation import pq_compute

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        generate(root, args.images, args.height, args.width, args.seed)
        print(f"generated {args.images} pairs of {args.height}x{args.width} in {time.perf_counter() - start:.1f} s")
        files = [str(root / "gt.json"), str(root / "pred.json"), str(root / "gt"), str(root / "pred")]

        # (a) the file path, each evaluator on the same files, three times each: the best time counts (the
        # files are in the page cache for all of them). Our first call also starts numba in this process.
        def timed(evaluate: Any) -> tuple[Any, float, list[float]]:
            times = []
            for _ in range(3):
                start = time.perf_counter()
                out = evaluate()
                times.append(time.perf_counter() - start)
            return out, min(times), times

        (result, _), ours_s, ours_times = timed(lambda: evaluate_pq_files(*files, workers=args.workers))
        with contextlib.redirect_stdout(io.StringIO()):  # panopticapi prints per-core progress
            reference, panopticapi_s, panopticapi_times = timed(lambda: pq_compute(*files))
            rust, hotcoco_s, hotcoco_times = timed(lambda: hotcoco_pq_compute(*files))
        ours = result.to_panopticapi()
        vs_panopticapi, vs_hotcoco = _compare(ours, reference, "panopticapi"), _compare(ours, rust, "hotcoco")
        max_abs_diff = vs_panopticapi  # hotcoco and panopticapi disagree by an ulp between themselves
        print(result.table())
        runs = lambda times: " / ".join(f"{t:.3f}" for t in times)  # noqa: E731
        print(f"file path (s, three runs): ours {runs(ours_times)} ({args.workers} threads; the first starts numba), "
              f"panopticapi {runs(panopticapi_times)} ({multiprocessing.cpu_count()} processes), "
              f"hotcoco {runs(hotcoco_times)}")
        print(f"max |difference|: ours vs panopticapi {vs_panopticapi:.3g}, ours vs hotcoco {vs_hotcoco:.3g}, "
              f"hotcoco vs panopticapi {_compare(rust, reference, 'hotcoco vs panopticapi'):.3g}; "
              "n and TP / FP / FN equal")

        # (c) peak memory of the CLI (process + workers) in a fresh process.
        cli = [sys.executable, "-c", _MEMORY_PROBE, "--gt-json", files[0], "--pred-json", files[1],
               "--gt-folder", files[2], "--pred-folder", files[3], "--workers", str(args.workers)]
        rss = json.loads(subprocess.run(cli, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(f"CLI resident memory (MiB): {rss['imports'] / 1024:.0f} after imports, peak {rss['peak'] / 1024:.0f} "
              f"with {args.workers} threads")

        # (b) the in-memory path: maps decoded beforehand (int64, as the targets), timed on one core.
        pairs = []
        gt_json = json.loads((root / "gt.json").read_text())
        pred_json = json.loads((root / "pred.json").read_text())
        for gt_ann, pred_ann in zip(gt_json["annotations"], pred_json["annotations"], strict=True):
            gt = read_panoptic_png(root / "gt" / gt_ann["file_name"]).astype(np.int64)
            pred = read_panoptic_png(root / "pred" / pred_ann["file_name"]).astype(np.int64)
            pairs.append((pred, pred_ann["segments_info"], gt, gt_ann["segments_info"]))
    accumulator = PQAccumulator(CATEGORIES)  # fresh: its first image pays for the lookup table and buffers
    start = time.perf_counter()
    for pair in pairs:
        accumulator.update(*pair)
    inmem_ms = 1000 * (time.perf_counter() - start) / len(pairs)
    # One process sums in another order than panopticapi's two: expect rounding-level differences here.
    inmem_diff = _compare(accumulator.result().to_panopticapi(), reference, "in-memory vs panopticapi")

    # Memory the accumulator allocates (traced, so independent of what the allocator keeps resident):
    # after 1 image and after all of them, the maps themselves excluded.
    tracemalloc.start()
    accumulator = PQAccumulator(CATEGORIES)
    accumulator.update(*pairs[0])
    after_one = tracemalloc.get_traced_memory()[1]
    for pair in pairs[1:]:
        accumulator.update(*pair)
    after_all = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    table = accumulator._histogram._pred_table.nbytes + accumulator._histogram._gt_table.nbytes  # noqa: SLF001
    print(f"in-memory: {inmem_ms:.2f} ms per pair; peak allocations {after_one / 2**20:.1f} MiB after 1 image, "
          f"{after_all / 2**20:.1f} MiB after {len(pairs)}, of which {table / 2**20:.1f} MiB are the id lookup "
          "tables (calloc: only the pages ids touch become resident)")
    print(f"in-memory vs panopticapi: max |difference| {inmem_diff:.3g}, equal n and TP / FP / FN")
    print(f"pq_speed images={args.images} ours_s={ours_s:.3f} panopticapi_s={panopticapi_s:.2f} "
          f"hotcoco_s={hotcoco_s:.3f} speedup={panopticapi_s / ours_s:.2f} vs_hotcoco={hotcoco_s / ours_s:.2f} "
          f"inmem_ms={inmem_ms:.2f} max_abs_diff={max_abs_diff:.3g} ours_first_s={ours_times[0]:.3f}")


if __name__ == "__main__":
    main()
