"""Panoptic quality of a prediction folder, as panopticapi computes it, from the command line.

    python -m unips.evaluation.pq --gt-json panoptic_val.json --gt-folder panoptic_val \\
        --pred-json pred.json --pred-folder pred [--workers N] [--trim-stuff-area A] \\
        [--gt-cache [DIR]] [--per-class-csv F] [--per-class-json F]

Prints panopticapi's table (PQ / SQ / RQ in percent and the number of counted
categories for All / Things / Stuff). The per-class files hold ``category_id, name,
isthing, pq, sq, rq, tp, fp, fn, iou`` (fractions; ``iou`` is the sum of matched IoUs).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from unips.datasets.panoptic_format import PanopticFormatError, write_json
from unips.evaluation.gt_cache import default_cache_folder
from unips.evaluation.pq_files import evaluate_pq_files


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    """Write a DataFrame as CSV atomically (temporary file in the same folder, then rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            frame.to_csv(f, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--gt-json", required=True, type=Path)
    parser.add_argument("--pred-json", required=True, type=Path)
    parser.add_argument("--gt-folder", type=Path, default=None, help="default: --gt-json without .json")
    parser.add_argument("--pred-folder", type=Path, default=None, help="default: --pred-json without .json")
    usable_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    parser.add_argument("--workers", type=int, default=usable_cores,
                        help="threads (default: the usable CPU cores, as panopticapi its processes)")
    parser.add_argument("--trim-stuff-area", type=int, default=None, metavar="A",
                        help="predicted stuff segments below A pixels become void before matching (paper App. C)")
    parser.add_argument("--gt-cache", type=Path, nargs="?", const=default_cache_folder(), default=None,
                        metavar="DIR", help="keep the ground truth decoded in DIR, so that the next prediction set "
                        "scored against it decodes only its own PNGs (without DIR: ~/.cache/unips/pq_ground_truth, "
                        "or under $UNIPS_CACHE_DIR or $XDG_CACHE_HOME/unips)")
    parser.add_argument("--per-class-csv", type=Path, default=None)
    parser.add_argument("--per-class-json", type=Path, default=None)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    try:
        result, accumulator = evaluate_pq_files(args.gt_json, args.pred_json, args.gt_folder, args.pred_folder,
                                                workers=args.workers, stuff_area_limit=args.trim_stuff_area,
                                                gt_cache=args.gt_cache, progress=None)  # a bar on a terminal only
    except (PanopticFormatError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(result.table())
    print(f"{accumulator.num_images} images in {time.perf_counter() - start:.2f} s")
    if args.per_class_csv is not None:
        _write_csv(args.per_class_csv, result.per_class)
    if args.per_class_json is not None:
        write_json(args.per_class_json, result.per_class.to_dict(orient="records"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
